"""The output-file helper: all or nothing, symlinks followed, odd targets refused, umask kept."""

import os
import stat

import pytest

from ternary_core.errors import TernaryError
from ternary_core.output_file import check_output_path, open_output, write_output


def snapshot(path):
    """What must not change about an existing file: bytes, inode, mode."""
    st = os.lstat(path)
    data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
    return data, st.st_ino, st.st_mode


def char_device(tmp_path):
    """A character device node to refuse: made here when we may (root), else /dev/null
    (which a non-root process could not replace anyway)."""
    if os.geteuid() == 0:
        node = tmp_path / "null"
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        return node
    return "/dev/null"


def test_new_file_is_written_whole_with_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        write_output(tmp_path / "a.bin", b"abc")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["a.bin"]  # no temporary left behind


def test_replaced_file_keeps_its_mode_and_gets_a_new_inode(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    p.chmod(0o604)
    ino = p.stat().st_ino
    write_output(p, "new ü")
    assert p.read_text(encoding="utf-8") == "new ü"
    assert stat.S_IMODE(p.stat().st_mode) == 0o604
    assert p.stat().st_ino != ino  # replaced by rename, never truncated in place


def test_a_failing_writer_leaves_the_target_untouched(tmp_path):
    p = tmp_path / "out.v"
    p.write_text("the last good file")
    before = snapshot(p)
    with pytest.raises(RuntimeError):
        with open_output(p, mode="w") as f:
            f.write("half a fi")
            raise RuntimeError("disk full, say")
    assert snapshot(p) == before
    assert sorted(os.listdir(tmp_path)) == ["out.v"]


def test_an_os_error_while_writing_is_a_named_one_line_error(tmp_path):
    p = tmp_path / "out.bin"
    p.write_bytes(b"keep")
    before = snapshot(p)
    with pytest.raises(TernaryError, match=r"^-o .*out\.bin: writing failed \(No space left on device\); "
                                           r"the target is unchanged$"):
        with open_output(p, what="-o") as f:
            f.write(b"x")
            raise OSError(28, "No space left on device")
    assert snapshot(p) == before


def test_a_symlink_is_followed_and_stays_a_symlink(tmp_path):
    target = tmp_path / "real.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    write_output(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "not-yet.bin")
    write_output(dangling, b"made")
    assert dangling.is_symlink() and (tmp_path / "not-yet.bin").read_bytes() == b"made"


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_non_regular_targets_are_refused(tmp_path, kind):
    if kind == "folder":
        target = tmp_path / "dir"
        target.mkdir()
        expect = "is a folder"
    elif kind == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
        expect = "is a FIFO"
    else:
        target = char_device(tmp_path)
        expect = "is a character device"
    before = os.lstat(target)
    with pytest.raises(TernaryError, match=f"^--json .*: {expect}, not a regular file; refusing"):
        write_output(target, b"x", what="--json")
    after = os.lstat(target)
    assert (after.st_ino, after.st_mode, after.st_rdev) == (before.st_ino, before.st_mode, before.st_rdev)
    # a symlink to a FIFO is refused as the FIFO it points to
    if kind == "fifo":
        link = tmp_path / "to-fifo"
        link.symlink_to(target)
        with pytest.raises(TernaryError, match="is a FIFO"):
            write_output(link, b"x")
        assert stat.S_ISFIFO(os.stat(target).st_mode)


def test_the_input_is_refused_as_output_also_through_links(tmp_path):
    src = tmp_path / "model.gguf"
    src.write_bytes(b"GGUF precious")
    before = snapshot(src)
    hard = tmp_path / "hard.gguf"
    os.link(src, hard)
    soft = tmp_path / "soft.gguf"
    soft.symlink_to(src)
    for target in (src, hard, soft, tmp_path / "." / "model.gguf"):
        with pytest.raises(TernaryError, match=r"is the input .*model\.gguf; write the output to another"):
            write_output(target, b"x", what="-o", inputs=[src])
    assert snapshot(src) == before


def test_a_missing_folder_is_a_clear_error_and_nothing_is_made(tmp_path):
    with pytest.raises(TernaryError, match=r"^-o .*/nope/x\.v: the folder .*/nope does not exist$"):
        check_output_path(tmp_path / "nope" / "x.v", what="-o")
    assert not (tmp_path / "nope").exists()
    with pytest.raises(TernaryError, match="empty"):
        check_output_path("", what="-o")

"""The one way this project writes an output file: all of it, or nothing.

:func:`write_output` (and :func:`open_output` for writers that want a file object)
write to a temporary file beside the target, ``fsync`` it, and ``os.replace`` it onto
the target only after every byte is written. A failure at any point (a full disk, an
exception in the writer, Ctrl-C) leaves the target as it was and removes the temporary.

What the target may be, checked by :func:`check_output_path` before any work is done
(so a command can check its ``-o`` before minutes of training or building):

* a symlink is followed: the file it points to is what gets written, the link stays;
* an existing target must be a regular file: a folder, FIFO or device is refused
  (replacing ``/dev/null`` or a FIFO with a plain file would silently break whatever
  uses them);
* the target must not be one of the command's inputs (``os.path.samefile``, so a hard
  link or a symlink to the input is caught too);
* the folder it goes in must exist (a typo in a folder name is an error, not a new
  tree of folders).

Permissions: a new file gets ``0666 & ~umask``, like ``open(path, "w")``; a replaced
file keeps its own mode. (``safetensors.numpy.save_file`` writes 0600 through its own
temporary file, which is why model files go through here as bytes.)

Every refusal is a :class:`~ternary_core.errors.TernaryError` naming the argument and
the path: the CLI prints it as one line with exit status 2.
"""

import contextlib
import fcntl
import os
import stat
import tempfile
from pathlib import Path

from .errors import TernaryError


def check_output_path(path, *, what="output", inputs=()):
    """Check ``path`` can be written as an output; return the real path to write.

    Parameters
    ----------
    path : str or os.PathLike
        The target as the user gave it.
    what : str
        The argument's name for error messages (``"-o"``, ``"--json"``).
    inputs : iterable of paths
        Files the command reads; the target must not be any of them.

    Raises
    ------
    TernaryError
        The target is a folder, FIFO, device or other non-regular file, is one of the
        inputs, or its folder does not exist.
    """
    given = os.fspath(path)
    if not given:
        raise TernaryError(f"{what}: the output path is empty")
    real = Path(os.path.realpath(given))  # follows symlinks; a dangling one names its target
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise TernaryError(f"{what} {given}: cannot use it as an output ({exc.strerror})") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise TernaryError(f"{what} {given}: is {_kind(st.st_mode)}, not a regular file; "
                           f"refusing to replace it")
    if not real.parent.is_dir():
        raise TernaryError(f"{what} {given}: the folder {real.parent} does not exist")
    if not os.access(real.parent, os.W_OK | os.X_OK):     # (the output is written beside it)
        raise TernaryError(f"{what} {given}: cannot write in the folder {real.parent}")
    for inp in inputs:
        if st is not None and os.path.exists(inp) and os.path.samefile(real, inp):
            raise TernaryError(f"{what} {given}: is the input {os.fspath(inp)}; "
                               f"write the output to another file")
    return real


@contextlib.contextmanager
def open_output(path, *, what="output", inputs=(), mode="wb"):
    """Context manager: a file object (``mode`` ``"wb"`` or ``"w"``) whose content
    replaces ``path`` when the ``with`` block ends without an exception.

    Latency: one ``fsync`` of the file at the end; the ``os.replace`` is atomic on
    the same filesystem (the temporary lives in the target's folder for that reason).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"open_output mode must be 'wb' or 'w', not {mode!r}")
    real = check_output_path(path, what=what, inputs=inputs)
    try:
        old_mode = stat.S_IMODE(os.stat(real).st_mode)
    except FileNotFoundError:
        old_mode = None
    try:
        fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".tmp")
    except OSError as exc:
        raise TernaryError(f"{what} {os.fspath(path)}: cannot write in {real.parent} "
                           f"({exc.strerror})") from None
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes 0600; give the file what a plain open() would have.
        os.chmod(tmp, old_mode if old_mode is not None else 0o666 & ~_umask())
        os.replace(tmp, real)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, TernaryError):
            raise TernaryError(f"{what} {os.fspath(path)}: writing failed ({exc.strerror or exc}); "
                               f"the target is unchanged") from None
        raise


def write_output(path, data, *, what="output", inputs=()):
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` all at once; return the real path."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open_output(path, what=what, inputs=inputs) as f:
        f.write(data)
    return Path(os.path.realpath(os.fspath(path)))


def _umask():
    # Linux reports it without changing it; elsewhere set-and-restore is the only way.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _kind(mode):
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


@contextlib.contextmanager
def exclusive(lock_path):
    """Hold an exclusive lock on ``lock_path`` (created if missing) for the ``with``
    block: concurrent processes that build the same cached thing take turns, and the
    later ones find it built."""
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file closes
        yield


def staging_folder(target, *, what="output"):
    """A new, empty folder beside ``target`` (a folder, existing or not) to build into,
    with the mode a plain ``mkdir`` would give; :func:`replace_folder` puts it in place."""
    target = Path(target)
    try:
        new = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".new"))
    except OSError as exc:
        raise TernaryError(f"{what} {target}: cannot create a folder in {target.parent} "
                           f"({exc.strerror})") from None
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o777 & ~_umask()
    os.chmod(new, mode)
    return new


def replace_folder(new, target):
    """Put the folder ``new`` (from :func:`staging_folder`) in place of ``target``: the
    old folder is renamed aside, ``new`` renamed in, the old one removed. An interruption
    between the two renames puts the old folder back, so ``target`` is always one whole
    folder, the old or the new."""
    import shutil

    new, target = Path(new), Path(target)
    if not target.exists():
        os.rename(new, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
    os.rmdir(old)    # a free name beside the target
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)

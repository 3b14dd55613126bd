"""Bad inputs, round five (a red-team pass over the CLI after issue 20's SDRAM build): each
was a hang, a traceback, a silently ignored flag or a misleading message, and is now one
line on stderr with exit status 2, before anything runs."""

import hashlib
import json
import os
import re
import struct

import pytest

import host.backends as backends
from host.cli import main


def one_line_refusal(capsys, argv, pattern):
    capsys.readouterr()
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, lines)
    assert re.search(pattern, lines[0]), lines[0]


def gguf_header(kvs, tensors=0):
    """A GGUF v3 header and metadata: ``kvs`` is a list of (key, type, raw value bytes)."""
    out = b"GGUF" + struct.pack("<IQQ", 3, tensors, len(kvs))
    for key, vtype, raw in kvs:
        out += struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", vtype) + raw
    return out


ARCH = ("general.architecture", 8, struct.pack("<Q", 6) + b"bitnet")


@pytest.mark.parametrize("data, field", [
    # an array of 2**40 UINT32 in a 68-byte file: gguf's reader looped on it, growing by GBs
    (gguf_header([("general.architecture", 9, struct.pack("<IQ", 4, 1 << 40))]),
     r"general\.architecture \(an array of 1,099,511,627,776 values\)"),
    (gguf_header([("general.architecture", 9, struct.pack("<IQ", 8, 1 << 40))]),
     r"an array of 1,099,511,627,776 values"),
    (gguf_header([ARCH, ("tokenizer.ggml.tokens", 8, struct.pack("<Q", 1 << 50))]),
     r"the value of tokenizer\.ggml\.tokens runs past the end"),
    (gguf_header([ARCH]) [:-3], r"the value of general\.architecture runs past the end"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 60), r"the metadata \(1,152,921,504,606,846,976 keys\)"),
    (gguf_header([ARCH], tensors=1 << 40), r"the tensor infos \(1,099,511,627,776 tensors\)"),
    (gguf_header([("general.architecture", 13, b"")]), r"value type 13, which GGUF does not define"),
], ids=["u32-array", "string-array", "string", "truncated", "keys", "tensors", "type"])
def test_a_gguf_declaring_more_than_it_holds_is_refused_by_field(tmp_path, capsys, data, field):
    src = tmp_path / "bad.gguf"
    src.write_bytes(data)
    one_line_refusal(capsys, ["import", str(src), "-o", str(tmp_path / "m.safetensors")],
                     r"bad\.gguf: not a readable GGUF file \(.*" + field)
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_a_fifo_in_a_hugging_face_folder_is_refused_not_read(tmp_path, capsys, name):
    """Reading a FIFO blocks until a writer comes: import hung on one."""
    from tests.test_cli_bad_inputs import hf_folder

    folder = tmp_path / "hf"
    hf_folder(folder)
    (folder / name).unlink(missing_ok=True)
    os.mkfifo(folder / name)
    one_line_refusal(capsys, ["import", str(folder), "-o", str(tmp_path / "m.safetensors")],
                     re.escape(name) + r": not a regular file")


def test_sim_phy_is_refused_where_there_is_no_simulated_board(capsys):
    for backend in (["--backend", "reference"], ["--backend", "integer"],
                    ["--backend", "serial", "--port", "/dev/null"]):
        one_line_refusal(capsys, ["generate", *backend, "--sim-phy", "uart", "--tokens", "1"],
                         r"--sim-phy applies to the simulated board")


def test_a_weight_store_too_small_for_the_on_chip_model_build_is_refused_before_a_board(
        capsys, monkeypatch):
    """--offload model on the ULX3S (which has an SDRAM build too) with the shipped model,
    which its on-chip build runs: --weight-words 1 went on to build a simulated board."""
    def refuse(args, model=None):
        raise AssertionError("a device was opened before the inputs were checked")
    monkeypatch.setattr(backends, "open_device", refuse)
    one_line_refusal(capsys, ["generate", "--backend", "sim", "--board", "ulx3s-85f",
                              "--offload", "model", "--weight-words", "1", "--tokens", "1"],
                     r"needs 64 weight words; the ulx3s-85f engine holds 1 \(--weight-words\)")


@pytest.mark.parametrize("argv, pattern", [
    (["--board", "icebreaker", "--freq", "1e308"], r"--freq: 1e\+308 MHz is above any clock"),
    (["--board", "ulx3s-85f", "--freq", "1001"], r"--freq: 1001 MHz is above any clock"),
    # the flag that cannot apply first, not the engine sizes it would not use
    (["--board", "ulx3s-85f", "--sdram", "--rows", "4", "--format", "base3"],
     r"--sdram: only with --offload model"),
])
def test_build_refuses_before_synthesis(capsys, monkeypatch, tmp_path, argv, pattern):
    monkeypatch.chdir(tmp_path)
    one_line_refusal(capsys, ["build", *argv], pattern)
    assert not (tmp_path / "build").exists()


def bitstream_with_report(folder, rep):
    folder.mkdir(parents=True)
    data = b"a bitstream"
    (folder / "ulx3s-85f.bit").write_bytes(data)
    full = {"board": "ulx3s-85f", "timing_met": True, "fmax_mhz": 31.0, "target_mhz": 30.0,
            "bitstream_sha256": hashlib.sha256(data).hexdigest(), **rep}
    (folder / "report.json").write_text(json.dumps(full))
    return folder / "ulx3s-85f.bit"


def test_program_checks_the_build_its_flags_name_against_the_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-programmers-here"))
    # a matvec build's report in the SDRAM build's folder
    bitstream_with_report(tmp_path / "build" / "ulx3s-85f-model-sdram", {})
    one_line_refusal(capsys, ["program", "--board", "ulx3s-85f", "--offload", "model", "--sdram"],
                     r"its report is of the matvec build, not the model-sdram build")
    # --bitstream with --offload model --sdram: the report must say so too
    bit = bitstream_with_report(tmp_path / "elsewhere", {"offload": "model"})
    one_line_refusal(capsys, ["program", "--board", "ulx3s-85f", "--offload", "model", "--sdram",
                              "--bitstream", str(bit)],
                     r"its report is of the model build, not the model-sdram build")
    # flags the board has no build for, with --bitstream as without
    one_line_refusal(capsys, ["program", "--board", "icebreaker", "--offload", "model",
                              "--bitstream", str(bit)], r"the icebreaker has no such build")
    one_line_refusal(capsys, ["program", "--board", "ulx3s-85f", "--bitstream", ""],
                     r"--bitstream: the path is empty")
    one_line_refusal(capsys, ["program", "--board", "ulx3s-85f", "--bitstream", "nope.bit"],
                     r"--bitstream nope\.bit: no such file$")
    # the right flags pass the checks and reach the programmers (none installed here)
    capsys.readouterr()
    assert main(["program", "--board", "ulx3s-85f", "--offload", "model", "--bitstream", str(bit)]) == 2
    err = capsys.readouterr().err
    assert "report is of" not in err and "no programmer found for ulx3s-85f" in err
    assert "openfpgaloader" in err and "icestorm" not in err     # the ECP5's, not the iCE40's


def test_bench_refuses_one_file_for_json_and_plot(tmp_path, capsys):
    out = tmp_path / "r.png"
    one_line_refusal(capsys, ["bench", "--json", str(out), "--plot", str(out)],
                     r"--json and --plot name the same file")
    assert not out.exists()


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "usage: ternary" in out.err


def test_import_names_what_is_wrong_with_its_source(tmp_path, capsys):
    out = str(tmp_path / "m.safetensors")
    one_line_refusal(capsys, ["import", "", "-o", out], r"SRC: the path is empty")
    os.mkfifo(tmp_path / "f.gguf")
    one_line_refusal(capsys, ["import", str(tmp_path / "f.gguf"), "-o", out],
                     r"f\.gguf: not a regular file")
    (tmp_path / "noarch.gguf").write_bytes(gguf_header([]))
    one_line_refusal(capsys, ["import", str(tmp_path / "noarch.gguf"), "-o", out],
                     r"GGUF has no general\.architecture key")
    assert not (tmp_path / "m.safetensors").exists()


def test_generate_tokens_has_an_upper_bound(capsys):
    """--tokens 99999999999999999999 was taken and generated for ever."""
    capsys.readouterr()
    assert main(["generate", "--tokens", "99999999999999999999"]) == 2
    err = capsys.readouterr().err
    assert "--tokens" in err and "must be at most 1,000,000" in err

"""The one safetensors reader (ternary_core.formats.safetensors): round trips against the
safetensors library, bf16, and a one-line error naming the tensor and field for every
malformed header (a model file is untrusted input)."""

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save

from ternary_core.errors import TernaryError
from ternary_core.formats.safetensors import read_safetensors


def _file(tmp_path, header, data=b"", raw_header=None):
    body = raw_header if raw_header is not None else json.dumps(header).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)
    return path


def test_reads_what_the_safetensors_library_writes(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"a": rng.standard_normal((3, 5)).astype(np.float32),
               "b": rng.integers(0, 255, (7,), dtype=np.uint8),
               "c": rng.integers(-9, 9, (2, 2, 2), dtype=np.int64),
               "empty": np.zeros((0, 4), np.float16)}
    path = tmp_path / "t.safetensors"
    path.write_bytes(save(tensors, metadata={"format": "x"}))
    meta, got = read_safetensors(path)
    assert meta == {"format": "x"}
    assert set(got) == set(tensors)
    for name, a in tensors.items():
        assert got[name].dtype == a.dtype and got[name].shape == a.shape
        np.testing.assert_array_equal(got[name], a)


def test_bf16_comes_back_as_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    path = _file(tmp_path, {"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}, bf16)
    _, got = read_safetensors(path)
    assert got["w"].dtype == np.float32
    np.testing.assert_array_equal(got["w"], values)


GOOD = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
BAD_HEADERS = {
    "a list": ([GOOD], "must be a JSON object|expected a JSON object"),
    "dtype a list": ({"w": {**GOOD, "dtype": ["F32"]}}, r"tensor w: dtype \['F32'\] is not supported"),
    "unknown dtype": ({"w": {**GOOD, "dtype": "F128"}}, "tensor w: dtype 'F128' is not supported"),
    "shape a string": ({"w": {**GOOD, "shape": "2"}}, "tensor w: shape must be a list of non-negative"),
    "negative shape": ({"w": {**GOOD, "shape": [-2]}}, "tensor w: shape must be a list of non-negative"),
    "bool shape": ({"w": {**GOOD, "shape": [True, 2]}}, "tensor w: shape must be a list of non-negative"),
    "float offsets": ({"w": {**GOOD, "data_offsets": [0.0, 8.0]}}, "tensor w: data_offsets must be two integers"),
    "string offsets": ({"w": {**GOOD, "data_offsets": ["0", "8"]}}, "tensor w: data_offsets must be two integers"),
    "three offsets": ({"w": {**GOOD, "data_offsets": [0, 4, 8]}}, "tensor w: data_offsets must be two integers"),
    "past the end": ({"w": {**GOOD, "data_offsets": [0, 800]}}, "tensor w: bytes 0..800 lie outside"),
    "wrong size": ({"w": {**GOOD, "shape": [3]}}, r"tensor w: has 8 bytes for shape \[3\]"),
    "no dtype": ({"w": {"shape": [2], "data_offsets": [0, 8]}}, "tensor w: its header entry has no dtype"),
    "entry a number": ({"w": 5}, "tensor w: its header entry must be an object"),
    "overlap": ({"w": GOOD, "v": {**GOOD, "data_offsets": [4, 12]}}, "overlap"),
    "metadata a list": ({"__metadata__": ["x"], "w": GOOD}, "__metadata__ must map names to strings"),
    "huge shape": ({"w": {**GOOD, "shape": [1 << 62, 1 << 62]}}, r"tensor w: has 8 bytes for shape"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_a_malformed_header_is_one_error_naming_the_field(tmp_path, case):
    header, message = BAD_HEADERS[case]
    path = _file(tmp_path, header, bytes(16))
    with pytest.raises(TernaryError, match=message) as err:
        read_safetensors(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("raw, message", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not UTF-8|not valid JSON"),
])
def test_unparseable_headers(tmp_path, raw, message):
    with pytest.raises(TernaryError, match=message):
        read_safetensors(_file(tmp_path, None, raw_header=raw))


def test_truncated_files(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(TernaryError, match="too short"):
        read_safetensors(path)
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(TernaryError, match="past the file's end"):
        read_safetensors(path)


def test_what_prefixes_the_error(tmp_path):
    path = tmp_path / "x"
    with pytest.raises(TernaryError, match=r"^--resume: checkpoint: cannot read it"):
        read_safetensors(path, what="--resume: checkpoint")


@pytest.mark.parametrize("command", ["import", "generate"])
def test_the_cli_refuses_a_broken_header_in_one_line(tmp_path, capsys, command):
    from host.cli import main

    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bitnet"}))
    bad = _file(folder, {"w": {**GOOD, "shape": "2"}}, bytes(8))
    out = tmp_path / "out.safetensors"
    argv = (["import", str(folder), "-o", str(out)] if command == "import"
            else ["generate", "--model", str(bad), "--tokens", "2"])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tensor w: shape must be a list" in err
    assert not out.exists()


def test_a_deeply_nested_config_json_is_one_error(tmp_path, capsys):
    from host.cli import main

    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["import", str(folder), "-o", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.json: JSON nested too deep" in err

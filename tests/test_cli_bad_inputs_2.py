"""Issue 24's bad inputs (round two) through the real command line, in the table of
``test_cli_bad_inputs.py`` (its fixtures and :func:`run_case`: exit code, one clear line,
nothing created, changed or removed), and the cases that need more than a table row:
results that must equal another backend's, an interrupted build, a resumed training.
Nothing here builds a board, runs a simulator or a real place and route."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

import boards.build as build_mod
from host.cli import main
from host.generate import default_model_path
from tests.test_cli_bad_inputs import (Case, FakePlan, _set, fake_build, hf_folder,  # noqa: F401
                                       inputs, model_variant, run_case, work)


def meta_variant(path, **meta_json):
    """The shipped model with metadata fields replaced (each value JSON-encoded)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    src = default_model_path()
    with safe_open(str(src), framework="numpy") as f:
        meta = dict(f.metadata())
    meta.update({k: json.dumps(v) for k, v in meta_json.items()})
    save_file(load_file(str(src)), str(path), metadata=meta)
    return path


def _scaled(name, factor):
    def fn(t):
        t[name] = (t[name].astype(np.float64) * factor).astype(np.float32)
    return fn


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    meta_variant(d / "vocab-ints.safetensors", tokenizer={"type": "vocab", "tokens": [1, 2, 3]})
    meta_variant(d / "vocab-short.safetensors",
                 tokenizer={"type": "vocab", "tokens": [chr(65 + i % 26) * (1 + i // 26) for i in range(100)]})
    meta_variant(d / "tok-json-int.safetensors", tokenizer={"type": "tokenizers", "json": 5})
    hf_folder(d / "hf-badtok")
    (d / "hf-badtok" / "tokenizer.json").write_text("{not json")
    model_variant(d / "ctx-1m.safetensors", config={"max_position_embeddings": 1 << 20})
    model_variant(d / "emb-1e30.safetensors", tensor_fn=_scaled("model.embed_tokens.weight", 1e30))
    model_variant(d / "norm-1e38.safetensors", tensor_fn=_scaled("model.norm.weight", 1e38))
    model_variant(d / "scale-1e-45.safetensors",
                  tensor_fn=_set("model.layers.0.self_attn.q_proj.weight_scale", 0, 1e-45))
    model_variant(d / "rope-1e300.safetensors", config={"rope_theta": 1e300})
    model_variant(d / "eps-1e300.safetensors", config={"rms_norm_eps": 1e300})
    (d / "huge-id.txt").write_text("1 100000000000000000000000 3")
    (d / "ids.txt").write_text(" ".join(str(b) for b in b"To be, or not to be"))
    return d


def report_beside(rep, *, data=b"some bitstream", report_name="report.json"):
    """``build/icebreaker`` with ``icebreaker.bin`` (``data``) and ``rep`` beside it: a dict
    (its ``bitstream_sha256`` filled in unless given), raw text, or ``"folder"``."""
    def setup(w, monkeypatch):
        d = w / "build" / "icebreaker"
        d.mkdir(parents=True)
        (d / "icebreaker.bin").write_bytes(data)
        if rep == "folder":
            (d / report_name).mkdir()
        elif isinstance(rep, str):
            (d / report_name).write_text(rep)
        else:
            full = {"bitstream_sha256": hashlib.sha256(data).hexdigest(), **rep}
            (d / report_name).write_text(json.dumps({k: v for k, v in full.items() if v is not None}))
        monkeypatch.setenv("PATH", str(w / "no-programmers-here"))
    return setup


def no_device(w, monkeypatch):
    """Any attempt to open a device (a first-use simulated board is minutes of Verilator)
    fails the test: the refusal must come first."""
    import host.backends as backends

    def refuse(args):
        raise AssertionError("a device was opened before the inputs were checked")
    monkeypatch.setattr(backends, "open_device", refuse)


GOOD = {"timing_met": True, "fmax_mhz": 40.0, "target_mhz": 36.0}
DEEP = "[" * 100_000 + "]" * 100_000

CASES = {
    # 4: tokenizer metadata, named by its model file; an import whose tokenizer is broken
    "vocab of integers": Case("generate --model {b}/vocab-ints.safetensors", 2,
                              r"vocab-ints\.safetensors: tokenizer: 'tokens' must be a list of strings"),
    "vocab shorter than the model's": Case(
        "generate --model {b}/vocab-short.safetensors", 2,
        r"vocab-short\.safetensors: tokenizer: 100 tokens, but the model's vocabulary is 256"),
    "tokenizer json not text": Case("generate --model {b}/tok-json-int.safetensors", 2,
                                    r"tok-json-int\.safetensors: tokenizer: 'json' must be the text"),
    "import tokenizer.json not JSON": Case("import {b}/hf-badtok -o {w}/out.safetensors", 2,
                                           r"hf-badtok: tokenizer: not a valid tokenizer\.json"),
    # 5: ids past int64
    "eval --ids with 10**23": Case("eval --ids {b}/huge-id.txt", 2,
                                   r"token id 100000000000000000000000 \(position 1\) is outside"),
    "generate --prompt-ids 10**23": Case("generate --prompt-ids 1,100000000000000000000000", 2,
                                         r"prompt token id 100000000000000000000000 is outside"),
    # 6: build folders that cannot be made; a report nested past the recursion limit
    "build --out under a file": Case("build --board icebreaker --out {w}/existing.v/sub", 2,
                                     r"--out .*existing\.v/sub: .*existing\.v is not a folder",
                                     setup=fake_build(40.0)),
    "build --out in /proc": Case("build --board icebreaker --out /proc/ternary-x", 2,
                                 r"--out /proc/ternary-x: cannot create", setup=fake_build(40.0)),
    "program a deeply nested report": Case("program --board icebreaker", 2,
                                           r"report\.json: not a readable build report \(nested too deeply\)",
                                           setup=report_beside(DEEP)),
    # 7, 8: what a model file declares, bounded at load
    "context of 2**20": Case("eval --model {b}/ctx-1m.safetensors --ids {b}/ids.txt", 2,
                             r"config: max_position_embeddings must be at most 32,768, got 1,048,576"),
    "embeddings x 1e30": Case("generate --model {b}/emb-1e30.safetensors", 2,
                              r"emb-1e30\.safetensors: tensor model\.embed_tokens\.weight has a value of magnitude"),
    "norm x 1e38": Case("generate --model {b}/norm-1e38.safetensors", 2,
                        r"tensor model\.norm\.weight has a value of magnitude .*within \+-1e\+06"),
    "weight scale 1e-45": Case("generate --model {b}/scale-1e-45.safetensors", 2,
                               r"q_proj\.weight_scale must be at least 1e-06, got 1\.4e-45"),
    "rope theta 1e300": Case("generate --model {b}/rope-1e300.safetensors", 2,
                             r"config: rope_theta must be within 1\.\.1e\+12, got 1e\+300"),
    "rms_norm_eps 1e300": Case("generate --model {b}/eps-1e300.safetensors", 2,
                               r"config: rms_norm_eps must be at most 1, got 1e\+300"),
    # 9: program trusts only a consistent report of this bitstream
    "program a 0-byte bitstream": Case("program --board icebreaker", 2, r"icebreaker\.bin: is empty \(0 bytes\)",
                                       setup=report_beside(GOOD, data=b"")),
    "program: timing met below the target": Case(
        "program --board icebreaker", 2, r"says timing met, but Fmax 10\.0 MHz < target 36\.0 MHz",
        setup=report_beside({**GOOD, "fmax_mhz": 10.0})),
    "program: report without its hash": Case(
        "program --board icebreaker", 2, r"report\.json: has no bitstream_sha256",
        setup=report_beside({**GOOD, "bitstream_sha256": "absent"} | {"bitstream_sha256": None})),
    "program: report.json a folder": Case("program --board icebreaker", 2,
                                          r"report\.json: is not a regular file",
                                          setup=report_beside("folder")),
    "program: timing_met 1": Case("program --board icebreaker", 2,
                                  r"timing_met must be true or false, got 1;",
                                  setup=report_beside({**GOOD, "timing_met": 1})),
    "program: timing_met 'true'": Case("program --board icebreaker", 2,
                                       r"timing_met must be true or false, got 'true'",
                                       setup=report_beside({**GOOD, "timing_met": "true"})),
    "program: target a string": Case("program --board icebreaker", 2,
                                     r"target_mhz must be a number of MHz greater than 0, got '36'",
                                     setup=report_beside({**GOOD, "target_mhz": "36"})),
    # 11: nothing printed before every input is checked (stdout checked in run_case_2)
    "prompt ids past the vocabulary print nothing": Case(
        "generate --prompt-ids 72,105,300", 2, r"prompt token id 300 is outside the vocabulary \(0\.\.255\)"),
    # 13: nothing accepted silently
    "--seed 2**32": Case("generate --seed 4294967296", 2,
                         r"argument --seed: must be at most 4294967295 \(seeds are 32 bits\)"),
    "--seed 2**64": Case("generate --seed 18446744073709551616", 2, r"argument --seed: must be at most"),
    "train --seed 2**32": Case("train --seed 4294967296", 2, r"argument --seed: must be at most"),
    "--check on reference": Case("generate --check", 2,
                                 r"--check applies to a device \(--backend sim or serial\), not to --backend reference"),
    "--stream on integer": Case("eval --backend integer --stream --ids {b}/ids.txt", 2,
                                r"--stream applies to a device"),
    "--stream with --offload model": Case(
        "generate --backend sim --board ulx3s-85f --offload model --stream", 2,
        r"--stream streams the BitLinears' weights \(--offload matvec\)", setup=no_device),
    "--port with sim": Case("generate --backend sim --port /dev/ttyUSB1", 2,
                            r"--port applies to a board on a serial port, not to --backend sim",
                            setup=no_device),
    "--weight-words with serial": Case("generate --backend serial --port {w}/p --weight-words 9000", 2,
                                       r"--weight-words applies to the simulated board", setup=no_device),
    "build --out ''": Case("build --board icebreaker", 2, r"--out: the output folder is empty",
                           extra=["--out", ""], setup=fake_build(40.0)),
    # 14: messages that say what to do; the simulated board's refusals before any board
    "train --resume --full-precision": Case(
        "train --corpus {i}/corpus.txt --resume --full-precision -o {w}/m.safetensors", 2,
        r"--resume: --full-precision runs keep no checkpoint, so there is nothing to resume"),
    "eval's default corpus missing": Case("eval", 2,
                                          r"corpus: \.\./shared/data/tinyshakespeare\.txt is not a file; "
                                          r"give a text file with --text"),
    "sim: empty prompt": Case("generate --backend sim", 2, r"--prompt: the prompt is empty",
                              extra=["--prompt", ""], setup=no_device),
    "sim: id past the vocabulary": Case("generate --backend sim --prompt-ids 1,256", 2,
                                        r"prompt token id 256 is outside the vocabulary", setup=no_device),
    "sim: --weight-words 10": Case("generate --backend sim --weight-words 10", 2,
                                   r"--weight-words 10: layer model\.layers\.0\.self_attn\.q_proj needs "
                                   r"\d+ weight words", setup=no_device),
    "sim eval: --weight-words 10": Case("eval --backend sim --weight-words 10 --ids {b}/ids.txt", 2,
                                        r"--weight-words 10: layer", setup=no_device),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_2(name, inputs, bad, work, monkeypatch, capsys):
    case = CASES[name]
    case = Case(case.argv.replace("{b}", str(bad)), case.code, case.message, case.changes,
                case.setup, case.extra)
    assert run_case(case, inputs, work, monkeypatch, capsys) == ""   # nothing printed before it

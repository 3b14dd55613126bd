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
from tests.test_cli_bad_inputs import (  # noqa: F401
    Case,
    FakePlan,
    _set,
    fake_build,
    hf_folder,
    inputs,
    model_variant,
    run_case,
    work,
)


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
    meta_variant(d / "vocab-digits.safetensors",
                 tokenizer={"type": "vocab", "tokens": [str(i) for i in range(256)]})
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
    model_variant(d / "silu.safetensors", config={"hidden_act": "silu"})
    for name, act in (("null", None), ("int", 3), ("list", ["silu"]), ("SiLU", "SiLU"),
                      ("spaced", " silu")):
        hf_folder(d / f"hf-act-{name}", config={"hidden_act": act})
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

    def refuse(args, model=None):
        raise AssertionError("a device was opened before the inputs were checked")
    monkeypatch.setattr(backends, "open_device", refuse)


def read_only(w, monkeypatch):
    """``build/icebreaker`` not writable, as os.access sees it (tests may run as root, to
    whom every mode is writable)."""
    real = os.access
    target = os.path.realpath(w / "build" / "icebreaker")
    monkeypatch.setattr(build_mod.os, "access", lambda p, mode, **kw: False if os.path.realpath(p) == target
                        else real(p, mode, **kw))


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
    "a prompt the vocabulary cannot spell": Case(
        "generate --model {b}/vocab-digits.safetensors", 2,
        r"--prompt: tokenizer: cannot encode 'R' with this vocabulary \(the tokenizer of .*vocab-digits"),
    "eval text the vocabulary cannot spell": Case(
        "eval --model {b}/vocab-digits.safetensors --text {b}/ids.txt", 2,
        r"ids\.txt: tokenizer: cannot encode ' ' with this vocabulary"),
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
                                           r"report\.json: not a readable build report \(JSON nested too deep\)",
                                           setup=report_beside(DEEP)),
    # 7, 8: what a model file declares, bounded at load
    "context of 2**20": Case("eval --model {b}/ctx-1m.safetensors --ids {b}/ids.txt", 2,
                             r"config: max_position_embeddings must be at most 32,768, got 1,048,576"),
    "embeddings x 1e30": Case("generate --model {b}/emb-1e30.safetensors", 2,
                              r"emb-1e30\.safetensors: tensor model\.embed_tokens\.weight has a value "
                              r"of magnitude"),
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
    # red team 5: a report of another board; clocks that contradict timing_met
    "program: a report of another board": Case(
        "program --board icebreaker", 2, r"report\.json is of a 'ulx3s-85f' build, not icebreaker's",
        setup=report_beside({**GOOD, "board": "ulx3s-85f"})),
    "program: a controller clock that missed": Case(
        "program --board icebreaker", 2, r"says timing met, but its clocks say sdram_clk missed",
        setup=report_beside({**GOOD, "clocks": {"clk": {"achieved": 40.0, "constraint": 36.0},
                                                 "sdram_clk": {"achieved": 41.0, "constraint": 50.0}}})),
    "program: clocks not a map": Case("program --board icebreaker", 2,
                                      r"clocks must map each clock to its achieved and constraint MHz",
                                      setup=report_beside({**GOOD, "clocks": "garbage"})),
    "program: a FIFO as the bitstream": Case("program --board icebreaker --bitstream {w}/fifo", 2,
                                             r"--bitstream .*fifo: is not a regular file"),
    # 11: nothing printed before every input is checked (stdout checked in run_case_2)
    "prompt ids past the vocabulary print nothing": Case(
        "generate --prompt-ids 72,105,300", 2, r"prompt token id 300 is outside the vocabulary \(0\.\.255\)"),
    # 13: nothing accepted silently
    "--seed 2**32": Case("generate --seed 4294967296", 2,
                         r"argument --seed: must be at most 4294967295 \(seeds are 32 bits\)"),
    "--seed 2**64": Case("generate --seed 18446744073709551616", 2, r"argument --seed: must be at most"),
    "train --seed 2**32": Case("train --seed 4294967296", 2, r"argument --seed: must be at most"),
    "--check on reference": Case("generate --check", 2,
                                 r"--check applies to a device \(--backend sim or serial\), not to "
                                 r"--backend reference"),
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
    "build --out not writable": Case("build --board icebreaker --out {w}/build/icebreaker", 2,
                                     r"--out .*build/icebreaker: the folder is not writable "
                                     r"\(a build replaces it\)",
                                     setup=lambda w, mp: (fake_build(40.0)(w, mp), read_only(w, mp))),
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
                                   r"layer model\.layers\.0\.self_attn\.q_proj needs \d+ weight "
                                   r"words; the \S+ engine holds 10 \(--weight-words\)", setup=no_device),
    "sim eval: --weight-words 10": Case("eval --backend sim --weight-words 10 --ids {b}/ids.txt", 2,
                                        r"layer .* holds 10 \(--weight-words\)", setup=no_device),
    # SiLU models (hidden_act): a config's hidden_act of the wrong type or spelling; --act;
    # --offload on the reference backend (the vector machine runs SiLU: an activation it does
    # not run is refused in tests/test_offload_host.py)
    **{f"import hidden_act {name}": Case(
        f"import {{b}}/hf-act-{name} -o {{w}}/m.safetensors", 2,
        rf"hf-act-{name}/config\.json: hidden_act must be {want}")
       for name, want in (("null", "a string, got None"), ("int", "a string, got 3"),
                          ("list", r"a string, got \['silu'\]"),
                          ("SiLU", "one of relu2, silu, got 'SiLU'"),
                          ("spaced", "one of relu2, silu, got ' silu'"))},
    "train --act gelu": Case("train --corpus {i}/corpus.txt --act gelu -o {w}/m.safetensors", 2,
                             r"argument --act: invalid choice: 'gelu' \(choose from"),
    "train --act ''": Case("train --corpus {i}/corpus.txt -o {w}/m.safetensors", 2,
                           r"argument --act: invalid choice: ''", extra=["--act", ""]),
    "silu --offload model on reference": Case(
        "generate --model {b}/silu.safetensors --offload model", 2,
        r"--offload applies to --backend sim or serial, not reference"),
    "bench --sdram --plot": Case("bench --sdram --plot {w}/b.png", 2,
                                 r"--sdram measures the SDRAM-fed engine only; --plot, --configs and --jobs"),
    "bench --sdram --configs": Case("bench --sdram --configs 4x8/2bit", 2,
                                    r"--sdram measures the SDRAM-fed engine only"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_2(name, inputs, bad, work, monkeypatch, capsys):  # noqa: F811
    case = CASES[name]
    case = Case(case.argv.replace("{b}", str(bad)), case.code, case.message, case.changes,
                case.setup, case.extra)
    assert run_case(case, inputs, work, monkeypatch, capsys) == ""   # nothing printed before it


# ---------------------------------------------------------------------------- 1: tiny temperatures

def _ids(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)["token_ids"]


@pytest.mark.parametrize("temperature", ["1e-30", "1e-320"])
def test_a_tiny_temperature_gives_the_reference_ids_on_every_backend(temperature, capsys, monkeypatch):
    """1e-30 wrapped the integer sampler's int64 product (random text, exit 0); 1e-320
    made the float sampler's inf - inf (a NaN traceback). Both are the argmax now: the
    integer backend's ids equal the reference's, and so do the device's (the model
    offload path over the real protocol to the device's program in Python)."""
    import host.backends as backends
    from host.device import Device
    from ternary_core.model.file import load_model
    from ternary_core.offload.limits import DeviceLimits
    from tests.python_device import PythonDevice

    argv = ["generate", "--tokens", "12", "--json", "--seed", "5"]
    greedy = _ids(capsys, argv + ["--temperature", "0"])
    reference = _ids(capsys, argv + ["--temperature", temperature])
    integer = _ids(capsys, argv + ["--backend", "integer", "--temperature", temperature])
    assert reference == greedy and integer == reference
    config = load_model(default_model_path()).config
    monkeypatch.setattr(backends, "open_device",
                        lambda args, model=None: Device(PythonDevice(DeviceLimits.for_config(config))))
    device = _ids(capsys, argv + ["--backend", "sim", "--board", "ulx3s-85f", "--offload", "model",
                                  "--temperature", temperature])
    assert device == reference


# ---------------------------------------------------------------------------- 2: eval on a whole-model device

def test_eval_on_a_whole_model_device_offloads_the_matvecs(capsys, monkeypatch, tmp_path):
    """The ulx3s-85f's simulated board has the vector machine, so generate offloads the
    model there; eval needs every position's logits and runs the BitLinears on it instead
    (it ended in an AttributeError). The device's matvecs are the golden model's here."""
    import host.backends as backends
    from ternary_core.reference import GoldenBackend
    from tests.helpers import python_devices

    opened = python_devices(monkeypatch)
    monkeypatch.setattr(backends, "open_backend", lambda args, model, device=None: GoldenBackend())
    ids = tmp_path / "ids.txt"
    ids.write_text(" ".join(str(b) for b in b"To be, or not to be, that is the question"))
    capsys.readouterr()
    assert main(["eval", "--ids", str(ids), "--json"]) == 0
    want = json.loads(capsys.readouterr().out)
    assert main(["eval", "--ids", str(ids), "--json", "--backend", "sim", "--board", "ulx3s-85f"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert opened and opened[0].has_vm          # a device that would take the whole model
    assert got["backend"] == "sim" and got["positions"] == want["positions"]
    assert got["loss_nats_per_token"] == pytest.approx(want["loss_nats_per_token"], rel=1e-6)


# ---------------------------------------------------------------------------- 7: memory

@pytest.mark.parametrize("backend", ["reference", "integer"])
def test_windows_past_one_pass_are_stepped_with_the_same_result(backend, monkeypatch):
    """Windows longer than SCORE_AT_ONCE go through the KV cache (memory linear in the
    window): the same figures as one vectorized pass (bit-exact on the integer decode)."""
    from types import SimpleNamespace

    import host.eval as eval_mod
    from host.backends import open_runner
    from host.generate import load

    model, tok = load()
    ids = list(b"To be, or not to be, that is the question: whether 'tis nobler")
    args = SimpleNamespace(backend=backend, offload=None, stream=False)

    def run():
        b = open_runner(args, model)
        return eval_mod.evaluate(model, b, ids, tok, log=open(os.devnull, "w"))

    whole = run()
    monkeypatch.setattr(eval_mod, "SCORE_AT_ONCE", 7)
    stepped = run()
    for k in ("positions", "windows", "top1_accuracy", "top1_agreement"):
        assert stepped[k] == whole[k], k
    if backend == "integer":
        assert stepped["loss_nats_per_token"] == whole["loss_nats_per_token"]
    else:
        assert stepped["loss_nats_per_token"] == pytest.approx(whole["loss_nats_per_token"], rel=1e-5)


@pytest.mark.parametrize("split", ["all", "train", "val"])
def test_eval_reads_only_the_bytes_it_scores(split, tmp_path, monkeypatch):
    from host.eval import read_text
    from ternary_core.corpus import corpus_split

    data = bytes(range(256)) * 40 + b"tail"
    p = tmp_path / "t.txt"
    p.write_bytes(data)
    for n in (None, 2, 1000, 10**9):
        want = corpus_split(data, split)[:n] if n else corpus_split(data, split)
        assert read_text(p, split, n) == want
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read the whole file"))
    reads = []
    real_open = open

    def counting_open(*a, **kw):
        f = real_open(*a, **kw)
        real_read = f.read
        f.read = lambda size=-1: reads.append(size) or real_read(size)
        return f

    monkeypatch.setattr("builtins.open", counting_open)
    assert len(read_text(p, split, 100)) == 100 and reads == [100]


# ---------------------------------------------------------------------------- 8: non-finite logits

def test_a_non_finite_logit_stops_generation_with_a_clear_error():
    from host.generate import generate
    from ternary_core.errors import TernaryError
    from ternary_core.model.file import load_model
    from ternary_core.sampling import Sampler

    class Overflowing:
        pos = 0

        def reset(self):
            self.pos = 0

        def step(self, token):
            self.pos += 1
            return np.full(256, np.nan if self.pos >= 3 else 0.0, np.float32)

    model = load_model(default_model_path())
    seen = []
    with pytest.raises(TernaryError, match=r"non-finite logit after position 2: its numbers overflow"):
        generate(model, lambda n: Overflowing(), [1, 2], 5, Sampler(0.0), on_token=seen.append)
    assert seen == [0]         # the one token sampled from finite logits


# ---------------------------------------------------------------------------- 10: resume on another corpus

def test_train_resume_refuses_another_corpus(inputs, work, monkeypatch, capsys):  # noqa: F811
    pytest.importorskip("torch", reason="training needs the 'train' extra (torch)")
    import ternary_core.train as train_mod
    from tests.test_cli_bad_inputs import snapshot

    for name, seed in (("a.txt", 1), ("b.txt", 2)):
        rng = np.random.default_rng(seed)
        (work / name).write_bytes(rng.choice(list(b"abc de\n"), size=4000).astype(np.uint8).tobytes())
    real_save = train_mod.save_checkpoint

    def save_then_stop(path, *args):
        real_save(path, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_stop)
    argv = ["train", "-o", str(work / "m.safetensors"), "--steps", "6", "--batch", "2", "--seq-len", "16",
            "--checkpoint-every", "2", "--hidden-size", "32", "--intermediate-size", "32", "--layers", "1",
            "--heads", "2", "--kv-heads", "1", "--threads", "1"]
    assert main(argv + ["--corpus", str(work / "a.txt")]) == 130
    assert (work / "m.safetensors.ckpt.safetensors").is_file()
    before = snapshot(work)
    capsys.readouterr()
    assert main(argv + ["--corpus", str(work / "b.txt"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was made on another corpus" in err[0] and "give the same --corpus" in err[0], err
    assert snapshot(work) == before


# ------------------------------------------------------------ 12: builds replace their folder whole

class InterruptedPlan(FakePlan):
    def execute_local(self, out, env=None):
        (Path(out) / "top.il").write_text("half a build")
        raise KeyboardInterrupt


def test_an_interrupted_build_leaves_the_folder_as_it_was(work, monkeypatch, capsys):  # noqa: F811
    from tests.test_cli_bad_inputs import snapshot

    fake_build(40.0)(work, monkeypatch)
    d = work / "build" / "icebreaker"
    (d / "top.il").write_text("the last build's netlist")
    (d / "top.asc").write_text("the last build's placement")

    class Platform:
        def prepare(self, top, **kw):
            return InterruptedPlan(40.0, 36.0)

    monkeypatch.setattr(build_mod, "_platform_and_top", lambda *a, **kw: (Platform(), None, ".bin"))
    before = snapshot(work)
    assert main(["build", "--board", "icebreaker", "--out", str(d)]) == 130
    assert snapshot(work) == before          # no file of the interrupted build, no staging folder


def test_a_good_build_replaces_the_tools_outputs_and_keeps_other_files(work, monkeypatch, capsys):  # noqa: F811
    fake_build(40.0)(work, monkeypatch)
    d = work / "build" / "icebreaker"
    (d / "top.asc").write_text("an earlier build's placement")    # this build makes none
    (d / "notes.txt").write_text("mine")
    notes = os.stat(d / "notes.txt").st_ino
    (d / "icebreaker.failed.bin").write_bytes(b"stale")
    assert main(["build", "--board", "icebreaker", "--out", str(d)]) == 0
    assert sorted(os.listdir(d)) == ["icebreaker.bin", "notes.txt", "report.json", "top.bin",
                                     "top.report.json", "top.stat.json"]
    assert (d / "icebreaker.bin").read_bytes() == b"bitstream at 40.0 MHz"
    assert os.stat(d / "notes.txt").st_ino == notes
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")]   # no staging left

"""Every bad input of issue 14's "Why" list (and more) through the real command line.

One table: each row runs ``host.cli.main(argv)`` in a fresh folder holding the usual
victims (an existing output, a FIFO, a device node, a folder, a symlink) and asserts
the exit code, one clear error line naming the argument (argparse may add its usage
above it, never a traceback), and that no file anywhere in the folder or in the inputs
was created, truncated or replaced (bytes, inode, mode and type compared) except the
ones the row expects. Nothing here runs nextpnr, a simulator or a training step.
"""

import contextlib
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import boards.build as build_mod
from host.cli import main
from host.generate import default_model_path

ROOT = Path(__file__).resolve().parent.parent

TINY = {"vocab_size": 256, "hidden_size": 32, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 32,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "relu2", "model_type": "bitnet"}


# ---------------------------------------------------------------------------- inputs

def hf_folder(path, *, config=None, float_fn=None, packed_scale=None, seed=1):
    """A tiny HF BitNet folder: config.json and one safetensors file (float BitLinears,
    or HF-packed ones with ``packed_scale`` as every weight_scale)."""
    from safetensors.numpy import save_file

    from ternary_core.formats import hf_bitnet as hf_bitnet_format
    from ternary_core.model.config import BitNetConfig
    from ternary_core.model.file import float_tensor_shapes

    rng = np.random.default_rng(seed)
    cfg = dict(TINY, **(config or {}))
    path.mkdir()
    (path / "config.json").write_text(json.dumps(cfg))
    shapes_cfg = BitNetConfig.from_dict(TINY)
    t = {n: (1 + 0.1 * rng.standard_normal(s)).astype(np.float32)
         for n, s in float_tensor_shapes(shapes_cfg).items()}
    for name, (out, k) in shapes_cfg.bitlinear_shapes().items():
        w = rng.standard_normal((out, k)).astype(np.float32)
        if packed_scale is None:
            t[name + ".weight"] = w
        else:
            t[name + ".weight"] = hf_bitnet_format.pack(np.sign(w).astype(np.int8))
            t[name + ".weight_scale"] = np.array([packed_scale], np.float32)
    if float_fn:
        float_fn(t)
    save_file(t, str(path / "model.safetensors"))
    return path


def model_variant(path, *, config=None, tensor_fn=None, meta=None):
    """The shipped model with its config, tensors or metadata (``meta``: keys set) changed
    (still a valid safetensors)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    src, meta_changes = default_model_path(), meta
    with safe_open(str(src), framework="numpy") as f:
        meta = dict(f.metadata())
    t = load_file(str(src))
    if config:
        meta["config"] = json.dumps(dict(json.loads(meta["config"]), **config))
    if tensor_fn:
        tensor_fn(t)
    save_file(t, str(path), metadata=dict(meta, **(meta_changes or {})))
    return path


def _set(name, index, value):
    def fn(t):
        a = t[name].copy()
        a.flat[index] = value
        t[name] = a
    return fn


def gguf_variants(d, rng):
    """llama.cpp ``bitnet`` GGUFs with what issue 22 says must be refused by name."""
    from tests.test_model_files import GGUF_CFG, gguf_model, write_gguf

    out, k = GGUF_CFG.bitlinear_shapes()["model.layers.0.self_attn.q_proj"]
    two_magnitudes = np.resize(np.array([0.5, -0.5, 0.25, 0.0], np.float32), (out, k))
    write_gguf(d / "gelu.gguf", gguf_model(rng), activation="gelu")
    write_gguf(d / "scale-neg.gguf", gguf_model(rng), extra={"blk.0.attn_q.scale": np.array([-1.0], np.float32)})
    write_gguf(d / "rope-freqs.gguf", gguf_model(rng), extra={"rope_freqs.weight": np.ones(32, np.float32)})
    write_gguf(d / "not-ternary.gguf", gguf_model(rng), "F32", replace={"blk.0.attn_q.weight": two_magnitudes})


# integer_probe metadata (ternary import's measurement of the integer decode), as written
# by a careless or hostile hand: the file name is probe-NAME.safetensors
PROBES = {
    "below": '{"positions": 512, "top1_agreeing": 400}',
    "not-json": '{"positions": 512,',
    "list": '[512, 400]',
    "more-agreeing": '{"positions": 512, "top1_agreeing": 513}',
    "negative": '{"positions": -1, "top1_agreeing": 0}',
    "string": '{"positions": "512", "top1_agreeing": 500}',
    "bool": '{"positions": 512, "top1_agreeing": true}',
    "float": '{"positions": 512, "top1_agreeing": 500.0}',
    "huge": '{"positions": 1e400, "top1_agreeing": 0}',
    "missing": '{"positions": 512}',
    "unknown": '{"positions": 512, "top1_agreeing": 500, "bound": 0}',
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    hf_folder(d / "hf")
    hf_folder(d / "hf-str", config={"hidden_size": "32"})
    hf_folder(d / "hf-eps", config={"rms_norm_eps": "abc"})
    hf_folder(d / "hf-tie", config={"tie_word_embeddings": "no"})
    hf_folder(d / "hf-gelu", config={"hidden_act": "gelu"})
    hf_folder(d / "hf-nan", float_fn=_set("model.layers.0.input_layernorm.weight", 3, np.nan))
    hf_folder(d / "hf-scale0", packed_scale=0.0)
    (d / "hf-list").mkdir()
    (d / "hf-list" / "config.json").write_text("[1, 2]")
    model_variant(d / "eps-neg.safetensors", config={"rms_norm_eps": -1e-5})
    model_variant(d / "rope0.safetensors", config={"rope_theta": 0})
    model_variant(d / "rope-nan.safetensors", config={"rope_theta": float("nan")})
    model_variant(d / "layers-str.safetensors", config={"num_hidden_layers": "4"})
    model_variant(d / "gelu.safetensors", config={"hidden_act": "gelu"})
    model_variant(d / "nan.safetensors", tensor_fn=_set("model.embed_tokens.weight", 7, np.nan))
    model_variant(d / "inf-scale.safetensors",
                  tensor_fn=_set("model.layers.3.mlp.up_proj.weight_scale", 0, np.inf))
    model_variant(d / "neg-scale.safetensors",
                  tensor_fn=_set("model.layers.0.self_attn.q_proj.weight_scale", 0, -2.0))
    for name, probe in PROBES.items():
        model_variant(d / f"probe-{name}.safetensors", meta={"integer_probe": probe})
    (d / "X.gguf").write_bytes(b"GGUF not really, but precious")
    gguf_variants(d, np.random.default_rng(5))
    corpus = (ROOT.parent / "shared" / "data" / "tinyshakespeare.txt")
    text = corpus.read_bytes()[:20_000] if corpus.is_file() else bytes(range(256)) * 80
    (d / "corpus.txt").write_bytes(text)
    (d / "corpus-1000.txt").write_bytes(text[:1000])  # every step would run, then validation fail
    return d


# ---------------------------------------------------------------------------- the victims

@contextlib.contextmanager
def drained(fifo):
    """Keep a reader on ``fifo`` that discards what arrives, so that code which wrongly
    opens it for writing fails the test (exit code, or the FIFO replaced) instead of
    blocking it forever."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    stop = threading.Event()

    def run():
        while not stop.wait(0.02):  # non-blocking reads, 50 a second: joins at once
            try:
                while os.read(fd, 65536):
                    pass
            except BlockingIOError:
                pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        os.close(fd)


@pytest.fixture
def work(tmp_path, monkeypatch):
    w = tmp_path / "work"
    w.mkdir()
    (w / "existing.v").write_text("// the last good verilog\n")
    (w / "existing.v").chmod(0o640)
    (w / "existing.safetensors").write_bytes(b"a precious model")
    (w / "link.safetensors").symlink_to(w / "existing.safetensors")
    os.mkfifo(w / "fifo")
    (w / "folder").mkdir()
    if os.geteuid() == 0:
        os.mknod(w / "dev", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    else:  # a non-root process cannot replace /dev/null either way
        (w / "dev").symlink_to("/dev/null")
    monkeypatch.chdir(w)  # default outputs (build/, model.safetensors) land here
    with drained(w / "fifo"):
        yield w


def snapshot(*roots):
    """``{path: (type, inode, mode, rdev, content)}`` of everything under ``roots``."""
    out = {}
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            for n in dirs + files:
                p = Path(dirpath, n)
                st = os.lstat(p)
                content = (p.read_bytes() if stat.S_ISREG(st.st_mode) else
                           os.readlink(p) if stat.S_ISLNK(st.st_mode) else None)
                out[str(p)] = (stat.S_IFMT(st.st_mode), st.st_ino, stat.S_IMODE(st.st_mode),
                               st.st_rdev, content)
    return out


# ---------------------------------------------------------------------------- fake builds

class FakePlan:
    """What Amaranth's build plan does, minus the tools: write nextpnr's and Yosys's
    outputs with the given Fmax against the build's clock."""

    def __init__(self, fmax, target_mhz):
        self.fmax, self.target_mhz = fmax, target_mhz

    def execute_local(self, out, env=None):
        out = Path(out)
        (out / "top.bin").write_bytes(f"bitstream at {self.fmax} MHz".encode())
        (out / "top.stat.json").write_text(json.dumps({"design": {"num_cells_by_type": {"SB_DFF": 3}}}))
        (out / "top.report.json").write_text(json.dumps({
            "utilization": {"ICESTORM_LC": {"used": 10, "available": 5280}},
            "fmax": {"sync": {"achieved": self.fmax, "constraint": self.target_mhz}}}))


class FakePlatform:
    def __init__(self, fmax, clock_hz):
        self.fmax, self.target_mhz = fmax, clock_hz / 1e6

    def prepare(self, top, **kwargs):
        return FakePlan(self.fmax, self.target_mhz)


def fake_build(fmax):
    def setup(w, monkeypatch):
        d = w / "build" / "icebreaker"
        d.mkdir(parents=True)
        (d / "icebreaker.bin").write_bytes(b"the last good bitstream")
        (d / "report.json").write_text(json.dumps({"timing_met": True, "fmax_mhz": 26.0}))
        monkeypatch.setattr(build_mod, "_platform_and_top",
                            lambda name, cfg, clock_hz, baud, vm_limits=None: (FakePlatform(fmax, clock_hz), None, ".bin"))
        monkeypatch.setattr(build_mod, "tool_env", lambda: {})
    return setup


def built(bit_name, report_name, *, timing_met, sha_of=None):
    """A build folder with one bitstream and its report (no programmer on PATH)."""
    def setup(w, monkeypatch):
        d = w / "build" / "icebreaker"
        d.mkdir(parents=True)
        data = b"some bitstream"
        (d / bit_name).write_bytes(data)
        rep = {"timing_met": timing_met, "fmax_mhz": 26.0 if timing_met else 21.5, "target_mhz": 24.0,
               "bitstream_sha256": hashlib.sha256(sha_of or data).hexdigest()}
        (d / report_name).write_text(json.dumps(rep))
        monkeypatch.setenv("PATH", str(w / "no-programmers-here"))
    return setup


# ---------------------------------------------------------------------------- the table

@dataclass
class Case:
    argv: str                  # split on spaces; {w} work folder, {i} inputs
    code: int
    message: str               # regex searched in the last stderr line
    changes: tuple = ()        # paths under {w} this case may create or change
    setup: object = None
    extra: list = field(default_factory=list)  # arguments with spaces or odd characters


CASES = {
    # -- output files: refused, and nothing replaced (issue: symlink/FIFO/device -> plain file)
    "import -o FIFO": Case("import {i}/hf -o {w}/fifo", 2, r"-o .*fifo: is a FIFO, not a regular file"),
    "import -o device": Case("import {i}/hf -o {w}/dev", 2, r"-o .*dev: is a character device"),
    "import -o folder": Case("import {i}/hf -o {w}/folder", 2, r"-o .*folder: is a folder"),
    "import X.gguf -o X.gguf": Case("import {i}/X.gguf -o {i}/X.gguf", 2, r"is the input .*X\.gguf"),
    "import -o a file of the source folder": Case(
        "import {i}/hf -o {i}/hf/model.safetensors", 2, r"is the input .*hf/model\.safetensors"),
    "import -o missing folder": Case("import {i}/hf -o {w}/nope/m.safetensors", 2,
                                     r"-o .*nope/m\.safetensors: the folder .*nope does not exist"),
    "train -o FIFO": Case("train --corpus {i}/corpus.txt -o {w}/fifo", 2, r"-o .*fifo: is a FIFO"),
    "train -o the corpus": Case("train --corpus {i}/corpus.txt -o {i}/corpus.txt", 2,
                                r"is the input .*corpus\.txt"),
    "verilog -o missing folder": Case("verilog -o {w}/nope/x.v", 2, r"the folder .*nope does not exist"),
    "verilog -o folder": Case("verilog -o {w}/folder", 2, r"is a folder"),
    "verilog -o FIFO": Case("verilog -o {w}/fifo", 2, r"is a FIFO"),
    "verilog bad args keep -o": Case("verilog --rows 0 -o {w}/existing.v", 2, r"argument --rows: must be at least 1"),
    "bench --json FIFO": Case("bench --json {w}/fifo", 2, r"--json .*fifo: is a FIFO"),
    "bench --json missing folder": Case("bench --json {w}/nope/b.json", 2, r"does not exist"),
    "bench --plot folder": Case("bench --plot {w}/folder.png", 2, r"the plot is a PNG|is a folder",
                                setup=lambda w, mp: (w / "folder.png").mkdir()),
    "bench --plot not png": Case("bench --plot {w}/b.txt", 2, r"argument --plot: the plot is a PNG"),
    # -- builds that miss timing keep the last good one; program refuses them
    "build misses timing": Case(
        "build --board icebreaker --out {w}/build/icebreaker", 1,
        r"timing NOT met.*kept as .*icebreaker\.failed\.bin.*last good bitstream .*icebreaker\.bin"
        r".* unchanged",
        changes=("build/icebreaker", "build/icebreaker/icebreaker.failed.bin",
                 "build/icebreaker/report.failed.json", "build/icebreaker/top.bin",
                 "build/icebreaker/top.stat.json", "build/icebreaker/top.report.json"),
        setup=fake_build(20.0)),
    "build --out is a file": Case("build --board icebreaker --out {w}/existing.v", 2,
                                  r"--out .*existing\.v: exists and is not a folder"),
    "program a failed build": Case(
        "program --board icebreaker --bitstream {w}/build/icebreaker/icebreaker.failed.bin", 2,
        r"missed timing \(Fmax 21\.5 MHz < target 24\.0 MHz.*pass --force",
        setup=built("icebreaker.failed.bin", "report.failed.json", timing_met=False)),
    "program default, report says timing missed": Case(
        "program --board icebreaker", 2, r"icebreaker\.bin: its build missed timing",
        setup=built("icebreaker.bin", "report.json", timing_met=False)),
    "program a bitstream its report does not describe": Case(
        "program --board icebreaker", 2, r"report\.json describes another build",
        setup=built("icebreaker.bin", "report.json", timing_met=True, sha_of=b"other")),
    "program --force skips the report": Case(
        "program --board icebreaker --force", 2, r"no programmer found for icebreaker",
        setup=built("icebreaker.bin", "report.json", timing_met=False)),
    # -- model files and imports with unusable numbers
    "negative rms_norm_eps": Case("generate --model {i}/eps-neg.safetensors", 2,
                                  r"eps-neg\.safetensors: config: rms_norm_eps must be finite and greater than 0"),
    "rope_theta 0": Case("generate --model {i}/rope0.safetensors", 2, r"rope_theta must be finite and greater than 0, got 0"),
    "rope_theta NaN": Case("generate --model {i}/rope-nan.safetensors", 2, r"rope_theta must be finite .*got nan"),
    "unknown activation in model config": Case("generate --model {i}/gelu.safetensors", 2,
                                               r"gelu\.safetensors: config: hidden_act must be one "
                                               r"of relu2, silu, got 'gelu'"),
    "string int in model config": Case("generate --model {i}/layers-str.safetensors", 2,
                                       r"num_hidden_layers must be a positive integer, got '4'"),
    "NaN weight": Case("generate --model {i}/nan.safetensors", 2,
                       r"tensor model\.embed_tokens\.weight has 1 non-finite values"),
    "inf scale": Case("generate --model {i}/inf-scale.safetensors", 2,
                      r"model\.layers\.3\.mlp\.up_proj\.weight_scale must be finite and greater than 0, got inf"),
    "negative scale": Case("generate --model {i}/neg-scale.safetensors", 2,
                           r"q_proj\.weight_scale must be finite and greater than 0, got -2\.0"),
    # -- the integer decode's gate (issue 22): a model it does not track is refused in integers
    "generate --backend integer below the bound": Case(
        "generate --model {i}/probe-below.safetensors --backend integer", 2,
        r"--backend integer: .*probe-below\.safetensors: the integer decode agrees with the float "
        r"reference on only 78\.1% of 512 probe positions \(top-1; bound 95%\), so its tokens would "
        r"be wrong; run it with --backend reference, or --offload matvec on a device"),
    "generate --offload model below the bound": Case(
        "generate --model {i}/probe-below.safetensors --backend sim --offload model", 2,
        r"--offload model: .*probe-below\.safetensors: the integer decode agrees .* on only 78\.1% "
        r"of 512 .*bound 95%.*use --offload matvec .* or --backend reference"),
    "integer_probe not JSON": Case("generate --model {i}/probe-not-json.safetensors", 2,
                                   r"probe-not-json\.safetensors: metadata integer_probe: not valid JSON"),
    "integer_probe a list": Case("generate --model {i}/probe-list.safetensors", 2,
                                 r"metadata integer_probe: expected a JSON object, not array"),
    "integer_probe agreeing > positions": Case(
        "generate --model {i}/probe-more-agreeing.safetensors", 2,
        r"metadata integer_probe: top1_agreeing must be an integer 0\.\.positions \(512\), got 513"),
    "integer_probe negative": Case("generate --model {i}/probe-negative.safetensors", 2,
                                   r"integer_probe: positions must be an integer 0\.\.1,048,576, got -1"),
    "integer_probe string": Case("generate --model {i}/probe-string.safetensors", 2,
                                 r"integer_probe: positions must be an integer .*, got '512'"),
    "integer_probe bool": Case("generate --model {i}/probe-bool.safetensors --backend integer", 2,
                               r"integer_probe: top1_agreeing must be an integer .*, got True"),
    "integer_probe float": Case("generate --model {i}/probe-float.safetensors --backend integer", 2,
                                r"integer_probe: top1_agreeing must be an integer .*, got 500\.0"),
    "integer_probe huge": Case("generate --model {i}/probe-huge.safetensors", 2,
                               r"integer_probe: positions must be an integer .*, got inf"),
    "integer_probe missing field": Case("generate --model {i}/probe-missing.safetensors", 2,
                                        r"metadata integer_probe: field top1_agreeing is missing"),
    "integer_probe unknown field": Case("eval --model {i}/probe-unknown.safetensors", 2,
                                        r"metadata integer_probe: unknown field 'bound'"),
    "import --probe-positions -1": Case("import {i}/hf -o {w}/out.safetensors --probe-positions -1", 2,
                                        r"argument --probe-positions: must be 0 or more, got -1"),
    "import --probe-positions x": Case("import {i}/hf -o {w}/out.safetensors --probe-positions x", 2,
                                       r"argument --probe-positions: expected an integer, got 'x'"),
    "import --probe-positions 2**21": Case(
        "import {i}/hf -o {w}/out.safetensors --probe-positions 2097152", 2,
        r"argument --probe-positions: must be at most 1,048,576, got 2,097,152"),
    "import NaN weights": Case("import {i}/hf-nan -o {w}/out.safetensors", 2,
                               r"hf-nan: tensor model\.layers\.0\.input_layernorm\.weight has 1 non-finite"),
    "import scale 0": Case("import {i}/hf-scale0 -o {w}/out.safetensors", 2,
                           r"hf-scale0: tensor model\.layers\.0\.self_attn\.q_proj\.weight_scale must be finite"),
    "HF config.json string int": Case("import {i}/hf-str -o {w}/out.safetensors", 2,
                                      r"config\.json: hidden_size must be a positive integer, got '32'"),
    "HF config.json string float": Case("import {i}/hf-eps -o {w}/out.safetensors", 2,
                                        r"config\.json: rms_norm_eps must be a number, got 'abc'"),
    "HF config.json string bool": Case("import {i}/hf-tie -o {w}/out.safetensors", 2,
                                       r"tie_word_embeddings must be true or false, got 'no'"),
    "HF config.json unknown activation": Case("import {i}/hf-gelu -o {w}/out.safetensors", 2,
                                              r"config\.json: hidden_act must be one of relu2, "
                                              r"silu, got 'gelu'"),
    "HF config.json not an object": Case("import {i}/hf-list -o {w}/out.safetensors", 2,
                                         r"config\.json: expected a JSON object"),
    "GGUF unknown activation": Case("import {i}/gelu.gguf -o {w}/out.safetensors", 2,
                                    r"gelu\.gguf: GGUF key bitnet\.hidden_activation is 'gelu'; "
                                    r"this engine runs relu2 or silu"),
    "GGUF negative .scale": Case("import {i}/scale-neg.gguf -o {w}/out.safetensors", 2,
                                 r"tensor blk\.0\.attn_q\.scale must be finite and greater than 0"),
    "GGUF tensor it does not use": Case("import {i}/rope-freqs.gguf -o {w}/out.safetensors", 2,
                                        r"tensor rope_freqs\.weight is not part of a bitnet model"),
    "GGUF float BitLinear not ternary": Case("import {i}/not-ternary.gguf -o {w}/out.safetensors", 2,
                                             r"tensor blk\.0\.attn_q\.weight is not ternary: its "
                                             r"non-zero values have 2 magnitudes"),
    # -- train: corpus against split and seq-len, options in range, before any step
    "train corpus of 1000 bytes": Case("train --corpus {i}/corpus-1000.txt -o {w}/m.safetensors", 2,
                                       r"corpus-1000\.txt has 1000 bytes; its validation part \(100 bytes"),
    "train --steps 0": Case("train --steps 0", 2, r"argument --steps: must be at least 1, got 0"),
    "train --seq-len 0": Case("train --seq-len 0", 2, r"argument --seq-len: must be at least 1"),
    "train --seq-len past the context": Case("train --corpus {i}/corpus.txt --seq-len 300", 2,
                                             r"seq_len: 300 is longer than the model's context"),
    "train --batch 0": Case("train --batch 0", 2, r"argument --batch: must be at least 1"),
    "train --lr nan": Case("train --lr nan", 2, r"argument --lr: must be a finite number greater than 0"),
    "train --lr 0": Case("train --lr 0", 2, r"argument --lr: must be a finite number greater than 0"),
    "train --threads -1": Case("train --threads -1", 2, r"argument --threads: must be 0 or more"),
    "train --heads 0": Case("train --heads 0", 2, r"argument --heads: must be at least 1"),
    "train --resume without a checkpoint": Case(
        "train --corpus {i}/corpus.txt -o {w}/m.safetensors --resume", 2,
        r"--resume: no checkpoint at .*m\.safetensors\.ckpt\.safetensors"),
    # -- what used to end in a traceback
    "generate --seed -1": Case("generate --seed -1", 2, r"argument --seed: must be 0 or more, got -1"),
    "generate --temperature nan": Case("generate --temperature nan", 2, r"argument --temperature: must be a finite"),
    "generate --temperature inf": Case("generate --temperature inf", 2, r"argument --temperature: must be a finite"),
    "generate --temperature -1": Case("generate --temperature -1", 2, r"argument --temperature: must be a finite"),
    "generate --top-k -1": Case("generate --top-k -1", 2, r"argument --top-k: must be 0 or more"),
    "generate --tokens 0": Case("generate --tokens 0", 2, r"argument --tokens: must be at least 1"),
    "generate --tokens x": Case("generate --tokens x", 2, r"argument --tokens: expected an integer, got 'x'"),
    "generate non-UTF-8 --prompt": Case("generate", 2, r"argument --prompt: is not valid UTF-8",
                                        extra=["--prompt", "ROMEO\udcff:"]),
    "verilog --name 'bad name'": Case("verilog -o {w}/x.v", 2, r"argument --name: must be a Verilog identifier",
                                      extra=["--name", "bad name"]),
    "verilog --name keyword": Case("verilog --name module -o {w}/x.v", 2, r"not a keyword\), got 'module'"),
    "verilog --name digit first": Case("verilog --name 1abc -o {w}/x.v", 2, r"argument --name"),
    "build --freq nan": Case("build --board icebreaker --freq nan", 2, r"argument --freq: must be a finite number"),
    "build --freq inf": Case("build --board icebreaker --freq inf", 2, r"argument --freq: must be a finite number"),
    "build --freq -5": Case("build --board icebreaker --freq -5", 2, r"argument --freq"),
    "ULX3S PLL": Case("build --board ulx3s-85f --freq 1000", 2, r"--freq: no ECP5 PLL setting makes 1000 MHz"),
    "ULX3S UART divisor": Case("build --board ulx3s-85f --freq 10", 2, r"--freq: a 10 MHz clock cannot make 3000000 baud"),
    "iCE40 PLL": Case("build --board icebreaker --freq 300", 2, r"no iCE40 PLL setting makes 300 MHz"),
    # red team 5: the SDRAM build's clock, the whole-model build's engine, --out a folder
    # the build would have to replace with everything in it
    "SDRAM build PLL": Case("build --board ulx3s-85f --offload model --sdram --freq 27", 2,
                            r"--freq: no ECP5 PLL setting makes 27 MHz and 50, 100 MHz .*24 and 30"),
    "SDRAM build --freq 1e-7": Case("build --board ulx3s-85f --offload model --sdram --freq 1e-7", 2,
                                    r"--freq: 1e-07 MHz is below any clock"),
    "model build --rows": Case("build --board ulx3s-85f --offload model --rows 8 --format base3", 2,
                               r"--rows/--format: the whole-model build \(--offload model\) has the "
                               r"ulx3s-85f's 16x16 2bit engine; leave them out"),
    "generate --model a name too long": Case("generate --model {w}/" + "m" * 300, 2,
                                             r"m{300}: cannot read it \(File name too long\)"),
    "bench --json ''": Case("bench --sdram", 2, r"--json: the output path is empty", extra=["--json", ""]),
    "bench --sdram --jobs": Case("bench --sdram --jobs 2", 2, r"--plot, --configs and --jobs are for the board bench"),
    "build --out .": Case("build --board icebreaker --out .", 2, r"--out \.: is the working folder"),
    "build --out ..": Case("build --board icebreaker --out ..", 2,
                           r"--out \.\.: is a parent of the working folder"),
    "build --out /": Case("build --board icebreaker --out /", 2, r"--out /: is a parent of the working"),
    "build --out a symlink loop": Case("build --board icebreaker --out {w}/loop1", 2,
                                       r"--out .*loop1: cannot use it", setup=lambda w, mp: (
                                           (w / "loop1").symlink_to(w / "loop2"),
                                           (w / "loop2").symlink_to(w / "loop1"))),
    "build unknown board": Case("build --board nope", 2, r"argument --board: invalid choice: 'nope'"),
    "generate unknown board": Case("generate --board nope", 2, r"argument --board: invalid choice"),
    # -- zero silently meant "default"
    "generate --weight-words 0": Case("generate --backend sim --weight-words 0", 2,
                                      r"argument --weight-words: must be at least 1, got 0"),
    "generate --baud 0": Case("generate --backend serial --port {w}/p --baud 0", 2, r"argument --baud: must be at least 1"),
    "build --rows 0": Case("build --board icebreaker --rows 0", 2, r"argument --rows: must be at least 1"),
    "build --freq 0": Case("build --board icebreaker --freq 0", 2, r"argument --freq: must be a finite number greater than 0"),
    "generate --prompt-ids ''": Case("generate", 2, r"argument --prompt-ids: expected comma-separated token ids, got none",
                                     extra=["--prompt-ids", ""]),
    "generate --prompt-ids '1,,2'": Case("generate --prompt-ids 1,,2", 2, r"got '' in '1,,2'"),
    "generate --prompt-ids -1": Case("generate --prompt-ids=-1", 2, r"integers >= 0\), got '-1'"),
    "bench --boards ','": Case("bench --boards ,", 2, r"argument --boards: expected comma-separated names with none empty"),
    "bench --boards 'icebreaker,'": Case("bench --boards icebreaker,", 2, r"argument --boards"),
    "bench --boards unknown": Case("bench --boards nope", 2, r"unknown board 'nope'"),
    "bench --configs trailing comma": Case("bench --configs 4x10/base3,", 2, r"argument --configs"),
    "bench --configs malformed": Case("bench --configs 4by10", 2, r"config '4by10': expected ROWSxCOLS/FORMAT"),
    # -- sizes past any board, refused before elaboration
    "verilog 64x64": Case("verilog --rows 64 --cols 64 -o {w}/x.v", 2,
                          r"rows x cols: 64x64 = 4096 MACs is more than the 1024 .*ULX3S-85F"),
    "verilog --weight-words 2**20": Case("verilog --weight-words 1048576 -o {w}/x.v", 2,
                                         r"weight_words: the engine's memories need 8,392,704 bytes"),
    "verilog --max-k 70000": Case("verilog --max-k 70000 -o {w}/x.v", 2, r"at most 65535"),
    "bench --configs 64x64": Case("bench --configs 64x64/2bit", 2, r"4096 MACs is more than the 1024"),
    "generate --weight-words 2**20": Case("generate --backend sim --weight-words 1048576", 2,
                                          r"weight_words: the engine's memories need"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, inputs, work, monkeypatch, capsys):
    run_case(CASES[name], inputs, work, monkeypatch, capsys)


def run_case(case, inputs, work, monkeypatch, capsys):
    """Run one :class:`Case`; assert its exit code, its one-line message and that nothing
    but ``case.changes`` was created, changed or removed. Returns what it printed on stdout."""
    if case.setup:
        case.setup(work, monkeypatch)
    argv = [a.format(w=work, i=inputs) for a in case.argv.split()] + case.extra
    before = snapshot(work, inputs)
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err
    print(err)
    assert code == case.code
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    if case.code == 2:
        last = lines[-1]
        assert re.match(rf"ternary {argv[0]}: error: ", last), last
        if ": error: argument " not in last:  # our own errors: exactly one line
            assert len(lines) == 1, err
    else:
        last = err
    assert re.search(case.message, last), last
    after = snapshot(work, inputs)
    allowed = {str(work / c) for c in case.changes}
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)} - allowed
    assert not changed, f"created, changed or removed: {sorted(changed)}"
    for c in case.changes:
        assert (work / c).exists(), c
    return captured.out


def test_failed_build_keeps_the_good_one_and_a_good_build_replaces_it(work, monkeypatch, capsys):
    fake_build(20.0)(work, monkeypatch)
    d = work / "build" / "icebreaker"
    assert main(["build", "--board", "icebreaker", "--out", str(d)]) == 1
    failed = json.loads((d / "report.failed.json").read_text())
    assert failed["timing_met"] is False and failed["fmax_mhz"] == 20.0
    assert failed["bitstream"] == str(d / "icebreaker.failed.bin")
    assert failed["bitstream_sha256"] == hashlib.sha256(b"bitstream at 20.0 MHz").hexdigest()
    assert (d / "icebreaker.bin").read_bytes() == b"the last good bitstream"
    assert json.loads((d / "report.json").read_text()) == {"timing_met": True, "fmax_mhz": 26.0}

    # above the iCEBreaker's 36 MHz target
    monkeypatch.setattr(build_mod, "_platform_and_top", lambda name, cfg, clock_hz, *a: (FakePlatform(40.0, clock_hz), None, ".bin"))
    capsys.readouterr()
    assert main(["build", "--board", "icebreaker", "--out", str(d)]) == 0
    assert (d / "icebreaker.bin").read_bytes() == b"bitstream at 40.0 MHz"
    rep = json.loads((d / "report.json").read_text())
    assert rep["timing_met"] and rep["bitstream"] == str(d / "icebreaker.bin")
    assert not (d / "icebreaker.failed.bin").exists() and not (d / "report.failed.json").exists()
    # and program accepts it (then finds no programmer on this PATH)
    monkeypatch.setenv("PATH", str(work / "no-programmers-here"))
    assert main(["program", "--board", "icebreaker"]) == 2
    assert "no programmer found" in capsys.readouterr().err


def test_import_through_a_symlink_writes_its_target_with_the_umask(inputs, work, capsys):
    from ternary_core.model.file import load_model

    link, target = work / "link.safetensors", work / "existing.safetensors"
    old = os.umask(0o027)
    try:
        target.unlink()  # a dangling link: its target is created
        assert main(["import", str(inputs / "hf"), "-o", str(link)]) == 0
    finally:
        os.umask(old)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert load_model(link).config.hidden_size == 32
    assert sorted(os.listdir(work)) == sorted(["existing.v", "existing.safetensors", "link.safetensors",
                                               "fifo", "folder", "dev"])


def _run(args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "host.cli", *args], env=env, cwd=ROOT, **kw)


def test_a_closed_stdout_ends_generate_quietly():
    """`ternary generate | head -c 3`: no BrokenPipeError traceback, exit 141 like a
    program the pipe stopped."""
    proc = _run(["generate", "--tokens", "200", "--temperature", "0"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(3) == b"ROM"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""


def test_non_utf8_prompt_bytes_from_a_real_argv_are_one_line():
    proc = _run([b"generate", b"--prompt", b"ROMEO\xff:"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and out == b""
    assert err.decode().strip().splitlines()[-1].startswith(
        "ternary generate: error: argument --prompt: is not valid UTF-8"), err

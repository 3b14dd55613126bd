"""Bad inputs, round four, against what came in with issue 20: a model streamed from the
ULX3S's SDRAM (the SDRAM build of ``--backend sim --board ulx3s-85f``, XFER, the memory
map's SDRAM placement, the hoisting of transfers, the SDRAM image's upload).

A refusal is one line on stderr (exit 2) naming the field or limit, and comes before a
simulated board is built (minutes of Verilator). Nothing here builds a board: where a
run is needed, the simulated board is a Python double (``tests/python_device.py``: the
reference Machine behind the real protocol), loaded as the board would be. Ten problems
found here were fixed (host/backends.py's choice of build and offload, the machine's
hazard check after an empty or stopped transfer, ``bench --sdram --boards``).
"""

import copy
import json
import re
from dataclasses import fields, replace

import numpy as np
import pytest

import host.backends as backends
from boards.profiles import BOARDS
from host.cli import main
from host.device import Device
from ternary_core import protocol as P
from ternary_core.errors import TernaryError
from ternary_core.model.config import BitNetConfig
from ternary_core.model.file import save_model
from ternary_core.model.random import random_model
from ternary_core.offload.isa import (SDRAM_WORD_BYTES, SPACES, XFER_SPACES, AttnFn, Dyn,
                                      DynSrc, Instr, MachineStatus, Op, Red, SampleFn, SFn,
                                      Space, SVFn, VFn, XFn, kv_scale_addr, xfer_bytes)
from ternary_core.offload.limits import DEFAULT_ENGINE, DeviceLimits
from ternary_core.offload.machine import DeviceStop, Machine, execute
from ternary_core.offload.schedule import hoist_transfers
from tests.python_device import PythonDevice

ULX3S = "ulx3s-85f"
SIM = ["--backend", "sim", "--board", ULX3S]
SMALL = dict(vocab_size=256, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=64)
# name: config. "wide" is the model of issue 20's new user: hidden 256 is past the on-chip
# build's 128 and its 3,840 weight words past the SDRAM build's 1,024 on chip, so it
# streams; "l5" has one layer more than the on-chip build and fits the SDRAM build's
# on-chip buffers; "l13" fits neither build where the SDRAM build's layers are cut to 12
# (its own are bounded by the SDRAM only); "hd4" streams (its
# FFN's weights) with a head_dim of 4 (a KV row in the SDRAM needs 8 bytes); "ctx600"
# is past both builds' context; "ffn1376" has issue 20's hidden-512 shape's FFN (past the
# matvec engine's max_m 1024, which the SDRAM build streams in row chunks).
MODELS = {
    "wide": dict(SMALL, hidden_size=256, intermediate_size=384, num_hidden_layers=2,
                 max_position_embeddings=24),
    "l5": dict(SMALL, hidden_size=64, intermediate_size=64, num_hidden_layers=5),
    "l13": dict(SMALL, hidden_size=64, intermediate_size=64, num_hidden_layers=13),
    "hd4": dict(SMALL, hidden_size=48, intermediate_size=1024, num_hidden_layers=5,
                num_attention_heads=12, num_key_value_heads=6, max_position_embeddings=32),
    "ctx600": dict(SMALL, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                   max_position_embeddings=600),
    "ffn1376": dict(SMALL, hidden_size=64, intermediate_size=1376, num_hidden_layers=2),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("red4")
    out = {}
    for i, (name, cfg) in enumerate(MODELS.items()):
        out[name] = d / f"{name}.safetensors"
        save_model(out[name], random_model(np.random.default_rng(i), BitNetConfig(**cfg)))
    return out


def no_board(monkeypatch):
    """Building a simulated board fails the test: a refusal must come before it."""
    def refuse(cls, *a, **kw):
        raise AssertionError("a simulated board was built before the model was refused")
    monkeypatch.setattr(Device, "open_sim", classmethod(refuse))


def python_board(monkeypatch):
    """The simulated board as a Python double of the build ``open_device`` chose (its
    engine and vector machine limits), its SDRAM loaded with the back-door image as the
    board's would be; returns the list of the doubles opened."""
    opened = []

    def open_sim(cls, config, *, vm_limits=None, sdram_image=None, **kw):
        dev = PythonDevice(vm_limits, engine=config)
        if sdram_image is not None:
            dev.machine.load(Space.SDRAM, sdram_image)
        opened.append(dev)
        return cls(dev)
    monkeypatch.setattr(Device, "open_sim", classmethod(open_sim))
    return opened


def with_sdram_build(monkeypatch, **limits):
    """The ULX3S profile with its SDRAM build's limits changed."""
    prof = BOARDS[ULX3S]
    monkeypatch.setitem(BOARDS, ULX3S, replace(prof, vm_sdram_limits=replace(
        prof.vm_sdram_limits, **limits)))


def matvec_chosen(monkeypatch):
    """The matvec offload path stops with a sentinel (the Python double runs only the
    vector machine): a run that gets there chose --offload matvec."""
    def stop(args, model, device=None):
        raise TernaryError("sentinel: --offload matvec chosen")
    monkeypatch.setattr(backends, "open_backend", stop)


def generate(capsys, *argv):
    """``(exit code, stdout, stderr)`` of ``ternary generate ARGV``."""
    capsys.readouterr()
    code = main(["generate", *[str(a) for a in argv]])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def refused(capsys, argv, message):
    """``ternary generate ARGV`` exits 2 with one line naming what does not fit."""
    code, _, err = generate(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("ternary generate: error: "), lines
    assert re.search(message, lines[0]), lines[0]
    return lines[0]


def token_ids(out):
    return json.loads(out.strip().splitlines()[-1])["token_ids"]


GEN = ["--prompt-ids", "5,17,2", "--tokens", "3", "--temperature", "0", "--json"]


# ------------------------------------------------------------- refused before a board

MODEL = ["--offload", "model"]


@pytest.mark.parametrize("model,extra,limits,message", [
    pytest.param("l13", MODEL, {"layers": 12}, r"num_hidden_layers 13 is more than the device's "
                 r"layers limit 12", id="more layers than the SDRAM build"),
    pytest.param("ctx600", MODEL, {}, r"context 600 is more than the device's context limit 504",
                 id="a context past the SDRAM build's"),
    pytest.param("hd4", MODEL, {}, r"head_dim 4: a KV row streamed from the SDRAM needs "
                 r"head_dim >= 8", id="head_dim 4 streamed"),
    # the ULX3S's SDRAM build with less of a resource than it has
    pytest.param("wide", MODEL, {"sdram_words": 10_000}, r"the model needs \d{5} sdram_words; "
                 r"the device's limit is 10000", id="an image past the SDRAM"),
    pytest.param("wide", MODEL, {"prog_words": 7}, r"streaming the program from the SDRAM needs "
                 r"an even prog_words >= 8; the device's is 7", id="a PROG too small to stream"),
    pytest.param("wide", MODEL, {"emb_rows": 1}, r"streaming the embedding rows needs "
                 r"emb_rows >= 2; the device has 1", id="one embedding row on chip"),
])
def test_a_model_the_sdram_build_cannot_run_is_refused_by_name_before_a_board(
        model, extra, limits, message, models, monkeypatch, capsys):
    no_board(monkeypatch)
    if limits:
        with_sdram_build(monkeypatch, **limits)
    refused(capsys, ["--model", models[model], *GEN, *SIM, *extra], message)


# ------------------------------------------------------------- streamed runs (Python double)

@pytest.mark.parametrize("extra", [
    ["--temperature", "0"],
    ["--temperature", "0.9", "--top-k", "5", "--seed", "3"],
    ["--temperature", "0", "--check"],
    ["--temperature", "0.9", "--top-k", "5", "--seed", "3", "--check", "segments"],
    ["--temperature", "0", "--weight-words", "128", "segments"],
], ids=["greedy", "sampled", "check", "check, the program in segments",
        "a weight store of --weight-words, the program in segments (the back door's image "
        "compiled for them)"])
def test_a_streamed_model_past_its_context_equals_the_integer_backend(extra, models,
                                                                      monkeypatch, capsys):
    """The wide model (context 24) from the SDRAM build's double: a prompt longer than the
    context and ids past it (the window slides; the KV cache in the SDRAM is written
    again from position 0), greedy, sampled and with --check (which reads every layer's
    KV rows back from the SDRAM); "segments": a PROG of 64 instructions, through which
    the program streams."""
    segments = "segments" in extra
    if segments:
        extra = [a for a in extra if a != "segments"]
        with_sdram_build(monkeypatch, prog_words=64)
    opened = python_board(monkeypatch)
    check = "--check" in extra
    store = extra[extra.index("--weight-words"):][:2] if "--weight-words" in extra else []
    extra = [a for a in extra if a not in store]
    n = 4 if check else 30
    prompt = ",".join(str(i) for i in range(1, 256, 9))           # 29 ids
    argv = ["--model", models["wide"], "--prompt-ids", prompt, "--tokens", n, "--json",
            *[a for a in extra if a != "--check"]]
    code, out, err = generate(capsys, *argv, "--backend", "integer")
    assert code == 0, err
    want = token_ids(out)
    code, out, err = generate(capsys, *argv, *SIM, *(["--check"] if check else []), *store)
    assert code == 0, err
    assert token_ids(out) == want
    assert "streams from the SDRAM of the ulx3s-85f's SDRAM build" in err
    assert len(opened) == 1 and opened[0].limits.sdram_words > 0
    assert (opened[0].limits.prog_words == 64) == segments
    if store:
        assert opened[0].limits.weight_words == 128
    if segments:    # (the machine fetched from PROG's words: more than its 64 were run)
        assert opened[0].machine._from_mem and opened[0].machine.pc > 64


# ------------------------------------------------------------- what a device's INFO says

def serial_device(monkeypatch, limits, engine, *, values=None, cut=None):
    """``--backend serial`` opens a Python double of ``limits`` whose INFO reports
    ``values`` (field: value) instead, or stops before field ``cut`` (an older bitstream)."""
    names = [f.name for f in fields(DeviceLimits)]

    def open_device(args, model=None):
        dev = PythonDevice(limits, engine=engine)
        info = P.info_for(engine, dev.max_payload, dev.limits)
        vals = list(info.limits)
        for k, v in (values or {}).items():
            vals[names.index(k)] = v
        if cut:
            vals = vals[:names.index(cut)]
        dev.info = replace(info, limits=tuple(vals)).pack()
        return Device(dev)
    monkeypatch.setattr(backends, "open_device", open_device)


SERIAL = ["--backend", "serial", "--port", "/dev/nonexistent"]


def sdram_build():
    prof = BOARDS[ULX3S]
    return prof.vm_sdram_limits, prof.vm_engine(prof.vm_sdram_limits)


@pytest.mark.parametrize("values,message", [
    ({"sdram_words": 1 << 26}, r"sdram_words must be below 2\*\*26 \(XFER's SDRAM address\), "
                               r"got 67108864"),
    ({"sdram_words": (1 << 32) - 1}, r"sdram_words must be below 2\*\*26"),
    ({"kv_slots": 513}, r"kv_slots must be at most layers x kv_heads \(512\)"),
    ({"emb_rows": 8193}, r"emb_rows must be at most vocab \(8192\)"),
])
def test_impossible_sdram_limits_in_info_are_one_line_with_offload_model(values, message,
                                                                          models, monkeypatch,
                                                                          capsys):
    serial_device(monkeypatch, *sdram_build(), values=values)
    line = refused(capsys, ["--model", models["wide"], *GEN, *SERIAL, "--offload", "model"],
                   message)
    assert "the device reports impossible model limits" in line


def test_an_older_info_without_the_sdram_fields_has_no_sdram(models, monkeypatch, capsys):
    """An on-chip ULX3S bitstream from before issue 20 (INFO stops before ``features``):
    no SDRAM, so the wide model does not fit it, by name."""
    prof = BOARDS[ULX3S]
    serial_device(monkeypatch, prof.vm_limits, prof.engine, cut="features")
    refused(capsys, ["--model", models["wide"], *GEN, *SERIAL, "--offload", "model"],
            r"--offload model: the model does not fit the device: hidden_size 256 is more than "
            r"the device's hidden limit 128")


def test_impossible_limits_in_info_are_a_protocol_mismatch_when_offload_is_chosen(
        models, monkeypatch, capsys):
    serial_device(monkeypatch, *sdram_build(), values={"sdram_words": 1 << 26})
    matvec_chosen(monkeypatch)
    refused(capsys, ["--model", models["wide"], *GEN, *SERIAL],
            r"the device reports impossible model limits: DeviceLimits\.sdram_words")


@pytest.mark.parametrize("values", [{"sdram_words": 1000}, {"emb_rows": 1}])
def test_a_model_a_device_with_sdram_cannot_hold_falls_back_to_matvec(values, models,
                                                                      monkeypatch, capsys):
    serial_device(monkeypatch, *sdram_build(), values=values)
    matvec_chosen(monkeypatch)
    refused(capsys, ["--model", models["wide"], *GEN, *SERIAL], r"sentinel: --offload matvec")


# ------------------------------------------------------------- which build --backend sim opens

def test_issue_20s_ffn_runs_from_the_sdram_build(models, monkeypatch, capsys):
    python_board(monkeypatch)
    argv = ["--model", models["ffn1376"], *GEN]
    code, out, err = generate(capsys, *argv, "--backend", "integer")
    want = token_ids(out)
    code, out, err = generate(capsys, *argv, *SIM, "--offload", "model")
    assert code == 0, err
    assert token_ids(out) == want


def test_a_model_the_sdram_build_holds_on_chip_runs(models, monkeypatch, capsys):
    """Five layers of hidden 64: one layer past the on-chip build, and small enough for
    the SDRAM build's on-chip buffers. Before issue 20 it ran with --offload matvec."""
    python_board(monkeypatch)
    code, out, err = generate(capsys, "--model", models["l5"], *GEN, "--backend", "integer")
    want = token_ids(out)
    code, out, err = generate(capsys, "--model", models["l5"], *GEN, *SIM)
    assert code == 0, err
    assert token_ids(out) == want


@pytest.mark.parametrize("model", ["l13", "hd4", "ctx600"])
def test_a_model_neither_build_holds_runs_with_offload_matvec(model, models, monkeypatch,
                                                              capsys):
    opened = python_board(monkeypatch)
    matvec_chosen(monkeypatch)
    with_sdram_build(monkeypatch, layers=12)
    refused(capsys, ["--model", models[model], *GEN, *SIM], r"sentinel: --offload matvec")
    assert opened and not opened[0].limits.sdram


def test_stream_opens_the_matvec_build_and_says_nothing_of_the_sdram(models, monkeypatch,
                                                                     capsys):
    opened = python_board(monkeypatch)
    matvec_chosen(monkeypatch)
    code, _, err = generate(capsys, "--model", models["wide"], *GEN, *SIM, "--stream")
    assert "sentinel: --offload matvec" in err
    assert "SDRAM" not in err
    assert opened and not opened[0].limits.sdram


def test_offload_model_on_a_board_without_a_vector_machine_is_refused_before_a_board(
        models, monkeypatch, capsys):
    no_board(monkeypatch)
    refused(capsys, ["--model", models["wide"], *GEN, "--backend", "sim", "--board",
                     "icebreaker", "--offload", "model"],
            r"--offload model: .*icebreaker.* no vector machine.*use --offload matvec")


# ------------------------------------------------------------- the SDRAM image's upload

def _streamed_session(model, pd, prompt, n):
    """One session of ``model`` on the Python double ``pd`` (upload, then generate)."""
    from host.model_offload import ModelOffload

    with open("/dev/null", "w") as quiet:
        dev = Device(pd, timeout=0.05, retries=20)
        run = ModelOffload(dev, model, log=quiet, step_timeout=0.05)
        run.prepare()
        return run.generate(prompt, n).token_ids


def _sdram_writes(pd):
    return sum(1 for cmd, p in pd.requests if cmd == P.Cmd.WRITE_MEM and p[0] == Space.SDRAM)


def test_a_faulty_link_uploads_the_sdram_image_right_or_says_so(rng, seed):
    """The SDRAM image over a link that flips, drops, duplicates and inserts bytes (the
    simulated board's version of this test is minutes): the right ids or one clear
    error."""
    from host.model_offload import ModelOffload
    from tests.faulty_transport import FaultRates, FaultyTransport, right_ids_or_one_clear_error
    from tests.test_offload_sim_board_sdram import ENGINE, LIMITS, integer_ids, streamed

    model = streamed(rng, "36/3x12/1", False)
    want = integer_ids(model, [1, 2, 3], 8)
    rates = FaultRates(flip=0.03, drop=0.02, dup=0.02, garbage=0.02)
    pd = PythonDevice(LIMITS, engine=ENGINE)
    ft = FaultyTransport(pd, tx=rates, rx=rates, seed=seed)
    dev = Device(ft, timeout=0.05, retries=20)
    with open("/dev/null", "w") as quiet:
        run = ModelOffload(dev, model, log=quiet, step_timeout=0.05)

        def run_ids():
            run.prepare()
            return run.generate([1, 2, 3], 8).token_ids

        right_ids_or_one_clear_error(run_ids, want, ft, dev)
    assert _sdram_writes(pd) > 0


def test_a_resident_image_with_a_flipped_bit_is_sent_again(rng):
    """The device keeps the SDRAM image across sessions; one bit of it flipped (in the
    weights) is found by the resident check and sent again, and the ids are right; a bit
    flipped in the KV cache after the image is not part of it."""
    from tests.test_offload_sim_board_sdram import ENGINE, LIMITS, integer_ids, streamed

    model = streamed(rng, "48/6x8/2", True)
    want = integer_ids(model, [4, 5], 6)
    pd = PythonDevice(LIMITS, engine=ENGINE)
    assert _streamed_session(model, pd, [4, 5], 6) == want
    first = _sdram_writes(pd)
    assert first > 0
    pd.machine.sdram[24] ^= 0x10                     # a weight byte
    assert _streamed_session(model, pd, [4, 5], 6) == want
    again = _sdram_writes(pd) - first
    assert again > 0
    from host.model_offload import compile_for_device
    from ternary_core.integer import compile_model

    program, _, _ = compile_for_device(compile_model(model), pd.limits, ENGINE)
    kv = program.mm.sd.image_words * SDRAM_WORD_BYTES
    pd.machine.sdram[kv + 3] ^= 0x01                 # the KV cache (rewritten before read)
    assert _streamed_session(model, pd, [4, 5], 6) == want
    assert _sdram_writes(pd) == first + again


# ------------------------------------------------------------- the Python machine's XFER

def _xfer(fn, space, c_addr, s_addr, n, **f):
    return Instr(Op.XFER, f"xfer {space.name}", fn=fn, c_space=space, c_addr=c_addr,
                 s_addr=s_addr, n=n, **f)


def _vop_read(space, addr, n):
    return Instr(Op.VOP, f"read {space.name}", fn=VFn.PASS, n=n, a_space=space, a_addr=addr,
                 bits=40)


@pytest.mark.parametrize("space,npos", [(Space.KVK, 1), (Space.VMEM, 0)])
def test_an_empty_transfer_meets_no_access(space, npos):
    """XFER of 0 words (the KV cache's IN at position 0 is ``0 + (pos << npos_k)``)
    moves nothing, so nothing after it can meet it."""
    mc = Machine(DeviceLimits(sdram_words=4096), DEFAULT_ENGINE.layout)
    execute(mc, _xfer(XFn.IN, space, 64, 0, 0, npos=npos, npos_k=2 * npos))
    assert mc.xfer is None or mc.xfer[2] == mc.xfer[3]
    execute(mc, _vop_read(space, 60, 8))


STOPS = [Instr(Op.SAMPLE, "token check", fn=SampleFn.TCHECK, n=4),
         Instr(Op.VOP, "read VMEM 0..3", fn=VFn.PASS, n=4, a_space=Space.VMEM, bits=40),
         _xfer(XFn.IN, Space.VMEM, 0, 0, 4),
         Instr(Op.SOP, "from_int of -1", fn=SFn.FROM_INT, d=1, imm=-1),     # SCALAR_OVF
         Instr(Op.XFER, "wait", fn=XFn.WAIT),
         Instr(Op.END, "end")]


def test_a_run_stopped_with_a_transfer_running_leaves_none_for_the_next():
    mc = Machine(DeviceLimits(sdram_words=4096, context=8), DEFAULT_ENGINE.layout)
    mc.prog, mc.names = list(STOPS), [i.name for i in STOPS]
    _, res = mc.generate([1, 2], 1)
    assert res.status == MachineStatus.SCALAR_OVF and res.err_pc == 3
    _, res = mc.generate([1, 2], 1)          # the same stop, not a TernaryError before it
    assert res.status == MachineStatus.SCALAR_OVF


@pytest.mark.parametrize("ins,message", [
    (_xfer(XFn.IN, Space.VMEM, 0, 0, 1, c_dyn=1, c_dyn_k=31, dyn_src=DynSrc.TOKEN),
     r"xfer VMEM: VMEM words 10737418240\.\.10737418240 are past its depth 2048"),
    (_xfer(XFn.IN, Space.VMEM, 0, 0, 65535, npos=1, npos_k=15),
     r"SDRAM words 0\.\.9895934 are past its depth 4096"),          # n past 16 bits
    (_xfer(XFn.IN, Space.WGT, 4095, 0, 16), r"WGT words 4095\.\.4096 are past the store's 4096"),
    (Instr(Op.XFER, "x", fn=XFn.IN, c_space=13, n=1), r"XFER cannot reach space 13"),
])
def test_a_transfer_past_a_space_is_refused_by_name(ins, message):
    mc = Machine(DeviceLimits(sdram_words=4096), DEFAULT_ENGINE.layout)
    mc.pos, mc.token = 300, 5
    with pytest.raises(TernaryError, match=message):
        execute(mc, ins)


def test_xfer_fn_3_is_a_bad_opcode():
    mc = Machine(DeviceLimits(sdram_words=4096), DEFAULT_ENGINE.layout)
    with pytest.raises(DeviceStop) as stop:
        execute(mc, Instr(Op.XFER, "x", fn=3, c_space=Space.VMEM, n=1))
    assert stop.value.status == MachineStatus.BAD_OPCODE


# ------------------------------------------------------------- hoisting transfers

# A small device with SDRAM for random programs: every space a few rows deep, so that
# transfers and the instructions around them meet often.
HL = DeviceLimits(hidden=32, layers=1, heads=2, kv_heads=2, head_dim=16, ffn=32, vocab=64,
                  context=8, vmem_words=96, prog_words=512, sdram_words=4096, emb_rows=32,
                  kv_slots=1, weight_words=16)
HLAYOUT = DEFAULT_ENGINE.layout
MAX_POS, MAX_TOKEN = HL.context - 1, HL.vocab - 1
# (HEAD and HEADS are a word each on a device with SDRAM: an untied lm_head streams
# through EMB)
READ = [Space.VMEM, Space.TMEM, Space.EMB, Space.EMBS, Space.KVK, Space.KVV, Space.KVS,
        Space.TOKENS]
WRITE = [Space.VMEM, Space.KVK, Space.KVV, Space.KVS, Space.TOKENS, Space.ACT]
ROWS = [Space.EMB, Space.KVK, Space.KVV]
SCALARS = [Space.EMBS, Space.KVS, Space.VMEM]
WGT_SRC = 2048            # SDRAM words from here hold packed trits (for XFER IN to WGT)


class ProgramGen:
    """Random straight-line programs for :data:`HOIST_HLITS` whose every address is in
    its space at every position and token: each transfer is followed by its WAIT (the
    compiler's form before hoisting), so the program is right as it stands."""

    def __init__(self, rng):
        self.r = rng

    def pick(self, xs):
        return xs[int(self.r.integers(len(xs)))]

    def addr(self, space, count, dyn_max=0, align=1):
        top = HL.depth(space) - count - dyn_max
        assert top >= 0, (space, count, dyn_max)
        return int(self.r.integers(top // align + 1)) * align

    def dyn(self, room=1 << 30):
        """(dyn_src, dyn_k, the largest offset), the offset within ``room`` if it can be"""
        fits = [(src, k) for src in DynSrc for k in range(3)
                if ((MAX_POS if src == DynSrc.POS else MAX_TOKEN) << k) <= room]
        src, k = self.pick(fits or [(DynSrc.POS, 0)])
        return src, k, (MAX_POS if src == DynSrc.POS else MAX_TOKEN) << k

    def vector(self, op, fn, spaces, **extra):
        """VOP/SVOP operands: (space, count) for a, b, d; one may move (dyn), n may grow
        with pos (npos)."""
        n = int(self.r.integers(0, 9))
        npos = int(self.r.random() < 0.3)
        count = n + (MAX_POS + 1 if npos else 0)
        sel = self.pick([Dyn.NONE, Dyn.A, Dyn.B, Dyn.D])
        src, k, off = self.dyn()
        f = dict(fn=fn, n=n, npos=npos, dyn_sel=sel, dyn_src=src, dyn_k=k, **extra)
        for key, which, choices in (("a", Dyn.A, spaces[0]), ("b", Dyn.B, spaces[1]),
                                    ("d", Dyn.D, spaces[2])):
            s = self.pick(choices)
            f[f"{key}_space"] = s
            if s in (Space.NONE, Space.IR, Space.SR):
                f[f"{key}_addr"] = int(self.r.integers(4))
                if sel == which:
                    f["dyn_sel"] = Dyn.NONE
                continue
            if sel == which and HL.depth(s) < count + off:
                f["dyn_sel"] = Dyn.NONE             # no room to move it in this space
            if HL.depth(s) < count:
                s = f[f"{key}_space"] = Space.VMEM
            f[f"{key}_addr"] = self.addr(s, count, off if f["dyn_sel"] == which else 0)
        return Instr(op, f"{op.name} {fn}", **f)

    def rows(self, space, n_rows):
        """DOT/AXPY/ATTN rows of 16 elements from an aligned address."""
        stride = 4
        first = int(self.r.integers(HL.depth(space) // 16 - n_rows + 1))
        return dict(b_space=space, b_addr=16 * first, stride=stride)

    def one(self):
        r, kind = self.r, self.pick(["vop", "vop", "svop", "sop", "dot", "axpy", "attn",
                                      "matvec", "xin", "xin", "xin", "xout", "nop", "topk"])
        if kind == "vop":
            return [self.vector(Op.VOP, self.pick([VFn.PASS, VFn.ADD, VFn.SUB]),
                                (READ, READ + [Space.NONE, Space.IR], WRITE + [Space.NONE]),
                                bits=40)]
        if kind == "svop":
            if r.random() < 0.5:
                return [self.vector(Op.SVOP, SVFn.MAXE, (SCALARS, [Space.NONE], [Space.NONE]),
                                    red=Red.MAXE, red_ir=3)]
            else:       # times SR[0], which is 0: no scalar overflow
                ins = self.vector(Op.SVOP, SVFn.SMUL, (SCALARS, [Space.SR],
                                                       [Space.VMEM, Space.KVS]))
                return [Instr(Op.SVOP, ins.name, **{**ins.f, "b_addr": 0})]
        if kind == "sop":
            s = self.pick(SCALARS)
            sel = self.pick([Dyn.NONE, Dyn.A, Dyn.B, Dyn.D])
            src, k, off = self.dyn(HL.depth(s) - 1)
            fn = self.pick([SFn.LOAD, SFn.STORE])
            if fn == SFn.STORE and not SPACES[s].writable_by_program:
                s = Space.KVS
            if HL.depth(s) < 1 + off:
                sel = Dyn.NONE
            return [Instr(Op.SOP, f"SOP {fn.name}", fn=fn, s_space=s,
                          s_addr=self.addr(s, 1, off if sel else 0), dyn_sel=sel, dyn_src=src,
                          dyn_k=k, d=int(r.integers(1, 8)), a=0)]
        if kind in ("dot", "axpy"):
            space = self.pick(ROWS)
            npos = int(r.random() < 0.3)
            n = 0 if npos else int(r.integers(0, 5))
            rows = self.rows(space, n + (MAX_POS + 1 if npos else 0))
            ln = int(r.integers(1, 17))
            a_n, d_n = (ln, n + 8 * npos) if kind == "dot" else (n + 8 * npos, ln)
            return [Instr(Op.DOT if kind == "dot" else Op.AXPY, kind, n=n, npos=npos, len=ln,
                          a_space=Space.VMEM, a_addr=self.addr(Space.VMEM, a_n),
                          d_space=Space.VMEM, d_addr=self.addr(Space.VMEM, d_n), **rows)]
        if kind == "attn":
            fn = self.pick([AttnFn.SCORES, AttnFn.PV])
            space = Space.KVK if fn == AttnFn.SCORES else Space.KVV
            npos = int(r.random() < 0.5)
            n = 0 if npos else int(r.integers(0, 5))
            rows = self.rows(space, n + (MAX_POS + 1 if npos else 0))
            # PV's value scales at kv_scale_addr: within KVS
            assert kv_scale_addr(HL, rows["b_addr"], 4, 1) + n + 8 * npos <= HL.depth(Space.KVS)
            a_n, d_n = (16, n + 8 * npos) if fn == AttnFn.SCORES else (n + 8 * npos, 16)
            return [Instr(Op.ATTN, f"ATTN {fn.name}", fn=fn, n=n, npos=npos, len=16,
                          a_space=Space.VMEM, a_addr=self.addr(Space.VMEM, a_n),
                          d_space=Space.VMEM, d_addr=self.addr(Space.VMEM, d_n),
                          sh_imm=int(r.integers(-8, 8)), red_ir=4, ir_b=5, sh_ir=0, **rows)]
        if kind == "matvec":
            m, k = self.pick([16, 32]), self.pick([16, 32])
            words = HLAYOUT.words(m, k)
            return [Instr(Op.MATVEC, "MATVEC", base=int(r.integers(HL.weight_words - words + 1)),
                          m=m, k=k, d_space=Space.VMEM, d_addr=self.addr(Space.VMEM, m))]
        if kind in ("xin", "xout"):
            fn = XFn.IN if kind == "xin" else XFn.OUT
            # (PROG: the program's own segments, added after the hoisting: overlay.py)
            spaces = [s for s in XFER_SPACES if not (s == Space.WGT and fn == XFn.OUT)
                      and s not in (Space.HEAD, Space.HEADS, Space.PROG)]
            space = self.pick(spaces)
            per = xfer_bytes(space, HLAYOUT.word_bytes)
            n = int(r.integers(0, 5)) * max(1, per // SDRAM_WORD_BYTES)
            f = dict(fn=fn, c_space=space, n=n)
            npos = r.random() < 0.25 and space != Space.WGT
            if npos:
                f.update(npos=1, npos_k=int(r.integers(2)) if per > 1 else 0)
            words = (n + ((MAX_POS << f.get("npos_k", 0)) if npos else 0)) * SDRAM_WORD_BYTES // per
            c_off = 0
            if r.random() < 0.3 and space != Space.WGT and not npos:
                src = DynSrc.POS if per == 1 else self.pick([DynSrc.POS, DynSrc.TOKEN])
                # whole SDRAM words of a packed space's words
                kk = (SDRAM_WORD_BYTES // per).bit_length() - 1 if per < 8 else int(r.integers(3))
                f.update(dyn_src=src, c_dyn=1, c_dyn_k=kk)
                c_off = (MAX_POS if src == DynSrc.POS else MAX_TOKEN) << kk
                if HL.depth(space) < words + c_off:
                    f.update(c_dyn=0, c_dyn_k=0)
                    c_off = 0
            align = SDRAM_WORD_BYTES // per if per < 8 else 1
            if space == Space.WGT:
                f["c_addr"] = int(r.integers(HL.weight_words - words + 1))
                f["s_addr"] = WGT_SRC + int(r.integers(0, 2048 - n + 1))
            else:
                f["c_addr"] = self.addr(space, words, c_off, align)
                f["s_addr"] = int(r.integers(0, 1024))
                if r.random() < 0.3:
                    f.update(s_dyn=1, s_dyn_k=int(r.integers(3)))
                    if not f.get("c_dyn"):
                        f["dyn_src"] = self.pick([DynSrc.POS, DynSrc.TOKEN])
            return [Instr(Op.XFER, f"XFER {fn.name} {space.name}", **f),
                    Instr(Op.XFER, "WAIT", fn=XFn.WAIT)]
        if kind == "topk":
            return [Instr(Op.SAMPLE, "TOPK", fn=SampleFn.TOPK, n=4, a_space=Space.VMEM,
                          d_space=Space.VMEM)]
        return [Instr(Op.NOP, "NOP")]

    def program(self, length):
        out = [Instr(Op.SAMPLE, "token check", fn=SampleFn.TCHECK, n=HL.vocab)]
        while len(out) < length:
            out += self.one()
        return out + [Instr(Op.END, "END")]


def hoist_machine(rng):
    mc = Machine(HL, HLAYOUT, strict=False)
    for s, mem in mc.mem.items():
        info = SPACES[s]
        half = 1 << (info.word_bits - 1)
        lo, hi = (-half, half) if info.signed else (0, 2 * half)
        if s == Space.VMEM:
            lo, hi = -1000, 1000
        mem[:] = rng.integers(lo, hi, mem.size)
    mc.sdram[:] = rng.integers(0, 256, mc.sdram.size, dtype=np.uint8)
    trits = rng.integers(-1, 2, (4096, 16)).astype(np.int8)      # 2,048 SDRAM words
    packed = np.frombuffer(bytes(HLAYOUT.pack(trits)), np.uint8)
    mc.sdram[WGT_SRC * 8:WGT_SRC * 8 + packed.size] = packed
    mc.weights[:] = packed[:mc.weights.size]
    return mc


def run_step(mc, prog, pos, token):
    mc.prog, mc.names = list(prog), [i.name for i in prog]
    mc.pos, mc.token, mc.gen = pos, token, 1
    mc.step()
    return mc


def machine_state(mc):
    return ({s: m.copy() for s, m in mc.mem.items()}, mc.sdram.copy(), mc.weights.copy(),
            list(mc.ir), list(mc.sr_m), list(mc.sr_e))


def test_hoisted_transfers_never_meet_an_access_and_change_nothing(seed):
    """Random programs (every instruction class, dynamic and position-dependent operands,
    transfers of every space, each followed by its WAIT) hoisted by
    :func:`~ternary_core.offload.schedule.hoist_transfers`: at random positions and tokens
    the hoisted program never trips the machine's hazard check ("a WAIT is missing") and
    leaves every memory, register and the SDRAM as the program did. (Each of ten
    mutations of the schedule's access analysis fails this test.)"""
    rng = np.random.default_rng(seed)
    moved = 0
    for _ in range(150):
        prog = ProgramGen(rng).program(40)
        hoisted = hoist_transfers(prog, HL, HLAYOUT)
        assert sorted(map(id, hoisted)) == sorted(map(id, prog))
        moved += sum(a is not b for a, b in zip(prog, hoisted))
        start = hoist_machine(rng)
        for _ in range(2):
            pos, token = int(rng.integers(MAX_POS + 1)), int(rng.integers(MAX_TOKEN + 1))
            want = machine_state(run_step(copy.deepcopy(start), prog, pos, token))
            got = machine_state(run_step(copy.deepcopy(start), hoisted, pos, token))
            for s in want[0]:
                np.testing.assert_array_equal(got[0][s], want[0][s], err_msg=s.name)
            for a, b in zip(got[1:], want[1:]):
                np.testing.assert_array_equal(a, b)
    assert moved > 1000          # the test is of programs whose transfers do move


def test_a_hoisted_program_still_stops_at_the_token_check(seed):
    """A token past the vocabulary stops the hoisted program at its token check
    (BAD_TOKEN), before a transfer whose SDRAM address the token moves."""
    rng = np.random.default_rng(seed)
    for _ in range(50):
        prog = ProgramGen(rng).program(30)
        for p in (prog, hoist_transfers(prog, HL, HLAYOUT)):
            with pytest.raises(DeviceStop) as stop:
                run_step(hoist_machine(rng), p, 3, 0xFFFF)
            assert stop.value.status == MachineStatus.BAD_TOKEN


# ------------------------------------------------------------- ternary bench --sdram

def test_bench_sdram_refuses_boards_it_does_not_measure(monkeypatch, capsys):
    from host import bench_sdram

    def measure(*a, **kw):
        raise TernaryError("sentinel: the SDRAM bench ran")
    monkeypatch.setattr(bench_sdram, "measure", measure)
    capsys.readouterr()
    assert main(["bench", "--sdram", "--boards", "icebreaker"]) == 2
    err = capsys.readouterr().err
    assert "--boards" in err and "sentinel" not in err


# ------------------------------------------------------------- ternary build --sdram

@pytest.mark.parametrize("argv,sdram_build,message", [
    (["--board", ULX3S, "--sdram"], True, r"--sdram: only with --offload model"),
    (["--board", "icebreaker", "--offload", "model", "--sdram"], True,
     r"--offload model: the icebreaker build has no vector machine"),
    (["--board", ULX3S, "--offload", "model", "--sdram"], False,
     r"--sdram: the ulx3s-85f has no build that streams from an SDRAM"),
])
def test_build_sdram_is_refused_by_name_where_there_is_no_such_build(argv, sdram_build, message,
                                                                      monkeypatch, capsys):
    if not sdram_build:
        monkeypatch.setitem(BOARDS, ULX3S, replace(BOARDS[ULX3S], vm_sdram_limits=None))
    capsys.readouterr()
    code = main(["build", *argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert re.search(message, lines[0]), lines[0]

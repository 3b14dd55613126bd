"""The host's model offload (host/model_offload.py) over the real protocol, against a device
in Python (tests/python_device.py): the ids equal --backend integer's, past the context
too, through a faulty link; errors are one clear line."""

import numpy as np
import pytest

from host.device import Device
from host.generate import generate, integer_runner
from host.model_offload import ModelOffload
from ternary_core import protocol as P
from ternary_core.engine_config import EngineConfig
from ternary_core.errors import TernaryError
from ternary_core.integer import IntegerSampler
from ternary_core.model.config import BitNetConfig
from ternary_core.model.names import QKV, layer
from ternary_core.offload.isa import AttnFn, Feature, Op, Space, SVFn
from ternary_core.offload.limits import DeviceLimits
from tests.faulty_transport import FaultRates, FaultyTransport
from tests.python_device import PythonDevice
from tests.test_model_files import random_model

TINY = dict(hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1)


@pytest.fixture
def tiny(rng):
    return random_model(rng, BitNetConfig(max_position_embeddings=16, **TINY))


def integer_ids(model, prompt, n, temperature=0.0, top_k=0, seed=0):
    res = generate(model, integer_runner(model), prompt, n, IntegerSampler(temperature, top_k, seed))
    return res.token_ids, res.window_shifts


def open_offload(model, transport_wrap=None, **kw):
    dev_py = PythonDevice(DeviceLimits.for_config(model.config))
    transport = transport_wrap(dev_py) if transport_wrap else dev_py
    device = Device(transport, **kw)
    run = ModelOffload(device, model, log=open("/dev/null", "w"), step_timeout=0.001)
    run.prepare()
    return run, dev_py


@pytest.mark.parametrize("temperature,top_k,seed", [(0.0, 0, 0), (0.8, 0, 5), (0.8, 7, 11)])
def test_offloaded_ids_equal_the_integer_backend_past_the_context(tiny, temperature, top_k, seed):
    prompt = [3, 1, 4, 1, 5]
    want, want_shifts = integer_ids(tiny, prompt, 40, temperature, top_k, seed)
    run, _ = open_offload(tiny)
    res = run.generate(prompt, 40, temperature, top_k, seed)
    assert res.token_ids == want and res.window_shifts == want_shifts and want_shifts
    t = run.per_token()
    assert t["offload"] == "model" and t["link_bytes_per_token"] <= 16


@pytest.mark.parametrize("features,legacy", [(3, False), (2, False), (1, False), (0, False),
                                             (3, True)])
def test_the_program_uses_smul2_and_attn_exactly_when_the_device_reports_them(tiny, features,
                                                                             legacy):
    """The host compiles for the features INFO reports; a device that reports no features
    field (an older bitstream) gets the program without them; the ids are the same."""
    limits = DeviceLimits.for_config(tiny.config, features=features)
    dev = Device(PythonDevice(limits, legacy_info=legacy))
    run = ModelOffload(dev, tiny, log=open("/dev/null", "w"))
    run.prepare()
    has = 0 if legacy else features
    assert run.limits.features == has
    ops = {(i.op, i.fn if i.op in (Op.SVOP, Op.ATTN) else 0) for i in run.instructions}
    assert ((Op.SVOP, SVFn.SMUL2) in ops) == bool(has & Feature.SMUL2)
    assert ((Op.ATTN, AttnFn.SCORES) in ops) == bool(has & Feature.ATTN)
    assert ((Op.ATTN, AttnFn.PV) in ops) == bool(has & Feature.ATTN)
    assert ((Op.AXPY, 0) in ops) != bool(has & Feature.ATTN)
    prompt = [3, 1, 4]
    want, _ = integer_ids(tiny, prompt, 12, 0.8, 3, 2)
    assert run.generate(prompt, 12, 0.8, 3, 2).token_ids == want


def test_uploaded_images_are_crc_checked_and_readable(tiny):
    run, dev = open_offload(tiny)
    assert {Space.PROG, Space.SRINIT, Space.TMEM, Space.EMB, Space.EMBS} <= set(run.images)
    for space, (data, nb) in run.images.items():
        assert run.device.read_mem(space, 0, len(data) // nb, nb) == data
    # each is checked first (a board may hold it already) and, when it is sent, after
    cmds = [c for c, _ in dev.requests]
    checks = cmds.count(P.Cmd.CHECK_MEM) + cmds.count(P.Cmd.CHECK_WEIGHTS)
    uploads = len(run.images) + len(run.stacks)
    assert checks == 2 * uploads - run.device.stats.resident
    assert run.device.stats.uploads == uploads - run.device.stats.resident
    assert cmds.count(P.Cmd.CHECK_WEIGHTS) >= len(run.stacks)


def test_a_prompt_longer_than_a_frame_is_sent_as_prefill_runs(rng):
    model = random_model(rng, BitNetConfig(max_position_embeddings=300, vocab_size=300, **TINY))
    prompt = [int(t) for t in rng.integers(0, 300, 280)]
    want, _ = integer_ids(model, prompt, 3)
    run, dev = open_offload(model)
    assert run.generate(prompt, 3).token_ids == want
    runs = [P.decode_run(p) for c, p in dev.requests if c == P.Cmd.RUN]
    assert [(a.pos0, a.n_feed, a.n_new) for a, _ in runs] == [(0, 248, 1), (248, 32, 1), (280, 1, 2)]


def test_dropped_and_corrupted_frames_during_upload_and_runs_give_the_right_ids(tiny, seed):
    rates = FaultRates(flip=0.1, drop=0.05, dup=0.05, garbage=0.05)
    wrap = lambda inner: FaultyTransport(inner, tx=rates, rx=rates, seed=seed)   # noqa: E731
    prompt = [7, 8, 9]
    want, _ = integer_ids(tiny, prompt, 30, 0.8, 0, 3)
    run, _ = open_offload(tiny, wrap, timeout=0.02, retries=30)
    assert run.generate(prompt, 30, 0.8, 0, 3).token_ids == want
    assert run.device.transport.injected.total() > 0 and run.device.link.stats.retries > 0


def test_a_machine_error_names_the_instruction_and_position_and_gives_no_ids(tiny):
    run, dev = open_offload(tiny)
    pc = 5
    low = 0xF1   # a VOP (class 1) of function 15, which VOP does not have
    run.device.write_mem(Space.PROG, 2 * pc, low.to_bytes(8, "little"), 8)
    seen = []
    name = run.instructions[pc].name
    with pytest.raises(TernaryError, match=rf"BAD_OPCODE at instruction {pc} \({name}\), position 0"):
        run.generate([1, 2], 10, on_token=seen.append)
    assert seen == []


def test_offload_model_on_a_model_past_the_limits_names_the_field(tiny):
    from host.backends import choose_offload

    dev = Device(PythonDevice(DeviceLimits.for_config(tiny.config)))
    big = random_model(np.random.default_rng(1), BitNetConfig(max_position_embeddings=32, **TINY))
    with pytest.raises(TernaryError, match="context 32 is more than the device's context limit 16"):
        choose_offload(dev, big, "model")
    assert choose_offload(dev, big, None) == "matvec"
    assert choose_offload(dev, tiny, None) == "model"
    assert choose_offload(dev, tiny, "matvec") == "matvec"


def test_a_silu_model_is_offloaded_and_its_ids_equal_the_integer_backend(rng):
    from host.backends import choose_offload

    silu = random_model(rng, BitNetConfig(max_position_embeddings=16, hidden_act="silu", **TINY))
    dev = Device(PythonDevice(DeviceLimits.for_config(silu.config)))
    assert choose_offload(dev, silu, None) == "model"
    prompt = [2, 7, 1]
    want, _ = integer_ids(silu, prompt, 20, 0.8, 3, 9)
    run, _ = open_offload(silu)
    assert run.generate(prompt, 20, 0.8, 3, 9).token_ids == want


def vm_runs_relu2_only(monkeypatch):
    """The vector machine as if it ran only relu2: the refusal of an activation it does not
    run (every activation of config.ACTIVATIONS runs on it now), for the refusal's path."""
    from ternary_core.offload import limits

    monkeypatch.setattr(limits, "VM_ACTIVATIONS", ("relu2",))


def test_an_activation_the_vm_does_not_run_is_not_offloaded_and_the_refusal_names_it(
        rng, monkeypatch):
    from dataclasses import replace

    from host.backends import choose_offload

    vm_runs_relu2_only(monkeypatch)
    silu = random_model(rng, BitNetConfig(max_position_embeddings=16, hidden_act="silu", **TINY))
    limits = DeviceLimits.for_config(replace(silu.config, hidden_act="relu2"))
    dev = Device(PythonDevice(limits))
    with pytest.raises(TernaryError, match="hidden_act is 'silu'; the device's vector machine "
                                           "runs relu2 only"):
        choose_offload(dev, silu, "model")
    assert choose_offload(dev, silu, None) == "matvec"
    with pytest.raises(TernaryError, match="hidden_act is 'silu'"):
        ModelOffload(dev, silu, log=open("/dev/null", "w")).prepare()


def test_generate_cli_refuses_offload_model_of_an_activation_the_vm_lacks_before_opening_a_device(
        rng, tmp_path, monkeypatch, capsys):
    import host.backends as backends
    from host.cli import main
    from ternary_core.model.file import save_model

    vm_runs_relu2_only(monkeypatch)
    path = tmp_path / "silu.safetensors"
    save_model(path, random_model(rng, BitNetConfig(max_position_embeddings=16, hidden_act="silu",
                                                    **TINY)))
    opened = []
    monkeypatch.setattr(backends, "open_device", lambda args, model=None: opened.append(args))
    argv = ["generate", "--model", str(path), "--prompt-ids", "1,2,3", "--tokens", "4",
            "--backend", "sim", "--board", "ulx3s-85f", "--offload", "model"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert ("--offload model: hidden_act is 'silu'; the device's vector machine runs relu2 "
            "only; use --offload matvec") in err
    assert "Traceback" not in err and not opened


def test_check_runs_a_position_at_a_time_and_agrees_with_the_reference(tiny):
    prompt = [2, 7, 1]
    want, _ = integer_ids(tiny, prompt, 20, 0.8, 3, 9)
    run, dev = open_offload(tiny)
    run.check = True
    assert run.generate(prompt, 20, 0.8, 3, 9).token_ids == want
    runs = [P.decode_run(p)[0] for c, p in dev.requests if c == P.Cmd.RUN]
    assert all(a.n_feed == 1 and a.n_new == 1 for a in runs) and len(runs) >= 22


def test_check_names_the_first_instruction_whose_result_differs(tiny):
    from host.matvec_offload import DeviceMismatch
    from ternary_core.offload.isa import encode

    run, dev = open_offload(tiny)
    run.check = True
    # the device's program differs from the reference's in one instruction's shift:
    # the device computes something else there, the check names that instruction
    pc = next(i for i, ins in enumerate(run.instructions)
              if ins.op.name == "VOP" and ins.f["d_space"] == Space.VMEM and ins.f["bits"] > 8)
    bad = run.instructions[pc]
    word = encode(type(bad)(bad.op, bad.name, **{**bad.f, "sh_imm": bad.f["sh_imm"] + 1}))
    run.device.write_mem(Space.PROG, 2 * pc, (word & (2**64 - 1)).to_bytes(8, "little")
                         + (word >> 64).to_bytes(8, "little"), 8)
    with pytest.raises(DeviceMismatch, match=rf"position 0: .*instruction {pc}: {bad.name}"):
        run.generate([1, 2], 4)


def test_generate_cli_offloads_the_model_and_says_so(tiny, tmp_path, monkeypatch, capsys):
    import json

    import host.backends as backends
    from host.cli import main
    from ternary_core.model.file import save_model

    path = tmp_path / "tiny.safetensors"
    save_model(path, tiny)
    monkeypatch.setattr(backends, "open_device",
                        lambda args, model=None: Device(PythonDevice(DeviceLimits.for_config(tiny.config))))
    argv = ["generate", "--model", str(path), "--prompt-ids", "1,2,3", "--tokens", "30",
            "--temperature", "0", "--json"]
    assert main(argv + ["--backend", "integer"]) == 0
    want = json.loads(capsys.readouterr().out)
    assert main(argv + ["--backend", "sim", "--board", "ulx3s-85f"]) == 0   # default: model
    got = json.loads(capsys.readouterr().out)
    assert got["offload"] == "model" and got["token_ids"] == want["token_ids"]
    assert got["window_shifts"] == want["window_shifts"] and got["link_bytes_per_token"] <= 16
    assert got["projection"]["board"] == "ulx3s-85f" and got["projection"]["bound"] in ("compute", "link")


def test_a_model_too_big_for_the_chip_streams_from_the_sdram_and_stays_resident(rng):
    """A device with SDRAM and on-chip buffers too small for the model: the host uploads
    the SDRAM image (checked chunk by chunk) and the ids equal --backend integer's; a
    second session finds the image resident and sends no SDRAM words again."""
    model = random_model(rng, BitNetConfig(max_position_embeddings=16, vocab_size=61, **TINY))
    limits = DeviceLimits.for_config(model.config, sdram_words=1 << 15, emb_rows=8, kv_slots=1,
                                     weight_words=8)
    engine = EngineConfig(rows=16, cols=16, fmt="2bit", max_m=1024, max_k=1024, weight_words=8)
    dev_py = PythonDevice(limits, engine=engine)
    prompt = [3, 1, 4, 1, 5]
    want, _ = integer_ids(model, prompt, 12)
    sdram_writes = []
    for session in range(2):
        device = Device(dev_py)
        run = ModelOffload(device, model, log=open("/dev/null", "w"), step_timeout=0.001)
        start = len(dev_py.requests)
        run.prepare()
        assert run.program.mm.sd is not None and len(run.program.mm.sd.chunks[layer(0) + QKV[0]]) > 1
        sdram_writes.append(sum(1 for cmd, p in dev_py.requests[start:]
                                if cmd == P.Cmd.WRITE_MEM and p[0] == Space.SDRAM))
        assert run.generate(prompt, 12).token_ids == want
    assert sdram_writes[0] > 0 and sdram_writes[1] == 0


def test_check_of_a_streamed_model_compares_the_kv_rows_in_the_sdram(rng):
    """--check on a model streamed from the SDRAM reads every layer's KV rows at the
    position back from the SDRAM; a write of the step's row sent to the wrong SDRAM word is
    named (the attention then reads the wrong row too, so VMEM differs first)."""
    from host.matvec_offload import DeviceMismatch
    from ternary_core.offload.isa import encode

    model = random_model(rng, BitNetConfig(max_position_embeddings=16, vocab_size=61, **TINY))
    limits = DeviceLimits.for_config(model.config, sdram_words=1 << 15, emb_rows=8, kv_slots=1)
    prompt = [2, 7, 1]
    want, _ = integer_ids(model, prompt, 8, 0.8, 3, 9)
    for broken in (False, True):
        device = Device(PythonDevice(limits))
        run = ModelOffload(device, model, log=open("/dev/null", "w"), step_timeout=0.001)
        run.prepare()
        run.check = True
        assert run.program.mm.sd is not None
        if not broken:
            assert run.generate(prompt, 8, 0.8, 3, 9).token_ids == want
            continue
        pc = next(i for i, ins in enumerate(run.instructions) if "write the step's V row" in ins.name)
        bad = run.instructions[pc]
        word = encode(type(bad)(bad.op, bad.name, **{**bad.f, "s_addr": bad.f["s_addr"] + 1}))
        device.write_mem(Space.PROG, 2 * pc, (word & (2**64 - 1)).to_bytes(8, "little")
                         + (word >> 64).to_bytes(8, "little"), 8)
        with pytest.raises(DeviceMismatch, match=rf"position 0: .* differ.*instruction {pc}: "
                                                 rf"{bad.name}"):
            run.generate([1, 2], 4)


@pytest.mark.parametrize("restore", [True, False])
def test_a_machine_error_in_a_later_segment_leaves_segment_0_for_the_next_run(rng, restore,
                                                                            monkeypatch):
    """A program streamed through PROG in segments that stops on a machine error in
    segment 2 leaves segment 2 in PROG's half 0, where every run starts: the host writes
    segment 0 back, so the next run (the bad instruction mended in the SDRAM) gives
    --backend integer's ids. Without that restore (``restore`` False) it does not."""
    from ternary_core.offload.isa import encode

    model = random_model(rng, BitNetConfig(max_position_embeddings=16, vocab_size=61, **TINY))
    limits = DeviceLimits.for_config(model.config, sdram_words=1 << 15, emb_rows=8, kv_slots=1,
                                     prog_words=64)
    prompt = [3, 1, 4]
    want, _ = integer_ids(model, prompt, 6)
    if not restore:
        monkeypatch.setattr(ModelOffload, "_restore_program", lambda self: None)
    run = ModelOffload(Device(PythonDevice(limits)), model, log=open("/dev/null", "w"),
                       step_timeout=0.001)
    run.prepare()
    half = limits.prog_words // 2
    assert run.program.segmented and len(run.instructions) >= 4 * half
    pc = next(i for i in range(2 * half, 3 * half) if run.instructions[i].op not in (Op.XFER, Op.NOP))
    at = run.program.mm.sd.prog + 2 * pc            # two SDRAM words an instruction
    word = encode(run.instructions[pc])
    good = (word & (2**64 - 1)).to_bytes(8, "little") + (word >> 64).to_bytes(8, "little")
    run.device.write_mem(Space.SDRAM, at, (0xF1).to_bytes(8, "little") + good[8:], 8)
    with pytest.raises(TernaryError, match=rf"BAD_OPCODE at instruction {pc} "):
        run.generate(prompt, 6)
    run.device.write_mem(Space.SDRAM, at, good, 8)
    if restore:
        assert run.generate(prompt, 6).token_ids == want
    else:
        with pytest.raises(TernaryError):
            assert run.generate(prompt, 6).token_ids != want

"""A model streamed from the SDRAM (issue 20) on the Python machine: XFER's semantics
word by word, the compiled program bit-exact to the integer golden model on random models
of several shapes with buffers small enough that every stream is chunked, the placement
(on chip when it fits, in the SDRAM when not, refused by name when neither), and the
run-time hazard check that catches a missing WAIT."""

from dataclasses import replace

import numpy as np
import pytest

from ternary_core.errors import TernaryError
from ternary_core.integer import compile_model
from ternary_core.model.config import BitNetConfig
from ternary_core.offload import isa, overlay
from ternary_core.offload.compiler import compile_program
from ternary_core.offload.isa import Instr, Op, Space, VFn, XFn
from ternary_core.offload.limits import DEFAULT_ENGINE, DeviceLimits
from ternary_core.offload.machine import Machine, execute
from ternary_core.offload.memory_map import memory_images
from tests.test_model_files import random_model
from tests.test_offload_program import assert_same, device, golden

SHAPES = {  # hidden not a power of two, GQA groups of 3 and 2, vocab past a chunk of rows
    "48/6x8/2": dict(vocab_size=37, hidden_size=48, intermediate_size=40, num_hidden_layers=2,
                     num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=24),
    "36/3x12/1": dict(vocab_size=53, hidden_size=36, intermediate_size=44, num_hidden_layers=1,
                      num_attention_heads=3, num_key_value_heads=1, max_position_embeddings=20),
    "64/4x16/2": dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16),
}


def streamed_limits(config, weight_words=16, emb_rows=8, **kw):
    """The smallest device with SDRAM that streams ``config``: two weight chunks of
    ``weight_words / 2`` tile words, lm_head chunks of ``emb_rows / 2`` rows, one layer of
    KV cache on chip."""
    return DeviceLimits.for_config(config, sdram_words=1 << 16, emb_rows=emb_rows, kv_slots=1,
                                   weight_words=weight_words, **kw)


def transfers(program):
    return [i for i in program.instrs if i.op == Op.XFER]


@pytest.mark.parametrize("shape,tie,act,fused,single,prog", [
    ("48/6x8/2", False, "relu2", False, 0, 0), ("48/6x8/2", True, "silu", True, 1, 64),
    ("36/3x12/1", True, "relu2", True, 0, 30), ("64/4x16/2", False, "silu", False, 1, 0)])
def test_streamed_model_is_bit_exact_to_the_integer_model(rng, seed, shape, tie, act, fused,
                                                          single, prog):
    """``single``: the logits and the sampler's weights in VMEM's single-copy bank;
    ``prog``: a PROG of that many instructions, through which the program streams."""
    im = compile_model(random_model(rng, BitNetConfig(tie_word_embeddings=tie, hidden_act=act,
                                                      **SHAPES[shape])))
    limits = streamed_limits(im.config, vmem_single=single * 2 * im.config.vocab_size,
                             **({"prog_words": prog} if prog else {}))
    mc, program = Machine.for_model(im, limits, smul2=fused, fuse_attention=fused)
    # everything streams: several chunks a stack, the lm_head in chunks of 4 rows
    assert program.mm.sd is not None
    assert sum(len(c) for c in program.mm.sd.chunks.values()) > 4 * im.config.num_hidden_layers
    assert program.mm.sd.head_rows < im.config.vocab_size
    assert program.segmented == bool(prog)
    V = im.config.vocab_size
    prompt = [int(t) for t in rng.integers(0, V, 5)]
    n = im.max_len - len(prompt) + 1                 # to the end of the context
    assert_same(device(mc, program, prompt, n), golden(im, prompt, n))
    s = seed % 1000
    assert_same(device(mc, program, prompt, n, 0.8, 3, s), golden(im, prompt, n, 0.8, 3, s))
    # a second request resumes from the KV cache the first left in the SDRAM
    first = device(mc, program, prompt, 6)
    resumed = device(mc, program, [first[0][2]], 3, pos0=len(prompt) + 2)
    assert resumed[0] == first[0][3:6]


def test_the_single_copy_bank_holds_the_vocabulary_sized_regions_and_only_port_0_reads_it(rng):
    """With ``vmem_single``, the two-copy VMEM words hold no vocabulary-sized region (the
    lm_head's chunks pass through s0/s1), an on-chip model's lm_head runs in chunks too and
    stays bit-exact, and a program reading the bank other than as operand A is refused."""
    c = BitNetConfig(vocab_size=200, **{k: v for k, v in SHAPES["48/6x8/2"].items()
                                        if k != "vocab_size"})
    im = compile_model(random_model(rng, c))
    V = c.vocab_size
    plain = DeviceLimits.for_config(c)
    lim = DeviceLimits.for_config(c, vmem_single=2 * V)   # (chunks of V / 2 rows)
    assert lim.vmem_words < plain.vmem_words - V    # s0..s2 were vocabulary-sized
    mc, program = Machine.for_model(im, lim)
    assert program.mm.sd is None
    lg, n = program.logits
    assert lg >= lim.vmem_words and n == V
    assert program.mm.vmem["wt"] == lg + V
    prompt = [int(t) for t in rng.integers(0, V, 4)]
    assert_same(device(mc, program, prompt, 8, 0.7, 5, 3), golden(im, prompt, 8, 0.7, 5, 3))
    # the bank's words read as operand B: refused by name
    bad = Instr(Op.VOP, "logits as B", fn=VFn.ADD, n=4, a_space=Space.VMEM, a_addr=0,
                b_space=Space.VMEM, b_addr=lg, d_space=Space.VMEM, d_addr=0, bits=40)
    with pytest.raises(TernaryError, match="logits as B: B reads VMEM .* single-copy bank"):
        execute(mc, bad)
    with pytest.raises(TernaryError, match="vmem_single"):
        compile_program(im, DeviceLimits.for_config(c, vmem_single=2 * V - 1))


def test_a_program_longer_than_prog_streams_in_segments_and_a_missing_one_is_caught(rng):
    """overlay.segment: halves of PROG in turn, each segment fetching the next and waiting
    for it at its end, the last (in half 1) fetching segment 0 back; the Python machine
    checks every fetched instruction against the program and the transfer that brings it."""
    im = compile_model(random_model(rng, BitNetConfig(**SHAPES["48/6x8/2"])))
    plain = compile_program(im, streamed_limits(im.config))
    P = 48
    mc, program = Machine.for_model(im, streamed_limits(im.config, prog_words=P))
    H, instrs = P // 2, program.instrs
    K = len(instrs) // H
    assert len(instrs) == K * H and K % 2 == 0 and K == overlay.segment_count(len(plain.instrs), P)
    body = [i for i in instrs if not i.name.startswith("program: ")]
    assert [i.name for i in body] == [i.name for i in plain.instrs]
    for k in range(K):
        seg = instrs[k * H:(k + 1) * H]
        nxt = (k + 1) % K
        assert (seg[0].op, seg[0].fn, seg[0].c_space, seg[0].c_addr, seg[0].n) == (
            Op.XFER, XFn.IN, isa.XFER_PROG, (nxt % 2) * 2 * H, 2 * H)
        assert seg[0].s_addr == program.mm.sd.prog + nxt * 2 * H and not seg[0].gen_only
        if k < K - 1:
            assert (seg[-1].op, seg[-1].fn) == (Op.XFER, XFn.WAIT)
        else:
            assert Op.END in [i.op for i in seg]
    images = memory_images(im, program)
    assert list(images[Space.PROG]) == program.words()[:P]      # segment 0
    sd = images[Space.SDRAM]
    assert list(sd[program.mm.sd.prog:program.mm.sd.image_words]) == program.words()
    prompt = [1, 2, 3]
    assert_same(device(mc, program, prompt, 5), golden(im, prompt, 5))

    def load(at, ins):          # the program with instruction ``at`` replaced, everywhere
        changed = replace(program, instrs=instrs[:at] + [ins] + instrs[at + 1:])
        mc.load_program(changed)
        mc.sdram.view("<u8")[program.mm.sd.prog:program.mm.sd.image_words] = changed.words()

    # a segment's WAIT left out: its next is fetched while the transfer runs (in a segment
    # with no transfer of its own, which would wait for the fetch before it starts)
    k = next(k for k in range(K - 1)
             if all(i.op != Op.XFER for i in instrs[k * H + 1:(k + 1) * H - 1]))
    load((k + 1) * H - 1, Instr(Op.NOP, "no wait"))
    with pytest.raises(TernaryError, match=f"pc {(k + 1) * H}: reads PROG .*a WAIT is missing"):
        device(mc, program, prompt, 2)
    # a segment's fetch left out: the half still holds the segment before
    load(k * H, Instr(Op.NOP, "no fetch"))
    with pytest.raises(TernaryError, match=f"pc {(k + 1) * H}: PROG words .* hold another instruction"):
        device(mc, program, prompt, 2)


def test_a_streamed_programs_scalar_registers_do_not_grow_with_the_layers(rng):
    """On chip every BitLinear's weight scale is an SRINIT constant (seven a layer);
    streamed, they come from the SDRAM with the layer's gains, so a deeper model needs no
    more of the SR file (whose 256 registers held 27 layers)."""
    counts = {}
    for layers in (1, 4):
        cfg = BitNetConfig(**{**SHAPES["36/3x12/1"], "num_hidden_layers": layers})
        im = compile_model(random_model(rng, cfg))
        on_chip = compile_program(im, DeviceLimits.for_config(cfg))
        streamed = compile_program(im, streamed_limits(cfg))
        assert streamed.mm.sd is not None
        counts[layers] = (len(on_chip.sr_init), len(streamed.sr_init))
    assert counts[4][0] - counts[1][0] == 3 * 7
    assert counts[4][1] == counts[1][1]


def test_a_model_lives_on_chip_when_it_fits_and_in_the_sdram_when_not(rng):
    im = compile_model(random_model(rng, BitNetConfig(**SHAPES["48/6x8/2"])))
    fits = DeviceLimits.for_config(im.config)
    assert not transfers(compile_program(im, fits))            # the on-chip program
    # a device with SDRAM has TMEM for the streamed tables only (the step's RoPE row, two
    # layers' gains): a model whose every table does not fit there streams
    with_sdram = DeviceLimits.for_config(im.config, sdram_words=1 << 16)
    assert compile_program(im, with_sdram).mm.sd is not None
    roomy = replace(with_sdram, hidden=4096, ffn=4096)
    assert not im.config.tie_word_embeddings                   # and HEAD is one word: an
    assert compile_program(im, roomy).mm.sd is not None        # untied lm_head streams
    tied = compile_model(random_model(rng, BitNetConfig(tie_word_embeddings=True,
                                                        **SHAPES["48/6x8/2"])))
    assert not transfers(compile_program(tied, roomy))         # unless it is tied
    small = streamed_limits(im.config)
    assert transfers(compile_program(im, small))
    with pytest.raises(TernaryError, match="the model needs .* weight_words; the device's limit"):
        compile_program(im, DeviceLimits.for_config(im.config, weight_words=16))
    with pytest.raises(TernaryError, match=r"needs \d+ sdram_words; the device's limit is 100"):
        compile_program(im, DeviceLimits.for_config(im.config, sdram_words=100, emb_rows=8,
                                                    kv_slots=1, weight_words=16))
    with pytest.raises(TernaryError, match="the device has none"):
        compile_program(im, DeviceLimits.for_config(im.config), sdram=True)
    with pytest.raises(TernaryError, match="emb_rows >= 2"):
        compile_program(im, DeviceLimits.for_config(im.config, sdram_words=1 << 16, emb_rows=1,
                                                    kv_slots=1), sdram=True)
    with pytest.raises(TernaryError, match="does not fit half the weight store"):
        compile_program(im, streamed_limits(im.config, weight_words=4))
    with pytest.raises(TernaryError, match="DeviceLimits.emb_rows must be at most vocab"):
        DeviceLimits(emb_rows=10_000)


def test_weight_transfers_start_before_the_work_they_overlap(rng):
    """Each weight chunk's XFER is hoisted above instructions that do not touch its half
    of the store, so the SDRAM streams while the machine computes: between the XFER and
    its WAIT there is work, and no XFER moved above a WAIT, an XFER or a SAMPLE."""
    im = compile_model(random_model(rng, BitNetConfig(**SHAPES["64/4x16/2"])))
    program = compile_program(im, streamed_limits(im.config, weight_words=64))
    ins = program.instrs
    overlapped = 0
    for pc, i in enumerate(ins):
        if i.op == Op.XFER and i.fn == XFn.IN and i.c_space == Space.WGT:
            wait = next(q for q in range(pc + 1, len(ins)) if ins[q].op == Op.XFER)
            assert ins[wait].fn == XFn.WAIT
            overlapped += any(ins[q].op in (Op.VOP, Op.SOP, Op.MATVEC) for q in range(pc, wait))
    assert overlapped >= 0.75 * sum(1 for i in ins if i.op == Op.XFER and i.c_space == Space.WGT)


def test_a_missing_wait_is_caught_by_name(rng):
    im = compile_model(random_model(rng, BitNetConfig(**SHAPES["36/3x12/1"])))
    mc, program = Machine.for_model(im, streamed_limits(im.config))
    ins = program.instrs
    # a WAIT right before an XFER is redundant (IN and OUT wait for the transfer before
    # them): drop one that is not, before a MATVEC
    pc = next(p for p, i in enumerate(ins) if i.op == Op.XFER and i.fn == XFn.WAIT
              and ins[p + 1].op == Op.MATVEC)
    mc.prog, mc.names = mc.prog[:pc] + mc.prog[pc + 1:], mc.names[:pc] + mc.names[pc + 1:]
    with pytest.raises(TernaryError, match=r"MATVEC: reads WGT .* while the transfer "
                                           r"'.*: fetch' writes .* \(a WAIT is missing\)"):
        mc.generate([1, 2], 2)


def xfer(fn, space, c_addr, s_addr, n, **f):
    return Instr(Op.XFER, f"xfer {space.name}", fn=fn, c_space=space, c_addr=c_addr,
                 s_addr=s_addr, n=n, **f)


def test_xfer_moves_each_space_as_its_words_packed_little_endian(rng):
    lim = DeviceLimits(sdram_words=4096)
    mc = Machine(lim, DEFAULT_ENGINE.layout)
    raw = rng.integers(0, 256, 4096 * 8, dtype=np.uint8)
    mc.load(Space.SDRAM, raw.view("<u8"))
    assert mc.peek(Space.SDRAM, 5) == int(raw[40:48].view("<u8")[0])
    # int8 rows: 8 a word, signed
    execute(mc, xfer(XFn.IN, Space.EMB, 64, 10, 3))
    np.testing.assert_array_equal(mc.mem[Space.EMB][64:88], raw[80:104].view(np.int8))
    # scalar words: one a word, the low 28 bits
    execute(mc, xfer(XFn.IN, Space.KVS, 7, 100, 2))
    want = raw[800:816].view("<u8") & np.uint64((1 << isa.SW_BITS) - 1)
    np.testing.assert_array_equal(mc.mem[Space.KVS][7:9], want.astype(np.int64))
    # WGT: a 64-byte tile word is 8 SDRAM words
    execute(mc, xfer(XFn.IN, Space.WGT, 3, 300, 16))
    np.testing.assert_array_equal(mc.weights[192:320], raw[2400:2528])
    # OUT is the inverse; scalar words are zero-extended; position-dependent forms
    mc.pos, mc.token = 5, 9
    mc.mem[Space.KVK][16:24] = np.arange(-4, 4)
    execute(mc, xfer(XFn.OUT, Space.KVK, 6, 1000, 1, c_dyn=1, c_dyn_k=1, s_dyn=1,
                     s_dyn_k=0, dyn_src=isa.DynSrc.POS))      # KVK 6 + 5*2 = 16; word 1005
    assert list(mc.sdram[8040:8048].view(np.int8)) == list(range(-4, 4))
    mc.mem[Space.KVS][3] = (1 << isa.SW_BITS) - 1
    execute(mc, xfer(XFn.OUT, Space.KVS, 3, 1, 1, dyn_src=isa.DynSrc.TOKEN, s_dyn=1, s_dyn_k=2))
    assert mc.peek(Space.SDRAM, 1 + (9 << 2)) == (1 << isa.SW_BITS) - 1
    execute(mc, xfer(XFn.IN, Space.KVV, 0, 2000, 0, npos=1, npos_k=1))   # 5 << 1 words
    np.testing.assert_array_equal(mc.mem[Space.KVV][:80], raw[16000:16080].view(np.int8))
    assert mc.xfer[2:4] == (0, 80)
    execute(mc, xfer(XFn.IN, Space.KVV, 0, 2000, 0))          # n = 0: nothing moves
    assert mc.xfer[2:4] == (0, 0)


@pytest.mark.parametrize("ins,message", [
    (xfer(XFn.IN, Space.EMB, 4, 0, 1), "not whole words of 1 bytes starting an SDRAM word"),
    (xfer(XFn.IN, Space.WGT, 0, 0, 3), "not whole words of 64 bytes"),
    (xfer(XFn.IN, Space.KVS, 0, 4090, 8), "SDRAM words 4090..4097 are past its depth 4096"),
    (xfer(XFn.IN, Space.TOKENS, 0, 0, 1), "XFER cannot reach space 11"),
    (xfer(XFn.IN, Space.ACT, 0, 0, 1), "XFER cannot reach space 2"),
    (xfer(XFn.OUT, Space.WGT, 0, 0, 8), "XFER OUT of WGT is not defined"),
    (xfer(XFn.OUT, Space.EMBS, 250, 0, 8), r"EMBS words 250..257 are past its depth 256"),
])
def test_a_transfer_the_machine_cannot_do_is_refused_by_name(ins, message):
    mc = Machine(DeviceLimits(sdram_words=4096), DEFAULT_ENGINE.layout)
    with pytest.raises(TernaryError, match=message):
        execute(mc, ins)


@pytest.mark.parametrize("fn", list(XFn))
def test_xfer_is_a_bad_opcode_on_a_device_without_sdram(fn):
    from ternary_core.offload.machine import DeviceStop
    mc = Machine(DeviceLimits(), DEFAULT_ENGINE.layout)
    with pytest.raises(DeviceStop) as stop:
        execute(mc, xfer(fn, Space.EMB, 0, 0, 1))
    assert stop.value.status == isa.MachineStatus.BAD_OPCODE

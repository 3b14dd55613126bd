"""The simulated board with the SDRAM (issue 20): the device of a machine whose limits have
``sdram_words``, with LiteDRAM's SDRAM model and timing checker, clocked at the board's
ratio; the link's WRITE_MEM / CHECK_MEM / READ_MEM of ``Space.SDRAM``, and the back door."""

import time
import zlib

import numpy as np
import pytest

from boards.profiles import ULX3S_SDRAM_WORDS
from tests.test_offload_sim_board_sdram import ENGINE as STREAMING_ENGINE
from tests.test_offload_sim_board_sdram import LIMITS as STREAMING_LIMITS
from host.device import Device
from host.errors import DeviceRejected
from ternary_core.offload.isa import Space
from tests.vm_helpers import small_limits

SDRAM = int(Space.SDRAM)
WORDS = ULX3S_SDRAM_WORDS        # the whole 32 MB part
# the board of tests/test_offload_sim_board_sdram.py (one Verilator build for both)
LIMITS, ENGINE = STREAMING_LIMITS, STREAMING_ENGINE
assert LIMITS.sdram_words == WORDS
# LiteDRAM's layout of the port's words: a bank's row holds 128 of them, and the banks
# take turns every 128 words (row, bank, column): runs across these boundaries
ROW_WORDS, BANKS = 128, 4


def random_words(rng, n):
    return rng.integers(0, 1 << 64, n, dtype=np.uint64)


def open_board(**kw):
    return Device.open_sim(ENGINE, vm_limits=LIMITS, timeout=30.0, **kw)


def read_words(dev, addr, n):
    return np.frombuffer(dev.read_mem(SDRAM, addr, n, 8), dtype="<u8").astype(np.uint64)


def runs_across_rows_and_banks(rng, count):
    """``count`` (address, length) runs, each crossing a row or bank boundary, some at the
    memory's end, none overlapping another."""
    runs, used = [], set()
    while len(runs) < count:
        length = int(rng.integers(2, 40))
        boundary = int(rng.integers(1, WORDS // ROW_WORDS)) * ROW_WORDS
        addr = min(boundary - int(rng.integers(1, length)), WORDS - length)
        span = set(range(addr // 64, (addr + length) // 64 + 1))
        if span & used:
            continue
        used |= span
        runs.append((addr, length))
    return runs


def test_sdram_words_written_over_the_link_read_back_bit_exact(seed):
    rng = np.random.default_rng(seed)
    print(f"SDRAM over the link: seed={seed}")
    runs = runs_across_rows_and_banks(rng, 12) + [(WORDS - 5, 5), (0, 3)]
    with open_board() as dev:
        assert dev.info.has_vm
        written = {}
        for addr, n in runs:
            words = random_words(rng, n)
            dev.write_mem(SDRAM, addr, words.astype("<u8").tobytes(), 8)
            written[addr] = words
        for addr, n in rng.permutation(np.array(runs, dtype=object)):
            got = read_words(dev, int(addr), int(n))
            np.testing.assert_array_equal(got, written[addr], err_msg=f"words {addr}..+{n}")
            crc = dev.check_mem(SDRAM, int(addr), int(n))
            assert crc == zlib.crc32(written[addr].astype("<u8").tobytes())


def test_a_rewritten_word_reads_back_its_last_value(seed):
    """A write and a read of one address back to back (in one bank's order), and a
    rewrite in between: the read sees the last write."""
    rng = np.random.default_rng(seed)
    print(f"SDRAM rewrite: seed={seed}")
    addr = int(rng.integers(0, WORDS - 4))
    with open_board() as dev:
        for _ in range(3):
            words = random_words(rng, 4)
            dev.write_mem(SDRAM, addr, words.astype("<u8").tobytes(), 8)
            np.testing.assert_array_equal(read_words(dev, addr, 4), words)


def test_the_back_door_image_is_what_read_mem_reads(seed, capsys):
    """A 256 KB image preloaded by the back door: READ_MEM reads it word for word at
    boundaries of rows and banks, CHECK_MEM's CRC over all of it is zlib's (and its time is
    printed), and a word written over the link replaces the image's."""
    rng = np.random.default_rng(seed)
    print(f"SDRAM back door: seed={seed}")
    first, n = 3 * ROW_WORDS * BANKS + 17, (1 << 18) // 8
    image = random_words(rng, n)
    with open_board(sdram_image=(first, image)) as dev:
        for off in [0, ROW_WORDS - 20, ROW_WORDS * BANKS - 3, n - 30,
                    *rng.integers(0, n - 30, 4).tolist()]:
            np.testing.assert_array_equal(read_words(dev, first + off, 30), image[off:off + 30],
                                          err_msg=f"words at image offset {off}")
        t0 = time.monotonic()
        crc = dev.check_mem(SDRAM, first, n)
        seconds = time.monotonic() - t0
        assert crc == zlib.crc32(image.astype("<u8").tobytes())
        new = random_words(rng, 1)
        dev.write_mem(SDRAM, first + 5, new.astype("<u8").tobytes(), 8)
        np.testing.assert_array_equal(read_words(dev, first + 4, 3),
                                      [image[4], new[0], image[6]])
    with capsys.disabled():
        print(f"\nCHECK_MEM of 256 KB of SDRAM on the simulated board: {seconds:.1f} s")


def test_an_image_uploaded_by_the_host_is_checked_by_chunk_and_resident_after(seed):
    """The host's upload of an SDRAM image (Device.write_image: WRITE_MEM by frame, each
    chunk's CHECK_MEM read back from the SDRAM) on the simulated board; the same image
    again with ``resident_ok`` sends nothing but one CHECK_MEM."""
    rng = np.random.default_rng(seed)
    print(f"SDRAM image upload: seed={seed}")
    image = random_words(rng, 3000)
    at = int(rng.integers(0, WORDS - len(image)))
    with open_board() as dev:
        dev.write_image(SDRAM, image.astype("<u8").tobytes(), 8, word_addr=at)
        assert dev.stats.uploads == 1 and dev.stats.chunk_retries == 0
        np.testing.assert_array_equal(read_words(dev, at, len(image))[-50:], image[-50:])
        sent = dev.link.stats.bytes_sent
        dev.write_image(SDRAM, image.astype("<u8").tobytes(), 8, word_addr=at, resident_ok=True)
        assert dev.stats.resident == 1 and dev.link.stats.bytes_sent - sent < 64


def test_sdram_addresses_past_its_words_are_refused():
    with open_board() as dev:
        with pytest.raises(DeviceRejected, match="OUT_OF_RANGE"):
            dev.read_mem(SDRAM, WORDS - 1, 2, 8)
        with pytest.raises(DeviceRejected, match="OUT_OF_RANGE"):
            dev.check_mem(SDRAM, 1, WORDS)


def test_a_controller_with_wrong_timings_ends_the_simulation_loudly():
    """The same board with its controller told tRCD = tRP = 1 cycle: its first access
    breaks the SDRAM's timing, the model's checker flags it, and the board exits naming it
    (the host sees the link close with that message): a simulation never runs on past a
    violation."""
    import sys

    from host.errors import LinkClosed
    from host.transport import PipeTransport
    from sim.board import start_board

    proc = start_board(ENGINE, vm_limits=LIMITS, log=sys.stderr,
                       sdram_timings={"tRCD": 1, "tRP": 1})
    with Device(PipeTransport(proc), timeout=30.0) as dev:
        with pytest.raises(LinkClosed, match="SDRAM timing violation"):
            for addr in range(0, 64 * ROW_WORDS * BANKS, ROW_WORDS * BANKS):
                dev.write_mem(SDRAM, addr, bytes(8), 8)
                read_words(dev, addr, 1)
    assert proc.wait(timeout=10) == 3


# ---- the weight store's word writes (the vector machine's XFER IN to WGT) ----------------

@pytest.mark.parametrize("impl", ["generic", "packed"])
def test_store_word_writes_land_beside_reads_of_other_words(impl, seed):
    """Whole words written on ``wgt`` into one half of the store, a word most cycles,
    while the bus reads the other half every cycle (as a MATVEC reads while XFER fills the
    next chunk): every read gives the word the half holds, and the written half then reads
    back what was written."""
    from rtl.weight_store import WeightStore
    from tests.amaranth_helpers import run

    rng = np.random.default_rng(seed)
    print(f"store word writes ({impl}): seed={seed}")
    depth, word_bytes = 32, 8
    half = depth // 2
    dut = WeightStore(depth, word_bytes, impl=impl, word_writes=True)
    old = [int(w) for w in random_words(rng, half)]
    new = [int(w) for w in random_words(rng, half)]

    async def tb(ctx):
        for a, w in enumerate(old):            # the first half, through the bus
            ctx.set(dut.bus.addr, a)
            ctx.set(dut.bus.wdata, w)
            ctx.set(dut.bus.wmask, (1 << word_bytes) - 1)
            await ctx.tick()
        ctx.set(dut.bus.wmask, 0)
        pending = list(enumerate(new))
        while pending:
            a = int(rng.integers(half))
            ctx.set(dut.bus.addr, a)
            write = bool(rng.integers(4))
            if write:
                i, w = pending.pop(0)
                ctx.set(dut.wgt.addr, half + i)
                ctx.set(dut.wgt.data, w)
            ctx.set(dut.wgt.en, write)
            await ctx.tick()
            assert ctx.get(dut.bus.rdata) == old[a], f"read of word {a}"
        ctx.set(dut.wgt.en, 0)
        for i, w in enumerate(new):
            ctx.set(dut.bus.addr, half + i)
            await ctx.tick()
            assert ctx.get(dut.bus.rdata) == w, f"word {half + i} written on wgt"
    run(dut, tb)


def test_store_word_writes_refuse_a_store_of_several_memories():
    from rtl.weight_store import WeightStore

    with pytest.raises(ValueError, match="word_writes needs impl 'generic' or 'packed'"):
        WeightStore(16, 8, impl="sliced", word_writes=True)


# ---- the board ----------------------------------------------------------------------------

def test_the_simulated_board_clocks_the_sdram_at_the_ulx3s_ratio():
    from boards.profiles import board
    from rtl.sdram.device_sdram import CLOCK_HZ
    from sim.board import sdram_clock_flags

    SYNC_HZ = board("ulx3s-85f").vm_sdram_clock_hz     # the SDRAM build's device clock
    flags = dict(f[2:].split("=") for f in sdram_clock_flags().split() if "=" in f)
    half_sync, half_sdram = int(flags["SYNC_HALF"]), int(flags["SDRAM_HALF"])
    assert half_sync * SYNC_HZ == half_sdram * CLOCK_HZ
    phase = int(flags["SDRAM_PHASE"])
    assert all((phase + k * half_sdram) % half_sync for k in range(1000))


def test_ulx3s_model_build_with_sdram_elaborates_with_its_clocks_and_core():
    """The ULX3S-85F top of a machine with SDRAM (no bitstream: the build takes hours):
    the PLL, the SDRAM clock through ODDRX1F, the LiteDRAM core (board variant) as an
    instance whose Verilog is in the build, at the SDRAM build's 30 MHz UART divisor."""
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from boards.profiles import board
    from boards.tops import ULX3STop

    p = board("ulx3s-85f")
    top = ULX3STop(ENGINE, p.vm_sdram_clock_hz, p.baud, vm_limits=LIMITS)
    assert top.divisor == 10
    plan = ULX3S_85F_Platform().prepare(top, name="top")
    il = plan.files["top.il"]
    assert 'parameter \\FEEDBK_PATH "CLKOP"' in il      # 30 MHz: the device's clock feeds back
    for cell in ("EHXPLLL", "ODDRX1F", "litedram_sdr"):
        assert f"cell \\{cell} " in il, cell
    verilog = plan.files["litedram_sdr.v"]
    assert "module litedram_sdr" in verilog and "sdram_dq" in verilog
    assert "sdram_bank0" not in verilog      # the board variant: no model of the chip
    from rtl.sdram.device_sdram import device_sdram_geometry
    assert 1 << device_sdram_geometry().address_width == WORDS     # the whole chip


# ---- the device's SDRAM wiring with a machine that has XFER's ports (Amaranth simulator) ----
# Until the real machine has them: a stand-in machine whose RUN copies SDRAM words into the
# weight store (``wgt``) and writes each plus one back to the SDRAM (``sdram``), over a
# stand-in SDRAM core (a memory behind LiteDRAM's native port, one domain).

XFER_WORDS = 4            # the double's transfer: SDRAM [0, 4) -> WGT [0, 4); +1 -> SDRAM [8, 12)
XFER_OUT = 8


def _sdram_double(depth_bits=6):
    from amaranth import Module, Signal
    from amaranth.lib import memory, wiring
    from amaranth.lib.wiring import In, Out

    from rtl.sdram.controller import PortSignature
    from rtl.sdram.litedram_core import SdramGeometry

    class SdramDouble(wiring.Component):
        """LiteDRAM's native port on a memory: commands always taken but one write at a
        time, whose word the port asks for after the command (as the controller does);
        read data three cycles after the command, in order."""
        controller_domain = "sync"
        geometry = SdramGeometry(module="double", clk_freq=1e8, address_width=depth_bits,
                                 data_width=64, nbanks=1, nrows=1, ncols=1, cl=2, read_latency=2)

        def __init__(self):
            self.verilog = ""
            super().__init__({"port": In(PortSignature(depth_bits, 64)), "init_done": Out(1),
                              "timing_violation": Out(1)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = memory.Memory(shape=64, depth=1 << depth_bits, init=[])
            rd, wr = mem.read_port(transparent_for=()), mem.write_port()
            p = self.port
            waiting, waddr = Signal(), Signal(depth_bits)
            valid = [Signal(name=f"rvalid{i}") for i in range(3)]
            m.d.comb += [self.init_done.eq(1), p.cmd.ready.eq(~waiting), rd.addr.eq(p.cmd.payload.addr),
                         p.wdata.ready.eq(waiting), wr.addr.eq(waddr), wr.data.eq(p.wdata.payload.data),
                         wr.en.eq(p.wdata.valid & waiting)]
            take = p.cmd.valid & ~waiting
            with m.If(take & p.cmd.payload.we):
                m.d.sync += [waiting.eq(1), waddr.eq(p.cmd.payload.addr)]
            with m.If(p.wdata.valid & waiting):
                m.d.sync += waiting.eq(0)
            data = [Signal(64, name=f"rdata{i}") for i in range(2)]    # rd.data is valid[0]'s
            m.d.sync += [valid[0].eq(take & ~p.cmd.payload.we), valid[1].eq(valid[0]),
                         valid[2].eq(valid[1]), data[0].eq(rd.data), data[1].eq(data[0])]
            m.d.comb += [p.rdata.valid.eq(valid[2]), p.rdata.payload.eq(data[1])]
            return m

    return SdramDouble()


def _xfer_machine_double(address_width, weight_addr_bits, word_bytes):
    from amaranth import Module, Signal
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    from rtl.sdram.controller import StreamsSignature
    from rtl.vm.layouts import LOAD_DATA_BITS, load_layout, peek_layout, result_layout, run_layout
    from rtl.vm.spaces import VmSpaces
    from rtl.weight_store import WeightWriteSignature
    from tests.vm_double import DoubleLimits

    class Limits(DoubleLimits):
        sdram = True
        sdram_words = 1 << address_width

    class XferDouble(wiring.Component):
        """load/peek of its tokens answer 0; RUN moves :data:`XFER_WORDS` SDRAM words
        into the weight store and their successors back to the SDRAM from
        :data:`XFER_OUT`; then done."""

        def __init__(self):
            self.limits = Limits()
            self.vm_spaces = VmSpaces({0: (2, 40, True), SDRAM: (8, 1 << address_width, True)},
                                      0, 40, 5)
            super().__init__({
                "load": In(stream.Signature(load_layout(5))),
                "peek_req": In(stream.Signature(peek_layout(5))),
                "peek": Out(stream.Signature(LOAD_DATA_BITS)),
                "run": In(stream.Signature(run_layout())),
                "done": Out(stream.Signature(result_layout())),
                "sdram": Out(StreamsSignature(address_width, 64)),
                "wgt": Out(WeightWriteSignature(weight_addr_bits, word_bytes)),
            })

        def elaborate(self, platform):
            m = Module()
            sd = self.sdram
            n, word = Signal(8), Signal(64)
            # the writer takes words only while their burst is asked for: asked at the start
            writing = Signal()
            m.d.comb += sd.write_req.valid.eq(writing)
            with m.If(sd.write_req.ready):
                m.d.sync += writing.eq(0)
            m.d.comb += [self.load.ready.eq(1), sd.read_req.payload.addr.eq(0),
                         sd.read_req.payload.count.eq(XFER_WORDS), sd.write_req.payload.addr.eq(XFER_OUT),
                         sd.write_req.payload.count.eq(XFER_WORDS), sd.write_data.payload.eq(word + 1),
                         self.wgt.addr.eq(n), self.wgt.data.eq(word)]
            with m.FSM():
                with m.State("IDLE"):
                    m.d.comb += [self.peek_req.ready.eq(1), self.run.ready.eq(1)]
                    with m.If(self.peek_req.valid):
                        m.next = "PEEK"
                    with m.Elif(self.run.valid):
                        m.d.sync += [n.eq(0), writing.eq(1)]
                        m.next = "READ_REQ"
                with m.State("PEEK"):
                    m.d.comb += self.peek.valid.eq(1)
                    with m.If(self.peek.ready):
                        m.next = "IDLE"
                with m.State("READ_REQ"):
                    m.d.comb += sd.read_req.valid.eq(1)
                    with m.If(sd.read_req.ready):
                        m.next = "READ"
                with m.State("READ"):             # a word in, into the store, then out
                    m.d.comb += sd.read_data.ready.eq(1)
                    with m.If(sd.read_data.valid):
                        m.d.sync += word.eq(sd.read_data.payload)
                        m.next = "STORE"
                with m.State("STORE"):
                    m.d.comb += [self.wgt.en.eq(1), sd.write_data.valid.eq(1)]
                    with m.If(sd.write_data.ready):
                        m.d.sync += n.eq(n + 1)
                        m.next = "NEXT"
                with m.State("NEXT"):
                    with m.If(n != XFER_WORDS):
                        m.next = "READ"
                    with m.Elif(~writing):
                        m.next = "DONE"
                with m.State("DONE"):
                    m.d.comb += self.done.valid.eq(1)
                    with m.If(self.done.ready):
                        m.next = "IDLE"
            return m

    return XferDouble()


def test_the_machine_gets_the_sdram_while_it_runs_and_writes_the_weight_store(seed):
    """SDRAM words written over the link; a RUN whose machine reads them from the SDRAM
    into the weight store and writes their successors back; then the link reads the
    SDRAM (the machine's words) and the weight store's CRC (CHECK_WEIGHTS) is the words'."""
    import struct

    from rtl.device import DeviceCore
    from ternary_core import protocol as P
    from ternary_core.engine_config import EngineConfig
    from ternary_core.offload.isa import RunParams
    from tests.amaranth_helpers import exchange_bytes

    rng = np.random.default_rng(seed)
    print(f"machine's SDRAM and weight store: seed={seed}")
    cfg = EngineConfig(rows=4, cols=8, fmt="2bit", max_m=32, max_k=64, weight_words=16)  # 64-bit tiles
    sdram = _sdram_double()
    vm = _xfer_machine_double(sdram.geometry.address_width, 4, cfg.word_bytes)
    dut = DeviceCore(cfg, max_payload=64, timeout=200, vm=vm, sdram=sdram)
    words = random_words(rng, XFER_WORDS)
    data = words.astype("<u8").tobytes()
    run = P.encode_run(RunParams(pos0=0, n_feed=1, n_new=1, state=0, inv_t_m=0, inv_t_e=0,
                                 top_k=0), [1])
    frames = [P.encode_frame(1, P.Cmd.WRITE_MEM, P.encode_mem(SDRAM, 0, data)),
              P.encode_frame(2, P.Cmd.RUN, run),
              P.encode_frame(3, P.Cmd.READ_MEM, P.encode_mem(SDRAM, XFER_OUT, struct.pack("<H", 4))),
              P.encode_frame(4, P.Cmd.READ_MEM, P.encode_mem(SDRAM, 0, struct.pack("<H", 4))),
              P.encode_frame(5, P.Cmd.CHECK_WEIGHTS, struct.pack("<II", 0, XFER_WORDS))]
    replies = exchange_bytes(dut, frames, gap=400, cycles=6000)
    assert [r[0] for r in replies] == [1, 2, 3, 4, 5]
    assert all(r[2][0] == P.LinkStatus.OK for r in replies), replies
    assert replies[2][2][1:] == (words + np.uint64(1)).astype("<u8").tobytes()
    assert replies[3][2][1:] == data
    assert replies[4][2][1:] == struct.pack("<I", P.check_crc(data))


@pytest.mark.parametrize("image, limits, message", [
    (np.zeros(4, np.int64), LIMITS, "sdram_image must be a 1-D numpy uint64 array"),
    ((WORDS - 2, np.zeros(4, np.uint64)), LIMITS, "not all within the device's sdram_words"),
    (("0", np.zeros(4, np.uint64)), LIMITS, "first word address must be an integer"),
    (np.zeros(4, np.uint64), small_limits(), "this simulated board has no SDRAM"),
])
def test_a_bad_back_door_image_is_refused_by_name_before_any_build(image, limits, message):
    from sim.board import start_board
    from ternary_core.errors import TernaryError

    with pytest.raises(TernaryError, match=message):
        start_board(ENGINE, vm_limits=limits, sdram_image=image)

"""The vector machine (VM): runs the step program of the whole-model device
(docs/device-isa.md; ternary_core/offload/isa.py is the one definition of the encoding)
beside the matvec engine, which it drives.

Its datapath (memories, registers, buses, the VOP and DOT/AXPY pipelines) is built by
datapath.py, its state machine by sequencer.py."""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ternary_core.engine_config import EngineConfig
from ternary_core.offload.isa import Feature
from ternary_core.offload.limits import DeviceLimits

from ..sdram.controller import StreamsSignature
from ..weight_store import WeightWriteSignature
from .datapath import MachineDatapath
from .engine_port import EngineSignature
from .layouts import load_layout, peek_layout, result_layout, run_layout
from .memories import XFER_BITS
from .sequencer import MachineSequencer


class VectorMachine(wiring.Component):
    """Runs the compiled step program of a model once per position (``run``), drives
    the matvec engine for MATVEC, and holds every memory space of the ISA.

    Parameters
    ----------
    limits : ternary_core.offload.limits.DeviceLimits
        Depths of the spaces, the context (BAD_PARAMS check) and the SR count; its
        ``features`` (what INFO reports, so what the host compiles for) must be among
        :attr:`FEATURES`, the optional instructions this RTL runs.
    engine_config : EngineConfig
        The matvec engine the ``engine`` port drives.

    Ports
    -----
    load : In(stream of {space, addr, data})
        One word of a space per beat (its low ``word bits`` of ``data``); only while idle.
    peek_req : In(stream of {space, addr}), peek : Out(stream of 64 bits)
        Read-back of one word (zero-extended); only while idle. ACT reads as 0.
    run : In(stream of RUN_PARAMS), done : Out(stream of RUN_RESULT)
        A run (docs/device-isa.md "Run semantics"); ``run`` is taken only while idle and
        ``done`` is offered once at its end (the VM is busy in between).
    engine : Out(EngineSignature)
        The matvec engine's cmd, result, acts and busy.
    busy : Out(1)
    sdram : Out(rtl.sdram.controller.StreamsSignature(address_width, 64))
        (``limits.sdram_words > 0`` only; ``address_width`` is
        ``(sdram_words - 1).bit_length()``) XFER's burst requests and words: the user side
        of :class:`~rtl.sdram.controller.SdramStreams` (transfer.py).
    wgt : Out(rtl.weight_store.WeightWriteSignature(weight address bits, word_bytes))
        (with ``sdram``) XFER IN's whole tile words for the engine's weight store, beside
        the engine's reads (the device routes it to the store's write port).

    The device top connects ``engine`` member by member to its MatvecEngine (``cmd``,
    ``acts``, ``result``, ``busy``), muxed with the command engine while the VM is idle.

    Timing: an instruction takes 3 cycles of fetch and decode, then its pass: VOP one
    element per cycle plus 9 of drain; SVOP one element per cycle plus the ScalarUnit's 7
    (SMUL2: two passes); SOP 1 cycle (integer, store) or 9 (scalar unit); DOT ``len``
    cycles to load Q, then one 32-byte chunk of a row per cycle plus 6; AXPY per 32
    outputs one cycle per row plus 6, then one cycle per output; MATVEC the engine's
    cycles, its results written into VMEM at one per cycle (a row tile waits in the
    engine while its rows are written); TOPK ``(top_k + 2) * n``; ATTN SCORES ``len + 2``
    to load Q, one 32-byte chunk of a key row a cycle plus 12; ATTN PV per 32 outputs one
    key a cycle plus 10, then one cycle per output (attention.py); XFER (transfer.py) 1
    cycle to start (IN) once the transfer before it is over, OUT the cycles to read its
    words on chip too, WAIT until no transfer runs; END waits for it the same way. IN runs
    beside the instructions after it at up to an SDRAM word a cycle.

    What the hardware assumes of a program (the compiler's programs meet it; isa's
    Machine does not check all of it):

    - two operands of one pass in the same space only for VMEM and TMEM (two read
      ports); ROT's A in VMEM or TMEM, its B in another space;
    - a destination equal to A or disjoint from A and B (the pass reads element ``i`` a
      few cycles before it writes element ``i - 6``);
    - scalar inputs canonical (as the ScalarUnit's), SR[0]'s exponent within s12;
    - ATTN SCORES: D (the key scales, then the scores; VMEM in the compiler's programs)
      in a readable space other than B's, B in KVK; PV: A (the scores) in a space other
      than KVS and KVV, D disjoint from A, B in KVV; ``len`` within the query buffer
      (``max(hidden, head_dim, vocab)``, as DOT's);
    - PROG_END when ``pc`` reaches ``prog_words`` (the memory's end, not the program's;
      with SDRAM, 2**16: a longer program streams through PROG, overlay.py);
    - XFER (with ``sdram``): IN of EMB, HEAD, KVK, KVV, EMBS, HEADS, KVS, VMEM, TMEM, WGT
      and PROG (c_space ``isa.XFER_PROG``; not into the half that runs: overlay.py), OUT
      of those but WGT and PROG; any other space (WGT OUT, a space XFER does not reach)
      stops the run with BAD_OPCODE. Its addresses and
      sizes in range and aligned as isa's Machine checks them (the on-chip address of a
      row space a multiple of 8, WGT moved in whole tile words), the two addresses wrap
      at their widths. No access to the words of a running transfer (isa's Machine
      checks it). Without ``sdram`` (no ``sdram``/``wgt`` ports) a program has no XFER:
      the VM does not finish a step with one (it is not decoded).
    """

    FEATURES = Feature.SMUL2 | Feature.ATTN

    def __init__(self, limits, engine_config):
        if not isinstance(limits, DeviceLimits):
            raise TypeError(f"limits must be a DeviceLimits, not {limits!r}")
        if not isinstance(engine_config, EngineConfig):
            raise TypeError(f"engine_config must be an EngineConfig, not {engine_config!r}")
        lacks = limits.features & ~int(self.FEATURES)       # (~ of an IntFlag stays in it)
        if lacks:
            raise ValueError(f"limits.features asks for instructions this vector machine does "
                             f"not run (bits {lacks:#x}; it runs {self.FEATURES!r})")
        self.limits, self.engine_config = limits, engine_config
        sdram = {}
        if limits.sdram:
            sdram = {"sdram": Out(StreamsSignature(max(1, (limits.sdram_words - 1).bit_length()),
                                                  XFER_BITS)),
                     "wgt": Out(WeightWriteSignature(max(1, (engine_config.weight_words - 1)
                                                         .bit_length()),
                                                     engine_config.word_bytes))}
        super().__init__({
            "load": In(stream.Signature(load_layout())),
            "peek_req": In(stream.Signature(peek_layout())),
            "peek": Out(stream.Signature(64)),
            "run": In(stream.Signature(run_layout())),
            "done": Out(stream.Signature(result_layout())),
            "engine": Out(EngineSignature(engine_config)),
            "busy": Out(1),
            **sdram,
        })

    def elaborate(self, platform):
        m = Module()
        dp = MachineDatapath(m, self)
        MachineSequencer(m, self, dp).build()
        # the VOP pipeline's writes come after the states': its last stage wins
        dp.vop_writes()
        return m

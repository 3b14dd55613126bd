"""LiteDRAM's SDR SDRAM controller as plain Verilog, generated with Migen at build time.

LiteDRAM (``litedram``, ``litex``, ``migen`` from PyPI) is the controller every LiteX SoC
on the ULX3S runs; its standalone generator covers DDR3 only, so this module builds the
SDR core the way litex-boards' ``radiona_ulx3s`` target does: ``GENSDRPHY`` (1:1) and
``LiteDRAMCore`` with the module's geometry and timings, one native port. What a LiteX
SoC's CPU does at boot (the BIOS's DFII init sequence) is a small hardware sequencer
here, so the core comes out of reset, initialises the SDRAM and raises ``init_done``.

Two variants share the controller, its settings and the port:

``board``  the PHY drives the SDRAM pins (``sdram_*``; ``sdram_dq`` is inout), with the
           ECP5 I/O registers (LiteX's Lattice lowering of its SDR I/O specials).
``model``  the PHY is LiteDRAM's ``SDRAMPHYModel`` with the board PHY's settings (read
           latency, CAS latency), the whole memory behind it, and its
           ``DFITimingsChecker`` (tRP, tRCD, tRAS, tRC, tWR, tWTR, tRFC, tRRD, tCCD): every
           violation it prints also raises the sticky ``timing_violation`` output, as does
           a refresh gap longer than :data:`REFRESH_GAP_LIMIT` refresh intervals, so a
           simulation can fail on it. This is the simulated board's SDRAM.

The native port is LiteDRAM's: ``cmd`` (``valid``/``ready``/``we``/``addr``, one
``data_width`` word per address), ``wdata`` (``valid``/``ready``/``data``/``we``: byte
enables) and ``rdata`` (``valid``/``data``; reads return in order, and the port does not
wait: whoever issues a read must be able to take its data, see
:class:`rtl.sdram.controller.BurstReader`).

The port is in the controller's clock (``sys_clk``), or with ``user_domain`` in a clock of
its own (``user_clk``, any frequency) through LiteDRAM's ``LiteDRAMNativePortCDC``
(:func:`_user_port`), optionally wider than the controller's word (``port_data_width``),
so that a slower user clock can still take the SDRAM's whole bandwidth.
"""

import copy
import re
from functools import reduce
from operator import or_
from dataclasses import dataclass

MODULES = ("MT48LC16M16", "AS4C32M16")     # the ULX3S's 32 MB part, and the 64 MB one
VARIANTS = ("board", "model")
RATES = ("1:1", "1:2")     # GENSDRPHY (SDRAM at the controller's clock) or HalfRateGENSDRPHY (twice it)
POWER_UP_US = 200          # CKE high with NOPs before the first command (datasheet: 100 us)
CHIP_DATA_BITS = 16       # the ULX3S's SDRAM is x16
REFRESH_GAP_LIMIT = 9      # the model flags a gap of more than this many tREFI between refreshes
# LiteDRAMNativePortCDC's asynchronous FIFOs (entries; powers of two). Its default command
# FIFO (4) held a 32-bit port at 30 MHz to 0.992 words a cycle; 8 gives 0.999.
CDC_CMD_DEPTH = 8
CDC_WDATA_DEPTH = 16
CDC_RDATA_DEPTH = 32       # at least the reads a BurstReader keeps in flight (its fifo_depth)


@dataclass(frozen=True)
class SdramGeometry:
    """What a user of the port needs to know of the generated core."""
    module: str
    clk_freq: float
    address_width: int       # port address bits: one address per data_width word
    data_width: int
    nbanks: int
    nrows: int
    ncols: int
    cl: int
    read_latency: int        # DFI read latency of the PHY (cycles)
    user_domain: bool = False    # the port is in its own clock domain (user_clk)
    controller_data_width: int = 0   # the controller's word (bits a cycle at clk_freq)

    def __post_init__(self):
        if not self.controller_data_width:
            object.__setattr__(self, "controller_data_width", self.data_width)

    @property
    def size_bytes(self):
        # columns are the chip's 16-bit words (the port's words are wider at half rate)
        return self.nbanks * self.nrows * self.ncols * CHIP_DATA_BITS // 8

    @property
    def peak_bytes_per_cycle(self):
        return self.data_width // 8


def _sdram_pads(module, databits):
    from migen.genlib.record import Record

    g = module.geom_settings
    return Record([("a", g.addressbits), ("ba", g.bankbits), ("cs_n", 1), ("cke", 1),
                   ("ras_n", 1), ("cas_n", 1), ("we_n", 1), ("dq", databits),
                   ("dm", databits // 8)])


def _init_sequencer(dfii, phy_settings, timing, clk_freq):
    """Drives the DFI (through the injector's external port) with the SDR power-up
    sequence of the module's datasheet, then hands the DFI to the controller:
    CKE high with NOPs for :data:`POWER_UP_US`, PRECHARGE ALL, two AUTO REFRESH,
    LOAD MODE REGISTER (burst length 1, sequential, CAS latency ``cl``); every wait
    at least the module's timing (tRP, tRFC, tMRD = 2 clocks)."""

    from migen import FSM, If, Module, NextState, NextValue, Signal

    m = Module()
    m.done = Signal()
    # commands go out on phase 0; every phase (two at half rate) holds CKE and NOP
    phases = dfii.ext_dfi.phases
    phase = phases[0]
    wait = Signal(max=int(clk_freq * POWER_UP_US * 1e-6) + 2)
    # burst length: one word per phase (LiteDRAM's SDR init sets BL = nphases)
    mode = (phy_settings.nphases.bit_length() - 1) | (phy_settings.cl << 4)
    # (ras, cas, we, address, cycles to wait after it)
    steps = [
        ("POWER_UP", None, int(clk_freq * POWER_UP_US * 1e-6)),
        ("PRECHARGE_ALL", (1, 0, 1, 0x400), timing.tRP + 1),
        ("REFRESH_1", (1, 1, 0, 0), timing.tRFC + 1),
        ("REFRESH_2", (1, 1, 0, 0), timing.tRFC + 1),
        ("MODE_REGISTER", (1, 1, 1, mode), 2 + 1),
    ]
    for p in phases:
        m.comb += [p.cke.eq(1), p.cs_n.eq(1), p.ras_n.eq(1), p.cas_n.eq(1), p.we_n.eq(1)]
    m.comb += dfii.ext_dfi_sel.eq(~m.done)
    fsm = FSM(reset_state=steps[0][0])
    m.submodules.fsm = fsm
    names = [s[0] for s in steps] + ["DONE"]
    for (name, cmd, cycles), following in zip(steps, names[1:]):
        issue = []
        if cmd is not None:
            ras, cas, we, address = cmd
            issue = [phase.cs_n.eq(0), phase.ras_n.eq(~ras), phase.cas_n.eq(~cas),
                     phase.we_n.eq(~we), phase.address.eq(address), phase.bank.eq(0)]
        fsm.act(name,
            If(wait == 0, *issue),
            If(wait == cycles,
                NextValue(wait, 0), NextState(following)
            ).Else(NextValue(wait, wait + 1)))
    fsm.act("DONE", m.done.eq(1))
    return m


BANK_MEMORY = "sdram_bank{}"     # the model's memory of bank i, in the Verilog
BACK_DOOR_ARG = "sdram_bank{}"    # the plusarg naming the image file of bank i


def _name_bank_memories(phy, bank_model):
    """Name the model's bank memories :data:`BANK_MEMORY` (bank order), for the back door."""
    from migen.fhdl.specials import Memory

    banks = [sub for _, sub in phy._submodules if isinstance(sub, bank_model)]
    for i, bank in enumerate(banks):
        (mem,) = [s for s in bank._fragment.specials if isinstance(s, Memory)]
        mem.name_override = BANK_MEMORY.format(i)


def with_back_door(text, nbanks):
    """The model core's Verilog with a back door: a simulation run with the plusarg
    ``+sdram_bank<i>=<file>`` starts with bank i's memory loaded from ``file``
    (``$readmemh``: hex words of the controller's width, ``@index`` lines; see
    :func:`rtl.sdram.device_sdram.model_bank_images`); without it, as before."""
    for i in range(nbanks):
        name = BANK_MEMORY.format(i)
        decl = re.search(rf"^reg \[\d+:0\] {name}\[0:\d+\];$", text, re.M)
        if decl is None:
            raise ValueError(f"the SDRAM model's Verilog has no memory {name}")
        path = f"{name}_image"
        door = (f"\n// back door: +{BACK_DOOR_ARG.format(i)}=<file> loads this bank ($readmemh)\n"
                f"reg [8*1024-1:0] {path};\n"
                f"initial if ($value$plusargs(\"{BACK_DOOR_ARG.format(i)}=%s\", {path})) "
                f"$readmemh({path}, {name});")
        text = text[:decl.end()] + door + text[decl.end():]
    return text


def _split_port(port_from, port_to):
    """A wide port on a narrow one, ``ratio = port_from.data_width // port_to.data_width``
    narrow commands for each wide one, back to back: the command of the first narrow word
    goes out on the cycle the wide one arrives, so the controller gets one a cycle.
    LiteDRAM's own ``LiteDRAMNativePortDownConverter`` does the same with a state machine
    that takes a cycle to accept each wide command, ``ratio / (ratio + 1)`` of the
    controller's rate. The data are split and joined by LiteX's ``StrideConverter`` as
    there (lowest bits at the lowest address)."""
    from litex.soc.interconnect import stream
    from migen import If, Module, Signal

    m = Module()
    ratio = port_from.data_width // port_to.data_width
    count = Signal(max=ratio)
    last = count == ratio - 1
    m.comb += [
        port_to.cmd.valid.eq(port_from.cmd.valid),
        port_to.cmd.we.eq(port_from.cmd.we),
        port_to.cmd.addr.eq(port_from.cmd.addr * ratio + count),
        port_from.cmd.ready.eq(port_to.cmd.ready & last),
    ]
    m.sync += If(port_to.cmd.valid & port_to.cmd.ready,
                 If(last, count.eq(0)).Else(count.eq(count + 1)))
    wdata = stream.StrideConverter(port_from.wdata.description, port_to.wdata.description)
    rdata = stream.StrideConverter(port_to.rdata.description, port_from.rdata.description)
    m.submodules += wdata, rdata
    m.submodules += stream.Pipeline(port_from.wdata, wdata, port_to.wdata)
    m.submodules += stream.Pipeline(port_to.rdata, rdata, port_from.rdata)
    return m


def _user_port(top, core, user_domain, data_width, converter):
    """The native port the Verilog exposes, with ``init_done`` (and the model's
    ``timing_violation``) in the port's clock domain: ``sys`` (the controller's), or with
    ``user_domain`` a second clock domain ``user`` behind LiteDRAM's
    ``LiteDRAMNativePortCDC`` (asynchronous FIFOs for commands, write data and read data).
    ``data_width`` a multiple of the controller's word (its ``data_width``, or None) is
    converted on the controller's side, before the crossing, so the crossing moves wide
    words at the user clock's rate (LiteDRAM's ``get_port(clock_domain=..., data_width=...)``
    converts after it, in the user domain, where the narrow words cross one a user cycle)."""
    from litedram.common import LiteDRAMNativePort
    from litedram.frontend.adapter import LiteDRAMNativePortCDC
    from migen import Signal
    from migen.genlib.cdc import MultiReg

    native = top.controller_data_width = core.crossbar.controller.data_width
    data_width = data_width or native
    if converter == "litedram" or data_width == native:
        port = core.crossbar.get_port(data_width=data_width)
    else:
        narrow = core.crossbar.get_port()
        shift = (data_width // native).bit_length() - 1
        port = LiteDRAMNativePort("both", narrow.address_width - shift, data_width)
        top.submodules += _split_port(port, narrow)
    if not user_domain:
        top.timing_violation_user = top.timing_violation
        return port
    user = LiteDRAMNativePort("both", port.address_width, port.data_width, clock_domain="user")
    top.submodules += LiteDRAMNativePortCDC(user, port, cmd_depth=CDC_CMD_DEPTH,
                                            wdata_depth=CDC_WDATA_DEPTH, rdata_depth=CDC_RDATA_DEPTH)
    # the port does not wait for read data (as the controller's own): a reader keeps at most
    # CDC_RDATA_DEPTH reads in flight, so the crossing's read FIFO (and the converter before
    # it) never fills
    top.comb += user.rdata.ready.eq(1)
    init_done, violation = Signal(), Signal()
    top.specials += [MultiReg(top.init_done, init_done, "user"),
                     MultiReg(top.timing_violation, violation, "user")]
    top.init_done, top.timing_violation_user = init_done, violation
    return user


def _core(variant, module_name, clk_freq, violation_limit_cycles=None, controller_timings=None,
          rate="1:1", user_domain=False, port_data_width=None, converter="pipelined"):
    import litedram.modules
    import litedram.phy.model as phy_model
    from litedram.core import LiteDRAMCore
    from litedram.core.controller import ControllerSettings
    from litedram.phy import GENSDRPHY, HalfRateGENSDRPHY
    from migen import ClockSignal, Display, If, Module, ResetSignal, Signal

    top = Module()
    module = getattr(litedram.modules, module_name)(clk_freq, rate)
    pads = _sdram_pads(module, CHIP_DATA_BITS)
    phy_class = GENSDRPHY if rate == "1:1" else HalfRateGENSDRPHY
    board_phy = phy_class(pads, sys_clk_freq=clk_freq)
    top.ios = set()
    top.timing_violation = Signal()
    if variant == "board":
        phy = board_phy
        for name in ("a", "ba", "cs_n", "cke", "ras_n", "cas_n", "we_n", "dq", "dm"):
            sig = getattr(pads, name)
            sig.name_override = f"sdram_{name}"
            top.ios.add(sig)
    else:
        flag = top.timing_violation
        # every violation the checker prints also raises the sticky flag
        real_display = phy_model.Display
        phy_model.Display = lambda *args: [real_display(*args), flag.eq(1)]
        try:
            phy = phy_model.SDRAMPHYModel(module, settings=board_phy.settings, clk_freq=clk_freq,
                                          verbosity=phy_model.SDRAM_VERBOSE_STD)
        finally:
            phy_model.Display = real_display
        _name_bank_memories(phy, phy_model.BankModel)
    top.submodules.phy = phy
    timing = module.timing_settings
    if controller_timings:
        # tests only: a controller told wrong timings, to see the checker catch it (the
        # checker takes the module's own datasheet figures, not these)
        timing = copy.copy(timing)
        for key, value in controller_timings.items():
            setattr(timing, key, value)
    core = LiteDRAMCore(phy, module.geom_settings, timing, clk_freq,
                        controller_settings=ControllerSettings())
    top.submodules.core = core
    init = _init_sequencer(core.dfii, board_phy.settings, module.timing_settings, clk_freq)
    top.submodules.init = init
    top.init_done = init.done
    port = _user_port(top, core, user_domain, port_data_width, converter)

    if variant == "model":
        # a refresh gap the checker's 64 ms window would not see in a short simulation
        gap_limit = violation_limit_cycles or REFRESH_GAP_LIMIT * module.timing_settings.tREFI
        since = Signal(max=gap_limit + 2)
        is_refresh = Signal()
        top.comb += is_refresh.eq(reduce(or_, [~p.cs_n & ~p.ras_n & ~p.cas_n & p.we_n
                                               for p in phy.dfi.phases]))
        top.sync += If(~init.done | is_refresh, since.eq(0)).Elif(since <= gap_limit, since.eq(since + 1))
        top.sync += If(since == gap_limit,
                       Display("refresh gap of more than %d cycles", gap_limit),
                       top.timing_violation.eq(1))

    io = {}
    def expose(name, sig, direction):
        io[name] = (sig, direction)
    expose("init_done", top.init_done, "o")
    expose("cmd_valid", port.cmd.valid, "i")
    expose("cmd_ready", port.cmd.ready, "o")
    expose("cmd_we", port.cmd.we, "i")
    expose("cmd_addr", port.cmd.addr, "i")
    expose("wdata_valid", port.wdata.valid, "i")
    expose("wdata_ready", port.wdata.ready, "o")
    expose("wdata_data", port.wdata.data, "i")
    expose("wdata_we", port.wdata.we, "i")
    expose("rdata_valid", port.rdata.valid, "o")
    expose("rdata_data", port.rdata.data, "o")
    if variant == "model":
        expose("timing_violation", top.timing_violation_user, "o")
    top.port_io = io
    top.port = port
    top.module = module
    top.phy_settings = board_phy.settings
    return top


def litedram_verilog(*, variant="model", module="MT48LC16M16", clk_freq=50e6, name="litedram_sdr",
                     refresh_gap_limit=None, controller_timings=None, rate="1:1", user_domain=False,
                     port_data_width=None, converter="pipelined"):
    """Return ``(verilog_text, ports, geometry)`` of the SDR core: ``ports`` maps each
    port name of the Verilog module to ``(width, direction)`` (``"i"``, ``"o"``, ``"io"``;
    the controller's clock is ``sys_clk`` at ``clk_freq``, its reset ``sys_rst``).

    With ``user_domain`` the native port, ``init_done`` and ``timing_violation`` are in a
    second clock domain, ``user_clk`` / ``user_rst``, of any frequency (see
    :func:`_user_port`); ``port_data_width`` widens the port (the controller's word times a
    power of two, one address per wide word). ``converter="litedram"`` widens it with
    LiteDRAM's own ``LiteDRAMNativePortConverter`` instead of :func:`_split_port`, for the
    comparison in docs/sdram.md (two thirds of the rate at twice the width)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    if module not in MODULES:
        raise ValueError(f"SDRAM module must be one of {', '.join(MODULES)}, not {module!r}")
    if rate not in RATES:
        raise ValueError(f"rate must be one of {', '.join(RATES)}, not {rate!r}")
    # the controller's word: the chip's, once per phase (two at half rate)
    native = CHIP_DATA_BITS * (RATES.index(rate) + 1)
    if port_data_width not in (None, native) and not user_domain:
        raise ValueError(f"a port wider than the controller's word ({native} bits) needs "
                         f"user_domain: in one domain the controller's word a cycle is its rate")
    if port_data_width is not None and (
            port_data_width < native or port_data_width % native
            or (port_data_width // native) & (port_data_width // native - 1)):
        raise ValueError(f"port data width must be the controller's ({native} bits) times a power "
                         f"of two, not {port_data_width}")
    from migen import ClockDomain, Signal
    from migen.fhdl import verilog
    from migen.genlib.cdc import MultiReg

    top = _core(variant, module, clk_freq, refresh_gap_limit, controller_timings, rate,
                user_domain, port_data_width, converter)
    top.clock_domains.cd_sys = ClockDomain("sys")
    ios = {top.cd_sys.clk, top.cd_sys.rst} | top.ios
    ports = {"sys_clk": (1, "i"), "sys_rst": (1, "i")}
    if user_domain:
        # Either reset resets both sides (the controller, which then runs its power-up
        # sequence again, and both ends of the crossing), each released two of its own
        # cycles after the later of the two: LiteDRAMNativePortCDC resets each end of its
        # FIFOs in its own domain only, and an end left out of reset meanwhile would read
        # the other's stale pointers (a command popped twice, a word lost).
        top.clock_domains.cd_user = ClockDomain("user")
        sys_rst, user_rst = Signal(name_override="sys_rst"), Signal(name_override="user_rst")
        for cd in (top.cd_sys, top.cd_user):
            cd.rst.name_override = f"{cd.name}_rst_both"
            top.specials += MultiReg(sys_rst | user_rst, cd.rst, cd.name, reset=1)
        ios = {top.cd_sys.clk, sys_rst, top.cd_user.clk, user_rst} | top.ios
        ports.update({"user_clk": (1, "i"), "user_rst": (1, "i")})
    if variant == "board" and rate == "1:2":
        # the half-rate PHY drives the pins from a clock at twice sys, in phase with it
        top.clock_domains.cd_sys2x = ClockDomain("sys2x")
        ios |= {top.cd_sys2x.clk, top.cd_sys2x.rst}
        ports.update({"sys2x_clk": (1, "i"), "sys2x_rst": (1, "i")})
    for port_name, (sig, direction) in top.port_io.items():
        sig.name_override = port_name
        ios.add(sig)
        ports[port_name] = (len(sig), direction)
    for sig in top.ios:
        ports[sig.name_override] = (len(sig), "io" if sig.name_override == "sdram_dq" else "o")
    special_overrides = {}
    if variant == "board":
        from litex.build.lattice.common import lattice_ecp5_trellis_special_overrides
        special_overrides = lattice_ecp5_trellis_special_overrides
    text = str(verilog.convert(top, ios=ios, name=name, special_overrides=special_overrides))
    g = top.module.geom_settings
    if variant == "model":
        text = with_back_door(text, 2 ** g.bankbits)
    geometry = SdramGeometry(module=module, clk_freq=clk_freq, address_width=len(top.port.cmd.addr),
                             data_width=len(top.port.wdata.data), nbanks=2 ** g.bankbits,
                             nrows=2 ** g.rowbits, ncols=2 ** g.colbits, cl=top.phy_settings.cl,
                             read_latency=top.phy_settings.read_latency,
                             user_domain=bool(user_domain),
                             controller_data_width=top.controller_data_width)
    return text, ports, geometry

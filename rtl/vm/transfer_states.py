"""The sequencer's side of XFER (a device with SDRAM): its operands, and the states that
hand a transfer to the transfer unit (transfer.py) and wait for it."""

from amaranth import Cat, Mux

from ternary_core.offload.isa import DynSrc, MachineStatus, Op, XFn

from .transfer import IN_SPACES, OUT_SPACES


def latch_transfer_operands(seq):
    """OPERANDS: an XFER's on-chip and SDRAM words with their dynamic offsets (``(pos or
    token) << k`` where its ``c_dyn`` / ``s_dyn`` is set) and its SDRAM words, ``n`` plus
    ``pos << npos_k`` (:func:`ternary_core.offload.semantics.xfer_addresses`,
    ``element_count``), registered. Both addresses wrap at their widths."""
    m, dp = seq.m, seq.dp
    f = lambda name: dp.field(name, Op.XFER)     # noqa: E731
    dyn = Mux(f("dyn_src") == DynSrc.TOKEN, dp.token, dp.pos)
    m.d.sync += [
        dp.x_c.eq(f("c_addr") + Mux(f("c_dyn"), dyn << f("c_dyn_k"), 0)),
        dp.x_s.eq(f("s_addr") + Mux(f("s_dyn"), dyn << f("s_dyn_k"), 0)),
        dp.x_n.eq(f("n") + Mux(f("npos"), dp.pos << f("npos_k"), 0)),
    ]


def transfer_states(seq):
    """XFER: WAIT until no transfer runs; IN and OUT wait for the one before, then start
    theirs (BAD_OPCODE for a space the unit does not move that way: WGT OUT, a space
    XFER does not reach); IN then goes on at once, OUT in XFER_OUT once its
    on-chip words are read (the VM's reads of the space share the port)."""
    m, dp, xu = seq.m, seq.dp, seq.dp.xu
    space = dp.field("c_space", Op.XFER)
    out = dp.fn == XFn.OUT
    ins = IN_SPACES if xu.wgt_ok else tuple(s for s in IN_SPACES if s in OUT_SPACES)
    ok = Mux(out, Cat(*(space == s for s in OUT_SPACES)).any(),
             Cat(*(space == s for s in ins)).any())
    with m.State("XFER"):
        with m.If(dp.fn == XFn.WAIT):
            with m.If(~xu.busy):
                m.next = "NEXT"
        with m.Elif(~ok):
            seq.fail(MachineStatus.BAD_OPCODE)
        with m.Else():
            p = xu.start.payload
            m.d.comb += [xu.start.valid.eq(1), p.out.eq(out), p.space.eq(space),
                         p.c_addr.eq(dp.x_c), p.s_addr.eq(dp.x_s), p.n.eq(dp.x_n)]
            with m.If(xu.start.ready):
                with m.If(out):
                    m.next = "XFER_OUT"
                with m.Else():
                    m.next = "NEXT"
    with m.State("XFER_OUT"):
        with m.If(~xu.reading):
            m.next = "NEXT"

"""The VM's fused attention passes, ATTN SCORES and ATTN PV (docs/device-isa.md, "ATTN"):
states of the sequencer (sequencer.py) that run the DOT/AXPY lanes and the VOP pipeline
(datapath.py, with its Exp2Unit) together, one key a cycle when ``len <= 32``.

SCORES: the query is loaded as DOT's (DOT_Q), then ATTN_SCORES issues the key rows into
the lanes as DOT does; as each row's dot leaves the lanes (``dot_depth`` cycles after its
issue), the key's scale ``D[j]`` is read (on A's port: D's space) and both go into the VOP
pipeline as a MULS of the dot by that scale, which shifts, saturates to 24 bits, writes
``D[j]`` and keeps the MAX.

PV: ATTN_PV issues the scores ``A[j]`` into the VOP pipeline as EXP2 against ``IR[ir_b]``,
with the V scale of row ``j`` read from KVS on a port of its own; the pipeline multiplies
the exp2 value by the scale's mantissa, shifts, saturates to 18 bits and sums the exp2
values; as each weight leaves it (stage ``PV_WEIGHT``), V row ``j`` is issued into the
lanes, which accumulate ``w_j * row_j`` per lane as AXPY does; AXPY_WRITE writes the
outputs. With ``len > 32`` the pass runs once per 32 outputs (the sum counted in the
first).
"""

from .datapath import PV_WEIGHT, VOP_WRITE

# The drains, counted from the cycle after a pass's last row issue (drain = 0 then); the
# state acts in the cycle when drain equals them. ATTN_SCORES: the last row's dot takes
# dot_depth - 1 cycles to its VOP issue, the pipeline VOP_WRITE more to its MAX, and the
# reduction's register one: the IR write. ATTN_PV: the row is at the lanes' inputs 2
# cycles after its issue, its product 1 more, its sum 2 more: AXPY_WRITE reads the
# accumulators in the cycle after.
SCORES_DRAIN = 4 + VOP_WRITE + 1
PV_DRAIN = 3


def attention_states(seq):
    """Add ATTN_SCORES and ATTN_PV to the sequencer ``seq``'s FSM (inside its ``m.FSM``)."""
    m, dp = seq.m, seq.dp
    dr, dch, dl, depth, vi, n = dp.dr, dp.dch, dp.dl, dp.dot_depth, dp.vi, dp.n
    assert SCORES_DRAIN == depth - 1 + VOP_WRITE + 1 and SCORES_DRAIN < 1 << len(seq.drain)
    assert PV_DRAIN == depth - 2
    assert len(dp.vl) > PV_WEIGHT

    with m.State("ATTN_SCORES"):
        # D's space reads on A's port: the key's scale beside its dot
        m.d.comb += [dp.axpy.eq(0), dp.rd_a_sp.eq(dp.d_sp)]
        seq.issue_rows(n)
        with m.Else():
            m.d.sync += seq.drain.eq(seq.drain + 1)
            with m.If(seq.drain == SCORES_DRAIN):
                m.d.comb += [dp.ir_w_idx.eq(dp.red_ir), dp.ir_w_data.eq(dp.red_value_r),
                             dp.ir_w_en.eq(1)]
                m.next = "NEXT"
        # a row's dot is on the lanes' output the cycle after dl[depth - 1]: its VOP
        # issue reads D[j] now, and the pipeline takes the dot with it at stage 1
        with m.If(dl[depth - 1].valid & dl[depth - 1].last):
            m.d.comb += [dp.v_issue.eq(1), dp.rd_a.eq(dp.d_base + vi)]
            m.d.sync += vi.eq(vi + 1)

    with m.State("ATTN_PV"):
        m.d.comb += [dp.axpy.eq(1), dp.red_hold.eq(dch != 0)]
        with m.If(vi < n):
            m.d.comb += [dp.v_issue.eq(1), dp.rd_a.eq(dp.a_base + vi),
                         dp.rd_kvs.eq(dp.s_base + vi), dp.rd_kvs_en.eq(1)]
            m.d.sync += vi.eq(vi + 1)
        # row j meets its weight at the lanes' inputs: issued a stage before it leaves
        with m.If(dp.vl[PV_WEIGHT - 1].valid):
            m.d.comb += [dp.d_issue.eq(1), dp.rd_b.eq(dp.row_addr)]
            m.d.sync += dr.eq(dr + 1)
        with m.If((vi == n) & (dr == n)):
            m.d.sync += seq.drain.eq(seq.drain + 1)
            with m.If(seq.drain == PV_DRAIN):
                m.d.sync += [seq.drain.eq(0), seq.ch_w.eq(0)]
                m.next = "AXPY_WRITE"

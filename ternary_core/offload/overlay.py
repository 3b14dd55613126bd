"""A program longer than the device's PROG, streamed from the SDRAM in segments (issue
20: the program grows with the layers and the lm_head's chunks; PROG does not).

PROG's ``prog_words`` instructions are two halves of ``H = prog_words // 2``. The
program is cut into segments of ``H`` instructions, segment ``k`` run from half
``k % 2`` (instruction ``pc`` from PROG instruction ``pc % prog_words``), and the whole
program sits in the SDRAM from word ``prog_sd`` (two words an instruction, as in PROG).
Each segment's first instruction brings the next segment into the other half (an XFER IN
of PROG), its last waits for it (WAIT; the segment's spare instructions before it are
NOPs); the last segment (an odd one, in half 1) brings segment 0 back into half 0 for
the next step, and ends the step (END waits for the transfer). So a step starts with
segment 0 in half 0, as the upload left it (PROG's image: segment 0,
``Program.prog_image``).

The added instructions always run (``gen_only`` 0): a step that does not sample skips
the lm_head's instructions but walks through their segments all the same.
"""

from ..errors import TernaryError
from .isa import XFER_PROG, Instr, Op, XFn

PC_LIMIT = 1 << 16          # the VM's pc (16 bits): instructions a program may have


def segment_count(n_instrs, prog_words):
    """Segments of the program (an even number) that carries ``n_instrs`` instructions
    (its END included) on a PROG of ``prog_words``."""
    per = prog_words // 2 - 2           # a segment's own instructions (all but 2 of H)
    k = -(-(n_instrs - 1) // per)       # (END takes no room of its own: see segment())
    return max(2, k + k % 2)


def sdram_words(n_instrs, prog_words):
    """SDRAM words of the segmented program of ``n_instrs`` instructions."""
    return segment_count(n_instrs, prog_words) * (prog_words // 2) * 2


def segment(instrs, prog_words, prog_sd):
    """``instrs`` (ending with END) as the segmented program: ``segment_count`` segments of
    ``prog_words // 2`` instructions, from SDRAM word ``prog_sd``."""
    if prog_words < 8 or prog_words % 2:
        raise TernaryError(f"streaming the program from the SDRAM needs an even prog_words "
                           f">= 8; the device's is {prog_words}")
    assert instrs and instrs[-1].op == Op.END, "a step program ends with END"
    H = prog_words // 2
    body = list(instrs[:-1])
    K = segment_count(len(instrs), prog_words)
    out = []
    for k in range(K):
        nxt = (k + 1) % K
        seg = [Instr(Op.XFER, f"program: fetch segment {nxt}", fn=XFn.IN, c_space=XFER_PROG,
                     c_addr=(nxt % 2) * H * 2, s_addr=prog_sd + nxt * H * 2, n=H * 2)]
        take = H - 2
        seg += body[:take]
        del body[:take]
        if k < K - 1:
            seg += [Instr(Op.NOP, "program: (segment padding)")] * (H - 1 - len(seg))
            seg.append(Instr(Op.XFER, f"program: wait for segment {nxt}", fn=XFn.WAIT))
        else:
            seg.append(instrs[-1])
            seg += [Instr(Op.NOP, "program: (segment padding)")] * (H - len(seg))
        out += seg
    assert not body and len(out) == K * H
    if len(out) > PC_LIMIT:
        raise TernaryError(f"the streamed program has {len(out)} instructions; the VM's pc "
                         f"counts {PC_LIMIT}")
    return out

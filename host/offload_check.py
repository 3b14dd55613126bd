"""``--check`` with model offload: every position is one RUN, and after it the device's
working memory (VMEM) and the KV cache rows it wrote are read back (READ_MEM) and
compared with the same step on isa's reference :class:`~ternary_core.offload.machine.Machine`
(which its tests hold bit-exact to the integer golden model). The first difference
stops the run, naming the position and the instruction (its compiler name) whose
result differs.
"""

import copy

import numpy as np

from ternary_core.offload.isa import SPACES, RunParams, Space
from ternary_core.offload.machine import Machine

from .matvec_offload import DeviceMismatch


def snapshot(mc):
    """A copy of a Machine's state (memories and registers; program and weights shared,
    a run does not change them)."""
    snap = copy.copy(mc)
    snap.mem = {s: a.copy() for s, a in mc.mem.items()}
    snap.sdram = mc.sdram.copy()
    snap.ir, snap.sr_m, snap.sr_e = list(mc.ir), list(mc.sr_m), list(mc.sr_e)
    return snap


class ShadowCheck:
    """The reference machine beside a device, loaded with the same program, images and
    weights, stepped one position at a time with it."""

    def __init__(self, device, program, images, stacks, limits):
        self.device, self.program, self.limits = device, program, limits
        mc = self.machine = Machine(limits, device.config.layout)
        for space, (data, nb) in images.items():
            if space == Space.PROG:
                continue
            if space == Space.SDRAM:
                words = np.frombuffer(data, "<u8")
            else:
                words = [int.from_bytes(data[i:i + nb], "little") for i in range(0, len(data), nb)]
            mc.load(space, words)
        mc.load_program(program)
        for st in stacks:
            mc.write_weights(st.base, st.packed)
        self.mm = program.mm
        self.vmem_used = self.mm.vmem_used

    def step(self, pos, token, state, inv_t, top_k):
        """One position on both; returns ``(next id, cycles, state after)`` of the device,
        after checking it, VMEM and the KV rows at ``pos`` against the reference."""
        before = snapshot(self.machine)
        new, cycles, after = self.device.run_model(pos, [token], 1, state=state, inv_t=inv_t, top_k=top_k)
        self.machine.load(Space.TOKENS, [token], pos)
        res = self.machine.run(RunParams(pos0=pos, n_feed=1, n_new=1, state=state, inv_t_m=inv_t[0],
                                         inv_t_e=inv_t[1], top_k=top_k))
        if res.status:
            raise DeviceMismatch(f"--check: the reference machine stopped at position {pos} "
                                 f"(status {res.status}, instruction {res.err_pc}) where the device did not")
        diffs = self._differences(pos)
        want = int(self.machine.mem[Space.TOKENS][pos + 1])
        if diffs:
            space, addr, dev, ref = diffs[0]
            if self.program.segmented:      # (PROG's words come in from the SDRAM: no END
                pc, name = None, "not bisected (the program streams through PROG)"  # to write)
            else:
                pc = self._first_writer(before, pos, token, state, inv_t, top_k, diffs)
                name = (self.program.instrs[pc].name if pc is not None
                        else "no instruction (a stale word)")
            raise DeviceMismatch(
                f"--check: position {pos}: {len(diffs)} words differ, first {space.name}[{addr}] "
                f"(device {dev}, reference {ref}); instruction {pc}: {name}")
        if new[0] != want or after != res.state:
            raise DeviceMismatch(f"--check: position {pos}: the device sampled id {new[0]} (state "
                                 f"{after:#x}), the reference {want} (state {res.state:#x})")
        return new[0], cycles, after

    def _regions(self, pos):
        """(space, first word, words) the step at ``pos`` leaves results in."""
        mm = self.mm
        out = [(Space.VMEM, 0, self.vmem_used)]
        if mm.limits.vmem_single:       # the logits and the sampler's weights
            out.append((Space.VMEM, mm.limits.vmem_words, 2 * mm.V))
        if mm.sd is not None:           # every layer's rows at pos are in the SDRAM
            for layer in range(mm.L):
                for g in range(mm.nkv):
                    for kind in ("k", "v", "ks", "vs"):
                        per = mm.sd.kv_row_words if kind in ("k", "v") else 1
                        out.append((Space.SDRAM, mm.sd.kv_sd(kind, layer, g) + pos * per, per))
            return out
        for layer in range(mm.L):
            for g in range(mm.nkv):
                row = mm.kv_row(layer, g) + pos * mm.kv_stride
                out += [(Space.KVK, row, mm.hd), (Space.KVV, row, mm.hd)]
                out += [(Space.KVS, mm.kvs(layer, g, v) + pos, 1) for v in (0, 1)]
        return out

    def _device_words(self, pos):
        """The device's words of every region, as link-byte integers."""
        out = []
        for space, at, n in self._regions(pos):
            nb = SPACES[space].link_bytes
            raw = np.frombuffer(self.device.read_mem(space, at, n, nb), np.uint8).reshape(n, nb)
            dev = np.zeros(n, np.uint64)
            for i in range(nb):
                dev |= raw[:, i].astype(np.uint64) << np.uint64(8 * i)
            out.append(dev)
        return out

    def _ref_words(self, mc, pos):
        """A reference machine's words of every region, as link-byte integers."""
        out = []
        for space, at, n in self._regions(pos):
            if space == Space.SDRAM:
                out.append(mc.sdram[8 * at:8 * (at + n)].view("<u8").astype(np.uint64))
                continue
            mask = np.uint64((1 << (8 * SPACES[space].link_bytes)) - 1)
            out.append(mc.mem[space][at:at + n].astype(np.int64).astype(np.uint64) & mask)
        return out

    def _differences(self, pos, dev=None, ref=None):
        dev = self._device_words(pos) if dev is None else dev
        ref = self._ref_words(self.machine, pos) if ref is None else ref
        diffs = []
        for (space, at, _), d, r in zip(self._regions(pos), dev, ref):
            for i in np.nonzero(d != r)[0]:
                diffs.append((space, at + int(i), int(d[i]), int(r[i])))
        return diffs

    def _first_writer(self, before, pos, token, state, inv_t, top_k, diffs):
        """The first instruction after which the device's regions differ from the
        reference's: the device runs the step cut short by an END written at
        instruction ``k`` (its regions first put back as they were before the step),
        and ``k`` is bisected. Registers are not read back, so an instruction that only
        writes one is named through the first instruction that stores what it computed."""
        from ternary_core.offload.isa import Instr, Op, encode

        states = [self._ref_words(before, pos)]
        before.load(Space.TOKENS, [token], pos)
        before.run(RunParams(pos0=pos, n_feed=1, n_new=1, state=state, inv_t_m=inv_t[0], inv_t_e=inv_t[1],
                             top_k=top_k),
                   on_instr=lambda mc, pc, ins: states.append(self._ref_words(mc, pos)))
        dev = self.device
        regions = self._regions(pos)

        def differs(k):   # the device after instructions 0 .. k-1 vs the reference
            for (space, at, n), w in zip(regions, states[0]):
                nb = SPACES[space].link_bytes
                dev.write_mem(space, at, b"".join(int(v).to_bytes(nb, "little") for v in w), nb)
            end = encode(Instr(Op.END)) if k < len(self.program.instrs) else None
            if end is not None:     # (put back what the device holds there, not the program's)
                held = dev.read_mem(Space.PROG, 2 * k, 2, 8)
                dev.write_mem(Space.PROG, 2 * k, _instr_bytes(end), 8)
            try:
                dev.run_model(pos, [token], 1, state=state, inv_t=inv_t, top_k=top_k)
            finally:
                if end is not None:
                    dev.write_mem(Space.PROG, 2 * k, held, 8)
            return bool(self._differences(pos, ref=states[min(k, len(states) - 1)]))

        lo, hi = 0, len(states) - 1         # differs(lo) is False, differs(hi) True
        if not differs(hi):
            return None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if differs(mid):
                hi = mid
            else:
                lo = mid
        return hi - 1


def _instr_bytes(word):
    """A 128-bit instruction as its two PROG words' link bytes."""
    return (word & ((1 << 64) - 1)).to_bytes(8, "little") + (word >> 64).to_bytes(8, "little")

"""A device with the vector machine, in Python, behind the real protocol (frames in,
frames out), for testing the host's model-offload path without the RTL.

Its state is isa's reference :class:`~ternary_core.offload.machine.Machine` (memory
spaces, weight store, program); it checks requests as the RTL's command engines do
(``rtl/vm_commands.py``) and answers RUN with ``Machine.run``. The machine counts no
time, so the cycles it reports are a stand-in: 1000 a position.

INFO reports its ``limits``, ``features`` included (DeviceLimits' default: every optional
instruction, which the Python machine runs; ``features=0`` is a device without them);
``legacy_info`` reports only the fields a device had before the later ones
(``limits.LATER_FIELDS``), as an older bitstream does.
"""

import struct
from dataclasses import replace

import numpy as np

from host.transport import Transport
from ternary_core import protocol as P
from ternary_core.engine_config import EngineConfig
from ternary_core.offload.isa import SPACES, Space
from ternary_core.offload.limits import LATER_FIELDS
from ternary_core.offload.machine import Machine

CYCLES_PER_STEP = 1000


class PythonDevice(Transport):
    name = "python device"

    def __init__(self, limits, *, engine=None, max_payload=512, legacy_info=False):
        self.engine = engine or EngineConfig(rows=16, cols=16, fmt="2bit", max_m=1024, max_k=1024,
                                             weight_words=4096)
        self.limits, self.max_payload = limits.with_engine(self.engine), max_payload
        info = P.info_for(self.engine, max_payload, self.limits)
        if legacy_info:
            info = replace(info, limits=info.limits[:len(info.limits) - len(LATER_FIELDS)])
        self.info = info.pack()
        self.decoder, self.pending = P.FrameDecoder(), b""
        self.machine = Machine(self.limits, self.engine.layout)
        self.prog = {}               # PROG words (the machine takes whole instructions)
        self.prog_dirty = False
        self.requests = []           # (cmd, payload) of every request answered

    # --- transport -------------------------------------------------------------------
    def write(self, data):
        for seq, cmd, payload in self.decoder.feed(data):
            self.requests.append((cmd, payload))
            status, body = self.handle(cmd, payload)
            self.pending += P.encode_frame(seq, cmd | P.RESPONSE_BIT, bytes([status]) + body)

    def read(self, timeout):
        data, self.pending = self.pending, b""
        return data

    # --- commands --------------------------------------------------------------------
    def handle(self, cmd, p):
        S = P.LinkStatus
        if cmd == P.Cmd.INFO:
            return S.OK, self.info
        if cmd == P.Cmd.RESET:
            return S.OK, b""
        if cmd == P.Cmd.WRITE_WEIGHTS:
            (addr,) = struct.unpack_from("<I", p)
            at = addr * self.engine.word_bytes
            if len(p) < 5 or at + len(p) - 4 > self.machine.weights.size:
                return S.OUT_OF_RANGE, b""
            self.machine.write_weights(addr, p[4:])
            return S.OK, b""
        if cmd == P.Cmd.CHECK_WEIGHTS:
            addr, words = struct.unpack("<II", p)
            wb = self.engine.word_bytes
            data = self.machine.weights[addr * wb:(addr + words) * wb].tobytes()
            return S.OK, struct.pack("<I", P.check_crc(data))
        if cmd in (P.Cmd.WRITE_MEM, P.Cmd.CHECK_MEM, P.Cmd.READ_MEM):
            return self.memory_command(cmd, p)
        if cmd == P.Cmd.RUN:
            return self.run_command(p)
        return S.UNKNOWN_COMMAND, b""

    def space_of(self, p):
        (word,) = struct.unpack_from("<I", p)
        space, addr = word & 0xFF, word >> 8
        if space not in Space._value2member_map_ or Space(space) not in SPACES:
            return None, None, None
        return Space(space), addr, SPACES[Space(space)].link_bytes

    def memory_command(self, cmd, p):
        S = P.LinkStatus
        if len(p) < 4:
            return S.BAD_LENGTH, b""
        space, addr, nb = self.space_of(p)
        if space is None:
            return S.OUT_OF_RANGE, b""
        depth = self.limits.depth(space)
        if cmd == P.Cmd.WRITE_MEM:
            data = p[4:]
            if not data:
                return S.BAD_LENGTH, b""
            if not SPACES[space].uploadable:
                return S.OUT_OF_RANGE, b""
            if space == Space.SDRAM and len(data) % nb == 0:     # whole words at once
                if addr + len(data) // nb > depth:
                    return S.OUT_OF_RANGE, b""
                self.machine.load(space, np.frombuffer(data, "<u8"), addr)
                return S.OK, b""
            for i in range(len(data) // nb):
                if addr + i >= depth:
                    return S.OUT_OF_RANGE, b""
                self.poke(space, addr + i, int.from_bytes(data[i * nb:(i + 1) * nb], "little"))
            return (S.BAD_LENGTH if len(data) % nb else S.OK), b""
        n = struct.unpack_from("<I" if cmd == P.Cmd.CHECK_MEM else "<H", p, 4)[0]
        if len(p) != (8 if cmd == P.Cmd.CHECK_MEM else 6):
            return S.BAD_LENGTH, b""
        if addr >= depth or n > depth - addr or (cmd == P.Cmd.READ_MEM and n == 0):
            return S.OUT_OF_RANGE, b""
        if space == Space.SDRAM:
            data = self.machine.sdram[addr * nb:(addr + n) * nb].tobytes()
            return S.OK, (struct.pack("<I", P.check_crc(data)) if cmd == P.Cmd.CHECK_MEM else data)
        mask = (1 << (8 * nb)) - 1
        data = b"".join((self.peek(space, addr + i) & mask).to_bytes(nb, "little") for i in range(n))
        return S.OK, (struct.pack("<I", P.check_crc(data)) if cmd == P.Cmd.CHECK_MEM else data)

    def poke(self, space, addr, word):
        if space == Space.PROG:
            self.prog[addr] = word
            self.prog_dirty = True
        else:
            self.machine.load(space, [word], addr)

    def peek(self, space, addr):
        if space == Space.PROG:
            return self.prog.get(addr, 0)
        return self.machine.peek(space, addr)

    def run_command(self, p):
        S = P.LinkStatus
        try:
            params, ids = P.decode_run(p)
        except Exception:
            return S.BAD_LENGTH, b""
        pos0, n_feed, n_new = params.pos0, params.n_feed, params.n_new
        if n_feed < 1 or n_new < 1 or pos0 + n_feed + n_new > self.limits.context + 1:
            return S.OUT_OF_RANGE, b""
        if self.prog_dirty:   # the program as uploaded: two PROG words an instruction
            n = max(self.prog, default=-1) // 2 + 1
            self.machine.prog, self.machine.names = [], []
            self.machine.load(Space.PROG, [self.prog.get(i, 0) for i in range(2 * n)])
            self.prog_dirty = False
        self.machine.load(Space.TOKENS, ids, pos0)
        res = self.machine.run(params)
        if self.limits.sdram:   # PROG as the device holds it: a streamed program's XFERs wrote it
            self.prog = {i: int(w) for i, w in enumerate(self.machine.prog_mem) if w}
        if res.status:
            return S.MODEL_ERROR, P.RUN_ERROR.pack(status=res.status, err_pc=res.err_pc, err_pos=res.err_pos)
        steps = n_feed + n_new - 1
        self.machine.mem[Space.CYCLES][pos0:pos0 + steps] = CYCLES_PER_STEP
        at = pos0 + n_feed
        out = [int(t) for t in self.machine.mem[Space.TOKENS][at:at + n_new]]
        return S.OK, (P.RUN_REPLY.pack(cycles=CYCLES_PER_STEP * steps, state=res.state)
                      + struct.pack(f"<{n_new}H", *out))

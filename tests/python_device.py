"""A device with the vector machine, in Python, behind the real protocol (frames in,
frames out), for testing the host's model-offload path without the RTL.

It keeps every memory space as a sparse dict of words and the weight store as bytes,
checks requests as the RTL's command engines do (``rtl/vm_commands.py``), and answers
RUN with the run semantics of the design: either on isa's Python ``Machine`` over the
uploaded images (``machine=True``), or — a reference that needs no images — on the
integer golden model itself (:class:`~ternary_core.integer.IntegerRunner` and the
sampler), replaying the TOKENS below ``pos0`` when its cache is not that prefix.
Cycles are reported as 1000 per position (a stand-in figure).
"""

import struct

import numpy as np

from host.transport import Transport
from ternary_core import protocol as P
from ternary_core.engine_config import EngineConfig
from ternary_core.offload.isa import SPACES, Space, Status

CYCLES_PER_STEP = 1000


class PythonDevice(Transport):
    name = "python device"

    def __init__(self, model, limits, *, engine=None, max_payload=512):
        from ternary_core.integer import IntegerRunner, compile_model

        self.engine = engine or EngineConfig(rows=16, cols=16, fmt="2bit", max_m=1024, max_k=1024,
                                             weight_words=4096)
        self.limits, self.max_payload = limits.with_engine(self.engine), max_payload
        self.info = P.info_for(self.engine, max_payload, self.limits).pack()
        self.decoder, self.pending = P.FrameDecoder(), b""
        self.mem = {s: {} for s in SPACES}
        self.weights = bytearray(self.engine.word_bytes * self.engine.weight_words)
        self.compiled = compile_model(model)
        self.runner = IntegerRunner(self.compiled, max_len=model.config.max_position_embeddings)
        self.fed = []
        self.vocab = model.config.vocab_size
        self.requests = []           # (cmd, payload) of every request answered
        self.fail_at = None          # (position, Status) to stop a run with, for tests

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
        S = P.Status
        if cmd == P.Cmd.INFO:
            return S.OK, self.info
        if cmd == P.Cmd.RESET:
            return S.OK, b""
        if cmd == P.Cmd.WRITE_WEIGHTS:
            (addr,) = struct.unpack_from("<I", p)
            at = addr * self.engine.word_bytes
            if len(p) < 5 or at + len(p) - 4 > len(self.weights):
                return S.OUT_OF_RANGE, b""
            self.weights[at:at + len(p) - 4] = p[4:]
            return S.OK, b""
        if cmd == P.Cmd.CHECK_WEIGHTS:
            addr, words = struct.unpack("<II", p)
            wb = self.engine.word_bytes
            return S.OK, struct.pack("<I", P.check_crc(self.weights[addr * wb:(addr + words) * wb]))
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
        S = P.Status
        if len(p) < 4:
            return S.BAD_LENGTH, b""
        space, addr, nb = self.space_of(p)
        if space is None:
            return S.OUT_OF_RANGE, b""
        depth, mem = self.limits.depth(space), self.mem[space]
        if cmd == P.Cmd.WRITE_MEM:
            data = p[4:]
            if not data:
                return S.BAD_LENGTH, b""
            if not SPACES[space].uploadable:
                return S.OUT_OF_RANGE, b""
            for i in range(len(data) // nb):
                if addr + i >= depth:
                    return S.OUT_OF_RANGE, b""
                mem[addr + i] = int.from_bytes(data[i * nb:(i + 1) * nb], "little")
            return (S.BAD_LENGTH if len(data) % nb else S.OK), b""
        n = struct.unpack_from("<I" if cmd == P.Cmd.CHECK_MEM else "<H", p, 4)[0]
        if len(p) != (8 if cmd == P.Cmd.CHECK_MEM else 6):
            return S.BAD_LENGTH, b""
        if addr >= depth or n > depth - addr or (cmd == P.Cmd.READ_MEM and n == 0):
            return S.OUT_OF_RANGE, b""
        data = b"".join(mem.get(addr + i, 0).to_bytes(nb, "little") for i in range(n))
        return S.OK, (struct.pack("<I", P.check_crc(data)) if cmd == P.Cmd.CHECK_MEM else data)

    def run_command(self, p):
        from ternary_core.integer.fixed import Scalar
        from ternary_core.integer.sampling import IntegerSampler

        S = P.Status
        try:
            a, ids = P.decode_run(p)
        except Exception:
            return S.BAD_LENGTH, b""
        pos0, n_feed, n_new = a["pos0"], a["n_feed"], a["n_new"]
        if n_feed < 1 or pos0 + n_feed + n_new > self.limits.context + 1:
            return S.OUT_OF_RANGE, b""
        tokens = self.mem[Space.TOKENS]
        for i, t in enumerate(ids):
            tokens[pos0 + i] = t
        prefix = [tokens.get(q, 0) for q in range(pos0)]
        if self.fed[:pos0] != prefix or len(self.fed) < pos0:
            self.runner.reset()
            self.fed = []
            for t in prefix:
                self.runner.step(t)
                self.fed.append(t)
        elif len(self.fed) > pos0:     # the cache holds positions past pos0: start over
            self.runner.reset()
            self.fed = []
            for t in prefix:
                self.runner.step(t)
                self.fed.append(t)
        sampler = IntegerSampler(1.0 if a["inv_t_m"] else 0.0, a["top_k"], 0)
        sampler.state = a["state"]
        if a["inv_t_m"]:
            sampler.inv_t = Scalar(np.int64(a["inv_t_m"]), np.int64(a["inv_t_e"]))
        for pos in range(pos0, pos0 + n_feed + n_new - 1):
            t = tokens.get(pos, 0)
            if t >= self.vocab or (self.fail_at and self.fail_at[0] == pos):
                code = self.fail_at[1] if self.fail_at and self.fail_at[0] == pos else Status.BAD_TOKEN
                return S.MODEL_ERROR, P.RUN_ERROR_STRUCT.pack(code, 7, pos)
            logits = self.runner.step(t)
            self.fed.append(t)
            self.mem[Space.CYCLES][pos] = CYCLES_PER_STEP
            if pos >= pos0 + n_feed - 1:
                tokens[pos + 1] = sampler(logits)
        out = [tokens[pos0 + n_feed + i] for i in range(n_new)]
        cycles = CYCLES_PER_STEP * (n_feed + n_new - 1)
        return S.OK, (P.RUN_REPLY_STRUCT.pack(cycles, sampler.state)
                      + struct.pack(f"<{n_new}H", *out))

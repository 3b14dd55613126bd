"""Model offload: the device runs the whole decode step; the host sends ids, gets ids.

The host compiles the model once for the device's limits
(:mod:`ternary_core.offload.compiler`), uploads the memory images — each checked by
CRC read-back (CHECK_MEM) before it is used, as weights are, and not sent at all when the
device holds it already (a board keeps its memory between runs of the host) — and then
generates with
RUN requests (``docs/protocol.md``): the prompt goes in one request (or a few prefill
requests if it outgrows a frame) and the generated ids come back a chunk at a time.

Past the model's context the window slides exactly as :class:`host.generate.SlidingWindow`
does for every other backend (:func:`plan_runs` mirrors it), so the ids equal
``--backend integer``'s on any length.
"""

import sys
import time

import numpy as np

from ternary_core import protocol as P
from ternary_core.errors import TernaryError
from ternary_core.offload.isa import Space

from .errors import DeviceRejected
from .generate import GenerationResult
from .window import Window

RUN_CHUNK = 16          # ids per RUN reply: ~4 link bytes a token, and on_token every chunk


def plan_runs(run, context, prompt_ids, n_tokens, *, max_feed, chunk=RUN_CHUNK, on_token=None):
    """Generate ``n_tokens`` after ``prompt_ids`` with ``run(pos0, ids, n_new) -> new ids``
    (one RUN), sliding the window as :class:`~host.generate.SlidingWindow` does: when
    the context is full, the last ``context // 2`` tokens are fed again from position 0.

    ``max_feed`` is the most ids one RUN carries; a longer feed goes first in prefill
    RUNs of ``max_feed`` ids, ``run(pos0, ids, 1, prefill=True)``: their one sampled id
    is overwritten by the next RUN's fed ids, and ``run`` must not carry their sampler
    state on. Returns ``(ids, window_shifts, positions computed)``.
    """
    if max_feed < 2:
        raise TernaryError(f"a RUN must carry at least 2 ids, not {max_feed}")
    window = Window(context)
    out = []
    pos, pending, steps = 0, [], 0        # pending: fed ids the device has not computed

    def feed(token):
        nonlocal pos, pending
        again = window.feed(token, pos + len(pending))
        if again is None:
            pending.append(token)
        else:
            pos, pending = 0, again

    for t in prompt_ids:
        feed(t)
    while True:
        while len(pending) > max_feed:        # a prefill piece: positions pos .. pos+max_feed-1
            run(pos, pending[:max_feed], 1, prefill=True)
            steps += max_feed
            pos, pending = pos + max_feed, pending[max_feed:]
        # the first RUN returns one id: the time to it is the prefill's, as generate() has it
        n_new = min(chunk if out else 1, n_tokens - len(out), context - pos - len(pending) + 1)
        new = run(pos, pending, n_new)
        steps += len(pending) + n_new - 1
        window.seq.extend(new[:-1])    # generated ids the device fed itself
        pos += len(pending) + n_new - 1
        pending = []
        out += new
        if on_token:
            for t in new:
                on_token(t)
        if len(out) >= n_tokens:
            return out, window.shifts, steps
        feed(new[-1])


class ModelOffload:
    """A model resident on a device with the vector machine (``device.has_vm``).

    ``prepare()`` compiles and uploads; ``generate(...)`` runs. Raises
    :class:`~ternary_core.errors.TernaryError` naming the limit a model does not fit.
    """

    name = "model"

    def __init__(self, device, model, *, check=False, log=sys.stderr, chunk=RUN_CHUNK,
                 step_timeout=1.0, board_profile=None, sdram_preloaded=False):
        if not device.has_vm:
            raise TernaryError(f"--offload model: the {device.transport.name} has no vector "
                               f"machine (protocol version {device.info.version}); use "
                               f"--offload matvec")
        self.device, self.model, self.check, self.log = device, model, check, log
        self.chunk, self.step_timeout = chunk, step_timeout
        self.board_profile = board_profile     # the board the summary projects to
        # the simulated board's SDRAM already holds the image (its back door, for the bench
        # and the tests that do not exercise the upload): neither sent nor checked
        self.sdram_preloaded = sdram_preloaded
        self.limits = device_limits(device.info)
        self.positions = 0
        self.instructions = []
        self.shadow = None
        self.cycles = 0
        self.requests = 0

    # --- compile and upload -------------------------------------------------------
    def prepare(self):
        from ternary_core.integer import compile_model

        # before the slow compile: a shape the device cannot hold at all (a model streamed
        # from the SDRAM is bounded in its stacks' k only; the memory map checks the rest)
        self.limits.check(self.model.config, streamed=self.limits.sdram)
        self.compiled = compile_model(self.model)
        self.program, self.images, self.stacks = compile_for_device(self.compiled, self.limits,
                                                                    self.device.config)
        self.instructions = program_instructions(self.program)
        images = {s: im for s, im in self.images.items()
                  if not (s == Space.SDRAM and self.sdram_preloaded)}
        total = sum(len(b) for b, _ in images.values()) + sum(len(s.packed) for s in self.stacks)
        n = len(self.stacks) + len(images)
        with self.device.uploading(f"the model: {len(self.stacks)} weight stacks and "
                                   f"{len(images)} memory images", total, n, self.log):
            for st in self.stacks:
                self.device.write_packed(st.base, st.packed, resident_ok=True)
            for space, (data, word_bytes) in images.items():
                self.device.write_image(space, data, word_bytes, resident_ok=True)
        self.link_base = self._link_bytes()

    def _restore_program(self):
        """A program streamed through PROG (``program.segmented``) that stopped mid-step
        may have left a later segment in half 0, where the next run starts: PROG's image
        (segment 0) goes back (checked by CRC: nothing is sent if it is there)."""
        if self.program.segmented:
            data, word_bytes = self.images[Space.PROG]
            self.device.write_image(Space.PROG, data, word_bytes, resident_ok=True)

    def _link_bytes(self):
        s = self.device.link.stats
        return s.bytes_sent + s.bytes_received

    # --- generation -----------------------------------------------------------------
    def generate(self, prompt_ids, n_tokens, temperature=0.0, top_k=0, seed=0, on_token=None):
        """Like :func:`host.generate.generate` with an integer sampler: same ids."""
        from ternary_core.integer import IntegerSampler

        cfg = self.model.config
        if not prompt_ids:
            raise TernaryError("the prompt is empty: give --prompt text or --prompt-ids")
        if n_tokens < 1:
            raise TernaryError(f"tokens to generate must be at least 1, got {n_tokens}")
        for t in prompt_ids:
            if not 0 <= t < cfg.vocab_size:
                raise TernaryError(f"prompt token id {t} is outside the vocabulary (0..{cfg.vocab_size - 1})")
        sampler = IntegerSampler(temperature, top_k, seed)
        inv_t = (0, 0) if sampler.inv_t is None else (int(sampler.inv_t.m), int(sampler.inv_t.e))
        k = sampler.top_k if 0 < sampler.top_k < cfg.vocab_size else 0
        state = sampler.state
        context = cfg.max_position_embeddings
        max_feed = (self.device.info.max_payload - P.RUN_REQUEST.size) // P.ID_BYTES
        t0 = time.perf_counter()
        first = []

        def run(pos0, ids, n_new, prefill=False):
            nonlocal state
            steps = len(ids) + n_new - 1
            try:
                if self.check:
                    new, cycles, after = self._run_checked(pos0, ids, n_new, state, inv_t, k)
                else:
                    new, cycles, after = self.device.run_model(
                        pos0, ids, n_new, state=state, inv_t=inv_t, top_k=k,
                        timeout=self.device.link.timeout + steps * self.step_timeout)
            except DeviceRejected as exc:
                if exc.status == P.LinkStatus.MODEL_ERROR:
                    self._restore_program()
                    raise model_error(exc, self.instructions) from None
                raise
            self.cycles += cycles
            self.requests += 1
            if prefill:
                return new
            state = after
            if new and not first:
                first.append(time.perf_counter() - t0)
            for t in new:
                if not 0 <= t < cfg.vocab_size:
                    raise TernaryError(f"the device returned token id {t}, outside the vocabulary")
            return new

        out, shifts, steps = plan_runs(run, context, list(prompt_ids), n_tokens, max_feed=max_feed,
                                       chunk=self.chunk, on_token=on_token)
        self.positions += steps
        return GenerationResult(list(prompt_ids), out, "", time.perf_counter() - t0,
                                first[0] if first else 0.0, context=context, window_shifts=shifts)

    def _run_checked(self, pos0, ids, n_new, state, inv_t, top_k):
        """The RUN ``(pos0, ids, n_new)`` as one RUN a position, each checked against the
        reference machine (:mod:`host.offload_check`); same ids, cycles and state."""
        from .offload_check import ShadowCheck

        if self.shadow is None:
            self.shadow = ShadowCheck(self.device, self.program, self.images, self.stacks,
                                      self.limits)
        new, cycles = [], 0
        for p in range(pos0, pos0 + len(ids) + n_new - 1):
            i = p - pos0
            nxt, c, after = self.shadow.step(p, ids[i] if i < len(ids) else new[-1], state,
                                             inv_t, top_k)
            cycles += c
            if i >= len(ids) - 1:      # a generating position: its id and state count
                new.append(nxt)
                state = after
        return new, cycles, state

    # --- figures --------------------------------------------------------------------
    def per_token(self):
        steps = max(1, self.positions)
        return {"offload": "model", "steps": self.positions,
                "device_cycles_per_token": self.cycles / steps,
                "link_bytes_per_token": (self._link_bytes() - self.link_base) / steps}

    def summary(self, result):
        """Measured per-token figures and, for a board profile (``board_profile``), the
        tokens/s they make at its clock and UART (:func:`host.projection.project`)."""
        from .projection import board_clock, project

        t = self.per_token()
        lines = [f"device: whole model on the vector machine; per token "
                 f"{t['device_cycles_per_token']:,.0f} device cycles, "
                 f"{t['link_bytes_per_token']:,.1f} link bytes"]
        profile = self.board_profile
        if profile and t["device_cycles_per_token"] and t["link_bytes_per_token"]:
            build = "model-sdram" if self.limits.sdram else "model"
            t["projection"] = project(profile, t, *board_clock(profile, build))
            lines.append(t["projection"]["line"])
        t["summary_lines"] = lines
        return t

    def close(self):
        self.device.close()


def device_limits(info):
    """The :class:`~ternary_core.offload.limits.DeviceLimits` an INFO record reports."""
    from dataclasses import fields

    from ternary_core.offload.isa import FEATURES_ALL
    from ternary_core.offload.limits import LATER_FIELDS, DeviceLimits

    from .errors import ProtocolMismatch

    names = [f.name for f in fields(DeviceLimits)]
    needed = [n for n in names if n not in LATER_FIELDS]
    if len(info.limits) < len(needed):
        raise ProtocolMismatch(f"the device reports {len(info.limits)} model limits; this host "
                               f"needs {len(needed)} ({', '.join(needed)})")
    # a device that predates a later field (an older bitstream) implies its value: no
    # optional instructions
    values = dict(zip(names, info.limits))
    values.update({n: v for n, v in LATER_FIELDS.items() if n not in values})
    # a newer device's optional instructions that this host does not know: it never emits
    # them, as it never emits those a device lacks (a device's later fields are skipped alike)
    values["features"] &= int(FEATURES_ALL)
    try:
        return DeviceLimits(**values)
    except TernaryError as exc:
        raise ProtocolMismatch(f"the device reports impossible model limits: {exc}") from None


def model_error(exc, program=None):
    """A TernaryError for a RUN that the machine stopped (MODEL_ERROR): which status,
    at which instruction (its compiler name) and position."""
    from ternary_core.offload.isa import MachineStatus

    err = P.RUN_ERROR.unpack(exc.body[:P.RUN_ERROR.size].ljust(P.RUN_ERROR.size, b"\0"))
    code, pc, pos = err["status"], err["err_pc"], err["err_pos"]
    what = MachineStatus(code).name if code in MachineStatus._value2member_map_ else f"status {code}"
    name = ""
    if program is not None and pc < len(program):
        name = f" ({getattr(program[pc], 'name', '') or 'unnamed'})"
    return TernaryError(f"the device stopped the run: {what} at instruction {pc}{name}, "
                        f"position {pos}; no token was taken from it")


def program_instructions(program):
    """The list of :class:`~ternary_core.offload.isa.Instr` of a compiled program."""
    for attr in ("instrs", "instructions"):
        if hasattr(program, attr):
            return list(getattr(program, attr))
    return list(program)


def compile_for_device(compiled, limits, engine):
    """The step program, the memory images ``{space: (link bytes, link bytes per word)}``
    and the weight stacks (:class:`~ternary_core.offload.compiler.WeightStack`) of a
    compiled model (:func:`~ternary_core.integer.compile_model`) for a device."""
    from ternary_core.offload.compiler import compile_program
    from ternary_core.offload.memory_map import memory_images, weight_stacks

    # SMUL2 and the fused attention exactly when the device says it runs them
    program = compile_program(compiled, limits, engine=engine, **limits.compile_options())
    images = {space: image_bytes(space, words)
              for space, words in memory_images(compiled, program).items()}
    return program, images, weight_stacks(compiled, limits, engine)


def sdram_image(model, limits, engine):
    """The SDRAM image (uint64 words) of ``model`` streamed by a device of ``limits``, for
    the simulated board's back door (``Device.open_sim(..., sdram_image=...)``); None if
    the device holds the model on chip."""
    from ternary_core.integer import compile_model

    _, images, _ = compile_for_device(compile_model(model), limits, engine)
    if Space.SDRAM not in images:
        return None
    return np.frombuffer(images[Space.SDRAM][0], "<u8")


def image_bytes(space, words):
    """A space's words as link bytes: ``(bytes, bytes per word)``, each word
    little-endian in two's complement (:attr:`~ternary_core.offload.isa.SpaceInfo.link_bytes`)."""
    from ternary_core.offload.isa import SPACES

    nb = SPACES[space].link_bytes
    w = np.asarray(words)
    if w.dtype == object:                       # PROG: unsigned 64-bit Python ints
        w = np.array([int(x) & ((1 << 64) - 1) for x in w], np.uint64)
    w = w.astype(np.int64, copy=False).view(np.uint64) if w.dtype.kind == "i" else \
        w.astype(np.uint64, copy=False)
    return w.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :nb].tobytes(), nb

"""The matvec backend that sends every BitLinear to a device (board or simulated board)."""

import sys

import numpy as np

from ternary_core.errors import TernaryError
from ternary_core.golden import matvec
from ternary_core.model.names import STACKS
from ternary_core.backend import MatvecBackend


class DeviceMismatch(TernaryError):
    """``--check`` found a device result that differs from the golden model."""


def stacks(bitlinears, max_m):
    """The model's layers as stacks, in order: the names of each multi-layer
    :data:`~ternary_core.model.names.STACKS` group of one block (they share one input,
    so the device stores them stacked as one matrix, as fused-QKV engines do, and one
    matvec request runs them all), the other layers alone. A group whose members differ
    in K or whose rows add up past ``max_m`` stays unstacked."""
    keys = {}
    for name in bitlinears:
        key = (name,)
        for members in STACKS:
            for suffix in members:
                if len(members) > 1 and name.endswith("." + suffix):
                    key = (name[:-len(suffix)], members)
        keys.setdefault(key, []).append(name)
    out = []
    for names in keys.values():
        shapes = [bitlinears[n].trits.shape for n in names]
        if len({k for _, k in shapes}) == 1 and sum(m for m, _ in shapes) <= max_m:
            out.append(tuple(names))
        else:
            out += [(n,) for n in names]
    return out


def check_layers_fit(bitlinears, cfg, what):
    """Every layer must fit the engine ``cfg`` (``what`` names it): M x K within
    ``max_m`` x ``max_k``, and its words within the weight store, since even streaming
    needs room for the largest layer."""
    for name, b in bitlinears.items():
        m, k = b.trits.shape
        if m > cfg.max_m or k > cfg.max_k:
            raise TernaryError(f"layer {name} is {m}x{k}; {what} takes at most "
                               f"{cfg.max_m}x{cfg.max_k}")
        if cfg.layout.words(m, k) > cfg.weight_words:
            raise TernaryError(f"layer {name} needs {cfg.layout.words(m, k):,} weight words; "
                               f"{what} holds {cfg.weight_words:,} (--weight-words)")


class DeviceBackend(MatvecBackend):
    """Runs BitLinears on a :class:`~host.device.Device`.

    *Resident* mode uploads every layer once (each verified by CRC read-back) when the
    model fits the weight store. *Streaming* mode, used when it does not (or when asked),
    uploads layers on demand into the free memory and starts over from address 0 when
    memory runs out, so a model of any size runs, paying its weights over the link on
    every token. Layers that share an input run as one stacked matrix (:func:`stacks`):
    one request carries their input, one response all their results. A stack too big
    for the weight store at once streams one member at a time, its input sent once, so
    the device needs room only for its largest layer. With ``check``, every result is
    also computed by the golden model.
    """

    name = "device"

    def __init__(self, device, *, check=False, stream=None, log=sys.stderr, board_profile=None):
        self.device, self.check, self.stream, self.log = device, check, stream, log
        self.board_profile = board_profile     # the board the summary projects to
        self.steps = 0
        self.layers = {}

    def prepare(self, model):
        self.model = model
        cfg = self.device.config
        check_layers_fit(model.bitlinears, cfg, "the device")
        self.stacks = stacks(model.bitlinears, cfg.max_m)
        self.trits = {(n,): b.trits for n, b in model.bitlinears.items()}
        self.trits.update({s: np.vstack([model.bitlinears[n].trits for n in s])
                           for s in self.stacks if len(s) > 1})
        self.words = {key: cfg.layout.words(*t.shape) for key, t in self.trits.items()}
        self.rows = {}  # name -> (its stack, its first row in the stack's results)
        for s in self.stacks:
            at = 0
            for n in s:
                self.rows[n] = (s, at)
                at += model.bitlinears[n].trits.shape[0]
        total = sum(self.words[s] for s in self.stacks)
        if self.stream is None:
            self.stream = total > cfg.weight_words
        self.mode = "streaming" if self.stream else "resident"
        if not self.stream:
            with self.device.uploading(f"{len(model.bitlinears)} layers as {len(self.stacks)} stacks",
                                       total * cfg.word_bytes, len(self.stacks), self.log):
                for s in self.stacks:
                    self.layers[s] = self.device.upload(self.trits[s], resident_ok=True)
        else:
            print(f"streaming mode: the model needs {total:,} words, the device holds "
                  f"{cfg.weight_words:,}; layers go over the link every token", file=self.log, flush=True)
        self.link_base = self._link_bytes()
        self.cycles_base = self.device.stats.device_cycles

    def _link_bytes(self):
        s = self.device.link.stats
        return s.bytes_sent + s.bytes_received

    def _ensure(self, key):
        """The device layer of ``key`` (a stack, or one name as a 1-tuple), uploading it
        into free memory first if needed — from address 0 again when memory is full."""
        if key not in self.layers:
            if self.words[key] > self.device.free_words:  # streaming: start over
                self.device.clear()
                self.layers = {}
            self.layers[key] = self.device.upload(self.trits[key])
        return self.layers[key]

    def _run_stack(self, stack, x_q):
        """Every member's results: one matvec on the stack, or, if the stack does not
        fit the weight store at once, one per member on the input sent with the first."""
        if self.words[stack] <= self.device.config.weight_words:
            return self.device.matvec(self._ensure(stack), x_q)
        return np.concatenate([self.device.matvec(self._ensure((n,)), x_q, loaded=i > 0)
                               for i, n in enumerate(stack)])

    def run(self, names, x_q):
        if names[0].endswith("layers.0.self_attn.q_proj"):
            self.steps += 1
        results = {}
        for n in names:
            stack, at = self.rows[n]
            if stack not in results:
                results[stack] = self._run_stack(stack, x_q)
        outs = []
        for n in names:
            stack, at = self.rows[n]
            outs.append(results[stack][at:at + self.model.bitlinears[n].trits.shape[0]])
        if self.check:
            for n, got in zip(names, outs):
                want = matvec(self.model.bitlinears[n].trits, x_q)
                bad = np.nonzero(got != want)[0]
                if bad.size:
                    r = int(bad[0])
                    raise DeviceMismatch(f"--check: layer {n}, row {r}: device {int(got[r])}, "
                                         f"golden {int(want[r])} ({bad.size} rows differ)")
        return outs

    def per_token(self):
        """Measured per-token figures of the steps so far."""
        steps = max(1, self.steps)
        cfg = self.device.config
        return {
            "mode": self.mode,
            "steps": self.steps,
            "device_cycles_per_token": (self.device.stats.device_cycles - self.cycles_base) / steps,
            "link_bytes_per_token": (self._link_bytes() - self.link_base) / steps,
            "weight_words_per_token": sum(self.words[s] for s in self.stacks),
            "engine": f"{cfg.rows}x{cfg.cols} {cfg.fmt}",
        }

    def summary(self, result):
        """Figures for the end of a run: measured per-token costs, and what the same run
        would reach on the board (see :func:`host.projection.project`)."""
        from .projection import board_clock, project

        t = self.per_token()
        lines = [f"device: {t['engine']} engine, {t['mode']} weights; per token "
                 f"{t['device_cycles_per_token']:,.0f} device cycles, "
                 f"{t['link_bytes_per_token']:,.0f} link bytes"]
        profile = self.board_profile
        proj = project(profile, t, *board_clock(profile)) if profile else None
        if proj:
            t["projection"] = proj
            lines += [proj["line"], proj["line_bauds"]]
        t["summary_lines"] = lines
        return t

    def close(self):
        self.device.close()

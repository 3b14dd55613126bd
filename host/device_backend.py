"""The matvec backend that sends every BitLinear to a device (board or simulated board)."""

import sys
import time

import numpy as np

from ternary_core.errors import TernaryError
from ternary_core.golden import matvec
from ternary_core.reference import MatvecBackend


class DeviceMismatch(TernaryError):
    """``--check`` found a device result that differs from the golden model."""


class DeviceBackend(MatvecBackend):
    """Runs BitLinears on a :class:`~host.device.Device`.

    *Resident* mode uploads every layer once (each verified by CRC read-back) when the
    model fits the weight store. *Streaming* mode, used when it does not (or when asked),
    uploads layers on demand into the free memory and starts over from address 0 when
    memory runs out, so a model of any size runs, paying its weights over the link on
    every token. Layers that share an input (q/k/v, gate/up) run as one MATVEC_GROUP
    request when they fit the weight store together; when they do not, they stream one
    layer at a time on activations loaded once, so the device needs room only for its
    largest layer. With ``check``, every result is also computed by the golden model.
    """

    name = "device"

    def __init__(self, device, *, check=False, stream=None, log=sys.stderr):
        self.device, self.check, self.stream, self.log = device, check, stream, log
        self.steps = 0
        self.layers = {}

    def prepare(self, model):
        self.model = model
        cfg = self.device.config
        for name, b in model.bitlinears.items():
            m, k = b.trits.shape
            if m > cfg.max_m or k > cfg.max_k:
                raise TernaryError(f"layer {name} is {m}x{k}; the device takes at most "
                                   f"{cfg.max_m}x{cfg.max_k}")
        self.words = {n: cfg.layout.words(*b.trits.shape) for n, b in model.bitlinears.items()}
        total = sum(self.words.values())
        largest = max(self.words, key=self.words.get)
        if self.words[largest] > cfg.weight_words:
            raise TernaryError(f"layer {largest} needs {self.words[largest]:,} weight words; the "
                               f"device holds {cfg.weight_words:,} (--weight-words)")
        if self.stream is None:
            self.stream = total > cfg.weight_words
        self.mode = "streaming" if self.stream else "resident"
        if not self.stream:
            t0 = time.perf_counter()
            print(f"uploading {len(self.words)} layers ({total * cfg.word_bytes:,} bytes) to the "
                  f"{self.device.transport.name} ...", file=self.log, flush=True)
            for name in model.bitlinears:
                self.layers[name] = self.device.upload(model.bitlinears[name].trits)
            print(f"uploaded and verified in {time.perf_counter() - t0:.1f} s", file=self.log, flush=True)
        else:
            print(f"streaming mode: the model needs {total:,} words, the device holds "
                  f"{cfg.weight_words:,}; layers go over the link every token", file=self.log, flush=True)
        self.link_base = self._link_bytes()
        self.cycles_base = self.device.stats.device_cycles

    def _link_bytes(self):
        s = self.device.link.stats
        return s.bytes_sent + s.bytes_received

    def _ensure(self, names):
        missing = [n for n in names if n not in self.layers]
        if not missing:
            return
        need = sum(self.words[n] for n in missing)
        if need > self.device.free_words:  # start over at address 0 (streaming)
            self.device.clear()
            self.layers = {}
            missing = list(names)
        for n in missing:
            self.layers[n] = self.device.upload(self.model.bitlinears[n].trits)

    def run(self, names, x_q):
        if names[0].endswith("layers.0.self_attn.q_proj"):
            self.steps += 1
        if sum(self.words[n] for n in names) <= self.device.config.weight_words:
            self._ensure(names)
            outs = self.device.run_group([self.layers[n] for n in names], x_q)
        else:  # the group does not fit at once: one layer at a time, the input sent once
            self.device.load_activations(x_q)
            outs = []
            for n in names:
                self._ensure([n])
                outs += self.device.run_group([self.layers[n]], x_q, loaded=True)
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
            "weight_words_per_token": sum(self.words.values()),
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
        profile = getattr(self, "board_profile", None)
        proj = project(profile, t, *board_clock(profile)) if profile else None
        if proj:
            t["projection"] = proj
            lines += [proj["line"], proj["line_bauds"]]
        t["summary_lines"] = lines
        return t

    def close(self):
        self.device.close()

"""The ``Device`` API: one engine behind a link, as the host's BitNet loop sees it."""

import contextlib
import struct
from dataclasses import dataclass

import numpy as np

from ternary_core import protocol as P
from ternary_core.checks import int8_vector, ternary_matrix
from ternary_core.engine_config import EngineConfig
from ternary_core.errors import TernaryError
from ternary_core.formats.native import FORMAT_CODES
from ternary_core.offload.isa import RunParams

from .errors import DeviceError, DeviceMute, ProtocolMismatch
from .link import Link
from .progress import ProgressLine
from .transport import SerialTransport, SimulatedBoardTransport

FORMAT_NAMES = {v: k for k, v in FORMAT_CODES.items()}

# An upload is written and checked (CRC-32 read back) in chunks of this many bytes: a bad
# chunk of a large image is written again alone.
CHECK_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Layer:
    """A weight matrix stored on the device: ``m x k`` trits from word ``base``."""
    base: int
    m: int
    k: int
    words: int


@dataclass
class DeviceStats:
    matvecs: int = 0
    device_cycles: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    resident: int = 0          # uploads skipped: the device already held the image (CRC)
    chunk_retries: int = 0     # chunks written again: their CRC did not read back


class Device:
    """Open with :meth:`open_serial` or :meth:`open_sim`; then :meth:`upload` layers and
    run :meth:`matvec`. Every upload is read back (CHECK_WEIGHTS) before it is used.

    A matvec is one MATVEC_READ request carrying the activations and one response
    carrying the results, each narrowed to the bytes its input can need
    (:func:`ternary_core.protocol.bound_width`). Layers that share an input are best
    uploaded stacked (``np.vstack``) as one layer: one request runs them all.

    Example::

        with Device.open_sim(board("icebreaker").engine) as dev:
            qkv = dev.upload(np.vstack([wq, wk, wv]))
            q, k, v = np.split(dev.matvec(qkv, x_q), [len(wq), len(wq) + len(wk)])

    Raises :class:`~host.errors.DeviceMute`, :class:`~host.errors.DeviceRejected`,
    :class:`~host.errors.LinkClosed` (link faults) and
    :class:`~ternary_core.errors.TernaryError` (bad arguments).
    """

    def __init__(self, transport, *, timeout=2.0, retries=6):
        self.transport = transport
        self.link = Link(transport, timeout=timeout, retries=retries)
        self.stats = DeviceStats()
        self.on_bytes = None       # progress of an upload: called with each chunk's bytes
        # the simulated board's SDRAM holds the model's image from its start (its back door)
        self.sdram_preloaded = False
        try:
            self.info = self._read_info()
        except DeviceMute:
            transport.close()
            raise DeviceMute(f"nothing answered INFO on the {transport.name}: is the board "
                             f"programmed with the ternary engine bitstream?") from None
        except DeviceError:
            transport.close()
            raise
        i = self.info
        if i.fmt not in FORMAT_NAMES:
            raise ProtocolMismatch(f"the device reports an unknown weight format code {i.fmt}")
        self.config = EngineConfig(rows=i.rows, cols=i.cols, fmt=FORMAT_NAMES[i.fmt], max_m=i.max_m,
                                   max_k=i.max_k, weight_words=i.weight_words)
        if self.config.acc_bits != i.acc_bits or self.config.result_bytes != i.result_bytes:
            raise ProtocolMismatch("the device's accumulator width does not match its max_k")
        self._next_free = 0

    @classmethod
    def open_serial(cls, port, baud=115200, **kw):
        return cls(SerialTransport(port, baud), **kw)

    @classmethod
    def open_sim(cls, config, *, max_payload=None, phy=None, log=None, vm_limits=None,
                 sdram_image=None, **kw):
        """The simulated board of ``config`` (with the vector machine of ``vm_limits``).
        ``sdram_image`` (a uint64 array, or ``(first_word, array)``; ``vm_limits`` with
        ``sdram_words``): the SDRAM holds it from the start, written by a back door
        instead of the link (:func:`sim.board.start_board`)."""
        return cls(SimulatedBoardTransport(config, max_payload=max_payload, phy=phy, log=log,
                                           vm_limits=vm_limits, sdram_image=sdram_image), **kw)

    def _read_info(self):
        body = self.link.request(P.Cmd.INFO)
        if len(body) < P.INFO_STRUCT.size or not body.startswith(P.MAGIC):
            raise ProtocolMismatch(f"the {self.transport.name} answered INFO, but not as a ternary "
                                   f"engine ({body[:8].hex()}...)")
        version = body[2]
        if version not in P.SUPPORTED_VERSIONS:
            raise ProtocolMismatch(f"the device speaks protocol version {version}; this host "
                                   f"speaks {P.PROTOCOL_VERSION}: rebuild the bitstream or update the host")
        try:
            return P.DeviceInfo.unpack(body)
        except TernaryError as exc:
            raise ProtocolMismatch(f"the {self.transport.name} sent a malformed INFO record: {exc}") from None

    # --- weights ---------------------------------------------------------------
    @property
    def free_words(self):
        return self.config.weight_words - self._next_free

    def clear(self):
        """Forget every uploaded layer (the memory is reused by later uploads)."""
        self._next_free = 0

    def upload(self, trits, *, resident_ok=False):
        """Store a ternary ``m x k`` matrix at the next free address; verify it; return a
        Layer. With ``resident_ok``, a device that holds it there already (CRC) is not
        written again."""
        w = ternary_matrix("weights", trits)
        m, k = w.shape
        self.config.check_shape(m, k)
        words = self.config.layout.words(m, k)
        if words > self.free_words:
            raise TernaryError(f"a {m}x{k} layer needs {words} words; the device has {self.free_words} free")
        layer = Layer(self._next_free, m, k, words)
        self.write_layer(layer, w, resident_ok=resident_ok)
        self._next_free += words
        return layer

    def write_layer(self, layer, trits, *, attempts=3, resident_ok=False):
        """Write ``trits`` into ``layer``'s words and check them by CRC read-back."""
        self.write_packed(layer.base, self.config.layout.pack(trits).tobytes(), attempts=attempts,
                          resident_ok=resident_ok)

    def write_packed(self, base, packed, *, attempts=3, resident_ok=False):
        """Write weight words already in the native layout from word ``base`` on, each
        chunk checked by CRC read-back (CHECK_WEIGHTS) before it is used; see
        :meth:`_write_checked`."""
        wb = self.config.word_bytes
        per_frame = (self.info.max_payload - 4) // wb  # whole words per WRITE_WEIGHTS

        def write(w0, chunk):
            for f0 in range(0, len(chunk), per_frame * wb):
                self.link.request(P.Cmd.WRITE_WEIGHTS, struct.pack("<I", w0 + f0 // wb)
                                  + chunk[f0:f0 + per_frame * wb])

        self._write_checked(packed, wb, base, write,
                            lambda w0, n: self.check_layer(Layer(w0, 0, 0, n)),
                            f"the weights at word {base}", attempts, resident_ok)

    def _write_checked(self, data, word_bytes, base, write, check, what, attempts, resident_ok):
        """Write ``data`` (whole words of ``word_bytes``, padded) from word ``base`` with
        ``write(word, bytes)`` in chunks of :data:`CHECK_CHUNK_BYTES`; read each chunk's
        CRC-32 back with ``check(word, words)`` and write it again (up to ``attempts``
        times) until it matches, so a bad chunk of a large image costs that chunk only.
        With ``resident_ok``, an image the device holds already (its CRC-32 read back
        equals the image's, the same check every chunk passes) is not written: a board
        keeps its memory between runs of the host. Progress goes to ``self.on_bytes``."""
        words = -(-len(data) // word_bytes)
        if resident_ok and check(base, words) == P.check_crc(data):
            self.stats.resident += 1
            self._advance(len(data))
            return
        self.stats.uploads += 1
        per_chunk = max(1, CHECK_CHUNK_BYTES // word_bytes)
        for w0 in range(0, words, per_chunk):
            chunk = data[w0 * word_bytes:(w0 + per_chunk) * word_bytes]
            n = min(per_chunk, words - w0)
            for _ in range(attempts):
                write(base + w0, chunk)
                self.stats.upload_bytes += len(chunk)
                if check(base + w0, n) == P.check_crc(chunk):
                    break
                self.stats.chunk_retries += 1
            else:
                raise DeviceError(f"{what}: words {base + w0}..{base + w0 + n - 1} did not read "
                                  f"back correctly after {attempts} writes")
            self._advance(len(chunk))

    def _advance(self, n_bytes):
        if self.on_bytes is not None:
            self.on_bytes(n_bytes)

    @contextlib.contextmanager
    def uploading(self, what, total_bytes, images, log, *, show_after=2.0):
        """Around the upload of ``images`` images of ``total_bytes`` in all: says what goes
        where, shows a progress line while it runs (if it takes more than a couple of
        seconds: tens of MB over a UART take minutes), and how long it took and what the
        device held already."""
        print(f"uploading {what} ({total_bytes:,} bytes) to the {self.transport.name} ...",
              file=log, flush=True)
        line, done, kept = ProgressLine(log, after=show_after), 0, self.stats.resident

        def advance(n):
            nonlocal done
            done += n
            rate = done / max(line.elapsed, 1e-9)
            line.show(f"upload: {done / 1e6:,.2f} of {total_bytes / 1e6:,.2f} MB, "
                      f"{rate / 1e3:,.1f} kB/s, {(total_bytes - done) / max(rate, 1):,.0f} s left ")

        self.on_bytes = advance
        try:
            yield
        finally:
            self.on_bytes = None
        line.show(f"upload: {done / 1e6:,.2f} MB at {done / max(line.elapsed, 1e-9) / 1e3:,.1f} kB/s"
                  + " " * 24, final=True)
        kept = self.stats.resident - kept
        note = f" ({kept} of {images} already on the device, not sent)" if kept else ""
        print(f"uploaded and verified in {line.elapsed:.1f} s{note}", file=log, flush=True)

    def check_layer(self, layer):
        body = self.link.request(P.Cmd.CHECK_WEIGHTS, struct.pack("<II", layer.base, layer.words))
        return struct.unpack("<I", body)[0]

    # --- compute ---------------------------------------------------------------
    def matvec(self, layer, x, *, loaded=False):
        """``W~ . x`` for an uploaded layer and an int8 vector: int32 numpy array.

        One MATVEC_READ request, with the activations in it unless ``loaded`` says they
        are in the activation buffer already (from the last :meth:`load_activations` or
        matvec) or they do not fit its frame (then LOAD_ACTIVATIONS goes first).
        """
        x = int8_vector("activations", x)
        if x.shape[0] != layer.k:
            raise TernaryError(f"activations have {x.shape[0]} values; the layer has K={layer.k}")
        width = min(self.config.result_bytes, P.bound_width(x))
        if 5 + layer.m * width > P.MAX_RESPONSE:  # the results alone outgrow a frame
            if not loaded:
                self.load_activations(x)
            return self.run(layer)
        acts = b""
        if not loaded:
            if P.ARG_BYTES[P.Cmd.MATVEC_READ] + layer.k <= self.info.max_payload:
                acts = x.tobytes()
            else:
                self.load_activations(x)
        body = self.link.request(P.Cmd.MATVEC_READ,
                                 P.encode_matvec_read(layer.base, width, layer.m, layer.k, acts))
        if len(body) != 4 + layer.m * width:
            raise ProtocolMismatch(f"MATVEC_READ returned {len(body)} bytes for {layer.m} results "
                                   f"of {width} bytes")
        self.stats.matvecs += 1
        self.stats.device_cycles += struct.unpack_from("<I", body)[0]
        return _sign_extend(np.frombuffer(body, dtype=np.uint8, offset=4).reshape(layer.m, width))

    def load_activations(self, x):
        """Put ``x`` in the activation buffer (shared by every following :meth:`run`)."""
        c = self.config.cols
        per_frame = (self.info.max_payload - 2) // c * c
        data = np.asarray(x, dtype=np.int8).tobytes()
        for off in range(0, len(data), per_frame):
            self.link.request(P.Cmd.LOAD_ACTIVATIONS, struct.pack("<H", off // c) + data[off:off + per_frame])

    def run(self, layer):
        """Run a matvec on the activations already loaded and read its results, with the
        protocol's version-1 commands (MATVEC, then READ_RESULTS in frames of at most
        ``max_payload``): two or more round trips where :meth:`matvec` needs one."""
        body = self.link.request(P.Cmd.MATVEC, struct.pack("<IHH", layer.base, layer.m, layer.k))
        self.stats.matvecs += 1
        self.stats.device_cycles += struct.unpack("<I", body)[0]
        rb = min(self.config.result_bytes, P.result_width(layer.k))  # narrowed on-chip
        per_frame = (self.info.max_payload - 1) // rb
        out = np.empty(layer.m, dtype=np.int32)
        for r0 in range(0, layer.m, per_frame):
            n = min(per_frame, layer.m - r0)
            raw = self.link.request(P.Cmd.READ_RESULTS, struct.pack("<HHB", r0, n, rb))
            if len(raw) != n * rb:
                raise ProtocolMismatch(f"READ_RESULTS returned {len(raw)} bytes for {n} results")
            out[r0:r0 + n] = _sign_extend(np.frombuffer(raw, dtype=np.uint8).reshape(n, rb))
        return out

    # --- the vector machine (protocol version 3) --------------------------------------
    @property
    def has_vm(self):
        """Whether the device runs the whole decode step (model offload)."""
        return self.info.has_vm

    def write_mem(self, space, word_addr, data, word_bytes):
        """WRITE_MEM ``data`` (whole words of ``word_bytes``) from ``word_addr`` on, in
        frames of at most ``max_payload``."""
        per_frame = (self.info.max_payload - P.ARG_BYTES[P.Cmd.WRITE_MEM]) // word_bytes
        for w0 in range(0, len(data) // word_bytes, per_frame):
            chunk = data[w0 * word_bytes:(w0 + per_frame) * word_bytes]
            self.link.request(P.Cmd.WRITE_MEM, P.encode_mem(space, word_addr + w0, chunk))

    def check_mem(self, space, word_addr, words):
        """CRC-32 of ``words`` words of ``space`` from ``word_addr``, as the device reads them."""
        body = self.link.request(P.Cmd.CHECK_MEM, P.encode_mem(space, word_addr, struct.pack("<I", words)))
        if len(body) != 4:
            raise ProtocolMismatch(f"CHECK_MEM returned {len(body)} bytes, not a CRC-32")
        return struct.unpack("<I", body)[0]

    def read_mem(self, space, word_addr, words, word_bytes):
        """The bytes of ``words`` words of ``space`` from ``word_addr`` (frames of at most
        ``max_payload``)."""
        per_frame = max(1, (self.info.max_payload - 1) // word_bytes)
        out = bytearray()
        for w0 in range(0, words, per_frame):
            n = min(per_frame, words - w0)
            body = self.link.request(P.Cmd.READ_MEM, P.encode_mem(space, word_addr + w0, struct.pack("<H", n)))
            if len(body) != n * word_bytes:
                raise ProtocolMismatch(f"READ_MEM returned {len(body)} bytes for {n} words of "
                                       f"{word_bytes} bytes")
            out += body
        return bytes(out)

    def write_image(self, space, words_bytes, word_bytes, *, word_addr=0, attempts=3,
                    resident_ok=False):
        """Write a memory image, each chunk checked by CRC read-back (CHECK_MEM) before it
        is used, as :meth:`write_packed` does for weights (see :meth:`_write_checked`)."""
        self._write_checked(words_bytes, word_bytes, word_addr,
                            lambda w0, chunk: self.write_mem(space, w0, chunk, word_bytes),
                            lambda w0, n: self.check_mem(space, w0, n),
                            f"memory space {space}", attempts, resident_ok)

    def run_model(self, pos0, ids, n_new, *, state, inv_t=(0, 0), top_k=0, timeout=None):
        """RUN: feed ``ids`` at positions ``pos0..``, then generate ``n_new`` ids.
        Returns ``(new_ids, cycles, state)``. A machine error raises
        :class:`~host.errors.DeviceRejected` (MODEL_ERROR and its code): never a wrong id."""
        params = RunParams(pos0=pos0, n_feed=len(ids), n_new=n_new, state=state, inv_t_m=inv_t[0],
                           inv_t_e=inv_t[1], top_k=top_k)
        body = self.link.request(P.Cmd.RUN, P.encode_run(params, ids), timeout=timeout)
        want = P.RUN_REPLY.size + P.ID_BYTES * n_new
        if len(body) != want:
            raise ProtocolMismatch(f"RUN returned {len(body)} bytes for {n_new} ids, not {want}")
        reply = P.RUN_REPLY.unpack(body)
        new = list(struct.unpack_from(f"<{n_new}H", body, P.RUN_REPLY.size))
        self.stats.device_cycles += reply["cycles"]
        return new, reply["cycles"], reply["state"]

    def reset(self):
        self.link.request(P.Cmd.RESET)

    def close(self):
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _sign_extend(rows):
    """Little-endian signed integers of ``rb`` bytes each (uint8 rows) -> int32."""
    rb = rows.shape[1]
    val = np.zeros(rows.shape[0], dtype=np.int64)
    for i in range(rb):
        val |= rows[:, i].astype(np.int64) << (8 * i)
    sign = 1 << (8 * rb - 1)
    return ((val ^ sign) - sign).astype(np.int32)

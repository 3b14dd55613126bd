"""Where a model lives on the whole-model device: the memory map (:class:`MemoryMap`) that
the program (:mod:`.compiler`) and the memory images (:func:`memory_images`,
:func:`weight_stacks`) share, so the two cannot disagree.

A model lives on chip (the weights in the engine's store, every embedding row in EMB,
every layer's KV cache in KVK/KVV/KVS) or, on a device with SDRAM where it does not fit,
in the SDRAM (:class:`SdramMap`): the weights, the embedding / lm_head rows and the KV
cache there, streamed through on-chip buffers by XFER."""

from dataclasses import dataclass

import numpy as np

from ..errors import TernaryError
from ..model import names
from .isa import ADDR_BITS, SDRAM_WORD_BYTES, Space, kv_scale_addr, scalar_word
from .limits import (DEFAULT_ENGINE, LIN_SCALE_WORDS, TMEM_PER_WORD, DeviceLimits, pow2_at_least,
                     tmem_words, vmem_regions)

assert len(names.BITLINEARS) <= LIN_SCALE_WORDS


def layer_norms(num_layers):
    """``(layer, norm name)`` of every RMSNorm in execution order (names.norm_names); the
    final norm's layer is ``num_layers``."""
    return [(i, names.layer(i) + n) for i in range(num_layers) for n in names.NORMS] + \
        [(num_layers, names.FINAL_NORM)]


def log2_exact(n):
    """log2 of a power of two (the strides of the row spaces)."""
    return int(n).bit_length() - 1


@dataclass
class WeightStack:
    """Layers stored as one matrix in the engine's weight store (one MATVEC)."""
    names: tuple
    base: int
    m: int
    k: int
    packed: bytes


@dataclass(frozen=True)
class WeightChunk:
    """Rows ``[row0, row0 + m)`` of a stack (whole row tiles but for the last): in the
    SDRAM from word ``sd`` (``words`` tile words), run from WGT word ``wgt``."""
    row0: int
    m: int
    k: int
    sd: int
    words: int
    wgt: int


class SdramMap:
    """Where a model streamed from the SDRAM lives there (64-bit word addresses), and its
    on-chip buffers: each stack in row chunks of at most half the weight store, the two
    halves taken in turn; the embedding (and lm_head) rows, ``rows`` of them a chunk, in
    the two halves of EMB (HEAD), the step's embedding row in row 0, each row's scale
    (an SDRAM word) beside it in EMBS (HEADS); the KV cache in the
    SDRAM: K rows, V rows, K scales, V scales (one SDRAM word each), each ``[layer][kv
    head][position]``, brought into an on-chip slot a KV head at a time (the step's own
    rows go out from the staging rows first: :meth:`MemoryMap.kv_row`)."""

    def __init__(self, mm, prog_words=0):
        lim, lay, c = mm.limits, mm.engine.layout, mm.config
        self._nkv, self._context = mm.nkv, mm.context
        if lay.word_bytes % SDRAM_WORD_BYTES:
            raise TernaryError(f"the engine's tile word is {lay.word_bytes} bytes; streaming "
                               f"from the SDRAM needs a multiple of {SDRAM_WORD_BYTES}")
        wpw = lay.word_bytes // SDRAM_WORD_BYTES            # SDRAM words per tile word
        half = lim.weight_words // 2
        at, turn = 0, 0
        self.chunks = {}                                    # stack's first name -> chunks
        for members, _, m, k in mm.stacks:
            kt = lay.tiles(1, k)[1]
            per = min(half // kt, lim.max_m // lay.rows)    # row tiles a chunk
            if per < 1:
                raise TernaryError(f"{members[0]}: a row of tiles ({kt} words, k = {k}) does "
                                   f"not fit half the weight store ({half} of the device's "
                                   f"weight_words {lim.weight_words}) or max_m "
                                   f"{lim.max_m} is below a tile's {lay.rows} rows")
            rows = per * lay.rows
            out = []
            for r0 in range(0, m, rows):
                mc = min(rows, m - r0)
                words = lay.words(mc, k)
                out.append(WeightChunk(r0, mc, k, at + (r0 // lay.rows) * kt * wpw, words,
                                       turn * half))
                turn ^= 1
            self.chunks[members[0]] = out
            at += lay.words(m, k) * wpw
        self.weights_words = at
        # embedding and lm_head rows
        self.emb_rows = lim.emb_buffer_rows
        if self.emb_rows < 2:
            raise TernaryError(f"streaming the embedding rows needs emb_rows >= 2; the device "
                               f"has {self.emb_rows}")
        self.head_rows = lim.head_chunk_rows                # rows per lm_head chunk
        self.row_words = mm.emb_stride // SDRAM_WORD_BYTES
        self.emb = at
        at += mm.V * self.row_words
        self.head = self.emb
        if not c.tie_word_embeddings:
            self.head = at
            at += mm.V * self.row_words
        self.emb_scales = self.head_scales = at             # a row's scale: one word
        at += mm.V
        if not c.tie_word_embeddings:
            self.head_scales = at
            at += mm.V
        # TMEM's tables, TMEM_PER_WORD int16 words an SDRAM word: the RoPE rows (the
        # step's comes in), the norm gains (a layer's come in before it runs, into the
        # TMEM half of the layer's parity), each layer's and the final norm's padded to
        # whole SDRAM words
        self.rope = at
        at += mm.context * mm.rope_stride // TMEM_PER_WORD
        self.gains = at
        self.layer_gains = tmem_words(3 * mm.d + mm.f)   # names.NORMS of a layer, in order
        self.final_gains = tmem_words(mm.d)
        at += (mm.L * self.layer_gains + self.final_gains) // TMEM_PER_WORD
        # each layer's BitLinear weight scales (LIN_SCALE_WORDS words a layer), fetched
        # with its gains into VMEM's ``ls``
        self.lin_scales = at
        at += mm.L * LIN_SCALE_WORDS
        # the KV cache
        if mm.kv_stride < SDRAM_WORD_BYTES:
            raise TernaryError(f"head_dim {mm.hd}: a KV row streamed from the SDRAM needs "
                               f"head_dim >= {SDRAM_WORD_BYTES}")
        self.kv_row_words = mm.kv_stride // SDRAM_WORD_BYTES
        # the program, when it is longer than PROG (overlay.py): ``prog_words`` SDRAM words
        self.prog = at
        at += prog_words
        self.image_words = at           # the image ends here: the KV cache needs none
        rows = mm.L * mm.nkv * mm.context
        self.kv = {}
        for kind, per in (("k", self.kv_row_words), ("v", self.kv_row_words), ("ks", 1), ("vs", 1)):
            self.kv[kind] = at
            at += rows * per
        self.words = at

    def kv_sd(self, kind, layer, g):
        """SDRAM word of ``kind`` ("k", "v", "ks", "vs") of (layer, kv head g, position 0)."""
        per = self.kv_row_words if kind in ("k", "v") else 1
        return self.kv[kind] + (layer * self._nkv + g) * self._context * per


class MemoryMap:
    """Where everything lives, from the model's shapes and the device limits.

    ``sdram``: None puts the model on chip if it fits there and else (on a device with
    SDRAM) in the SDRAM; True and False ask for one of the two. ``self.sd`` is the
    :class:`SdramMap` of a model in the SDRAM (else None), with ``prog_sd_words`` SDRAM
    words for a program longer than PROG (:mod:`.overlay`)."""

    def __init__(self, config, context, limits, engine, sdram=None, prog_sd_words=0):
        c = self.config = config
        self.context, self.limits, self.engine = int(context), limits, engine
        d, f, V = c.hidden_size, c.intermediate_size, c.vocab_size
        nh, nkv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.d, self.f, self.V, self.nh, self.nkv, self.hd = d, f, V, nh, nkv, hd
        self.kvd = nkv * hd
        self.L = c.num_hidden_layers
        self.emb_stride = pow2_at_least(max(d, 32))
        self.kv_stride = pow2_at_least(hd)
        self.rope_stride = pow2_at_least(hd)
        self.sd = None
        self._tmem_layout(self.context)
        self._vmem_layout(False)
        # weight stacks (names.STACKS), consecutive from word 0
        self.stacks = []
        lay = engine.layout
        at = 0
        shapes = c.bitlinear_shapes()
        for i in range(self.L):
            for group in names.layer_stacks(i):
                m = sum(shapes[n][0] for n in group)
                k = shapes[group[0]][1]
                self.stacks.append((tuple(group), at, m, k))
                at += lay.words(m, k)
        self.weight_words_used = at
        self.sd = None
        if sdram is None:
            try:
                self.check()
                return
            except TernaryError:
                if not limits.sdram:
                    raise
            sdram = True
        if not sdram:
            self.check()
            return
        if not limits.sdram:
            raise TernaryError("the model is to stream from the SDRAM; the device has none "
                               "(sdram_words 0)")
        self.sd = SdramMap(self, prog_sd_words)
        self._tmem_layout(1)
        self._vmem_layout(True)
        self.check()

    def _vmem_layout(self, streamed):
        """VMEM's regions (limits.vmem_regions): ``streamed`` adds ``ls``, two layers' weight
        scales."""
        lim = self.limits
        single = ({"chunk": lim.head_chunk_rows, "single_at": lim.vmem_words}
                  if lim.vmem_single else {})
        self.vmem, self.vmem_used = vmem_regions(
            self.config, self.context, lin_scales=2 * LIN_SCALE_WORDS if streamed else 0, **single)

    def _tmem_layout(self, rope_rows):
        """TMEM: ``rope_rows`` RoPE rows from 0 (every position's on chip, the step's one
        streamed), then the norm gains (:attr:`gain`: each norm's first word): on chip
        every norm's, one after another; streamed, layer ``i``'s in the half ``i % 2`` of
        two layers' room (their order as in the SDRAM), then the final norm's."""
        self.gain = {}
        at = start = rope_rows * self.rope_stride       # (a multiple of TMEM_PER_WORD)
        for i, name in layer_norms(self.L):
            if self.sd is not None and name in (names.layer(i) + names.NORMS[0], names.FINAL_NORM):
                at = start + (i % 2 if i < self.L else 2) * self.sd.layer_gains
            self.gain[name] = at
            at += self.f if name.endswith(names.FFN_SUB_NORM) else self.d
        self.tmem_used = at

    def stack_of(self, name):
        for members, base, m, k in self.stacks:
            if name in members:
                return base, m, k
        raise KeyError(name)

    def kv_row(self, layer, g):
        """KVK/KVV address of (layer, kv head g, position 0): on chip, the layer's own
        rows; streamed from the SDRAM, those of the on-chip slot the KV head takes its turn
        in (``kv_slots`` of them, in turn)."""
        slot = layer * self.nkv + g
        if self.sd:
            slot %= self.limits.kv_buffer_slots
        return slot * self.context * self.kv_stride

    def kv_stage(self, g):
        """KVK/KVV address of KV head ``g``'s staging row (a device with SDRAM): where a
        streamed model's step writes its K and V rows before they go to the SDRAM."""
        return (self.limits.kv_buffer_slots * self.context + g) * self.kv_stride

    def lin_scales_at(self, i, n=None):
        """VMEM word of layer ``i``'s BitLinear ``n`` weight scale (a streamed model's,
        fetched with the layer's gains into the half of ``ls`` of its parity), or of its
        first (``n`` None)."""
        at = self.vmem["ls"] + (i % 2) * LIN_SCALE_WORDS
        return at if n is None else at + names.BITLINEARS.index(n)

    def kvs_stage(self, g, v):
        """KVS address of the scale of KV head ``g``'s staging K (v=0) or V (v=1) row."""
        return kv_scale_addr(self.limits, self.kv_stage(g), log2_exact(self.kv_stride), v)

    def kvs(self, layer, g, v):
        """KVS address of the K (v=0) or V (v=1) scale of (layer, g, position 0):
        :func:`~.isa.kv_scale_addr` of the row (ATTN PV relies on it)."""
        return kv_scale_addr(self.limits, self.kv_row(layer, g), log2_exact(self.kv_stride), v)

    def check(self):
        lim = self.limits
        lim.check(self.config, self.context, streamed=self.sd is not None)
        used = {"vmem_words": (self.vmem_used, lim.vmem_words)}
        if lim.vmem_single:     # the logits and the sampler's weights
            used["vmem_single"] = (2 * self.V, lim.vmem_single)
        if self.sd is None:
            used["weight_words"] = (self.weight_words_used, lim.weight_words)
        else:
            used["sdram_words"] = (self.sd.words, lim.sdram_words)
        for name, (need, have) in used.items():
            if need > have:
                raise TernaryError(f"the model needs {need} {name}; the device's limit is {have}")
        if self.tmem_used > lim.depth(Space.TMEM):
            raise TernaryError(f"the model needs {self.tmem_used} TMEM words; the device has "
                               f"{lim.depth(Space.TMEM)} (limits hidden/ffn/context/head_dim)")
        rows, kv_rows = ((self.V, self.L * self.nkv * self.context) if self.sd is None else
                         (2, lim.kv_buffer_slots * self.context + self.nkv))
        heads = () if self.sd is not None or self.config.tie_word_embeddings else (
            (Space.HEAD, self.V * self.emb_stride), (Space.HEADS, self.V))
        for s, need in ((Space.EMB, rows * self.emb_stride), (Space.EMBS, rows), *heads,
                        (Space.KVK, kv_rows * self.kv_stride),
                        (Space.KVS, 2 * kv_rows)):      # (a row's scales: kv_scale_addr)
            if need > lim.depth(s):
                raise TernaryError(f"the model needs {need} {s.name} words; the device has "
                                   f"{lim.depth(s)}")


def weight_stacks(im, limits=None, engine=None, sdram=None):
    """The engine's weight store image: :class:`WeightStack` per MATVEC, consecutive from
    word 0, packed in the engine's native layout (none for a model in the SDRAM, whose
    weights are in its SDRAM image: :func:`memory_images`). ``sdram`` as for
    :class:`MemoryMap`."""
    engine = engine or DEFAULT_ENGINE
    limits = limits or DeviceLimits.for_config(im.config, im.max_len).with_engine(engine)
    mm = MemoryMap(im.config, im.max_len, limits, engine, sdram)
    if mm.sd is not None:
        return []
    out = []
    for members, base, m, k in mm.stacks:
        trits = np.vstack([im.model.bitlinears[n].trits for n in members])
        out.append(WeightStack(members, base, m, k, bytes(engine.layout.pack(trits))))
    return out


def _scalar_words(sc):
    return np.array([scalar_word(m, e) for m, e in zip(np.ravel(sc.m), np.ravel(sc.e))], np.int64)


def memory_images(im, program):
    """``{Space: int64 array of words}``: everything a device needs besides the weights
    (:func:`weight_stacks`) and the per-run TOKENS/PARAM: PROG, SRINIT, TMEM, EMB(S),
    HEAD(S) (untied models only). Each array starts at address 0 of its space."""
    mm = program.mm
    c = im.config
    srinit = np.zeros(max(program.sr_init, default=0) + 1, np.int64)
    for i, (m, e) in program.sr_init.items():
        srinit[i] = scalar_word(m, e)

    def rows_image(q):
        out = np.zeros((c.vocab_size, mm.emb_stride), np.int64)
        out[:, :c.hidden_size] = q
        return out.reshape(-1)

    words = program.words()
    images = {Space.PROG: np.array(program.prog_image(words), dtype=object), Space.SRINIT: srinit}
    if mm.sd is None:
        images[Space.TMEM] = np.concatenate([rope_rows(im, mm), gains(im, mm)])
        images[Space.EMB] = rows_image(im.embed_q)
        images[Space.EMBS] = _scalar_words(im.embed_scale)
        if not c.tie_word_embeddings:
            images[Space.HEAD] = rows_image(im.head_q)
            images[Space.HEADS] = _scalar_words(im.head_scale)
    else:
        images[Space.SDRAM] = sdram_image(im, mm, rows_image,
                                          words if program.segmented else ())
    for s, words in images.items():
        if len(words) > mm.limits.depth(s):
            raise TernaryError(f"the {s.name} image has {len(words)} words; the device holds "
                               f"{mm.limits.depth(s)}")
    assert all(len(w) <= 1 << ADDR_BITS for s, w in images.items()
               if s not in (Space.PROG, Space.SDRAM))
    return images


def sdram_image(im, mm, rows_image, prog=()):
    """The SDRAM image (uint64 words from word 0) of a model streamed from it: the
    stacks in the engine's layout, the embedding (and lm_head) rows and their scales
    (scalar words, one an SDRAM word), TMEM's tables, and ``prog`` (the PROG words of a
    program longer than PROG: :mod:`.overlay`). The KV cache after
    them is not part of it (the program writes a position's rows before it reads them,
    and an image that leaves it out stays resident across runs)."""
    sd, lay = mm.sd, mm.engine.layout
    out = np.zeros(sd.image_words * SDRAM_WORD_BYTES, np.uint8)
    for members, _, _, _ in mm.stacks:
        trits = np.vstack([im.model.bitlinears[n].trits for n in members])
        packed = np.frombuffer(bytes(lay.pack(trits)), np.uint8)
        at = sd.chunks[members[0]][0].sd * SDRAM_WORD_BYTES
        out[at:at + packed.size] = packed
    for at, q in ((sd.emb, im.embed_q), (sd.head, None if mm.config.tie_word_embeddings
                                          else im.head_q)):
        if q is not None:
            rows = rows_image(q).astype(np.int8).view(np.uint8)
            out[at * SDRAM_WORD_BYTES:at * SDRAM_WORD_BYTES + rows.size] = rows
    words = out.view("<u8")
    words[sd.emb_scales:sd.emb_scales + mm.V] = _scalar_words(im.embed_scale)
    if not mm.config.tie_word_embeddings:
        words[sd.head_scales:sd.head_scales + mm.V] = _scalar_words(im.head_scale)
    padded = [np.zeros(n, np.int64) for n in [sd.layer_gains] * mm.L + [sd.final_gains]]
    for i, name in layer_norms(mm.L):
        g = im.norms[name].gain
        at = mm.gain[name] - mm.gain[names.layer(i) + names.NORMS[0]] if i < mm.L else 0
        padded[i][at:at + g.size] = g
    for i in range(mm.L):
        at = sd.lin_scales + i * LIN_SCALE_WORDS
        words[at:at + len(names.BITLINEARS)] = np.concatenate(
            [_scalar_words(im.linear_scale[names.layer(i) + n]) for n in names.BITLINEARS])
    for at, table in ((sd.rope, rope_rows(im, mm)), (sd.gains, np.concatenate(padded))):
        raw = table.astype("<i2").view(np.uint8)
        out[at * SDRAM_WORD_BYTES:at * SDRAM_WORD_BYTES + raw.size] = raw
    if len(prog):
        assert len(prog) == sd.image_words - sd.prog, (len(prog), sd.image_words - sd.prog)
        words[sd.prog:sd.image_words] = np.array([int(w) for w in prog], np.uint64)
    return words


def rope_rows(im, mm):
    """TMEM's RoPE table: a row of ``rope_stride`` words a position (cos, then sin)."""
    half = mm.hd // 2
    rows = np.zeros((mm.context, mm.rope_stride), np.int64)
    rows[:, :half] = im.rope_cos[:mm.context]
    rows[:, half:2 * half] = im.rope_sin[:mm.context]
    return rows.reshape(-1)


def gains(im, mm):
    """Every norm's gains, one after another in :func:`~..model.names.norm_names` order."""
    return np.concatenate([im.norms[n].gain.astype(np.int64) for n in names.norm_names(mm.L)])

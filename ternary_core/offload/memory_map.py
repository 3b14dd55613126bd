"""Where a model lives on the whole-model device: the memory map (:class:`MemoryMap`) that
the program (:mod:`.compiler`) and the memory images (:func:`memory_images`,
:func:`weight_stacks`) share, so the two cannot disagree."""

from dataclasses import dataclass

import numpy as np

from ..errors import TernaryError
from ..model import names
from .isa import ADDR_BITS, Space, kv_scale_addr, scalar_word
from .limits import DEFAULT_ENGINE, DeviceLimits, pow2_at_least, vmem_regions

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


class MemoryMap:
    """Where everything lives, from the model's shapes and the device limits."""

    def __init__(self, config, context, limits, engine):
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
        # TMEM: RoPE rows from 0, then the norm gains
        self.gain = {}
        at = self.context * self.rope_stride
        for name in names.norm_names(self.L):
            self.gain[name] = at
            at += f if name.endswith(names.FFN_SUB_NORM) else d
        self.tmem_used = at
        self.vmem, self.vmem_used = vmem_regions(c, self.context)
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
        self.check()

    def stack_of(self, name):
        for members, base, m, k in self.stacks:
            if name in members:
                return base, m, k
        raise KeyError(name)

    def kv_row(self, layer, g):
        """KVK/KVV address of (layer, kv head g, position 0)."""
        return ((layer * self.nkv + g) * self.context) * self.kv_stride

    def kvs(self, layer, g, v):
        """KVS address of the K (v=0) or V (v=1) scale of (layer, g, position 0):
        :func:`~.isa.kv_scale_addr` of the row (ATTN PV relies on it)."""
        return kv_scale_addr(self.limits, self.kv_row(layer, g), log2_exact(self.kv_stride), v)

    def check(self):
        lim = self.limits
        lim.check(self.config, self.context)
        used = {"vmem_words": (self.vmem_used, lim.vmem_words),
                "weight_words": (self.weight_words_used, lim.weight_words)}
        for name, (need, have) in used.items():
            if need > have:
                raise TernaryError(f"the model needs {need} {name}; the device's limit is {have}")
        if self.tmem_used > lim.depth(Space.TMEM):
            raise TernaryError(f"the model needs {self.tmem_used} TMEM words; the device has "
                               f"{lim.depth(Space.TMEM)} (limits hidden/ffn/context/head_dim)")
        for s, need in ((Space.EMB, self.V * self.emb_stride),
                        (Space.KVK, self.L * self.nkv * self.context * self.kv_stride)):
            if need > lim.depth(s):
                raise TernaryError(f"the model needs {need} {s.name} words; the device has "
                                   f"{lim.depth(s)}")


def weight_stacks(im, limits=None, engine=None):
    """The engine's weight store image: :class:`WeightStack` per MATVEC, consecutive from
    word 0, packed in the engine's native layout."""
    engine = engine or DEFAULT_ENGINE
    limits = limits or DeviceLimits.for_config(im.config, im.max_len).with_engine(engine)
    mm = MemoryMap(im.config, im.max_len, limits, engine)
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
    half = mm.hd // 2
    tmem = np.zeros(mm.tmem_used, np.int64)
    rows = np.zeros((mm.context, mm.rope_stride), np.int64)
    rows[:, :half] = im.rope_cos[:mm.context]
    rows[:, half:2 * half] = im.rope_sin[:mm.context]
    tmem[:rows.size] = rows.reshape(-1)
    for name, at in mm.gain.items():
        g = im.norms[name].gain.astype(np.int64)
        tmem[at:at + g.size] = g
    srinit = np.zeros(max(program.sr_init, default=0) + 1, np.int64)
    for i, (m, e) in program.sr_init.items():
        srinit[i] = scalar_word(m, e)

    def rows_image(q):
        out = np.zeros((c.vocab_size, mm.emb_stride), np.int64)
        out[:, :c.hidden_size] = q
        return out.reshape(-1)

    images = {Space.PROG: np.array(program.words(), dtype=object), Space.SRINIT: srinit,
              Space.TMEM: tmem, Space.EMB: rows_image(im.embed_q),
              Space.EMBS: _scalar_words(im.embed_scale)}
    if not c.tie_word_embeddings:
        images[Space.HEAD] = rows_image(im.head_q)
        images[Space.HEADS] = _scalar_words(im.head_scale)
    for s, words in images.items():
        if len(words) > mm.limits.depth(s):
            raise TernaryError(f"the {s.name} image has {len(words)} words; the device holds "
                               f"{mm.limits.depth(s)}")
    assert all(len(w) <= 1 << ADDR_BITS for s, w in images.items() if s != Space.PROG)
    return images

"""The limits of a whole-model device build: the largest model it runs, the depths of its
memory spaces, and how a model's shapes use them (VMEM regions). The INFO record reports
the limits; the compiler, the Python machine and the RTL size everything from them.
"""

from dataclasses import dataclass, fields as dc_fields, replace

from ..engine_config import EngineConfig
from ..errors import TernaryError
from .isa import (ADDR_BITS, DOT_LANES, FEATURES_ALL, PARAM_DEPTH, SDRAM_ADDR_BITS,
                  SDRAM_WORD_BYTES, SR_COUNT, XFER_SPACES, Feature, Space)

# The ternary engine the whole-model device carries (the ULX3S-85F's: 16x16 lanes, 2-bit
# weights, the activation buffer in LUT RAM): what the compiler packs for and the Python
# machine decodes unless told otherwise.
DEFAULT_ENGINE = EngineConfig(rows=16, cols=16, fmt="2bit", max_m=1024, max_k=1024,
                              weight_words=4096, adder_levels_per_stage=1, act_lutram=True)


# The MLP activations the vector machine's program computes (the compiler's GLU emitters:
# squared ReLU, and SiLU with the VOP SIGMUL). A model with another ``hidden_act`` runs
# with --offload matvec, where the host computes the GLU.
VM_ACTIVATIONS = ("relu2", "silu")


def check_activation(config):
    """Raise a TernaryError naming ``hidden_act`` if the vector machine cannot run the
    MLP activation of ``config``. Needs no device: callers refuse before opening one."""
    if config.hidden_act not in VM_ACTIVATIONS:
        raise TernaryError(f"hidden_act is {config.hidden_act!r}; the device's vector machine "
                           f"runs {' or '.join(VM_ACTIVATIONS)} only")


# TMEM's int16 words in an SDRAM word (XFER packs them: isa.XFER_SPACES)
TMEM_PER_WORD = SDRAM_WORD_BYTES // XFER_SPACES[Space.TMEM]


# A layer's BitLinear weight scales in the SDRAM (a streamed model): names.BITLINEARS in
# order, scalar words, one an SDRAM word, padded to this many; two layers' in VMEM's ``ls``
LIN_SCALE_WORDS = 8


def tmem_words(n):
    """``n`` TMEM words padded to whole SDRAM words."""
    return -(-int(n) // TMEM_PER_WORD) * TMEM_PER_WORD


def pow2_at_least(n):
    return 1 << max(0, int(n) - 1).bit_length()


@dataclass(frozen=True)
class DeviceLimits:
    """The largest model a device build runs (reported by INFO) and its memory depths.

    The model-shape fields bound a config (:meth:`check`); the depths of the spaces
    follow from them (:meth:`depth`). ``max_m``/``max_k``/``weight_words`` are the
    engine's (:class:`~ternary_core.engine_config.EngineConfig`).
    """

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 32
    ffn: int = 256
    vocab: int = 256
    context: int = 256
    vmem_words: int = 2048
    prog_words: int = 2048          # instructions
    sr_regs: int = SR_COUNT
    max_m: int = 1024
    max_k: int = 1024
    weight_words: int = 4096
    # added later (INFO reports fields in this order; a device that stops before one
    # implies its value in LATER_FIELDS): the optional instructions (isa.Feature bits)
    features: int = int(FEATURES_ALL)
    # the SDRAM (issue 20): its 64-bit words (0: none; a device with SDRAM runs XFER), and
    # the on-chip buffers a model streamed from it uses: rows of EMB/HEAD (0: ``vocab``)
    # and slots of the KV cache, each one KV head's rows over the context (0: ``layers *
    # kv_heads``, the whole cache); a device with SDRAM also has ``kv_heads`` staging rows
    # (the step's K and V rows, on their way to the SDRAM)
    sdram_words: int = 0
    emb_rows: int = 0
    kv_slots: int = 0
    # VMEM words above ``vmem_words`` in a bank of one copy (0: none), which only operand A
    # of an element pass (and a SAMPLE's) reads, on read port 0: the vocabulary-sized
    # regions (the logits and the sampler's weights), so that they do not take two copies
    # of block RAM as the two-port words do (issue 20: 8,192 logits are 40 DP16KD a copy)
    vmem_single: int = 0

    def __post_init__(self):
        for f in dc_fields(self):
            v = getattr(self, f.name)
            if f.name in ZERO_MEANS_DEFAULT:
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise TernaryError(f"DeviceLimits.{f.name} must be a non-negative integer, "
                                       f"got {v!r}")
                continue
            if f.name == "features":
                if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v & ~int(FEATURES_ALL):
                    raise TernaryError(f"DeviceLimits.features must be a sum of isa.Feature bits "
                                       f"(0..{int(FEATURES_ALL)}), got {v!r}")
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TernaryError(f"DeviceLimits.{f.name} must be a positive integer, got {v!r}")
        if self.head_dim % 2:
            raise TernaryError(f"DeviceLimits.head_dim must be even (RoPE pairs), "
                               f"got {self.head_dim}")
        if self.sr_regs > SR_COUNT:
            raise TernaryError(f"DeviceLimits.sr_regs must be at most {SR_COUNT}")
        for name in ("hidden", "ffn", "vocab", "context"):
            if getattr(self, name) >= 1 << 14:
                raise TernaryError(f"DeviceLimits.{name} must be below 16384 (14-bit n fields)")
        if self.sdram_words >= 1 << SDRAM_ADDR_BITS:
            raise TernaryError(f"DeviceLimits.sdram_words must be below 2**{SDRAM_ADDR_BITS} "
                               f"(XFER's SDRAM address), got {self.sdram_words}")
        for name, most, what in (("emb_rows", self.vocab, "vocab"),
                                 ("kv_slots", self.layers * self.kv_heads, "layers x kv_heads")):
            if getattr(self, name) > most:
                raise TernaryError(f"DeviceLimits.{name} must be at most {what} ({most})")
        for s in Space:
            if s in (Space.NONE, Space.SR, Space.IR, Space.WGT):
                continue
            if s not in (Space.PROG, Space.SDRAM) and self.depth(s) > 1 << ADDR_BITS:
                raise TernaryError(f"DeviceLimits: space {s.name} needs {self.depth(s)} words, "
                                   f"more than the {1 << ADDR_BITS} of an {ADDR_BITS}-bit address")

    @property
    def sdram(self):
        """Whether the device has SDRAM (and so runs XFER)."""
        return self.sdram_words > 0

    @property
    def emb_buffer_rows(self):
        """On-chip EMB (and HEAD) rows."""
        return self.emb_rows or self.vocab

    @property
    def head_chunk_rows(self):
        """lm_head rows a chunk when the lm_head runs in chunks (a model streamed from the
        SDRAM: half of EMB's rows; or a device with a single-copy VMEM bank, whose logits
        are written a chunk at a time)."""
        return max(1, self.emb_buffer_rows // 2)

    @property
    def kv_buffer_slots(self):
        """Slots of the KV cache on chip (one KV head's rows over the context each)."""
        return self.kv_slots or self.layers * self.kv_heads

    @property
    def kv_rows(self):
        """Rows of KVK (and of KVV): the slots' and, with SDRAM, the staging rows."""
        return self.kv_buffer_slots * self.context + (self.kv_heads if self.sdram else 0)

    def has(self, feature):
        """Whether the device runs the optional instructions of ``feature`` (an
        :class:`~.isa.Feature`)."""
        return bool(self.features & Feature(feature))

    def compile_options(self):
        """The :func:`~.compiler.compile_program` options of this device's features."""
        return {"smul2": self.has(Feature.SMUL2), "fuse_attention": self.has(Feature.ATTN)}

    # row strides (powers of two) of the row spaces
    @property
    def emb_stride(self):
        return pow2_at_least(max(self.hidden, DOT_LANES))

    @property
    def kv_stride(self):
        return pow2_at_least(self.head_dim)

    @property
    def rope_stride(self):
        return pow2_at_least(self.head_dim)

    def depth(self, space):
        """Words of a space in a device built with these limits."""
        s = Space(space)
        gains = (3 * self.layers + 1) * self.hidden + self.layers * self.ffn
        kv = self.kv_rows
        emb = self.emb_buffer_rows * self.emb_stride
        return {
            Space.VMEM: self.vmem_words + self.vmem_single,
            Space.ACT: self.max_k,
            Space.TMEM: self.rope_stride + 2 * tmem_words(3 * self.hidden + self.ffn) + tmem_words(self.hidden)
                        if self.sdram else gains + self.context * self.rope_stride,
            Space.EMB: emb,
            Space.EMBS: self.emb_buffer_rows,
            # (a device with SDRAM streams an untied lm_head through EMB: HEAD's one word)
            Space.HEAD: 1 if self.sdram else emb,
            Space.HEADS: 1 if self.sdram else self.emb_buffer_rows,
            Space.KVK: kv * self.kv_stride,
            Space.KVV: kv * self.kv_stride,
            Space.KVS: 2 * kv,
            Space.TOKENS: self.context + 1,
            Space.PROG: 2 * self.prog_words,
            Space.SRINIT: self.sr_regs,
            Space.CYCLES: self.context,
            Space.PARAM: PARAM_DEPTH,
            Space.SDRAM: self.sdram_words,
        }[s]

    def check(self, config, context=None, streamed=False):
        """Raise a TernaryError naming the first field of ``config`` (a
        :class:`~ternary_core.model.config.BitNetConfig`) that the device cannot hold.
        ``streamed``: the weights stream from the SDRAM in row chunks, so only a stack's
        ``k`` is bounded (by ``max_k``), not its ``m``."""
        c = config
        context = int(context or c.max_position_embeddings)
        check_activation(c)
        pairs = (("hidden_size", c.hidden_size, "hidden"),
                 ("num_hidden_layers", c.num_hidden_layers, "layers"),
                 ("num_attention_heads", c.num_attention_heads, "heads"),
                 ("num_key_value_heads", c.num_key_value_heads, "kv_heads"),
                 ("head_dim", c.head_dim, "head_dim"),
                 ("intermediate_size", c.intermediate_size, "ffn"),
                 ("vocab_size", c.vocab_size, "vocab"),
                 ("context", context, "context"))
        for name, value, lim in pairs:
            if value > getattr(self, lim):
                raise TernaryError(f"{name} {value} is more than the device's {lim} limit "
                                   f"{getattr(self, lim)}")
        if c.head_dim % 2:
            raise TernaryError(f"head_dim {c.head_dim} must be even (RoPE pairs)")
        for name, m, k in (("q/k/v stack", c.hidden_size + 2 * c.num_key_value_heads * c.head_dim,
                            c.hidden_size),
                           ("gate/up stack", 2 * c.intermediate_size, c.hidden_size),
                           ("down_proj", c.hidden_size, c.intermediate_size)):
            if (m > self.max_m and not streamed) or k > self.max_k:
                raise TernaryError(f"{name} is {m}x{k}; the engine's max_m x max_k is "
                                   f"{self.max_m}x{self.max_k}")

    def with_engine(self, engine):
        """These limits with the engine fields of an
        :class:`~ternary_core.engine_config.EngineConfig`."""
        return replace(self, max_m=engine.max_m, max_k=engine.max_k,
                       weight_words=engine.weight_words)

    @classmethod
    def for_config(cls, config, context=None, **kw):
        """The smallest limits that hold ``config`` (for tests and simulation)."""
        c = config
        context = int(context or c.max_position_embeddings)
        base = dict(hidden=c.hidden_size, layers=c.num_hidden_layers,
                    heads=c.num_attention_heads, kv_heads=c.num_key_value_heads,
                    head_dim=c.head_dim, ffn=c.intermediate_size, vocab=c.vocab_size,
                    context=context,
                    max_m=max(c.hidden_size + 2 * c.num_key_value_heads * c.head_dim,
                              2 * c.intermediate_size),
                    max_k=max(c.hidden_size, c.intermediate_size))
        base.update(kw)
        if "vmem_words" not in kw:      # the two-copy words the model's regions need
            probe = cls(**{**base, "vmem_words": 1})
            single = {"chunk": probe.head_chunk_rows, "single_at": 0} if probe.vmem_single else {}
            ls = 2 * LIN_SCALE_WORDS if probe.sdram else 0   # (room for a streamed model's)
            base["vmem_words"] = vmem_regions(c, context, lin_scales=ls, **single)[1]
        return cls(**base)


# The fields of DeviceLimits added after INFO first carried them, and the value a device
# that reports fewer fields implies for each (it predates them).
LATER_FIELDS = {"features": 0, "sdram_words": 0, "emb_rows": 0, "kv_slots": 0,
                "vmem_single": 0}
# Fields where 0 stands for a default (none, or another field's value)
ZERO_MEANS_DEFAULT = ("sdram_words", "emb_rows", "kv_slots", "vmem_single")


def vmem_regions(config, context, chunk=None, single_at=None, lin_scales=0):
    """``(start of each VMEM region, words used)`` of a model at ``context``.

    The regions of different phases of a layer share words, since each phase's are dead
    before the next one's are written (VMEM's 2,048 words are 10 of the ULX3S's 208
    block RAMs: 40-bit words, two copies for two read ports): the attention inputs (qkv,
    rot), the per-key scratch of the heads and the lm_head (s0..s2; s3 and s4 are s0 and
    s1 again: s0 is dead once s2 is written, s1 once s3 is), the merged heads
    (m16, att), the MLP (gu, t3). The logits ``lg`` and the sampler's weights ``wt``:
    without ``single_at``, s2 and s1 (vocabulary-sized; s1, the lm_head's row scales, is
    dead once the logits are written); with it (a device's single-copy bank from VMEM word
    ``single_at``: DeviceLimits.vmem_single), two vocabulary-sized regions there, the
    lm_head written a chunk of at most ``chunk`` rows at a time through s0 and s1.
    ``lin_scales``: words of ``ls`` (a streamed model's BitLinear weight scales, two layers'
    worth). ``words used`` counts the two-copy words only."""
    c = config
    d, f, V = c.hidden_size, c.intermediate_size, c.vocab_size
    kvd = c.num_key_value_heads * c.head_dim
    big = max(d, f)
    if single_at is None:
        s01 = s2 = max(int(context), V)
    else:
        s01, s2 = max(int(context), int(chunk)), int(context)
    phases = [[("qkv", d + 2 * kvd), ("rot", d + kvd)],
              [("s0", s01), ("s1", s01), ("s2", s2)],
              [("m16", d), ("att", d)],
              [("gu", 2 * f), ("t3", big)]]
    regions = [("x", d), ("q8", d), ("t1", big), ("t2", big), ("acc", d), ("o", d),
               ("ls", int(lin_scales))]
    start, at = {}, 0
    for name, size in regions:
        start[name] = at
        at += size
    for phase in phases:
        off = at
        for name, size in phase:
            start[name] = off
            off += size
    used = at + max(sum(size for _, size in phase) for phase in phases)
    start["s3"], start["s4"] = start["s0"], start["s1"]     # (the heads' scratch)
    if single_at is None:
        start["lg"], start["wt"] = start["s2"], start["s1"]
    else:
        start["lg"], start["wt"] = int(single_at), int(single_at) + V
    return start, used

"""Import BitNet checkpoints into the project's model (``ternary import``).

* A Hugging Face ``BitNetForCausalLM`` folder: ``config.json`` and ``*.safetensors``.
  BitLinear weights are either HF's offline packing (uint8 ``(out/4, in)`` with
  ``weight_scale``) or unpacked float (bf16/f16/f32), quantized here with the absmean
  rule. ``tokenizer.json`` comes along when present.
* A GGUF file of llama.cpp's ``bitnet`` architecture whose BitLinear tensors are TQ1_0
  or TQ2_0, or F32/F16/BF16 holding ``{-s, 0, +s}`` as llama.cpp's converter writes them by
  default (read with the ``gguf`` package). llama.cpp's BitNet converter does not
  permute q/k for RoPE, so the rotation is HF's (``rotate_half``). TQ blocks carry one
  scale each; a BitLinear has one scale, so all blocks of a tensor must agree. Its
  ``tokenizer.ggml.*`` metadata becomes a real tokenizer (:mod:`.gguf_tokenizer`).
"""

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType

from ..formats import hf_bitnet
from ..errors import TernaryError
from ..formats.gguf import unpack as unpack_tq
from . import names
from .config import ACTIVATIONS, BitNetConfig
from .names import GGUF_LINEARS, GGUF_NORMS
from .gguf_layout import check_gguf_layout
from .gguf_tokenizer import read_tokenizer_metadata, tokenizer_from_gguf
from .file import (MIN_WEIGHT_SCALE, BitLinearWeights, BitNetModel, check_model, float_tensor_shapes,
                   refuse_irregular)
from ..quant import quantize_weights
from ..formats.json_text import parse_json
from ..formats.safetensors import read_safetensors


def import_checkpoint(src, notes=None):
    """Read a HF folder or GGUF file into a :class:`BitNetModel`, checked like a model
    file on load (shapes, finite numbers, scales > 0), so import never passes on a model
    that could not run. ``notes`` (a dict), if given, receives what the importer read
    that decides the numbers (activation, where the weight scales came from)."""
    if not str(src):
        raise TernaryError("the checkpoint's path is empty")
    src = Path(src)
    notes = {} if notes is None else notes
    if src.suffix == ".gguf":
        refuse_irregular(src, "a checkpoint's file")
    if src.is_dir():
        model = import_hf_folder(src)
        notes.update(activation=model.config.hidden_act, scales="weight_scale tensors")
    elif src.is_file() and src.suffix == ".gguf":
        model = import_gguf(src, notes)
    elif not src.exists():
        raise TernaryError(f"{src}: no such file or folder")
    else:
        raise TernaryError(f"{src}: expected a Hugging Face checkpoint folder or a .gguf file")
    check_model(model, str(src))
    return model


def input_files(src):
    """The files an import of ``src`` reads (the output must be none of them)."""
    src = Path(src)
    return sorted(p for p in src.iterdir() if p.is_file()) if src.is_dir() else [src]


def import_hf_folder(folder):
    cfg_path = folder / "config.json"
    refuse_irregular(cfg_path, "a checkpoint's file")
    if not cfg_path.is_file():
        raise TernaryError(f"{folder}: no config.json (not a Hugging Face checkpoint folder)")
    raw_cfg = parse_json(cfg_path.read_bytes(), str(cfg_path), expect=dict)
    if raw_cfg.get("model_type") not in (None, "bitnet"):
        raise TernaryError(f"{cfg_path}: model_type is {raw_cfg.get('model_type')!r}, not bitnet")
    config = BitNetConfig.from_dict(raw_cfg, source=str(cfg_path))
    tensors = {}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise TernaryError(f"{folder}: no .safetensors files")
    for f in files:
        refuse_irregular(f, "a checkpoint's file")
        tensors.update(read_safetensors(f)[1])

    model = BitNetModel(config, _hf_tokenizer(folder, config))
    for name, shape in float_tensor_shapes(config).items():
        if name not in tensors and name == "lm_head.weight":
            continue
        model.floats[name] = _take(tensors, name, shape, folder).astype(np.float32)
    if "lm_head.weight" not in model.floats and not config.tie_word_embeddings:
        if "lm_head.weight" in tensors:
            model.floats["lm_head.weight"] = _take(tensors, "lm_head.weight",
                                                   (config.vocab_size, config.hidden_size), folder)
        else:
            raise TernaryError(f"{folder}: lm_head.weight is missing and embeddings are not tied")
    for name, (out, k) in config.bitlinear_shapes().items():
        w = tensors.get(name + ".weight")
        if w is None:
            raise TernaryError(f"{folder}: tensor {name}.weight is missing")
        if w.dtype == np.uint8:
            scale = tensors.get(name + ".weight_scale")
            if scale is None or scale.size != 1:
                raise TernaryError(f"{folder}: packed {name}.weight needs a one-value weight_scale")
            try:
                trits = hf_bitnet.unpack(w, out)
            except TernaryError as exc:
                raise TernaryError(f"{folder}: {name}.weight: {exc}") from None
            if trits.shape != (out, k):
                raise TernaryError(f"{folder}: {name}.weight unpacks to {trits.shape}, expected {(out, k)}")
            if scale.dtype.kind != "f":
                raise TernaryError(f"{folder}: {name}.weight_scale has dtype {scale.dtype}, expected float")
            model.bitlinears[name] = BitLinearWeights(trits, np.float32(scale.reshape(-1)[0]))
        else:
            trits, scale = quantize_weights(_take(tensors, name + ".weight", (out, k), folder))
            model.bitlinears[name] = BitLinearWeights(trits, scale)
    return model


def _take(tensors, name, shape, where):
    if name not in tensors:
        raise TernaryError(f"{where}: tensor {name} is missing")
    a = tensors[name]
    if a.dtype.kind != "f":
        raise TernaryError(f"{where}: tensor {name} has dtype {a.dtype}, expected float")
    if tuple(a.shape) != tuple(shape):
        raise TernaryError(f"{where}: tensor {name} has shape {tuple(a.shape)}, expected {tuple(shape)}")
    return a


def _hf_tokenizer(folder, config):
    tj = folder / "tokenizer.json"
    refuse_irregular(tj, "a checkpoint's file")
    if tj.is_file():
        try:
            return {"type": "tokenizers", "json": tj.read_bytes().decode("utf-8")}
        except UnicodeDecodeError as exc:
            raise TernaryError(f"{tj}: not UTF-8 text ({exc})") from None
    if config.vocab_size == 256:
        return {"type": "bytes"}
    return {"type": "none"}


# llama.cpp's bitnet graph: the FFN activation is <arch>.hidden_activation, SiLU when the
# key is absent ("default to SiLU for backward compatibility with existing GGUF files").
LLAMA_CPP_DEFAULT_ACTIVATION = "silu"


def import_gguf(path, notes=None):
    """A llama.cpp ``bitnet`` GGUF with its semantics: BitLinears in TQ1_0/TQ2_0 whose
    block scale is the tensor's (one scale a tensor), times the optional
    ``blk.N.<name>.scale`` tensor llama.cpp multiplies each matmul by; the activation
    from ``bitnet.hidden_activation`` (``relu2`` or ``silu``; SiLU when absent, as llama.cpp
    runs it: ``silu(gate) * up``, then ``ffn_sub_norm``, then ``ffn_down``); the output
    tied to ``token_embd`` when there is no ``output.weight``. Any tensor it would not use is refused by name."""
    notes = {} if notes is None else notes

    check_gguf_layout(path)
    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # the reader raises ValueError/struct.error/... on a bad file
        raise TernaryError(f"{path}: not a readable GGUF file ({exc})") from None

    def field(key, default=None):
        """One scalar value: an array (even of one value) is refused, not read as its
        first element; a string must be UTF-8."""
        f = reader.fields.get(key)
        if f is None:
            return default
        if not f.types or f.types[0] == GGUFValueType.ARRAY or not f.data:
            raise TernaryError(f"{path}: GGUF key {key} must be a single value, not an array")
        v = f.parts[f.data[0]]
        if f.types[0] == GGUFValueType.STRING:
            try:
                return v.tobytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TernaryError(f"{path}: GGUF key {key} is not UTF-8 ({exc})") from None
        return v.item()

    arch = field("general.architecture")
    if arch is None:
        raise TernaryError(f"{path}: GGUF has no general.architecture key; only 'bitnet' is "
                           f"supported")
    if arch != "bitnet":
        raise TernaryError(f"{path}: GGUF architecture is {arch!r}; only 'bitnet' is supported")
    tensors = {t.name: t for t in reader.tensors}
    used = set()
    activation = field(f"{arch}.hidden_activation")
    act_note = activation
    if activation is None:
        activation = LLAMA_CPP_DEFAULT_ACTIVATION
        act_note = f"{activation} ({arch}.hidden_activation absent: llama.cpp's default)"
    elif activation not in ACTIVATIONS:
        raise TernaryError(f"{path}: GGUF key {arch}.hidden_activation is {activation!r}; this "
                           f"engine runs {' or '.join(ACTIVATIONS)}")

    def need(key, default=None, kind=int):
        v = field(key, default)
        if v is None:
            raise TernaryError(f"{path}: GGUF key {key} is missing")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise TernaryError(f"{path}: GGUF key {key} must be a number, got {v!r}")
        return int(v) if kind is int else _f32(v)

    if "token_embd.weight" not in tensors:
        raise TernaryError(f"{path}: tensor token_embd.weight is missing")
    d = need("bitnet.embedding_length")
    try:
        config = BitNetConfig(
            vocab_size=int(tensors["token_embd.weight"].shape[-1]),
            hidden_size=d, intermediate_size=need("bitnet.feed_forward_length"),
            num_hidden_layers=need("bitnet.block_count"),
            num_attention_heads=need("bitnet.attention.head_count"),
            num_key_value_heads=need("bitnet.attention.head_count_kv", field("bitnet.attention.head_count")),
            max_position_embeddings=need("bitnet.context_length", 2048),
            rms_norm_eps=need("bitnet.attention.layer_norm_rms_epsilon", 1e-5, float),
            rope_theta=need("bitnet.rope.freq_base", 10000.0, float),
            hidden_act=activation,
            tie_word_embeddings="output.weight" not in tensors)
    except TernaryError as exc:
        raise TernaryError(f"{path}: {exc}") from None

    def floats(name, shape):
        t = tensors.get(name)
        if t is None:
            raise TernaryError(f"{path}: tensor {name} is missing")
        used.add(name)
        _check_shape(path, t, shape)
        if t.tensor_type not in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            raise TernaryError(f"{path}: tensor {name} is {t.tensor_type.name}; expected F32 or F16")
        a = np.asarray(t.data, dtype=np.float32)
        if a.size != int(np.prod(shape)):
            raise TernaryError(f"{path}: tensor {name} has {a.size} values, expected shape {shape}")
        return a.reshape(shape)

    tok, tok_note = tokenizer_from_gguf(read_tokenizer_metadata(reader, path), config.vocab_size,
                                        path)
    model = BitNetModel(config, tok)
    model.floats[names.EMBED + ".weight"] = floats("token_embd.weight", (config.vocab_size, d))
    model.floats[names.FINAL_NORM + ".weight"] = floats("output_norm.weight", (d,))
    if not config.tie_word_embeddings:
        model.floats[names.LM_HEAD + ".weight"] = floats("output.weight", (config.vocab_size, d))
    for i in range(config.num_hidden_layers):
        for g, h in GGUF_NORMS.items():
            n = config.intermediate_size if h == names.FFN_SUB_NORM else d
            model.floats[names.layer(i) + h + ".weight"] = floats(f"blk.{i}.{g}.weight", (n,))
    scale_tensors, kinds = 0, set()
    for name, (out, k) in config.bitlinear_shapes().items():
        i, hf = name.split(".")[2], ".".join(name.split(".")[3:])
        g = next(key for key, v in GGUF_LINEARS.items() if v == hf)
        t = tensors.get(f"blk.{i}.{g}.weight")
        if t is None:
            raise TernaryError(f"{path}: tensor blk.{i}.{g}.weight is missing")
        used.add(t.name)
        _check_shape(path, t, (out, k))
        qtype = t.tensor_type.name
        kinds.add(qtype)
        if qtype in ("TQ1_0", "TQ2_0"):
            trits, scales = unpack_tq(np.asarray(t.data).reshape(-1), (out, k), qtype)
            nonzero = scales[np.abs(trits).reshape(out, k // 256, 256).any(axis=2)]
            if np.unique(nonzero).size > 1:     # NaNs are one value here: refused below
                raise TernaryError(f"{path}: blk.{i}.{g}.weight has different scales per block; "
                                   f"a BitLinear takes one scale per tensor")
            d_scale = np.float32(nonzero[0] if nonzero.size else 1.0)
        elif qtype in FLOAT_TERNARY_TYPES:
            trits, d_scale = _float_ternary(path, t, (out, k))
        else:
            raise TernaryError(f"{path}: tensor blk.{i}.{g}.weight is {qtype}; the engine imports "
                               f"ternary TQ1_0 or TQ2_0, or {'/'.join(FLOAT_TERNARY_TYPES)} "
                               f"holding ternary values")
        extra = _tensor_scale(path, tensors.get(f"blk.{i}.{g}.scale"))
        what = f"tensor {t.name}"
        if extra is not None:
            used.add(f"blk.{i}.{g}.scale")
            scale_tensors += 1
            d_scale = np.float32(d_scale * extra)      # llama.cpp: matmul(w, x) * scale
            what += f" times blk.{i}.{g}.scale"
        model.bitlinears[name] = BitLinearWeights(trits, _weight_scale(path, what, d_scale))
    unknown = sorted(set(tensors) - used)
    if unknown:
        raise TernaryError(f"{path}: tensor {unknown[0]} is not part of a bitnet model this "
                           f"engine runs ({len(unknown)} such tensors)")
    n = len(model.bitlinears)
    notes.update(activation=act_note, tokenizer=tok_note,
                 scales=("TQ block scales" if kinds & {"TQ1_0", "TQ2_0"}
                         else f"the magnitude of {'/'.join(sorted(kinds))} ternary values")
                 + (f" x .scale tensors ({scale_tensors} of {n})" if scale_tensors else ""))
    return model


# Float types a BitLinear may come in: llama.cpp's BitNet converter writes each BitLinear as
# its ternary values times the tensor's absmean ({-s, 0, +s}) in the output type (F16 by
# default); TQ1_0/TQ2_0 only when asked.
FLOAT_TERNARY_TYPES = ("F32", "F16", "BF16")


def _float_ternary(path, t, shape):
    """``(trits, magnitude)`` of a float BitLinear tensor whose values are ``{-s, 0, +s}``
    for one ``s`` > 0 (read with the ``gguf`` package's own dequantize). A tensor with
    other values is not a BitLinear this engine can run exactly, and is refused."""
    from gguf.quants import dequantize

    a = np.asarray(dequantize(np.asarray(t.data), t.tensor_type), dtype=np.float32).reshape(-1)
    if a.size != int(np.prod(shape)):
        raise TernaryError(f"{path}: tensor {t.name} has {a.size} values, expected shape {shape}")
    if not np.all(np.isfinite(a)):
        raise TernaryError(f"{path}: tensor {t.name} holds values that are not finite")
    mags = np.unique(np.abs(a[a != 0]))
    if mags.size > 1:
        raise TernaryError(f"{path}: tensor {t.name} is not ternary: its non-zero values have "
                           f"{mags.size} magnitudes ({mags[0]:.6g} .. {mags[-1]:.6g}); a BitLinear "
                           f"holds -s, 0 and +s for one s")
    s = np.float32(mags[0] if mags.size else 1.0)
    return np.sign(a).astype(np.int8).reshape(shape), s


def _check_shape(path, t, shape):
    """The shape ``t`` declares (GGUF lists dimensions innermost first) must be ``shape``:
    the same number of values in another shape is another matrix."""
    declared = tuple(int(n) for n in reversed(t.shape))
    if declared != tuple(shape):
        raise TernaryError(f"{path}: tensor {t.name} has shape {declared}, expected {tuple(shape)}")


# The magnitudes a BitLinear may have: the engine keeps 1/s as a float32 weight scale of at
# least MIN_WEIGHT_SCALE (1/s overflowing or dividing by 0 was a NumPy warning, then an
# error naming the engine's tensor, not the file's).
SCALE_RANGE = (float(1 / np.finfo(np.float32).max), 1 / MIN_WEIGHT_SCALE)


def _weight_scale(path, what, s):
    """``1 / s`` (float32) for a BitLinear of magnitude ``s`` (``what`` names its tensors),
    or an error if that is not a weight scale the engine runs."""
    s = np.float32(s)
    with np.errstate(all="ignore"):
        w = np.float32(1.0) / s
    if not (np.isfinite(s) and s > 0 and np.isfinite(w) and w >= MIN_WEIGHT_SCALE):
        lo, hi = SCALE_RANGE
        raise TernaryError(f"{path}: {what}: its scale must be a finite number within "
                           f"{lo:.3g}..{hi:g} (the engine keeps 1/scale as a float32 of at least "
                           f"{MIN_WEIGHT_SCALE:g}), got {s:.3g}")
    return w


def _tensor_scale(path, t):
    """The value of a ``blk.N.<name>.scale`` tensor (one finite float32 > 0), or None."""
    if t is None:
        return None
    a = np.asarray(t.data).reshape(-1)
    if t.tensor_type != GGMLQuantizationType.F32 or a.size != 1:
        raise TernaryError(f"{path}: tensor {t.name} must be one F32 value, not "
                           f"{a.size} x {t.tensor_type.name}")
    v = np.float32(a[0])
    if not (np.isfinite(v) and v > 0):
        raise TernaryError(f"{path}: tensor {t.name} must be finite and greater than 0, got {v}")
    return v


def _f32(v):
    """GGUF stores these as float32: take the shortest decimal that is that float32
    (1e-05, not 9.99999974e-06)."""
    return float(str(np.float32(v)))


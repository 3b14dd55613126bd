"""The project's model file: one ``.safetensors`` file, no pickle.

Tensors use HF BitNet's names. Each BitLinear is stored packed in HF's offline
2-bit layout (``{name}.weight``, uint8 ``(ceil(out/4), in)``) with its float32
``{name}.weight_scale`` of shape ``(1,)`` (HF's meaning: ``y = acc / (input_scale *
weight_scale)``). Embeddings, norms and ``lm_head`` are float32. The safetensors
metadata holds ``format`` (``ternary-engine-bitnet``), ``format_version``, ``config``
(JSON of :class:`~ternary_core.model.config.BitNetConfig`), ``tokenizer`` (JSON,
see :mod:`ternary_core.model.tokenizer`) and, in files ``ternary import`` wrote,
``integer_probe`` (JSON ``{"positions": P, "top1_agreeing": A}``: of P probe positions,
the integer decode's argmax equalled the float reference's at A; P = 0: not measured;
see :mod:`ternary_core.integer.probe`). A file without it (trained here, or older) has
no record.

Loading treats the file as untrusted: every tensor is checked for presence, dtype,
shape and value range, and the error names the tensor and the problem.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..formats import hf_bitnet
from ..errors import TernaryError
from ..formats.json_text import parse_json
from ..formats.safetensors import read_safetensors
from . import names
from .config import BitNetConfig

FORMAT_NAME = "ternary-engine-bitnet"
FORMAT_VERSION = 1


@dataclass
class BitLinearWeights:
    trits: np.ndarray          # int8 (out, in) in {-1, 0, 1}
    weight_scale: np.float32   # HF meaning: W ~ trits / weight_scale


@dataclass(frozen=True)
class IntegerProbe:
    """What :func:`ternary_core.integer.probe.probe` measured on a model: of ``positions``
    probe positions, the integer decode's argmax equalled the float reference's at
    ``agreeing``. ``positions`` 0: not measured (``ternary import --probe-positions 0``)."""

    positions: int
    agreeing: int

    @property
    def agreement(self):
        """The top-1 agreement (0..1), or None if not measured."""
        return self.agreeing / self.positions if self.positions else None


@dataclass
class BitNetModel:
    config: BitNetConfig
    tokenizer: dict
    floats: dict = field(default_factory=dict)      # name -> float32 array
    bitlinears: dict = field(default_factory=dict)  # name -> BitLinearWeights
    integer_probe: IntegerProbe = None              # None: no record (trained here, or older)

    def ternary_params(self):
        return sum(b.trits.size for b in self.bitlinears.values())


def float_tensor_shapes(config):
    """``{name: shape}`` of the float tensors a model of ``config`` has."""
    d, f = config.hidden_size, config.intermediate_size
    shapes = {names.EMBED + ".weight": (config.vocab_size, d)}
    if not config.tie_word_embeddings:
        shapes[names.LM_HEAD + ".weight"] = (config.vocab_size, d)
    for norm in names.norm_names(config.num_hidden_layers):
        shapes[norm + ".weight"] = (f,) if norm.endswith(names.FFN_SUB_NORM) else (d,)
    return shapes


# Bounds on what a model file declares beyond its tensors' shapes, each far past any
# real BitNet (context 4,096; weights within a few hundred; weight scales 1..1e4; eps
# 1e-5; rope theta up to 5e5), and well inside what float32 and the integer decode
# compute: a value past them is a corrupt or hostile file, and accepting it meant NaN
# logits or an all-zero output with exit 0 (issue 24).
MAX_CONTEXT = 1 << 15          # every position costs memory (KV cache, RoPE tables)
MAX_ABS_FLOAT = 1e6            # |embedding, norm, lm_head value|: squares and sums stay finite
MIN_WEIGHT_SCALE = 1e-6        # the host divides by it (a large one only quiets a layer)
MAX_RMS_NORM_EPS = 1.0
ROPE_THETA_RANGE = (1.0, 1e12)
MAX_PROBE_POSITIONS = 1 << 20  # the probe steps the float reference once per position


def check_config_ranges(config, where):
    """The config's fields that no tensor's shape bounds, against the bounds above."""
    if config.max_position_embeddings > MAX_CONTEXT:
        raise TernaryError(f"{where}: config: max_position_embeddings must be at most "
                           f"{MAX_CONTEXT:,}, got {config.max_position_embeddings:,}")
    if config.rms_norm_eps > MAX_RMS_NORM_EPS:
        raise TernaryError(f"{where}: config: rms_norm_eps must be at most {MAX_RMS_NORM_EPS:g}, "
                           f"got {config.rms_norm_eps!r}")
    lo, hi = ROPE_THETA_RANGE
    if not lo <= config.rope_theta <= hi:
        raise TernaryError(f"{where}: config: rope_theta must be within {lo:g}..{hi:g}, got "
                           f"{config.rope_theta!r}")


def check_model(model, where):
    """Check a model's numbers are usable; raise :class:`TernaryError` naming the tensor.

    Every float tensor must have its config's shape and only finite values within
    ``MAX_ABS_FLOAT``; every BitLinear its ``(out, in)`` shape, trits in {-1, 0, 1} and a
    finite scale of at least ``MIN_WEIGHT_SCALE`` (the host divides by it); the config the bounds
    of :func:`check_config_ranges`. Run on load, on import and before saving, so no path
    produces or accepts a model that generates NaN.
    """
    check_config_ranges(model.config, where)
    for name, shape in float_tensor_shapes(model.config).items():
        a = model.floats.get(name)
        if a is None:
            raise TernaryError(f"{where}: tensor {name} is missing")
        if tuple(np.shape(a)) != tuple(shape):
            raise TernaryError(f"{where}: tensor {name} has shape {tuple(np.shape(a))}, expected {tuple(shape)}")
        bad = np.size(a) - np.count_nonzero(np.isfinite(a))
        if bad:
            raise TernaryError(f"{where}: tensor {name} has {bad} non-finite values (NaN or inf)")
        big = float(np.abs(a).max()) if np.size(a) else 0.0
        if big > MAX_ABS_FLOAT:
            raise TernaryError(f"{where}: tensor {name} has a value of magnitude {big:.3g}; "
                               f"model values must be within +-{MAX_ABS_FLOAT:g}")
    for name, (out, k) in model.config.bitlinear_shapes().items():
        b = model.bitlinears.get(name)
        if b is None:
            raise TernaryError(f"{where}: tensor {name}.weight is missing")
        if tuple(b.trits.shape) != (out, k):
            raise TernaryError(f"{where}: tensor {name}.weight has shape {tuple(b.trits.shape)}, "
                               f"expected {(out, k)}")
        if b.trits.size and (b.trits.min() < -1 or b.trits.max() > 1):
            raise TernaryError(f"{where}: tensor {name}.weight has values outside -1, 0, 1")
        scale = float(np.asarray(b.weight_scale, dtype=np.float32).reshape(-1)[0])
        if not (np.isfinite(scale) and scale > 0):
            raise TernaryError(f"{where}: tensor {name}.weight_scale must be finite and greater "
                               f"than 0, got {scale!r}")
        if scale < MIN_WEIGHT_SCALE:
            raise TernaryError(f"{where}: tensor {name}.weight_scale must be at least "
                               f"{MIN_WEIGHT_SCALE:g}, got {scale:.3g}")


def save_model(path, model, *, what="output", inputs=()):
    """Write ``model`` to ``path`` through :mod:`ternary_core.output_file` (all or nothing,
    the umask's mode); ``what`` and ``inputs`` as there."""
    from safetensors.numpy import save

    from ..output_file import check_output_path, write_output

    check_output_path(path, what=what, inputs=inputs)
    check_model(model, f"{what} {path}: refusing to save the model")
    tensors = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in model.floats.items()}
    for name, b in model.bitlinears.items():
        tensors[name + ".weight"] = hf_bitnet.pack(b.trits)
        tensors[name + ".weight_scale"] = np.array([b.weight_scale], dtype=np.float32)
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
            "config": json.dumps(model.config.to_dict()), "tokenizer": json.dumps(model.tokenizer)}
    if model.integer_probe is not None:
        meta["integer_probe"] = json.dumps({"positions": model.integer_probe.positions,
                                            "top1_agreeing": model.integer_probe.agreeing})
    write_output(path, save(tensors, metadata=meta), what=what, inputs=inputs)


def refuse_irregular(path, what):
    """A FIFO or device where ``what`` should be: never read (it may block)."""
    if path.exists() and not path.is_file():
        raise TernaryError(f"{path}: not a regular file, so not {what}")


def _read(path):
    path = Path(path)
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as exc:      # a name too long, a symlink loop, no permission
        raise TernaryError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if path.is_dir():
        raise TernaryError(f"{path}: is a folder, not a model file (`ternary import` reads "
                           f"Hugging Face folders)")
    refuse_irregular(path, "a model file")
    if not path.is_file():
        raise TernaryError(f"{path}: no such model file")
    return read_safetensors(path)


def load_model(path):
    """Load and validate a model file; raise :class:`TernaryError` naming what is wrong."""
    meta, tensors = _read(path)
    where = str(path)
    if meta.get("format") != FORMAT_NAME:
        raise TernaryError(f"{where}: not a ternary-engine model (metadata format="
                           f"{meta.get('format')!r}); use `ternary import` for HF or GGUF files")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise TernaryError(f"{where}: model format version {meta.get('format_version')!r} is not "
                           f"supported (this version reads {FORMAT_VERSION})")
    config = BitNetConfig.from_dict(parse_json(meta.get("config", ""), f"{where}: metadata config"),
                                    source=f"{where}: config")
    tokenizer = parse_json(meta.get("tokenizer", ""), f"{where}: metadata tokenizer")
    probe = read_integer_probe(meta, where)

    floats = {}
    for name, shape in float_tensor_shapes(config).items():
        floats[name] = _expect(tensors, name, shape, "f", where).astype(np.float32)
    bitlinears = {}
    for name, (out, k) in config.bitlinear_shapes().items():
        packed = _expect(tensors, name + ".weight", (-(-out // 4), k), "u", where)
        if packed.dtype != np.uint8:
            raise TernaryError(f"{where}: tensor {name}.weight must be uint8 (HF packed), got {packed.dtype}")
        try:
            trits = hf_bitnet.unpack(packed, out)
        except TernaryError as exc:
            raise TernaryError(f"{where}: tensor {name}.weight: {exc}") from None
        scale = _expect(tensors, name + ".weight_scale", (1,), "f", where)
        bitlinears[name] = BitLinearWeights(trits, np.float32(scale[0]))
    model = BitNetModel(config, tokenizer, floats, bitlinears, probe)
    check_model(model, where)
    return model


def read_integer_probe(meta, where):
    """The :class:`IntegerProbe` of a file's metadata (None if it has none), every field
    checked: a bad one is an error naming it."""
    if "integer_probe" not in meta:
        return None
    what = f"{where}: metadata integer_probe"
    value = parse_json(meta["integer_probe"], what, expect=dict)
    fields = ("positions", "top1_agreeing")
    for key in value:
        if key not in fields:
            raise TernaryError(f"{what}: unknown field {key!r} (expected {', '.join(fields)})")
    for key in fields:
        if key not in value:
            raise TernaryError(f"{what}: field {key} is missing")
    positions, agreeing = value["positions"], value["top1_agreeing"]
    if type(positions) is not int or not 0 <= positions <= MAX_PROBE_POSITIONS:
        raise TernaryError(f"{what}: positions must be an integer 0..{MAX_PROBE_POSITIONS:,}, "
                           f"got {positions!r}")
    if type(agreeing) is not int or not 0 <= agreeing <= positions:
        raise TernaryError(f"{what}: top1_agreeing must be an integer 0..positions "
                           f"({positions}), got {agreeing!r}")
    return IntegerProbe(positions, agreeing)


def _expect(tensors, name, shape, kinds, where):
    if name not in tensors:
        raise TernaryError(f"{where}: tensor {name} is missing")
    a = tensors[name]
    if a.dtype.kind not in kinds:
        raise TernaryError(f"{where}: tensor {name} has dtype {a.dtype}, expected "
                           f"{'float' if kinds == 'f' else 'uint8'}")
    if tuple(a.shape) != tuple(shape):
        raise TernaryError(f"{where}: tensor {name} has shape {tuple(a.shape)}, expected {tuple(shape)}")
    return a

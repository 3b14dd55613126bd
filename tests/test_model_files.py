"""Model files and importers: round trips, GGUF TQ1_0/TQ2_0 import, and one-line errors."""

import json

import numpy as np
import pytest
from gguf import GGUFValueType

from host.cli import main
from host.generate import default_model_path
from ternary_core.model.config import BitNetConfig
from ternary_core.model.file import BitLinearWeights, BitNetModel, float_tensor_shapes, load_model, save_model
from ternary_core.model.random import random_model  # noqa: F401 (the tests' import)
from ternary_core.reference import BitNetRunner
from tests.helpers import random_trits


def test_model_file_round_trip(tmp_path, rng):
    m = random_model(rng, BitNetConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2))
    save_model(tmp_path / "m.safetensors", m)
    back = load_model(tmp_path / "m.safetensors")
    assert back.config == m.config
    for n, b in m.bitlinears.items():
        np.testing.assert_array_equal(back.bitlinears[n].trits, b.trits)
        assert back.bitlinears[n].weight_scale == b.weight_scale


def test_shipped_model_fits_icebreaker_spram_in_base3():
    from ternary_core.formats.native import TileLayout
    m = load_model(default_model_path())
    layout = TileLayout(4, 10, "base3")
    total = sum(layout.packed_bytes(*b.trits.shape) for b in m.bitlinears.values())
    print(f"shipped model: {m.ternary_params():,} trits, {total:,} bytes in base3 on 4x10")
    assert total <= 128 * 1024


GGUF_CFG = BitNetConfig(hidden_size=256, intermediate_size=256, num_hidden_layers=1,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)


def gguf_model(rng):
    """A random model whose scales fp16 holds exactly (GGUF's block scales are fp16)."""
    m = random_model(rng, GGUF_CFG)
    for b in m.bitlinears.values():
        b.weight_scale = np.float32(1.0) / np.float32(np.float16(1.0 / b.weight_scale))
    return m


def write_gguf(path, m, qtype="TQ2_0", *, scale_tensors=False, activation="relu2", extra=None,
               metadata=None, replace=None):
    """``m`` as llama.cpp's converter writes a ``bitnet`` GGUF, BitLinears quantized by the
    ``gguf`` package: ``qtype`` TQ1_0/TQ2_0 (the tensor's scale in its blocks) or
    F32/F16/BF16 (the values ``{-s, 0, +s}``, llama.cpp's default); or (``scale_tensors``)
    the trits alone (s = 1) and a ``blk.N.<name>.scale`` tensor; ``activation`` None leaves out ``bitnet.hidden_activation``; ``extra``: more
    tensors ``{name: array}``; ``replace``: BitLinear tensors written as the given arrays
    ``{name: array}`` (or raw data ``{name: (uint8 array, GGMLQuantizationType)}``) instead;
    ``metadata``: more keys ``{key: value}`` (lists as arrays; a
    tuple ``(value, GGUFValueType[, sub_type])`` is written as that type, as a careless or
    hostile writer might: empty arrays and strings, negative ids, arrays of arrays, bytes
    that are not UTF-8)."""
    import gguf

    c = m.config
    w = gguf.GGUFWriter(str(path), arch="bitnet")
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_context_length(c.max_position_embeddings)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(c.rope_theta)
    if activation is not None:
        w.add_string("bitnet.hidden_activation", activation)
    for key, v in (metadata or {}).items():
        if isinstance(v, tuple):
            w.add_key_value(key, *v)
            continue
        add = {list: w.add_array, str: w.add_string, bool: w.add_bool, int: w.add_uint32}[type(v)]
        add(key, v)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    from ternary_core.model.names import GGUF_LINEARS, GGUF_NORMS
    for i in range(c.num_hidden_layers):
        for g, h in GGUF_NORMS.items():
            names[f"model.layers.{i}.{h}.weight"] = f"blk.{i}.{g}.weight"
    for name, a in m.floats.items():
        w.add_tensor(names[name], a)
    for i in range(c.num_hidden_layers):
        for g, h in GGUF_LINEARS.items():
            b = m.bitlinears[f"model.layers.{i}.{h}"]
            scale = np.float32(1.0) / b.weight_scale
            values = b.trits.astype(np.float32) * (np.float32(1.0) if scale_tensors else scale)
            kind = gguf.GGMLQuantizationType[qtype]
            name = f"blk.{i}.{g}.weight"
            if name in (replace or {}):
                r = replace[name]    # an array, or (raw bytes, GGMLQuantizationType)
                if isinstance(r, tuple):
                    w.add_tensor(name, r[0], raw_dtype=r[1])
                else:
                    w.add_tensor(name, r)
            else:
                w.add_tensor(name, gguf.quants.quantize(values, kind), raw_dtype=kind)
            if scale_tensors:
                w.add_tensor(f"blk.{i}.{g}.scale", np.array([scale], np.float32))
    for name, a in (extra or {}).items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("qtype", ["TQ1_0", "TQ2_0", "F16", "F32"])
@pytest.mark.parametrize("scale_tensors", [False, True], ids=["scale-in-blocks", "scale-tensors"])
def test_gguf_import_keeps_trits_and_logits(tmp_path, rng, capsys, qtype, scale_tensors):
    m = gguf_model(rng)
    path = write_gguf(tmp_path / "m.gguf", m, qtype, scale_tensors=scale_tensors)
    out = tmp_path / "imported.safetensors"
    assert main(["import", str(path), "-o", str(out)]) == 0
    said = capsys.readouterr().err
    assert "activation relu2" in said
    assert ("x .scale tensors (7 of 7)" in said) == scale_tensors
    got = load_model(out)
    assert got.config == GGUF_CFG
    for n, b in m.bitlinears.items():
        np.testing.assert_array_equal(got.bitlinears[n].trits, b.trits)
        assert got.bitlinears[n].weight_scale == b.weight_scale
    a, bb = BitNetRunner(m), BitNetRunner(got)
    for t in [1, 100, 7]:
        np.testing.assert_array_equal(a.step(t), bb.step(t))


def test_gguf_scale_tensors_multiply_the_block_scale(tmp_path, rng):
    """llama.cpp multiplies a matmul by ``.scale`` on top of the blocks' own scale."""
    from ternary_core.model.importers import import_gguf

    m = gguf_model(rng)
    plain = import_gguf(write_gguf(tmp_path / "a.gguf", m))
    scaled = import_gguf(write_gguf(tmp_path / "b.gguf", m, scale_tensors=True))
    for n in m.bitlinears:
        assert scaled.bitlinears[n].weight_scale == plain.bitlinears[n].weight_scale


@pytest.mark.parametrize("activation, said", [
    (None, "activation silu (bitnet.hidden_activation absent: llama.cpp's default)"),
    ("silu", "activation silu,"),
])
def test_gguf_silu_or_no_activation_imports_as_silu(tmp_path, rng, capsys, activation, said):
    """llama.cpp runs a bitnet GGUF with SiLU unless ``hidden_activation`` says otherwise."""
    from dataclasses import replace

    m = gguf_model(rng)
    m.config = replace(m.config, hidden_act="silu")
    path = write_gguf(tmp_path / "m.gguf", m, activation=activation)
    out = tmp_path / "imported.safetensors"
    assert main(["import", str(path), "-o", str(out)]) == 0
    assert said in capsys.readouterr().err
    got = load_model(out)
    assert got.config.hidden_act == "silu" and got.config == m.config
    a, b = BitNetRunner(m), BitNetRunner(got)
    for t in [1, 100, 7]:
        np.testing.assert_array_equal(a.step(t), b.step(t))


@pytest.mark.parametrize("activation", ["gelu", "swiglu", "RELU2"])
def test_gguf_with_another_activation_is_refused(tmp_path, rng, capsys, activation):
    path = write_gguf(tmp_path / "m.gguf", gguf_model(rng), activation=activation)
    out = tmp_path / "o.safetensors"
    said = _cli_error(capsys, ["import", str(path), "-o", str(out)])
    assert (f"GGUF key bitnet.hidden_activation is {activation!r}; this engine runs relu2 or "
            f"silu") in said
    assert not out.exists()


@pytest.mark.parametrize("metadata, message", [
    ({"bitnet.hidden_activation": "SiLU"}, "is 'SiLU'; this engine runs relu2 or silu"),
    ({"bitnet.hidden_activation": " silu "}, "is ' silu '; this engine runs relu2 or silu"),
    ({"bitnet.hidden_activation": ("", GGUFValueType.STRING)}, "is ''; this engine runs"),
    ({"bitnet.hidden_activation": 3}, "is 3; this engine runs relu2 or silu"),
    ({"bitnet.hidden_activation": True}, "is True; this engine runs relu2 or silu"),
    # an array was read as its first element: ["silu"] imported as a SiLU model
    ({"bitnet.hidden_activation": ["silu"]}, "bitnet.hidden_activation must be a single value, "
                                             "not an array"),
    ({"bitnet.hidden_activation": (b"\xffsilu", GGUFValueType.STRING)},
     "bitnet.hidden_activation is not UTF-8"),
    ({"bitnet.block_count": [1, 2]}, "bitnet.block_count must be a single value, not an array"),
    ({"general.architecture": ["bitnet"]}, "general.architecture must be a single value"),
], ids=["SiLU", "spaces", "empty", "int", "bool", "array", "not UTF-8",
        "block_count array", "architecture array"])
def test_gguf_hidden_activation_of_another_type_is_refused_by_key(tmp_path, rng, capsys, metadata,
                                                                  message):
    path = write_gguf(tmp_path / "m.gguf", gguf_model(rng), activation=None, metadata=metadata)
    out = tmp_path / "o.safetensors"
    said = _cli_error(capsys, ["import", str(path), "-o", str(out)])
    assert message in said, said
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    ({"rope_freqs.weight": np.ones(32, np.float32)}, "tensor rope_freqs.weight is not part of"),
    ({"blk.0.attn_q.scale": np.array([1.0, 2.0], np.float32)},
     "tensor blk.0.attn_q.scale must be one F32 value"),
    ({"blk.0.attn_q.scale": np.array([-1.0], np.float32)},
     "tensor blk.0.attn_q.scale must be finite and greater than 0"),
])
def test_gguf_tensors_it_cannot_honour_are_refused_by_name(tmp_path, rng, capsys, extra, message):
    path = write_gguf(tmp_path / "m.gguf", gguf_model(rng), extra=extra)
    out = tmp_path / "o.safetensors"
    assert message in _cli_error(capsys, ["import", str(path), "-o", str(out)])
    assert not out.exists()


def test_import_records_the_integer_probe_and_generate_honours_it(tmp_path, rng, capsys):
    """``ternary import`` (here of a GGUF) measures the integer decode against the float
    reference (:func:`ternary_core.integer.measure.compare` on the probe's ids), prints it,
    and records it in the model file; ``--probe-positions 0`` records "not measured", and
    such a model (like one with no record) runs in integers as before."""
    from ternary_core.integer.measure import compare
    from ternary_core.integer.probe import probe_ids
    from ternary_core.model.file import IntegerProbe

    m = gguf_model(rng)
    path = write_gguf(tmp_path / "m.gguf", m)
    out = tmp_path / "imported.safetensors"
    assert main(["import", str(path), "-o", str(out), "--probe-positions", "40"]) == 0
    said = capsys.readouterr().err
    got = load_model(out)
    want = compare(got, probe_ids(m.config.vocab_size, 40))
    assert got.integer_probe == IntegerProbe(40, want["top1_agreeing"])
    assert (f"integer decode: top-1 agreement {int(want['top1_agreeing'] / 40 * 1000) / 10:.1f}% "
            f"with the float reference over 40 probe positions (bound 95%)") in said
    save_model(tmp_path / "again.safetensors", got)       # the record survives a round trip
    assert load_model(tmp_path / "again.safetensors").integer_probe == got.integer_probe

    unmeasured = tmp_path / "unmeasured.safetensors"
    assert main(["import", str(path), "-o", str(unmeasured), "--probe-positions", "0"]) == 0
    assert "integer decode: not measured against the float reference (--probe-positions 0)" \
        in capsys.readouterr().err
    assert load_model(unmeasured).integer_probe == IntegerProbe(0, 0)
    assert main(["generate", "--model", str(unmeasured), "--backend", "integer", "--prompt-ids",
                 "1,2", "--tokens", "3"]) == 0


def _cli_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_truncated_model_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(default_model_path().read_bytes()[:100_000])
    err = _cli_error(capsys, ["generate", "--model", str(bad), "--tokens", "2"])
    assert "bad.safetensors" in err and ("truncated" in err or "not a readable" in err)


def test_misshaped_and_non_ternary_model_files_name_the_tensor(tmp_path, capsys, rng):
    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    src = default_model_path()
    with safe_open(str(src), framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(str(src))
    shaped = dict(tensors)
    shaped["model.layers.1.mlp.ffn_sub_norm.weight"] = np.ones(7, np.float32)
    save_file(shaped, str(tmp_path / "shape.safetensors"), metadata=meta)
    err = _cli_error(capsys, ["generate", "--model", str(tmp_path / "shape.safetensors"), "--tokens", "2"])
    assert "model.layers.1.mlp.ffn_sub_norm.weight" in err and "shape" in err

    trit = dict(tensors)
    packed = trit["model.layers.2.self_attn.k_proj.weight"].copy()
    packed[3, 5] = 0xFF  # code 3 is not a trit
    trit["model.layers.2.self_attn.k_proj.weight"] = packed
    save_file(trit, str(tmp_path / "trit.safetensors"), metadata=meta)
    err = _cli_error(capsys, ["generate", "--model", str(tmp_path / "trit.safetensors"), "--tokens", "2"])
    assert "model.layers.2.self_attn.k_proj" in err and "not a trit" in err

    meta2 = dict(meta, format_version="99")
    save_file(tensors, str(tmp_path / "ver.safetensors"), metadata=meta2)
    err = _cli_error(capsys, ["generate", "--model", str(tmp_path / "ver.safetensors"), "--tokens", "2"])
    assert "version" in err


def test_generate_reference_json_is_deterministic(capsys):
    outs = []
    for _ in range(2):
        assert main(["generate", "--json", "--seed", "3", "--tokens", "12", "--prompt", "KING:"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0]["token_ids"] == outs[1]["token_ids"] and len(outs[0]["token_ids"]) == 12
    assert outs[0]["text"] and outs[0]["prompt_ids"] == list(b"KING:")


def test_gguf_bf16_values_import_as_trits_with_the_bf16_scale(tmp_path, rng):
    from ternary_core.model.importers import import_gguf

    m = gguf_model(rng)
    got = import_gguf(write_gguf(tmp_path / "m.gguf", m, "BF16"))
    for n, b in m.bitlinears.items():
        np.testing.assert_array_equal(got.bitlinears[n].trits, b.trits)
        s = (np.float32(1.0) / b.weight_scale).astype(np.float32)
        bf16 = (s.view(np.uint32) + 0x7FFF + ((s.view(np.uint32) >> 16) & 1)) >> 16 << 16
        assert got.bitlinears[n].weight_scale == np.float32(1.0) / np.uint32(bf16).view(np.float32)


@pytest.mark.parametrize("values, message", [
    ([0.5, -0.5, 0.25, 0.0], "is not ternary: its non-zero values have 2 magnitudes"),
    ([0.5, np.inf, 0.0, 0.5], "holds values that are not finite"),
])
def test_gguf_float_bitlinears_that_are_not_ternary_are_refused_by_name(tmp_path, rng, capsys,
                                                                       values, message):
    m = gguf_model(rng)
    out_, k = GGUF_CFG.bitlinear_shapes()["model.layers.0.self_attn.q_proj"]
    bad = np.resize(np.array(values, np.float32), (out_, k))
    path = write_gguf(tmp_path / "m.gguf", m, "F32", replace={"blk.0.attn_q.weight": bad})
    out = tmp_path / "o.safetensors"
    err = _cli_error(capsys, ["import", str(path), "-o", str(out)])
    assert "tensor blk.0.attn_q.weight" in err and message in err, err
    assert not out.exists()

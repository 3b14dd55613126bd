"""Bad inputs, round three, against what came in with issue 22: GGUF BitLinears in
F32/F16/BF16, the integer decode's probe record (``integer_probe``) and the device's
``features`` limit. The table and :func:`run_case` are ``test_cli_bad_inputs.py``'s
(exit code, one clear line, nothing created, changed or removed); NumPy's warnings are
errors here, since a warning is a second line on the user's terminal. Nothing here builds
a board or runs a simulator."""

import json

import numpy as np
import pytest

from host.cli import main
from tests.test_cli_bad_inputs import (  # noqa: F401
    Case,
    inputs,
    model_variant,
    run_case,
    work,
)


def _gguf_variants(d):
    import gguf

    from tests.test_model_files import GGUF_CFG, gguf_model, random_model, write_gguf
    from ternary_core.model.file import save_model
    from ternary_core.model.config import BitNetConfig

    rng = np.random.default_rng(22)
    out, k = GGUF_CFG.bitlinear_shapes()["model.layers.0.self_attn.q_proj"]

    def ternary(*values, dtype):
        return np.resize(np.array(values, np.float64), (out, k)).astype(dtype)

    q = "blk.0.attn_q.weight"
    write_gguf(d / "f32-1e-45.gguf", gguf_model(rng), "F32",
               replace={q: ternary(1e-45, 0, -1e-45, dtype=np.float32)})
    write_gguf(d / "f32-1e30.gguf", gguf_model(rng), "F32",
               replace={q: ternary(1e30, 0, -1e30, dtype=np.float32)})
    write_gguf(d / "scale-1e-45.gguf", gguf_model(rng), "F16",
               extra={"blk.0.attn_q.scale": np.array([1e-45], np.float32)})
    # TQ2_0 whose every block scale is the same bad fp16
    vals = np.sign(rng.normal(size=(out, k))).astype(np.float32) * 0.5
    for name, v in (("zero", 0.0), ("inf", np.inf), ("nan", np.nan), ("neg", -0.5)):
        raw = gguf.quants.quantize(vals, gguf.GGMLQuantizationType.TQ2_0).copy()
        raw.reshape(-1, 66)[:, -2:] = np.array([v], np.float16).view(np.uint8)
        write_gguf(d / f"tq-scale-{name}.gguf", gguf_model(rng), "TQ2_0",
                   replace={q: (raw, gguf.GGMLQuantizationType.TQ2_0)})
    # shapes the file declares, other than the engine's, with the same number of values
    cfg = BitNetConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    up = np.sign(rng.normal(size=(64, 128))).astype(np.float16)       # (in, out): transposed
    write_gguf(d / "up-transposed.gguf", random_model(rng, cfg), "F16",
               replace={"blk.0.ffn_up.weight": up})
    m = random_model(rng, cfg)
    m.floats["model.norm.weight"] = m.floats["model.norm.weight"].reshape(8, 8)
    write_gguf(d / "norm-2d.gguf", m, "F16")
    # every value within the model file's bounds, yet the float reference overflows float32
    m = random_model(rng, BitNetConfig(**{**cfg.to_dict(), "num_hidden_layers": 2}))
    for name, a in m.floats.items():
        m.floats[name] = np.where(a < 0, -9.9e5, 9.9e5).astype(np.float32)
    for b in m.bitlinears.values():
        b.weight_scale = np.float32(1.01e-6)
    write_gguf(d / "overflows.gguf", m, "F32")
    save_model(d / "overflows.safetensors", m)


@pytest.fixture(scope="module")
def bad3(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad3")
    _gguf_variants(d)
    probes = {
        "digits": '{"positions": 512, "top1_agreeing": ' + "1" * 5000 + "}",
        "duplicate": '{"positions": 512, "top1_agreeing": 400, "top1_agreeing": 500}',
    }
    for name, probe in probes.items():
        model_variant(d / f"probe-{name}.safetensors", meta={"integer_probe": probe})
    cfg_digits = '{"hidden_size": ' + "9" * 5000 + "}"
    model_variant(d / "config-digits.safetensors", meta={"config": cfg_digits})
    (d / "ids.txt").write_text("1 2 3 4 5 6 7 8")
    return d


OUT = "-o {w}/out.safetensors"
CASES = {
    # a BitLinear's scale (the magnitude of its float values, or a TQ block scale, times a
    # .scale tensor) whose reciprocal, the engine's weight scale, overflows float32 or
    # divides by 0: NumPy's overflow warning before an error naming another tensor
    "F32 BitLinear of +-1e-45": Case(
        f"import {{b}}/f32-1e-45.gguf {OUT}", 2,
        r"f32-1e-45\.gguf: tensor blk\.0\.attn_q\.weight: its scale must be a finite number within "
        r"2\.94e-39\.\.1e\+06 .*, got 1\.4e-45"),
    "F32 BitLinear of +-1e30": Case(
        f"import {{b}}/f32-1e30.gguf {OUT}", 2,
        r"tensor blk\.0\.attn_q\.weight: its scale must be .* got 1e\+30"),
    ".scale tensor 1e-45": Case(
        f"import {{b}}/scale-1e-45.gguf {OUT}", 2,
        r"tensor blk\.0\.attn_q\.weight times blk\.0\.attn_q\.scale: its scale must be .*, got 0"),
    **{f"TQ2_0 block scales all {name}": Case(
        f"import {{b}}/tq-scale-{name}.gguf {OUT}", 2,
        rf"tensor blk\.0\.attn_q\.weight: its scale must be .*, got {want}")
       for name, want in (("zero", "0"), ("inf", "inf"), ("nan", "nan"), ("neg", "-0.5"))},
    # the shape a GGUF tensor declares is the shape it has: the same number of values in
    # another shape is another matrix, scrambled
    "BitLinear transposed": Case(
        f"import {{b}}/up-transposed.gguf {OUT}", 2,
        r"up-transposed\.gguf: tensor blk\.0\.ffn_up\.weight has shape \(64, 128\), "
        r"expected \(128, 64\)"),
    "norm of two dimensions": Case(
        f"import {{b}}/norm-2d.gguf {OUT}", 2,
        r"norm-2d\.gguf: tensor output_norm\.weight has shape \(8, 8\), expected \(64,\)"),
    # the probe stepped NaN logits (NumPy's warnings by the screenful), wrote the model and
    # said the float reference ran it: it cannot
    "a model whose float reference overflows": Case(
        f"import {{b}}/overflows.gguf {OUT}", 2,
        r"overflows\.gguf: integer decode probe: the float reference computed a non-finite logit "
        r"at position \d+: the model's numbers overflow float32, so no backend runs it"),
    # ... and generate and eval printed NumPy's warnings by the screenful above their error
    "generate a model whose float reference overflows": Case(
        "generate --model {b}/overflows.safetensors --prompt-ids 1,2", 2,
        r"the model computed a non-finite logit after position 1: its numbers overflow float32"),
    "eval a model whose float reference overflows": Case(
        "eval --model {b}/overflows.safetensors --ids {b}/ids.txt", 2,
        r"the model computed a non-finite logit after position 0: its numbers overflow float32"),
    # JSON numbers past Python's 4,300-digit conversion limit: a ValueError traceback
    "integer_probe of 5,000 digits": Case(
        "generate --model {b}/probe-digits.safetensors", 2,
        r"probe-digits\.safetensors: metadata integer_probe: not valid JSON \(a number of more "
        r"than 4,300 digits\)"),
    "config of 5,000 digits": Case(
        "generate --model {b}/config-digits.safetensors", 2,
        r"config-digits\.safetensors: metadata config: not valid JSON \(a number of more than"),
    # a record that says two things: the last one passed the gate
    "integer_probe with a duplicate key": Case(
        "generate --model {b}/probe-duplicate.safetensors --backend integer", 2,
        r"probe-duplicate\.safetensors: metadata integer_probe: key 'top1_agreeing' is given "
        r"twice"),
}


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_3(name, inputs, bad3, work, monkeypatch, capsys):  # noqa: F811
    case = CASES[name]
    case = Case(case.argv.replace("{b}", str(bad3)), case.code, case.message, case.changes,
                case.setup, case.extra)
    out = run_case(case, inputs, work, monkeypatch, capsys)
    assert out == ("\x01\x02" if name.startswith("generate") else "")   # the prompt, streamed


# ---------------------------------------------------------------------------- the features limit

@pytest.mark.parametrize("offload", [[], ["--offload", "model"]], ids=["chosen", "asked"])
def test_a_device_with_features_this_host_does_not_know_runs_the_model(offload, capsys,
                                                                       monkeypatch):
    """A newer device's INFO reports an optional instruction this host does not know (bit
    4); the host compiles without it, as it does without any it knows but the device lacks.
    It said "the model does not fit the device" (asked), or quietly fell back to matvec
    offload (chosen)."""
    from dataclasses import replace

    import ternary_core.protocol as protocol
    from tests.helpers import python_devices

    from dataclasses import fields

    from ternary_core.offload.limits import DeviceLimits

    real_info_for = protocol.info_for
    at = [f.name for f in fields(DeviceLimits)].index("features")

    def info_for(*args, **kw):
        info = real_info_for(*args, **kw)
        lim = info.limits
        return replace(info, limits=lim[:at] + (lim[at] | 4,) + lim[at + 1:])

    monkeypatch.setattr(protocol, "info_for", info_for)
    opened = python_devices(monkeypatch)
    argv = ["generate", "--tokens", "6", "--json", "--temperature", "0"]
    capsys.readouterr()
    assert main(argv) == 0
    want = json.loads(capsys.readouterr().out)["token_ids"]
    code = main(argv + ["--backend", "sim", "--board", "ulx3s-85f", *offload])
    out, err = capsys.readouterr()
    assert code == 0, err
    got = json.loads(out)
    assert got["offload"] == "model" and got["token_ids"] == want
    assert opened[0].info.limits[at] & 4

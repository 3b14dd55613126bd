"""The error-budget tool (ternary_core/integer/error_budget.py): its traces are the runners'
passes, its variant ops equal the decode's at the default widths, and the same-input errors
it reports obey bounds derived from the formats (not tuned on measurements)."""

from dataclasses import replace

import numpy as np
import pytest

from ternary_core.integer import compile_model, ops
from ternary_core.integer import error_budget as eb
from ternary_core.integer.fixed import Scalar, scalar_from_int
from ternary_core.model.config import BitNetConfig
from tests.test_model_files import random_model

CFG = BitNetConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=48)


def tiny(rng):
    return random_model(rng, CFG)


@pytest.mark.parametrize("act", ["relu2", "silu"])
def test_traces_are_the_runners_passes(rng, act):
    model = random_model(rng, replace(CFG, hidden_act=act))
    ids = rng.integers(0, CFG.vocab_size, 40)
    im = compile_model(model)
    fl, _ = eb.float_trace(model, ids)
    il, _ = eb.integer_trace(im, ids)
    eb.check_traces(model, im, ids, fl, il)     # raises if the integer trace is not bit-exact


def test_same_input_errors_are_finite_and_within_the_format_bounds(rng):
    model = tiny(rng)
    ids = rng.integers(0, CFG.vocab_size, 2 * CFG.max_position_embeddings + 1)
    budget = eb.run(model, ids)
    s = budget.summary()
    assert s["positions"] == ids.size - 1
    for table in ("same_input", "compounded"):
        for row in s[table]:
            assert all(np.isfinite(row[b]) for b in s["buckets"]), row
    same = {(r["layer"], r["op"]): max(r[b] for b in s["buckets"]) for r in s["same_input"]}
    # A BitLinear fed the reference's own int8 codes differs from the reference only by its
    # output scale r * (1/weight_scale): three roundings to a 16-bit mantissa in [2**15, 2**16)
    # (r from the reference's scale, 1/weight_scale at compile time, their product), each
    # within half an LSB = 2**-16 relative, plus float32 rounding in the reference (< 2**-21).
    # The scale is common to the row, so the row's relative L2 error is that scale error.
    bound = 3 * 2.0 ** -16 + 2.0 ** -21
    for i in range(CFG.num_hidden_layers):
        for key in "qkv":
            err = same[(i, f"{key}_proj (BitLinear + rescale)")]
            print(f"layer {i} {key}_proj: {err:.3g} (bound {bound:.3g})")
            assert err <= bound
    # The per-head absmax int8 quantizer (the KV cache) rounds each element to within half a
    # step amax/127 (plus 2**-16-relative slack for its 17-bit normalization and scalars), so
    # |err|_2 <= sqrt(hd) * amax * (0.5 + 2**-8) / 127 and |x|_2 >= amax: a relative L2 error of
    # at most sqrt(hd) * (0.5 + 2**-8) / 127 per row; the mean over heads obeys it too.
    hd = CFG.head_dim
    q_bound = np.sqrt(hd) * (0.5 + 2.0 ** -8) / 127
    for i in range(CFG.num_hidden_layers):
        for key in "qkv":
            assert 0 < same[(i, f"{key} per-head int8 (KV cache)")] <= q_bound


def test_per_row_bounds_hold_row_by_row(rng):
    """The quantizer's bound row by row (not only on bucket means), on random vectors over a
    wide range of per-position magnitudes. (The bound is the quantizer's given an exact
    input: a head far smaller than the position's largest has few bits before it, from the
    24-bit conversion here, from the accumulator's LSB after RoPE in the decode.)"""
    x = rng.normal(size=(200, 4, 16)) * np.exp(rng.normal(size=(200, 1, 1)) * 3)
    ints, xs = eb.to_ints(x.reshape(200, -1), 24)
    x8, sc = ops.quant_heads(ints.reshape(x.shape), xs[:, 0])
    err = eb.rel_err(x8 * sc.to_float()[..., None], x)
    assert err.max() <= np.sqrt(16) * (0.5 + 2.0 ** -8) / 127
    assert err.min() > 0


def test_variant_ops_equal_the_decode_ops_at_default_widths(rng):
    h, t, hd = 3, 20, 16
    q8, k8, v8 = (rng.integers(-127, 128, (h, t, hd)) for _ in range(3))
    qs, ks, vs = (scalar_from_int(rng.integers(1 << 15, 1 << 16, (h, t)), rng.integers(-30, -10, (h, t)))
                  for _ in range(3))
    mask = np.arange(t)[None, :] <= np.arange(t)[:, None]
    score_k = compile_model(tiny(rng)).score_k
    acc, scale = ops.attention(q8, qs, k8, ks, v8, vs, mask, score_k)
    acc2, scale2, z, e = eb.attention_parts(q8, qs, k8, ks, v8, vs, mask, score_k)
    np.testing.assert_array_equal(acc2, acc)
    np.testing.assert_array_equal(scale2.m, scale.m)
    np.testing.assert_array_equal(scale2.e, scale.e)
    assert (e.max(-1) == 1 << 15).all()                    # the largest score's weight is 1.0
    x = rng.integers(-(1 << 14), 1 << 14, (t, 2, hd))
    cos, sin = (rng.integers(-(1 << 14), 1 << 14, (t, 1, hd // 2)) for _ in range(2))
    np.testing.assert_array_equal(eb.rope_bits(x, cos, sin, 0), ops.rope(x, cos, sin))
    # 6 extra bits are the same rotation, 64 times finer
    assert np.abs(eb.rope_bits(x, cos, sin, 6) - 64 * ops.rope(x, cos, sin)).max() <= 32
    xs = Scalar(np.full(t, 1 << 15), np.full(t, -20))
    a8, s8 = eb.quant_heads_bits(x, xs, 8)
    b8, t8 = ops.quant_heads(x, xs)
    np.testing.assert_array_equal(a8, b8)
    np.testing.assert_array_equal(s8.m, t8.m)


def test_widening_q_k_v_shrinks_their_same_input_error(rng):
    """An int16 KV cache is what the analysis proposes: its rounding is 2**8 finer."""
    x = rng.normal(size=(50, 2, 16))
    ints, xs = eb.to_ints(x.reshape(50, -1), 24)
    errs = {}
    for bits in (8, 16):
        xq, sc = eb.quant_heads_bits(ints.reshape(x.shape), xs[:, 0], bits)
        errs[bits] = eb.rel_err(xq * sc.to_float()[..., None], x).mean()
    print(errs)
    assert errs[16] < errs[8] / 100


def test_cli_refuses_bad_input_with_one_line(tmp_path, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("1 2 x")
    assert eb.main(["--model", str(tmp_path / "missing.safetensors"), "--ids", str(ids)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_a_silu_model_is_measured_with_its_own_glu(rng):
    """A SiLU model was traced with the relu2 GLU: the trace check raised an AssertionError
    (a traceback from the command line)."""
    model = random_model(rng, replace(CFG, hidden_act="silu"))
    s = eb.run(model, rng.integers(0, CFG.vocab_size, 20)).summary()
    for table in ("same_input", "compounded"):
        ops_seen = {r["op"] for r in s[table]}
        assert "silu GLU" in ops_seen and "relu2 GLU" not in ops_seen


def _budget_cli(capsys, argv):
    code = eb.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize("model, ids, message", [
    ("{t}/missing.safetensors", "1 2 3", "missing.safetensors: no such model file"),
    ("{t}", "1 2 3", ": is a folder, not a model file"),
    ("/dev/null", "1 2 3", "/dev/null: not a regular file, so not a model file"),
    ("{t}/ids.txt", "1 2 3", "ids.txt: too short to be a safetensors file"),
    ("{m}", "1 2 x", "token ids must be integers separated by commas or spaces, got 'x'"),
    ("{m}", "", "no token ids given"),
    ("{m}", "7", "--ids: need at least 2 token ids, got 1"),
    ("{m}", "1 256", "--ids: token ids must be in 0..255"),
    ("{m}", "-1 2", "--ids: token ids must be in 0..255"),
    ("{m}", "1 " + "9" * 30, "--ids: token ids must be in 0..255"),
], ids=["missing model", "model a folder", "model a device", "model not safetensors",
        "ids not numbers", "ids empty", "one id", "id past the vocabulary", "negative id",
        "huge id"])
def test_cli_refuses_a_bad_model_or_ids_with_one_line(tmp_path, capsys, model, ids, message):
    from host.generate import default_model_path

    f = tmp_path / "ids.txt"
    f.write_text(ids)
    m = model.format(t=tmp_path, m=default_model_path())
    code, err = _budget_cli(capsys, ["--model", m, "--ids", str(f)])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: --model, --ids"),
    (["--model", "m"], "the following arguments are required: --ids"),
    (["--model", "m", "--ids", "i", "--windows", "x"], "argument --windows: invalid int value"),
])
def test_cli_usage_errors_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        eb.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err.strip().splitlines()[-1], err


def test_cli_ids_a_folder_and_windows_0(tmp_path, capsys):
    from host.generate import default_model_path

    code, err = _budget_cli(capsys, ["--model", str(default_model_path()), "--ids", str(tmp_path)])
    assert code == 2 and "is not a file" in err and err.count("\n") == 1
    (tmp_path / "ids.txt").write_text("1 2 3")
    code, err = _budget_cli(capsys, ["--model", str(default_model_path()), "--ids",
                                     str(tmp_path / "ids.txt"), "--windows", "0"])
    assert code == 2 and "--windows must be a positive integer, got 0" in err

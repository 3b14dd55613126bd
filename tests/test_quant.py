import numpy as np
import pytest

from ternary_core.errors import TernaryError
from ternary_core.quant import dequantize_output, quantize_activations, quantize_weights

torch = pytest.importorskip("torch", reason="torch is installed by `make test` (the reference extra)")


def hf_weight_quant(w):
    """transformers.integrations.bitnet.WeightQuant.forward, without torch.compile."""
    weight = torch.from_numpy(w).float()
    scale = 1.0 / weight.abs().mean().clamp_(min=1e-5)
    return (weight * scale).round().clamp(-1, 1), scale


def hf_activation_quant(x):
    """transformers.integrations.bitnet.BitLinear.activation_quant, without torch.compile."""
    inp = torch.from_numpy(x)
    scale = 127 / inp.abs().max(dim=-1, keepdim=True).values.clamp(min=1e-5)
    return (inp * scale).round().clamp(-128, 127).to(torch.int8), scale


def test_weight_quant_matches_hf_bit_for_bit(rng):
    for shape in [(7, 13), (64, 64), (3, 1)]:
        w = rng.normal(0, rng.uniform(0.001, 3), size=shape).astype(np.float32)
        trits, scale = quantize_weights(w)
        ref_trits, ref_scale = hf_weight_quant(w)
        np.testing.assert_array_equal(trits, ref_trits.numpy().astype(np.int8))
        # torch sums the mean in float32 in its own order: allow the last place.
        np.testing.assert_array_max_ulp(scale, np.float32(ref_scale.item()), maxulp=2)


def test_activation_quant_matches_hf_bit_for_bit(rng):
    x = rng.normal(0, 5, size=(5, 33)).astype(np.float32)
    x[0] = 0.0                       # the epsilon clamp
    x[1, :4] = [127.5, -0.5, 0.5, 1.5]  # exact halves after scaling: round half to even
    xq, scale = quantize_activations(x)
    ref_q, ref_scale = hf_activation_quant(x)
    np.testing.assert_array_equal(xq, ref_q.numpy())
    np.testing.assert_array_equal(scale, ref_scale.numpy())
    assert xq.dtype == np.int8 and not xq[0].any()


def test_round_half_to_even_on_exact_halves():
    # max |x| = 127 makes input_scale exactly 1, so these are exact halves.
    xq, scale = quantize_activations(np.array([127.0, 0.5, 1.5, 2.5, -0.5, -1.5], np.float32))
    assert scale.item() == 1.0
    assert xq.tolist() == [127, 0, 2, 2, 0, -2]


def test_dequantize_is_acc_over_product_of_scales():
    y = dequantize_output(np.array([254, -127]), np.float32(127.0), np.float32(2.0))
    assert y.tolist() == [1.0, -0.5]


def test_quantizers_reject_integers_and_empty():
    with pytest.raises(TernaryError, match="float"):
        quantize_weights(np.ones((2, 2), dtype=np.int32))
    with pytest.raises(TernaryError, match="2-D"):
        quantize_weights(np.ones(3, dtype=np.float32))
    with pytest.raises(TernaryError, match="feature axis"):
        quantize_activations(np.ones((2, 0), dtype=np.float32))

"""Hardware units of the whole-model decode (model offload), each bit-exact to its
function in :mod:`ternary_core.integer` (the golden model is the specification):

- :mod:`.scalar_unit`: :class:`ScalarUnit` (mul, shift, from_int, add, recip, rsqrt).
- :mod:`.exp2`, :mod:`.argmax`, :mod:`.xorshift`: softmax table, greedy pick, random draws.
- :mod:`.elementwise`: rescale (``apply_scalar``), residual add, RoPE.
- :mod:`.rowwise`: row range pass, int8 quantizer, norm gain, head merge, squared-ReLU GLU.
- :mod:`.cycle_model`: the op-level ideal cycles per token of the planned device.
- :mod:`.pipeline`: the stall-together pipeline and shared rounding/normalizing helpers.

See docs/model-offload.md for how they compose into the device.
"""

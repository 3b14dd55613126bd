"""Hardware units of the whole-model decode (model offload), each bit-exact to its
function in :mod:`ternary_core.integer` (the golden model is the specification):

- :mod:`.scalar_unit`: :class:`ScalarUnit` (mul, shift, from_int, add, recip, rsqrt).
- :mod:`.pipeline`: the stall-together pipeline and shared rounding/normalizing helpers.

See docs/model-offload.md for how they compose into the device.
"""

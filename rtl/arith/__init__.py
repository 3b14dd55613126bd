"""The arithmetic units of the vector machine (rtl/vm), each bit-exact to its function in
:mod:`ternary_core.integer` (the golden model is the specification):

- :mod:`.scalar_unit`: :class:`ScalarUnit` (mul, shift, from_int, add, recip, rsqrt).
- :mod:`.exp2`, :mod:`.xorshift`: the softmax / sampler table and the random draws.
- :mod:`.pipeline`: the stall-together pipeline and the shared rounding, saturating and
  normalizing helpers.
"""

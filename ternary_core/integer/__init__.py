"""The integer decode: the whole BitNet decode step in integer arithmetic a small FPGA
does cheaply (docs/integer-decode.md), as a numpy golden model.

- :mod:`.fixed`: rounding shifts, saturation, the scalar unit (16-bit mantissa scales,
  reciprocal and reciprocal square root by table + Newton), the exp2 table.
- :mod:`.ops`: norm + quantizer, rescale, RoPE, attention, GLU, lm_head, residual.
- :mod:`.compile`: float model -> integer constants, once at load time.
- :mod:`.runner`: :class:`IntegerRunner`, the decode step and the vectorized window scorer.
- :mod:`.sampling`: :class:`IntegerSampler` (argmax, or temperature/top-k on xorshift32).
"""

from .compile import IntegerModel, compile_model
from .runner import IntegerRunner
from .sampling import IntegerSampler

__all__ = ["IntegerModel", "IntegerRunner", "IntegerSampler", "compile_model"]

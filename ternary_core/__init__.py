"""Numerics of the ternary engine: quantizers, packing formats, the golden model,
model files and the numpy BitNet reference. Nothing here imports Amaranth or talks
to a device (see README.md)."""

__version__ = "0.1.0"

"""Choosing a matvec backend for generation from the command line's options."""

from ternary_core.errors import TernaryError
from ternary_core.reference import GoldenBackend


def open_backend(args, model):
    if args.backend == "reference":
        return GoldenBackend()
    raise TernaryError(f"backend {args.backend!r} is not available yet")

"""Subcommands of the ``ternary`` CLI, one ``register_*`` function each."""

import numpy as np


def _array_args(p):
    p.add_argument("--rows", type=int, default=4, help="MAC array rows R (default 4)")
    p.add_argument("--cols", type=int, default=8, help="MAC array columns C (default 8)")
    p.add_argument("--format", dest="fmt", choices=["2bit", "base3"], default="2bit",
                   help="native weight format (default 2bit)")


def register_golden(sub):
    p = sub.add_parser("golden", help="pack a random layer and run the golden model on it",
                       description="Pack a random M x K ternary layer in the native layout, "
                                   "unpack it, and run the golden integer matvec: a check of "
                                   "the numerics core without hardware.")
    _array_args(p)
    p.add_argument("--m", type=int, default=256)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_golden)


def _golden(args):
    from ternary_core.golden import accumulator_bits, ideal_cycles, matvec
    from ternary_core.native import TileLayout

    rng = np.random.default_rng(args.seed)
    layout = TileLayout(args.rows, args.cols, args.fmt)
    w = rng.integers(-1, 2, size=(args.m, args.k)).astype(np.int8)
    x = rng.integers(-128, 128, size=args.k).astype(np.int8)
    packed = layout.pack(w)
    assert (layout.unpack(packed, args.m, args.k) == w).all()
    acc = matvec(layout.unpack(packed, args.m, args.k), x, accumulator_bits(args.k))
    print(f"{args.m}x{args.k} layer on a {args.rows}x{args.cols} array, {args.fmt}: "
          f"{packed.size} bytes packed ({8 * packed.size / w.size:.2f} bits/trit), "
          f"{layout.words(args.m, args.k)} words")
    print(f"accumulator {accumulator_bits(args.k)} bits; ideal cycles "
          f"{ideal_cycles(args.m, args.k, args.rows, args.cols)}; acc[:8] = {acc[:8].tolist()}")


REGISTRY = [register_golden]

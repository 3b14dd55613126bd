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


def register_verilog(sub):
    p = sub.add_parser("verilog", help="write plain Verilog of the matvec engine",
                       description="Generate the matvec engine as plain Verilog for other flows "
                                   "(ASIC, other FPGAs, other simulators). The top module is "
                                   "ternary_engine; its ports are documented in rtl/matvec_engine.py.")
    _array_args(p)
    p.add_argument("--max-k", type=int, default=1024, help="largest K (sets the accumulator width)")
    p.add_argument("--max-m", type=int, default=1024, help="largest M")
    p.add_argument("--weight-words", type=int, default=4096, help="weight store depth in words")
    p.add_argument("--base3-impl", choices=["arith", "rom"], default="arith",
                   help="base-3 decoder: shift-and-add (default) or a 256-entry table")
    p.add_argument("--name", default="ternary_engine", help="top module name")
    p.add_argument("-o", "--output", required=True, help="output .v file ('-' for stdout)")
    p.set_defaults(func=_verilog)


def _verilog(args):
    import sys

    from sim.export import engine_verilog
    from ternary_core.engine_config import EngineConfig

    cfg = EngineConfig(rows=args.rows, cols=args.cols, fmt=args.fmt, max_m=args.max_m,
                       max_k=args.max_k, weight_words=args.weight_words)
    text = engine_verilog(cfg, name=args.name, base3_impl=args.base3_impl)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w") as f:
            f.write(text)
        print(f"wrote {args.output}: {args.rows}x{args.cols} {args.fmt} engine, K<={args.max_k}, "
              f"{cfg.acc_bits}-bit accumulators, {args.weight_words} weight words", file=sys.stderr)


DEFAULT_CORPUS = "../shared/data/tinyshakespeare.txt"


def register_train(sub):
    from ternary_core.model_config import BitNetConfig
    from ternary_core.train import TrainOptions

    c, o = BitNetConfig(), TrainOptions()
    p = sub.add_parser("train", help="train a BitNet b1.58 from scratch (QAT, CPU torch)",
                       description="Quantization-aware training of a byte-level BitNet b1.58 on a "
                                   "text corpus, saved in the project's model format. Needs the "
                                   "'train' extra (torch).")
    p.add_argument("--corpus", default=DEFAULT_CORPUS, help=f"text file (default {DEFAULT_CORPUS})")
    p.add_argument("-o", "--out", default="model.safetensors", help="output model file")
    p.add_argument("--steps", type=int, default=o.steps)
    p.add_argument("--batch", type=int, default=o.batch)
    p.add_argument("--seq-len", type=int, default=o.seq_len)
    p.add_argument("--lr", type=float, default=o.lr)
    p.add_argument("--seed", type=int, default=o.seed)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--full-precision", action="store_true",
                   help="train the same shape with float linears (the comparison baseline)")
    p.add_argument("--hidden-size", type=int, default=c.hidden_size)
    p.add_argument("--intermediate-size", type=int, default=c.intermediate_size)
    p.add_argument("--layers", type=int, default=c.num_hidden_layers)
    p.add_argument("--heads", type=int, default=c.num_attention_heads)
    p.add_argument("--kv-heads", type=int, default=c.num_key_value_heads)
    p.set_defaults(func=_train)


def _train(args):
    from ternary_core.model_config import BitNetConfig
    from ternary_core.train import TrainOptions, train

    config = BitNetConfig(hidden_size=args.hidden_size, intermediate_size=args.intermediate_size,
                          num_hidden_layers=args.layers, num_attention_heads=args.heads,
                          num_key_value_heads=args.kv_heads)
    opts = TrainOptions(steps=args.steps, batch=args.batch, seq_len=args.seq_len, lr=args.lr,
                        seed=args.seed, threads=args.threads, full_precision=args.full_precision)
    train(args.corpus, None if args.full_precision else args.out, config, opts)


REGISTRY = [register_golden, register_verilog, register_train]

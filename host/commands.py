"""Subcommands of the ``ternary`` CLI, one ``register_*`` function each."""

from .arg_types import (comma_list, count_at_most, non_negative_float, non_negative_int, png_path,
                        positive_float, positive_int, seed, token_ids, utf8_text,
                        verilog_identifier)

# generate --tokens at most: half an hour on the fastest backend here; a larger count would run
# for days
MAX_TOKENS = 1_000_000


def _board_names():
    from boards.profiles import BOARDS

    return sorted(BOARDS)


def _vm_contexts(sdram=False):
    """``{board: context}`` of each board's model build (``sdram``: its SDRAM build)."""
    from boards.profiles import BOARDS
    limits = {name: b.vm_sdram_limits if sdram else b.vm_limits for name, b in BOARDS.items()}
    return {name: lim.context for name, lim in limits.items() if lim}


def _model_options(p):
    """--backend and --model, which generate and eval share."""
    from .backends import BACKENDS

    p.add_argument("--backend", choices=BACKENDS, default="reference",
                   help="reference (numpy golden model), integer (the integer decode a device "
                        "runs), sim (the RTL on the simulated board) or serial (a board)")
    p.add_argument("--model", help="model file (default: the shipped Shakespeare BitNet)")


def _array_args(p):
    p.add_argument("--rows", type=positive_int, default=4, help="MAC array rows R (default 4)")
    p.add_argument("--cols", type=positive_int, default=8, help="MAC array columns C (default 8)")
    p.add_argument("--format", dest="fmt", choices=["2bit", "base3"], default="2bit",
                   help="native weight format (default 2bit)")


def register_verilog(sub):
    p = sub.add_parser("verilog", help="write plain Verilog of the matvec engine",
                       description="Generate the matvec engine as plain Verilog for other flows "
                                   "(ASIC, other FPGAs, other simulators). The top module is "
                                   "ternary_engine; its ports are documented in rtl/matvec_engine.py.")
    _array_args(p)
    p.add_argument("--max-k", type=positive_int, default=1024, help="largest K (sets the accumulator width)")
    p.add_argument("--max-m", type=positive_int, default=1024, help="largest M")
    p.add_argument("--weight-words", type=positive_int, default=4096, help="weight store depth in words")
    p.add_argument("--base3-impl", choices=["arith", "rom"], default="arith",
                   help="base-3 decoder: shift-and-add (default) or a 256-entry table")
    p.add_argument("--name", type=verilog_identifier, default="ternary_engine", help="top module name")
    p.add_argument("-o", "--output", required=True, help="output .v file ('-' for stdout)")
    p.set_defaults(func=_verilog)


def _verilog(args):
    import sys

    from sim.export import engine_verilog
    from ternary_core.engine_config import EngineConfig

    from ternary_core.output_file import check_output_path, write_output

    # every check before elaboration, which takes seconds to minutes
    cfg = EngineConfig(rows=args.rows, cols=args.cols, fmt=args.fmt, max_m=args.max_m,
                       max_k=args.max_k, weight_words=args.weight_words)
    if args.output != "-":
        check_output_path(args.output, what="-o")
    text = engine_verilog(cfg, name=args.name, base3_impl=args.base3_impl)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        write_output(args.output, text, what="-o")
        print(f"wrote {args.output}: {args.rows}x{args.cols} {args.fmt} engine, K<={args.max_k}, "
              f"{cfg.acc_bits}-bit accumulators, {args.weight_words} weight words", file=sys.stderr)


from ternary_core.corpus import DEFAULT_CORPUS  # noqa: E402 (beside its users)


def register_train(sub):
    from ternary_core.model.config import ACTIVATIONS, BitNetConfig
    from ternary_core.train import TrainOptions

    c, o = BitNetConfig(), TrainOptions()
    p = sub.add_parser("train", help="train a BitNet b1.58 from scratch (QAT, CPU torch)",
                       description="Quantization-aware training of a byte-level BitNet b1.58 on a "
                                   "text corpus, saved in the project's model format. Needs the "
                                   "'train' extra (torch).")
    p.add_argument("--corpus", default=DEFAULT_CORPUS, help=f"text file (default {DEFAULT_CORPUS})")
    p.add_argument("-o", "--out", default="model.safetensors", help="output model file")
    p.add_argument("--steps", type=positive_int, default=o.steps)
    p.add_argument("--batch", type=positive_int, default=o.batch)
    p.add_argument("--seq-len", type=positive_int, default=o.seq_len)
    p.add_argument("--lr", type=positive_float, default=o.lr)
    p.add_argument("--seed", type=seed, default=o.seed, help="0..2**32-1")
    p.add_argument("--threads", type=non_negative_int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--checkpoint-every", type=non_negative_int, default=o.checkpoint_every,
                   help=f"save OUT.ckpt.safetensors every N steps (default {o.checkpoint_every}; 0: never)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT.ckpt.safetensors (same options as the run that made it)")
    p.add_argument("--full-precision", action="store_true",
                   help="train the same shape with float linears (the comparison baseline)")
    p.add_argument("--hidden-size", type=positive_int, default=c.hidden_size)
    p.add_argument("--intermediate-size", type=positive_int, default=c.intermediate_size)
    p.add_argument("--layers", type=positive_int, default=c.num_hidden_layers)
    p.add_argument("--heads", type=positive_int, default=c.num_attention_heads)
    p.add_argument("--kv-heads", type=positive_int, default=c.num_key_value_heads)
    p.add_argument("--act", choices=list(ACTIVATIONS), default=c.hidden_act,
                   help=f"the MLP's activation (hidden_act; default {c.hidden_act}): relu2 "
                        f"(squared ReLU, BitNet b1.58 2B4T) or silu (the LLaMA-shaped BitNets); "
                        f"a device runs either with --offload model or matvec")
    p.set_defaults(func=_train)


def _train(args):
    from ternary_core.model.config import BitNetConfig
    from ternary_core.train import TrainOptions, train

    config = BitNetConfig(hidden_size=args.hidden_size, intermediate_size=args.intermediate_size,
                          num_hidden_layers=args.layers, num_attention_heads=args.heads,
                          num_key_value_heads=args.kv_heads, hidden_act=args.act)
    opts = TrainOptions(steps=args.steps, batch=args.batch, seq_len=args.seq_len, lr=args.lr,
                        seed=args.seed, threads=args.threads, full_precision=args.full_precision,
                        checkpoint_every=args.checkpoint_every, resume=args.resume)
    train(args.corpus, None if args.full_precision else args.out, config, opts)


def register_import(sub):
    p = sub.add_parser("import", help="import a HF BitNet folder or a GGUF (TQ1_0/TQ2_0) file",
                       description="Convert a Hugging Face BitNetForCausalLM checkpoint folder "
                                   "(offline-packed or float weights) or a GGUF file of the bitnet "
                                   "architecture with TQ1_0/TQ2_0 tensors into this project's model "
                                   "file (safetensors, no pickle). Before writing, it measures "
                                   "how closely the integer decode (--backend integer, --offload "
                                   "model) tracks the float reference on this model and records it "
                                   "in the file; a model below the bound is refused there.")
    p.add_argument("src", help="checkpoint folder (config.json + *.safetensors) or .gguf file")
    p.add_argument("-o", "--out", required=True, help="output .safetensors model file")
    from ternary_core.integer.probe import BOUND_TEXT, DEFAULT_POSITIONS
    from ternary_core.model.file import MAX_PROBE_POSITIONS

    p.add_argument("--probe-positions", type=count_at_most(MAX_PROBE_POSITIONS),
                   default=DEFAULT_POSITIONS, metavar="N",
                   help=f"positions of random token ids on which the integer decode's top-1 "
                        f"predictions are compared with the float reference's (default "
                        f"{DEFAULT_POSITIONS}); below {BOUND_TEXT}% agreement, --backend integer "
                        f"and --offload model refuse the model. 0: skip (recorded as not "
                        f"measured; the integer decode then runs it unchecked)")
    p.set_defaults(func=_import)


def _import(args):
    import sys

    from pathlib import Path

    from ternary_core.errors import TernaryError
    from ternary_core.integer.probe import describe, probe
    from ternary_core.model.importers import import_checkpoint, input_files
    from ternary_core.model.file import save_model
    from ternary_core.output_file import check_output_path
    from ternary_core.model.tokenizer import make_tokenizer

    if not args.src:       # Path('') is the current folder
        raise TernaryError("SRC: the path is empty")
    inputs = input_files(args.src) if Path(args.src).exists() else []
    check_output_path(args.out, what="-o", inputs=inputs)  # before reading a large checkpoint
    notes = {}
    model = import_checkpoint(args.src, notes)
    try:  # a model whose tokenizer cannot be made would be refused only by generate
        make_tokenizer(model.tokenizer, model.config.vocab_size)
    except TernaryError as exc:
        raise TernaryError(f"{args.src}: {exc}") from None
    try:
        model.integer_probe = probe(model, args.probe_positions, _ProbeProgress(sys.stderr))
    except TernaryError as exc:
        raise TernaryError(f"{args.src}: integer decode probe: {exc}") from None
    save_model(args.out, model, what="-o", inputs=inputs)
    c = model.config
    print(f"imported {args.src}: {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
          f"{model.ternary_params():,} ternary weights, activation {notes['activation']}, "
          f"scales from {notes['scales']}, "
          f"tokenizer {notes.get('tokenizer', model.tokenizer.get('type'))} "
          f"-> {args.out}", file=sys.stderr)
    print(describe(model.integer_probe), file=sys.stderr)


class _ProbeProgress:
    """``progress(done, total)`` for the probe: silent for its first two seconds (a small
    model's probe is over by then), then one ``\\r``-updated line, four times a second."""

    def __init__(self, stream, after=2.0, period=0.25):
        import time

        self.stream, self.after, self.period, self.clock = stream, after, period, time.perf_counter
        self.t0, self.last = self.clock(), None

    def __call__(self, done, total):
        now = self.clock()
        if now - self.t0 < self.after or (self.last is not None and now - self.last < self.period
                                          and done < total):
            return
        self.last = now
        self.stream.write(f"\rinteger decode probe: {done:,}/{total:,} positions "
                          f"({now - self.t0:.0f} s)" + ("\n" if done == total else ""))
        self.stream.flush()


def register_generate(sub):
    from .backends import add_device_options

    p = sub.add_parser("generate", help="generate text with a BitNet model",
                       description="Generate text with a BitNet model. Every BitLinear runs on the "
                                   "chosen backend: 'reference' (numpy golden model), 'integer' (the "
                                   "integer decode a device runs), 'sim' (the RTL on the simulated "
                                   "board) or 'serial' (a board on a serial port). Past the model's "
                                   "context the window slides (the last context/2 tokens are fed "
                                   "again), on every backend alike.")
    _model_options(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--prompt", type=utf8_text, default=None, help="prompt text (default 'ROMEO:')")
    g.add_argument("--prompt-ids", type=token_ids,
                   help="prompt as comma- or space-separated token ids (for models without a "
                        "tokenizer)")
    p.add_argument("--tokens", type=count_at_most(MAX_TOKENS, least=1), default=64,
                   help=f"tokens to generate (default 64, at most {MAX_TOKENS:,})")
    p.add_argument("--temperature", type=non_negative_float, default=0.8, help="0 for greedy (default 0.8)")
    p.add_argument("--top-k", type=non_negative_int, default=40, help="sample from the k likeliest (0: all)")
    p.add_argument("--seed", type=seed, default=0, help="0..2**32-1 (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--offload", choices=["model", "matvec"],
                   help="sim/serial: run the whole decode step on the device ('model': ids in, "
                        "ids out) or only the BitLinears ('matvec'); default: model where the "
                        "device has the vector machine and the model fits its limits")
    add_device_options(p)
    p.set_defaults(func=_generate)


def _generate(args):
    import json
    import sys

    from host.backends import check_device_options, open_runner
    from host.generate import check_prompt, load
    from ternary_core.errors import TernaryError
    from ternary_core.model.tokenizer import TextStream, parse_token_ids

    # every input is checked before any output, and before a device is opened
    if args.tokens < 1:
        raise TernaryError("--tokens must be at least 1")
    model, tok = load(args.model)
    check_device_options(args, model)
    if args.prompt_ids is not None:
        prompt = parse_token_ids(args.prompt_ids, "--prompt-ids")
    elif not tok.has_text:
        raise TernaryError("--prompt: this model has no tokenizer (its model file says tokenizer "
                           "'none'); give the prompt as --prompt-ids")
    else:
        try:
            prompt = tok.encode_prompt(args.prompt if args.prompt is not None else "ROMEO:")
        except TernaryError as exc:
            raise TernaryError(f"--prompt: {exc} (the tokenizer of "
                               f"{args.model or 'the shipped model'})") from None
        if not prompt:
            raise TernaryError("--prompt: the prompt is empty; give some text or --prompt-ids")
    check_prompt(model, prompt, args.tokens)
    backend = open_runner(args, model)
    try:
        # One decoder for prompt and continuation, so a character split across tokens
        # prints whole; ``text`` is exactly what was printed after the prompt.
        stream, pieces = TextStream(tok), []
        head = stream.feed(prompt)
        if not args.json:
            sys.stdout.write(head)
            sys.stdout.flush()

        def show(t):
            pieces.append(stream.feed([t]))
            if not args.json:
                sys.stdout.write(pieces[-1])
                sys.stdout.flush()

        result = backend.generate(model, prompt, args.tokens, args.temperature, args.top_k,
                                  args.seed, on_token=show)
        pieces.append(stream.finish())
        result.text = "".join(pieces)
        result.stats = backend.summary(result)
    finally:
        backend.close()
    if args.json:
        print(json.dumps({"backend": args.backend, "offload": backend.offload,
                          "prompt_ids": result.prompt_ids,
                          "token_ids": result.token_ids,
                          "text": result.text if tok.has_text else None,
                          "context": result.context, "window_shifts": result.window_shifts,
                          "seconds": round(result.seconds, 4),
                          "prefill_seconds": round(result.prefill_seconds, 4),
                          "tokens_per_s": round(result.tokens_per_s, 2), **result.stats}))
    else:
        sys.stdout.write(pieces[-1])
        print()
        shifts = (f", the window slid {len(result.window_shifts)} times (context "
                  f"{result.context})" if result.window_shifts else "")
        print(f"\n[{len(result.token_ids)} tokens in {result.seconds:.2f} s, "
              f"{result.tokens_per_s:.1f} tokens/s on the {args.backend} backend{shifts}]",
              file=sys.stderr)
        for line in result.stats.get("summary_lines", []):
            print(line, file=sys.stderr)


def register_eval(sub):
    from ternary_core.corpus import SPLITS

    from .backends import add_device_options

    p = sub.add_parser("eval", help="measure a model's next-token loss on a text",
                       description="Teacher-forced next-token loss of a model on a text: nats per "
                                   "token and per byte, bits per byte, perplexity, and top-1 "
                                   "agreement with the float reference backend. Text longer than "
                                   "the model's context is scored in consecutive windows of the "
                                   "context. By default: the held-out 10% of the training corpus "
                                   f"({DEFAULT_CORPUS}), the split `ternary train` did not train on. "
                                   "On sim/serial the BitLinears run on the device (--offload "
                                   "matvec: scoring needs every position's logits).")
    _model_options(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--text", help=f"text file to score (default {DEFAULT_CORPUS}, split val)")
    g.add_argument("--ids", help="file of token ids separated by whitespace or commas (for models "
                                 "without a tokenizer)")
    p.add_argument("--split", choices=SPLITS,
                   help="part of the text: the held-out last 10%% ('val', the default for the "
                        "default corpus), the first 90%% ('train') or 'all' (the default for --text)")
    p.add_argument("--bytes", type=int, help="score only the first N bytes of the text")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_device_options(p)
    p.set_defaults(func=_eval)


def _eval(args):
    import json

    from host.backends import check_device_options, open_runner
    from host.eval import check_ids, evaluate, read_ids, read_text, require_tokenizer, text_ids
    from host.generate import load
    from ternary_core.errors import TernaryError

    if args.bytes is not None and args.bytes < 2:
        raise TernaryError(f"--bytes must be at least 2, got {args.bytes}")
    if args.ids and (args.split or args.bytes):
        raise TernaryError("--split and --bytes apply to text; with --ids the file's ids are "
                           "scored as they are")
    model, tok = load(args.model)
    check_device_options(args, model)
    if args.ids:
        ids, source = read_ids(args.ids), {"ids": args.ids}
    else:
        path = args.text or DEFAULT_CORPUS
        split = args.split or ("all" if args.text else "val")
        require_tokenizer(tok, path)
        data = read_text(path, split, args.bytes, "--text" if args.text else "corpus")
        ids, source = text_ids(tok, data, path), {"text": path, "split": split}
    check_ids(model, ids)
    backend = open_runner(args, model, whole_model=False, measuring=True)
    try:
        result = evaluate(model, backend, ids, tok)
    finally:
        backend.close()
    result = {**result, **source, "model": args.model or "shipped"}
    if args.json:
        print(json.dumps(result))
        return
    what = f"{result['positions']:,} positions in {result['windows']} windows of {result['context']}"
    print(f"{args.backend}: {what} ({result['seconds']:.1f} s)")
    print(f"  loss            {result['loss_nats_per_token']:.4f} nats/token, "
          f"perplexity {result['perplexity']:.3f}")
    if result["bytes"]:
        print(f"  per byte        {result['loss_nats_per_byte']:.4f} nats/byte, "
              f"{result['bits_per_byte']:.4f} bits/byte ({result['bytes']:,} bytes)")
    print(f"  top-1 agreement {result['top1_agreement']:.2%} with the float reference; "
          f"top-1 accuracy {result['top1_accuracy']:.2%}")


def register_build(sub):
    p = sub.add_parser("build", help="build a bitstream for a board (YoWASP tools, from PyPI)",
                       description="Synthesize, place and route the device for a board with the "
                                   "YoWASP Yosys/nextpnr from PyPI; write the bitstream and "
                                   "report.json (resources, Fmax, timing) and print a summary. "
                                   "Exits 1 if timing is not met.")
    p.add_argument("--board", required=True, choices=_board_names())
    p.add_argument("--rows", type=positive_int, help="MAC array rows (default: the board's)")
    p.add_argument("--cols", type=positive_int, help="MAC array columns (default: the board's)")
    p.add_argument("--format", dest="fmt", choices=["2bit", "base3"], help="weight format (default: the board's)")
    p.add_argument("--freq", type=positive_float, help="clock in MHz (default: the board's)")
    p.add_argument("--out", help="output folder (default build/BOARD, with --offload model "
                                 "build/BOARD-model)")
    p.add_argument("--offload", choices=["matvec", "model"], default="matvec",
                   help="matvec: the ternary engine alone (default, the board's clock); model: "
                        "with the vector machine that runs the whole decode step (ulx3s-85f; "
                        "its own, lower clock)")
    p.add_argument("--sdram", action="store_true",
                   help="with --offload model: the build that streams a model from the board's "
                        "SDRAM (ulx3s-85f: for models the on-chip build cannot hold; folder "
                        "build/BOARD-model-sdram; docs/sdram.md)")
    p.add_argument("--context", type=positive_int,
                   help="with --offload model: KV cache positions (default: the full context "
                        "the board's machine is sized for, "
                        + ", ".join(f"{n} on the {b}" for b, n in _vm_contexts().items())
                        + "; with --sdram "
                        + ", ".join(f"{n} on the {b}" for b, n in _vm_contexts(sdram=True).items())
                        + ")")
    p.set_defaults(func=_build)


def _build(args):
    import sys

    from boards.build import build, device_missed, shortfall, summary

    report = build(args.board, rows=args.rows, cols=args.cols, fmt=args.fmt, freq_mhz=args.freq,
                   out=args.out, offload=args.offload, context=args.context, sdram=args.sdram)
    print(summary(report))
    print(f"bitstream: {report['bitstream']}", file=sys.stderr)
    if not report["timing_met"]:
        last = report.get("last_good_bitstream")
        kept = (f"the last good bitstream {last} and its report.json are unchanged" if last else
                "there is no earlier good bitstream")
        print(f"timing NOT met: {shortfall(report)}; this build is kept as "
              f"{report['bitstream']} and report.failed.json, {kept}; "
              + ("try a lower --freq" if device_missed(report) else
                 "--freq sets only the device's clock, not the SDRAM controller's"),
              file=sys.stderr)
        return 1
    return 0


def register_program(sub):
    p = sub.add_parser("program", help="load a built bitstream onto a board",
                       description="Program the board with iceprog or openFPGALoader (whichever "
                                   "is installed).")
    p.add_argument("--board", required=True, choices=_board_names())
    p.add_argument("--bitstream", help="bitstream file (default: the one `ternary build` "
                                       "made with the same --offload/--sdram: "
                                       "build/BOARD/BOARD.bin|.bit, build/BOARD-model/BOARD.bit, "
                                       "build/BOARD-model-sdram/BOARD.bit)")
    p.add_argument("--offload", choices=["matvec", "model"], default="matvec",
                   help="which build's bitstream, as for `ternary build`: matvec (default) or "
                        "model (the whole-model device)")
    p.add_argument("--sdram", action="store_true",
                   help="with --offload model: the build that streams a model from the SDRAM")
    p.add_argument("--force", action="store_true",
                   help="program even if the build report says timing was not met")
    p.set_defaults(func=_program)


def _program(args):
    from boards.program import program

    tool = program(args.board, args.bitstream, force=args.force, offload=args.offload,
                   sdram=args.sdram)
    print(f"programmed {args.board} with {tool}")


def register_bench(sub):
    p = sub.add_parser("bench", help="resources, Fmax, cycles and tokens/s per board and array",
                       description="For each board and array configuration: build it (or reuse a "
                                   "build of the same design), read resources and Fmax, measure "
                                   "cycles per token of the shipped model on the simulated engine, "
                                   "and compute compute-, memory- and link-bound tokens/s. Prints a "
                                   "table; writes JSON and a plot on request.")
    p.add_argument("--boards", type=comma_list,
                   help="comma-separated boards (default icebreaker)")
    p.add_argument("--configs", type=comma_list, help="comma-separated ROWSxCOLS/FORMAT (default: a set per board)")
    p.add_argument("--json", dest="json_out", help="write the results as JSON")
    p.add_argument("--plot", type=png_path, help="write a PNG plot")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="builds run at once, each in its own process (default: the machine's "
                        "cores)")
    p.add_argument("--sdram", action="store_true",
                   help="instead: the ULX3S SDRAM (LiteDRAM and its SDRAM model under "
                        "Verilator, about fifteen minutes): the matvec engine fed from it (a "
                        "512x512 layer against the port's peak, at the controller's 50 MHz and "
                        "at 30 MHz across clock domains), then issue 20's model "
                        "shapes streamed from it on the simulated board's SDRAM build (its "
                        "device at 30 MHz): cycles a token against the SDRAM's bound, "
                        "tokens/s (docs/sdram.md)")
    p.set_defaults(func=_bench)



def _bench(args):
    import json
    import os

    from dataclasses import replace

    from host.bench import DEFAULT_CONFIGS, bench, parse_config, plot, table
    from boards.profiles import board
    from ternary_core.errors import TernaryError
    from ternary_core.output_file import check_output_path, open_output, write_output

    if args.sdram and (args.plot or args.configs or args.boards or args.jobs):
        raise TernaryError("--sdram measures the SDRAM-fed engine only; --plot, --configs and "
                           "--jobs are for the board bench, and it measures the ULX3S, not "
                           "--boards")
    args.boards = args.boards or ["icebreaker"]
    # everything checkable before the builds, which take minutes each
    for name in args.boards:
        engine = board(name).engine
        for text in args.configs or DEFAULT_CONFIGS.get(name, []):
            r, c, fmt = parse_config(text)
            replace(engine, rows=r, cols=c, fmt=fmt)  # EngineConfig checks sizes against the boards
    if args.json_out is not None:     # ('' is refused there, not skipped)
        check_output_path(args.json_out, what="--json")
    if args.plot is not None:
        check_output_path(args.plot, what="--plot")
        if args.json_out is not None and os.path.realpath(args.plot) == os.path.realpath(args.json_out):
            raise TernaryError(f"--json and --plot name the same file ({args.plot}); the plot "
                               f"would replace the JSON")
    if args.sdram:
        from host import bench_sdram

        result = bench_sdram.measure()
        result["measured_models"] = bench_sdram.measure_models()
        result["context"] = bench_sdram.CONTEXT         # measure_models' default
        print(bench_sdram.table(result))
        if args.json_out:
            write_output(args.json_out, json.dumps(result, indent=2), what="--json")
        return
    result = bench(args.boards, args.configs, jobs=args.jobs)
    print(table(result))
    print(f"reference (numpy) backend on this machine: {result['reference_tokens_per_s']} tokens/s")
    for r in result["configs"]:
        model = r.get("offload") == "model"   # DSPs are fine there (attention, lm_head)
        if r["cycles_per_token"] > (1.3 if model else 1.1) * r["ideal_cycles_per_token"] or \
                (r["dsp"] and not model):
            print(f"warning: {r['board']} {r.get('offload', 'matvec')} offload "
                  f"{r['rows']}x{r['cols']} {r['format']}: "
                  f"{r['cycles_per_token']} cycles/token vs ideal {r['ideal_cycles_per_token']}, "
                  f"{r['dsp']} DSP")
    if args.json_out:
        write_output(args.json_out, json.dumps(result, indent=2), what="--json")
    if args.plot:
        with open_output(args.plot, what="--plot") as f:
            plot(result, f)


REGISTRY = [register_verilog, register_train, register_import, register_generate, register_eval,
            register_build, register_program, register_bench]

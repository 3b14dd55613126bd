"""Choosing a backend for generation and evaluation from the command line's options.

``--backend`` names both where the BitLinears run and which arithmetic runs around
them: ``reference`` (float numpy BitNet, golden matvecs), ``integer`` (the integer
decode, golden matvecs), ``sim`` / ``serial`` (float numpy BitNet, matvecs on the
simulated board / a board).
"""

import sys
from dataclasses import dataclass

from boards.profiles import BOARDS, board
from ternary_core.errors import TernaryError
from ternary_core.backend import GoldenBackend, MatvecBackend
from ternary_core.sampling import Sampler

BACKENDS = ["reference", "integer", "sim", "serial"]

from .arg_types import positive_int


def add_device_options(p):
    p.add_argument("--board", default="icebreaker", choices=sorted(BOARDS),
                   help="board whose engine the simulated board runs, and whose clock and UART "
                        "rate the summary projects to (default icebreaker)")
    p.add_argument("--port", help="serial port of a real board (--backend serial)")
    p.add_argument("--baud", type=positive_int, help="serial baud rate (default: the board's)")
    p.add_argument("--check", action="store_true",
                   help="also compute every device result with the golden model; stop on a mismatch")
    p.add_argument("--stream", action="store_true",
                   help="stream layers every token even if the model fits the device")
    p.add_argument("--sim-phy", choices=["stream", "uart"],
                   help="simulated board's link: 'stream' (the device core on a byte stream, "
                        "fast; default) or 'uart' (the full device top with its UART)")
    p.add_argument("--weight-words", type=positive_int,
                   help="simulated board only: weight store depth in words (smaller than the "
                        "model forces streaming)")


def check_device_options(args, model):
    """Refuse, before anything runs or prints, a device option that ``--backend`` would
    ignore, and on the simulated board what the model cannot do on its engine (found
    otherwise only after a first-use board build, minutes)."""
    given = {"--check": args.check, "--stream": args.stream, "--port": args.port,
             "--baud": args.baud, "--weight-words": args.weight_words, "--sim-phy": args.sim_phy}
    takes = {"reference": (), "integer": (), "serial": ("--check", "--stream", "--port", "--baud"),
             "sim": ("--check", "--stream", "--weight-words", "--sim-phy")}[args.backend]
    why = {"--port": "a board on a serial port", "--baud": "a board on a serial port",
           "--weight-words": "the simulated board (a board's weight store is what it was built with)",
           "--sim-phy": "the simulated board (a board's link is its UART)"}
    for flag, value in given.items():
        if value and flag not in takes:
            where = why.get(flag, "a device (--backend sim or serial)")
            raise TernaryError(f"{flag} applies to {where}, not to --backend {args.backend}")
    if args.stream and getattr(args, "offload", None) == "model":
        raise TernaryError("--stream streams the BitLinears' weights (--offload matvec); with "
                           "--offload model the device holds the whole model")
    if args.backend in ("sim", "serial") and getattr(args, "offload", None) == "model":
        from ternary_core.offload.limits import check_activation

        # the model's numerics first: no board or build makes a refused model run
        check_integer_numerics(args, model)

        try:
            check_activation(model.config)
        except TernaryError as exc:
            raise TernaryError(f"--offload model: {exc}; use --offload matvec (the device runs "
                               f"the BitLinears, the host the rest)") from None
    if args.backend == "sim" and getattr(args, "offload", None) == "model" and \
            board(args.board).vm_limits is None:
        raise TernaryError(f"--offload model: the simulated {args.board} has no vector machine; "
                           f"use --offload matvec")
    if args.backend == "sim":
        from dataclasses import replace

        from .matvec_offload import check_layers_fit

        profile = board(args.board)
        limits = sim_limits(args, profile, model)
        if limits is None or not limits.sdram:
            # (a model the SDRAM build streams: the vector machine takes a stack in row
            # chunks; its limits are checked before a board is built)
            cfg = profile.engine
            if args.weight_words:
                cfg = replace(cfg, weight_words=args.weight_words)
            check_layers_fit(model.bitlinears, cfg, f"the {args.board} engine")


def sim_limits(args, profile, model):
    """The vector machine's limits of the simulated board ``open_device`` opens for
    ``model``: the build that holds it (:meth:`BoardProfile.limits_for`: on chip, else
    the SDRAM build) unless ``--offload matvec`` or ``--stream`` asks for the on-chip one."""
    if model is not None and getattr(args, "offload", None) != "matvec" and not args.stream:
        return profile.limits_for(model.config)
    return profile.vm_limits


def open_device(args, model=None):
    """The :class:`~host.device.Device` of ``--backend sim|serial`` and the board options.
    The simulated board is the board's build for ``model``: the one that streams it from
    the SDRAM if the on-chip build cannot hold it (:meth:`BoardProfile.limits_for`)."""
    from dataclasses import replace

    from .device import Device

    profile = board(args.board)
    if args.backend == "sim":
        limits, image = sim_limits(args, profile, model), None
        offload = getattr(args, "offload", None)
        cfg = profile.vm_engine(limits) if limits is not None and limits.sdram else profile.engine
        if args.weight_words:
            cfg = replace(cfg, weight_words=args.weight_words)
        if limits is not None and limits.sdram and model is not None:
            from .model_offload import sdram_image

            # megabytes over the simulated link are minutes of Verilator: the simulated
            # board's SDRAM is written by its back door (the upload itself is tested)
            try:    # the limits the simulated device reports: its engine's (--weight-words)
                image = sdram_image(model, limits.with_engine(cfg), cfg)
            except TernaryError as exc:
                if offload == "model":
                    store = f" (with --weight-words {args.weight_words})" if args.weight_words else ""
                    raise TernaryError(f"--offload model: the model does not fit the "
                                       f"{args.board}'s SDRAM build: {exc}{store}") from None
                # neither build holds the model: the on-chip build, with --offload matvec
                limits, cfg = profile.vm_limits, profile.engine
                if args.weight_words:
                    cfg = replace(cfg, weight_words=args.weight_words)
        if image is not None:
            print(f"note: the model streams from the SDRAM of the {args.board}'s SDRAM build; "
                  f"the simulated board's SDRAM is loaded with its {image.size * 8 / 1e6:.1f} MB "
                  f"by a back door (a board takes them over the link: "
                  f"{image.size * 8 / profile.link_bytes_per_s:.0f} s at "
                  f"{profile.baud / 1e6:g} Mbaud)", file=sys.stderr)
        device = Device.open_sim(cfg, phy=args.sim_phy or "stream", vm_limits=limits, sdram_image=image)
        device.sdram_preloaded = image is not None
        return device
    if not args.port:
        raise TernaryError("--backend serial needs --port (e.g. /dev/ttyUSB1)")
    return Device.open_serial(args.port, args.baud or profile.baud)


def integer_gate(model, where):
    """What the integer decode's gate (:mod:`ternary_core.integer.probe`) says of ``model``
    (the file ``where``): None if it may run in integers (its record is at or above the
    bound, not measured, or absent), else the measurement, to go into a refusal."""
    from ternary_core.integer.probe import BOUND_TEXT, below_bound, percent

    record = model.integer_probe
    if not below_bound(record):
        return None
    return (f"{where}: the integer decode agrees with the float reference on only "
            f"{percent(record.agreement)} of {record.positions:,} probe positions (top-1; "
            f"bound {BOUND_TEXT})")


def check_integer_numerics(args, model, *, measuring=False):
    """Refuse integer numerics asked for on a model the integer decode does not track:
    ``--backend integer``, and ``--offload model`` on a device (whose decode is the integer
    decode bit for bit). ``--offload matvec`` runs the float reference around the device's
    exact matvecs, so it runs any model. ``measuring`` (``ternary eval``, the tool that
    measures it): print the measurement instead of refusing. Before any device is opened."""
    measured = integer_gate(model, getattr(args, "model", None) or "the shipped model")
    if measured is None:
        return
    if args.backend == "integer" and measuring:
        print(f"note: {measured}: ternary generate refuses --backend integer for it; this "
              f"evaluation measures it", file=sys.stderr)
    elif args.backend == "integer":
        raise TernaryError(f"--backend integer: {measured}, so its tokens would be wrong; run it "
                           f"with --backend reference, or --offload matvec on a device (the "
                           f"float reference around the device's matvecs)")
    elif args.backend in ("sim", "serial") and getattr(args, "offload", None) == "model":
        raise TernaryError(f"--offload model: {measured}, and the device's decode is the integer "
                           f"decode bit for bit, so its tokens would be wrong; use --offload "
                           f"matvec (the float reference around the device's matvecs) or "
                           f"--backend reference")


def choose_offload(device, model, asked, where="the model"):
    """``"model"`` or ``"matvec"``: ``asked`` if given (a clear error, naming the limit,
    if the model cannot run on the device), else model where the device has the vector
    machine, the model fits its limits and the integer decode tracks it (a note on
    stderr says why when it does not: :func:`integer_gate`)."""
    if asked == "matvec":
        return "matvec"
    if not device.has_vm:
        if asked == "model":
            raise TernaryError(f"--offload model: the {device.transport.name} has no vector machine "
                               f"(protocol version {device.info.version}); use --offload matvec")
        return "matvec"
    from ternary_core.offload.memory_map import MemoryMap

    from .model_offload import device_limits

    limits = device_limits(device.info)        # impossible limits: ProtocolMismatch
    try:
        MemoryMap(model.config, model.config.max_position_embeddings, limits, device.config)
    except TernaryError as exc:
        if asked == "model":
            raise TernaryError(f"--offload model: the model does not fit the device: {exc}") from None
        return "matvec"
    measured = integer_gate(model, where)
    if measured is not None:
        if asked == "model":    # check_integer_numerics refuses this before a device opens
            raise TernaryError(f"--offload model: {measured}")
        print(f"note: {measured}: running it with --offload matvec (the float reference "
              f"around the device's matvecs), not the device's integer decode", file=sys.stderr)
        return "matvec"
    return "model"


def open_backend(args, model, device=None):
    """The matvec backend ``args.backend`` runs its BitLinears on."""
    if args.backend in ("reference", "integer"):
        return GoldenBackend()
    from .matvec_offload import DeviceBackend

    profile = board(args.board)
    device = device or open_device(args)
    # log= at call time: DeviceBackend's default is the sys.stderr of when it was imported
    return DeviceBackend(device, check=args.check, stream=True if args.stream else None,
                         log=sys.stderr, board_profile=profile)


@dataclass
class RunnerBackend:
    """What ``--backend`` chose: a runner factory (see :mod:`host.generate`), the
    sampler that goes with its logits, and the matvec backend underneath."""

    name: str
    matvec: MatvecBackend
    make_runner: object        # max_len -> runner
    integer: bool = False
    offload = None             # sim/serial: "matvec"

    def generate(self, model, prompt_ids, n_tokens, temperature=0.0, top_k=0, seed=0, on_token=None):
        """:func:`host.generate.generate` with this backend's runner and sampler."""
        from .generate import generate

        return generate(model, self.make_runner, prompt_ids, n_tokens,
                        self.sampler(temperature, top_k, seed), on_token=on_token)

    @property
    def vectorized(self):
        """Whether runners can ``score`` a window at once: only when their matvecs are the
        golden model's (a device computes them one step at a time)."""
        return isinstance(self.matvec, GoldenBackend)

    def sampler(self, temperature=0.0, top_k=0, seed=0):
        if self.integer:
            from ternary_core.integer import IntegerSampler
            return IntegerSampler(temperature, top_k, seed)
        return Sampler(temperature, top_k, seed)

    def summary(self, result):
        return self.matvec.summary(result) if hasattr(self.matvec, "summary") else {}

    def close(self):
        self.matvec.close()


@dataclass
class ModelOffloadBackend:
    """``--offload model``: the device runs the whole decode step (:mod:`host.model_offload`)."""

    name: str
    offload_run: object         # host.model_offload.ModelOffload
    offload = "model"

    def generate(self, model, prompt_ids, n_tokens, temperature=0.0, top_k=0, seed=0, on_token=None):
        return self.offload_run.generate(prompt_ids, n_tokens, temperature, top_k, seed, on_token)

    def summary(self, result):
        return self.offload_run.summary(result)

    def close(self):
        self.offload_run.close()


def open_runner(args, model, *, whole_model=True, measuring=False):
    """The :class:`RunnerBackend` (or :class:`ModelOffloadBackend`) for ``args.backend``,
    ``--offload`` and the device options. ``whole_model=False`` (eval, which needs every
    position's logits; a whole-model device returns only ids) always offloads matvecs.
    Integer numerics on a model the integer decode does not track are refused here
    (:func:`check_integer_numerics`; ``measuring`` as there), the one place every command
    chooses its numerics."""
    from .generate import float_runner, integer_runner

    check_integer_numerics(args, model, measuring=measuring)
    asked = getattr(args, "offload", None)
    if args.stream and not asked:
        asked = "matvec"    # streaming is of the BitLinears' weights
    if args.backend in ("reference", "integer"):
        if asked:
            raise TernaryError(f"--offload applies to --backend sim or serial, not {args.backend}")
        matvec = open_backend(args, model)
        if args.backend == "integer":
            return RunnerBackend(args.backend, matvec, integer_runner(model, matvec), integer=True)
        return RunnerBackend(args.backend, matvec, float_runner(model, matvec))
    device = open_device(args, model if whole_model else None)
    try:
        where = getattr(args, "model", None) or "the shipped model"
        if whole_model and choose_offload(device, model, asked, where) == "model":
            from .model_offload import ModelOffload

            # a step of the shipped model: about a second on the simulated board (Verilator,
            # growing with the context), about a millisecond on a board
            # (a step of a model streamed from the SDRAM: seconds on the simulated board)
            preloaded = device.sdram_preloaded
            run = ModelOffload(device, model, check=args.check, log=sys.stderr,
                               step_timeout=(600.0 if preloaded else 5.0) if args.backend == "sim"
                               else 0.5, board_profile=board(args.board),
                               sdram_preloaded=preloaded)
            run.prepare()
            return ModelOffloadBackend(args.backend, run)
        matvec = open_backend(args, model, device)
        backend = RunnerBackend(args.backend, matvec, float_runner(model, matvec))
        backend.offload = "matvec"
        return backend
    except BaseException:
        device.close()
        raise

"""Choosing a matvec backend for generation from the command line's options."""

from ternary_core.boards import BOARDS, board
from ternary_core.errors import TernaryError
from ternary_core.reference import GoldenBackend

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
    p.add_argument("--sim-phy", choices=["stream", "uart"], default="stream",
                   help="simulated board's link: 'stream' (the device core on a byte stream, "
                        "fast; default) or 'uart' (the full device top with its UART)")
    p.add_argument("--weight-words", type=positive_int,
                   help="simulated board only: weight store depth in words (smaller than the "
                        "model forces streaming)")


def open_backend(args, model):
    if args.backend == "reference":
        return GoldenBackend()
    from dataclasses import replace

    from .device import Device
    from .device_backend import DeviceBackend

    profile = board(args.board)
    if args.backend == "sim":
        cfg = profile.engine
        if args.weight_words:
            cfg = replace(cfg, weight_words=args.weight_words)
        device = Device.open_sim(cfg, phy=args.sim_phy)
    else:
        if not args.port:
            raise TernaryError("--backend serial needs --port (e.g. /dev/ttyUSB1)")
        device = Device.open_serial(args.port, args.baud or profile.baud)
    backend = DeviceBackend(device, check=args.check, stream=True if args.stream else None)
    backend.board_profile = profile
    return backend

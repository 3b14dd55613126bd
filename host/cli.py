"""The ``ternary`` command line. A thin layer: each subcommand parses its arguments
and calls a library function.

:func:`main` is the one boundary between the library and the user: argparse rejects
bad arguments (one line, exit 2); the library's :class:`TernaryError` (bad input the
user can fix) becomes one line, exit 2; a closed stdout (``ternary generate | head``)
ends the command quietly. Anything else is a bug and keeps its traceback.
"""

import argparse
import os
import sys

from ternary_core import __version__
from ternary_core.errors import TernaryError

from . import commands

# What a shell reports for a program that a broken pipe stopped (128 + SIGPIPE).
EXIT_BROKEN_PIPE = 141


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ternary",
        description="BitNet b1.58 on open FPGAs: generate, verify, build and drive a ternary "
                    "matrix-vector engine.")
    parser.add_argument("--version", action="version", version=f"ternary-engine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in commands.REGISTRY:
        register(sub)
    return parser


def main(argv=None):
    """Run one command; return its exit status (0 done, 1 done but failed, e.g. timing
    not met; 2 bad input or no command; 130 interrupted; 141 stdout closed early)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage and the error (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):   # no command: a usage error, as argparse's
        parser.print_help(sys.stderr)
        return 2
    try:
        status = args.func(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except TernaryError as exc:
        print(f"ternary {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"ternary {args.command}: interrupted", file=sys.stderr)
        return 130


def _silence_stdout():
    """After a broken pipe, point stdout at /dev/null so that Python's final flush of
    what is still buffered cannot raise again (the recipe in the ``signal`` docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (e.g. captured in tests)
        pass


if __name__ == "__main__":
    sys.exit(main())

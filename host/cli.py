"""The ``ternary`` command line. A thin layer: each subcommand parses its arguments
and calls a library function; errors the user can fix are one line, exit status 2."""

import argparse
import sys

from ternary_core import __version__
from ternary_core.errors import TernaryError

from . import commands


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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return args.func(args) or 0
    except TernaryError as exc:
        print(f"ternary {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ternary {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

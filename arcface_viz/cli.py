"""Command line: ``python -m arcface_viz SUBCOMMAND`` (also installed as ``arcface-viz``).

Each subcommand lives in its own module with ``add_parser(subparsers)`` (which sets ``func``) so that
new lessons add one line to :data:`SUBCOMMANDS`.  Errors the user can fix exit with status 2 and a
one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .params import ParamError

# module names under arcface_viz.commands, in the order `--help` lists them
SUBCOMMANDS = ["curves", "stats", "toy", "mnist", "data", "runs", "table3", "sweep"]


class UsageError(Exception):
    """Bad input the user can fix (missing file, bad path, bad value): printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arcface-viz", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"arcface_viz.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ParamError, UsageError, FileNotFoundError, ValueError) as exc:
        print(f"arcface-viz {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

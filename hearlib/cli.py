"""Command line: ``python -m hearlib <command> ...``.

Each command lives in its own module that exposes ``register(subparsers)``; the
parser it adds sets ``func``. Errors a user can fix (missing model, unreadable image,
bad answer word) are :class:`hearlib.errors.UserError` and end with one line on
stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from hearlib.errors import UserError

COMMAND_MODULES = (
    "hearlib.commands",   # means, attribute
    "hearlib.scenes",     # scenes
    "hearlib.train",      # train
    "hearlib.collect",    # run
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearlib", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name == name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except UserError as error:
        print(f"hearlib {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hearlib {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)

"""Command line: ``python -m hearlib <command> [options]`` (or ``hearlib ...``).

Each command lives in a module that exposes ``register(subparsers)``; the parser it adds sets
``func``. Only the module of the command being run is imported, so ``--help`` answers at once
(no torch). Errors a user can fix (missing model, unreadable image, bad answer word) are
:class:`hearlib.errors.UserError` and end with one line on stderr and exit status 2, never a
traceback. Help text is shown as plain text (reStructuredText markup removed).
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from hearlib.errors import UserError

# name: (module that registers it, summary for `hearlib --help`; the same as the module's help=)
COMMANDS = {
    "means": ("hearlib.cli.means", "mean image keys/values from R reference images"),
    "attribute": ("hearlib.cli.attribute", "head attribution (HeAr) for one image"),
    "scenes": ("hearlib.cli.scenes", "generate synthetic scenes (COCO + DomainNet layout)"),
    "train": ("hearlib.cli.train", "train model organisms on a scenes or DomainNet-layout folder"),
    "run": ("hearlib.cli.run", "collect per-sample HeAr records into a store (shard with accelerate launch)"),
    "heads": ("hearlib.cli.heads", "a model's image-to-text heads from a store, as JSON and CSV"),
    "generate": ("hearlib.cli.generate", "generate while a head set is ablated, scaled or kept alone"),
}

DESCRIPTION = ("Head attribution (HeAr): which attention heads carry the image to the answer in a "
               "vision-language model.")

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``|`([^`]+)`")


def batch_size_type(value: str):
    """argparse type of ``--batch-size``: a positive integer or ``auto``."""
    from hearlib.method.masks import parse_batch_size

    try:
        return parse_batch_size(value)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def plain(text: str) -> str:
    """Help text without reStructuredText: roles become their target, literals are 'quoted'."""
    text = _ROLE.sub(lambda m: m.group(1).split(".")[-1] if m.group(0).count("~") else m.group(1), text)
    return _LITERAL.sub(lambda m: f"'{m.group(1) or m.group(2)}'", text)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser (and its subcommands) whose help and usage are plain text."""

    def format_help(self) -> str:
        return plain(super().format_help())

    def format_usage(self) -> str:
        return plain(super().format_usage())


def requested(argv: list[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option), if any."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(commands=None) -> argparse.ArgumentParser:
    """The ``hearlib`` parser with the full parsers of ``commands`` (default: all of them);
    every other command is listed by name and summary without importing its module."""
    modules = {COMMANDS[name][0] for name in (COMMANDS if commands is None else commands)}
    parser = Parser(prog="hearlib", description=DESCRIPTION,
                    epilog="Run 'hearlib <command> --help' for the options of a command.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for name, (module, summary) in COMMANDS.items():
        if module in modules:
            importlib.import_module(module).register(subparsers)   # all of the module's commands
            modules.discard(module)
        elif name not in subparsers.choices:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    # OpenMP threads that wait for work sleep instead of spinning. On a shared 2-core machine the
    # spinning default made every small torch op (one tiny model's linear layer) wait for a time slice:
    # 10-40 ms instead of 0.2 ms (docs/PERFORMANCE.md). Set here, before a command imports torch; an
    # explicit OMP_WAIT_POLICY in the environment wins. `make` exports the same for its targets.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = sys.argv[1:] if argv is None else list(argv)
    command = requested(argv)
    args = build_parser([command] if command in COMMANDS else []).parse_args(argv)
    try:
        result = args.func(args)
    except UserError as error:
        print(f"hearlib {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hearlib {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)

"""The ``modeq`` command line.

Each subcommand is a module in :mod:`modeq.proofs.commands` defining ``add_parser(subparsers)``
(which sets ``run`` as the parser's default).  Errors in user input end with one line on
stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands as _commands

EXIT_USAGE = 2


class UsageError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeq",
        description="Backward error analysis of optimizers: derive, verify, emit and explain "
                    "their modified flows.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_commands.__name__}.{info.name}")
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.run(args)
    except (UsageError, ValueError, TypeError, NotImplementedError, OSError) as exc:
        print(f"modeq {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"modeq {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

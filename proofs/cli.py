"""The ``modeq`` command line.

Each subcommand is a module in :mod:`modeq.proofs.commands` defining ``add_parser(subparsers)``
(which sets ``run`` as the parser's default).  Exit codes:

* ``0`` success (``verify``: every order passes; ``1`` there means some order does not);
* ``2`` a usage error: bad input, an unwritable output, a missing optional dependency —
  one line on stderr naming the option, never a traceback;
* ``1`` with a traceback and a line saying so: an internal error, i.e. a bug in modeq
  (never reported as bad input);
* ``130`` interrupted.

Commands validate every option before doing any work (see :mod:`.commands._common`).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import pkgutil
import re
import sys
import traceback

from . import output_cache

EXIT_USAGE = 2
EXIT_INTERNAL = 1

#: optional dependencies and the extra that installs them
OPTIONAL_DEPENDENCIES = {"torch": "experiments", "sklearn": "experiments",
                         "dask": "dask", "distributed": "dask"}


def missing_dependency_message(exc):
    """The one-line message for a missing optional dependency, or None."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = OPTIONAL_DEPENDENCIES.get(name)
    if extra is None:
        return None
    return (f"this command needs the optional dependency {name!r}, which is not installed; "
            f"install it with: pip install \"modeq[{extra}]\"")


def build_parser() -> argparse.ArgumentParser:
    from . import commands as _commands

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
    for p in [parser, *sub.choices.values()]:
        _plain_help(p)
    return parser


_MARKUP = re.compile(r"``([^`]*)``|:(?:class|func|mod|meth|data|attr):`~?([^`]*)`")


def plain(text):
    """``text`` without reStructuredText markup (double backticks, ``:func:`...```): help
    texts are often taken from docstrings."""
    if not text:
        return text
    return _MARKUP.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), text)


def _plain_help(parser):
    parser.description = plain(parser.description)
    parser.epilog = plain(parser.epilog)
    for action in parser._actions:
        if isinstance(action.help, str):
            action.help = plain(action.help)


_NEGATIVE_VALUE = re.compile(r"^-[\d.(]")


def _join_negative_values(argv):
    """``--hs -1/16`` -> ``--hs=-1/16``: argparse takes a value starting with ``-`` for an
    option (and says "expected one argument"); a value that starts like a negative number is
    never an option here, so it is attached to the option before it."""
    out = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if (tok.startswith("--") and "=" not in tok and i + 1 < len(argv)
                and _NEGATIVE_VALUE.match(argv[i + 1])):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def main(argv=None) -> int:
    # the output cache saves a process its start (SymPy's import): only for the entry point,
    # never for callers in Python, who have SymPy loaded and may have changed the library
    entry = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    remembered = output_cache.lookup(argv) if entry else None
    if remembered is not None:                 # the same command on the same code: no SymPy
        sys.stdout.write(remembered)
        return 0
    from .commands._common import UsageError

    parser = build_parser()
    args = parser.parse_args(_join_negative_values(argv))
    try:
        with _cache_off(getattr(args, "no_cache", False)), _Tee(argv, entry) as tee:
            code = args.run(args)
            if not code:
                tee.keep()
    except KeyboardInterrupt:
        print(f"modeq {args.command}: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        message = missing_dependency_message(exc)
        if message is None:
            return _internal_error(args, exc)
        print(f"modeq {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, ValueError, NotImplementedError, OSError) as exc:
        # UsageError from the commands' own checks; ValueError / NotImplementedError are the
        # library's documented answers to input it refuses or does not support
        print(f"modeq {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - anything else is a bug, shown as one
        return _internal_error(args, exc)
    return int(code or 0)


class _Tee(io.TextIOBase):
    """Standard output, also recorded for :mod:`.output_cache` when the command is one whose
    output is remembered; :meth:`keep` stores it."""

    def __init__(self, argv, entry):
        self.argv = argv
        self.active = entry and output_cache.cacheable(argv)
        self.parts = []
        self.stdout = None

    def __enter__(self):
        if self.active:
            self.stdout, sys.stdout = sys.stdout, self
        return self

    def __exit__(self, *exc):
        if self.active:
            sys.stdout = self.stdout

    def write(self, text):
        self.parts.append(text)
        return self.stdout.write(text)

    def flush(self):
        self.stdout.flush()

    def keep(self):
        if self.active:
            output_cache.store(self.argv, "".join(self.parts))


@contextlib.contextmanager
def _cache_off(off):
    """``--no-cache``: the derivation cache off in this process and in the worker processes
    it starts (through ``MODEQ_NO_CACHE``), restored afterwards."""
    if not off:
        yield
        return
    from modeq.symbolic import cache
    before = os.environ.get("MODEQ_NO_CACHE")
    os.environ["MODEQ_NO_CACHE"] = "1"
    try:
        with cache.disabled():
            yield
    finally:
        if before is None:
            os.environ.pop("MODEQ_NO_CACHE", None)
        else:
            os.environ["MODEQ_NO_CACHE"] = before


def _one_line(exc):
    return " ".join(str(exc).split())


def _internal_error(args, exc):
    traceback.print_exc(file=sys.stderr)
    print(f"modeq {args.command}: internal error (a bug in modeq, not a problem with your "
          f"input; please report it with the command line and the traceback above): "
          f"{type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Options shared by subcommands (the optimizer name and its variants) and the checks every
command runs on its options *before* any work: lists, numbers, output files and folders.
Every check raises :class:`UsageError` (exit 2) with a one-line message naming the option."""
from __future__ import annotations

import os
import tempfile

from modeq.symbolic import optimizers

OPTIMIZER_NAMES = sorted(optimizers.BUILTINS)


class UsageError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def add_cache_arg(parser):
    """``--no-cache``: neither read nor write the derivation cache (``modeq cache info``)."""
    parser.add_argument("--no-cache", action="store_true",
                        help="derive and prove from scratch: do not read or write the "
                             "derivation cache (see modeq cache info)")


def check_label(check):
    """``proved`` / ``checked`` (exact arithmetic at random points) / ``FAILED`` for one
    ``(description, ok)`` check of a recognition."""
    label = getattr(check, "label", None)
    return label if label is not None else ("proved" if check[1] else "FAILED")


def add_optimizer_args(parser, required=True):
    """The OPTIMIZER argument (optional when ``required`` is false) and its variant flags."""
    parser.add_argument("optimizer", metavar="OPTIMIZER", nargs=None if required else "?",
                        default=None,
                        help=f"a built-in optimizer: {', '.join(OPTIMIZER_NAMES)}")
    parser.add_argument("--eps-outside", action="store_true",
                        help="Adam/RMSProp with eps outside the square root (torch.optim.Adam)")
    parser.add_argument("--no-bias-correction", action="store_true",
                        help="Adam/RMSProp without bias correction")


def optimizer_from_args(args):
    """The built-in optimizer an argparse namespace names; ValueError for an unknown name."""
    return optimizers.get(args.optimizer,
                          eps_placement="outside" if args.eps_outside else "inside",
                          bias_correction=not args.no_bias_correction)


# -- values ---------------------------------------------------------------------------------
def csv_items(text, option):
    """The items of a comma-separated list; an empty list or an empty item is refused."""
    items = [s.strip() for s in str(text or "").split(",")]
    if not any(items):
        raise UsageError(f"{option}: give a comma-separated list")
    if not all(items):
        raise UsageError(f"{option}: empty item in {str(text)!r}")
    return items


def int_list(text, option):
    """A comma-separated list of integers (``0,1,2``)."""
    out = []
    for s in csv_items(text, option):
        try:
            out.append(int(s))
        except ValueError:
            raise UsageError(f"{option}: {s!r} is not an integer") from None
    return out


def number(text, option):
    """An exact rational (``1/16``, ``2^-4``, ``0.9``, ``1e-8``), never evaluated as code."""
    from modeq.proofs.expressions import ExpressionError, parse_number
    try:
        return parse_number(text, option)
    except ExpressionError as exc:
        raise UsageError(str(exc)) from None


# -- outputs --------------------------------------------------------------------------------
def _probe(folder, option, path):
    """Create and remove a file in ``folder`` (a real check, also for a privileged user)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".modeq-probe-", dir=folder)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write into the folder {folder} "
                         f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def report_study(result, args, lines=()):
    """Print an order study's table (``--markdown``) and ``lines``, write ``--json`` and
    ``--plot``; the exit code: 0 when every order passes, else 1."""
    print(result.table("markdown" if args.markdown else "text"), end="")
    for line in lines:
        print(line)
    if args.json:
        result.to_json(args.json)
        print(f"wrote {args.json}")
    if args.plot:
        result.plot(args.plot)
        print(f"wrote {args.plot}")
    return 0 if result.passed else 1


def check_output_file(path, option, suffixes=None):
    """``path`` can be written: not a folder, its folder exists and is writable, its suffix
    among ``suffixes`` (if given)."""
    if path is None:
        return
    if not str(path).strip():
        raise UsageError(f"{option}: empty file name")
    if suffixes is not None:
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in suffixes:
            raise UsageError(f"{option} {path}: unsupported file type {suffix or '(none)'!r}; "
                             f"use {', '.join(suffixes)}")
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a folder, expected a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path}: the folder {folder} does not exist")
    _probe(folder, option, path)


def check_output_folder(path, option, create=True):
    """``path`` is (or can be created as) a writable folder; creates it unless
    ``create=False`` (then the nearest existing folder above it must be writable)."""
    if not str(path).strip():
        raise UsageError(f"{option}: empty folder name")
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{option} {path!r} exists and is not a folder")
    if not create and not os.path.isdir(path):
        parent = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise UsageError(f"{option} {path}: {parent} is not a folder")
        _probe(parent, option, path)
        return
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot create the folder "
                         f"({exc.strerror or exc})") from None
    _probe(path, option, path)


# -- progress -------------------------------------------------------------------------------
class Progress:
    """Progress of a long command, on stderr (stdout keeps the results).

    On a terminal each step shows a tqdm bar (``[2/4] order-of-accuracy studies``, with the
    count done); otherwise (a log file, a pipe, CI) one plain line when a step starts, one when
    a sub-task (a study, a document) is done, and one when the step ends — no bars, no carriage
    returns.  ``enabled=False`` prints nothing.

    >>> p = Progress("modeq demo", 1, stream=None, enabled=False)
    >>> with p.step("work") as update:
    ...     update(1, 1, "first part")
    """

    def __init__(self, command, steps, stream=None, enabled=True, terminal=None):
        import sys
        self.command = command
        self.steps = steps
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", None)
        self.terminal = bool(isatty and isatty()) if terminal is None else terminal
        self.index = 0

    def _line(self, text):
        if self.enabled:
            print(f"{self.command}: {text}", file=self.stream, flush=True)

    def step(self, label):
        """A context manager for the next step; yields ``update(done, total, what="")``."""
        import contextlib
        import time

        self.index += 1
        head = f"[{self.index}/{self.steps}] {label}"

        @contextlib.contextmanager
        def run():
            t0 = time.perf_counter()
            bar = None
            if self.enabled and self.terminal:
                from tqdm import tqdm
                bar = tqdm(desc=head, total=None, file=self.stream, leave=False,
                           unit="", dynamic_ncols=True)
            else:
                self._line(head + " ...")
            last = {"done": None}

            def update(done, total, what=""):
                if bar is not None:
                    if bar.total != total:
                        bar.total = total
                    bar.n = done
                    if what:
                        bar.set_postfix_str(what, refresh=False)
                    bar.refresh()
                elif self.enabled and done != last["done"]:
                    self._line(f"{head}: {done}/{total} done" + (f" ({what})" if what else ""))
                last["done"] = done

            try:
                yield update
            finally:
                if bar is not None:
                    bar.close()
            self._line(f"{head}: done in {time.perf_counter() - t0:.1f} s")

        return run()


# -- optional dependencies ------------------------------------------------------------------
def require_extra(modules, extra):
    """Import ``modules`` (the optional dependencies a command needs); a missing one is a
    usage error naming the extra that installs it (``pip install "modeq[experiments]"``)."""
    import importlib
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise UsageError(f"this command needs the optional dependency {name!r} "
                             f"({type(exc).__name__}: {exc}); install it with: "
                             f"pip install \"modeq[{extra}]\"") from None

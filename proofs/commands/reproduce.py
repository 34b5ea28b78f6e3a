"""``modeq reproduce``: the main job on the embedded default problem.

1. derive Adam's modified flow from its recursion (exact in ``n`` and stationary);
2. prove it equal to the correction of Cattaneo, Klusowski & Shigida (ICML 2024) and print it
   in the paper's form with the proof's outcome;
3. compute the regime table (ε → 0, ε → ∞; ρ > β vs β ≥ ρ) as limits of the derived flow;
4. the parts other modules provide (order-of-accuracy studies, derivation documents) write
   their outputs into the report folder; the documents are built in a worker process while
   this one derives and runs the studies (two cores: about half the wall time).
"""
from __future__ import annotations

import contextlib
import inspect
import multiprocessing
import os
import signal
import time

from . import latex as _latex_part
from . import verify as _verify_part
from ._common import Progress, add_cache_arg, check_label, check_output_folder

#: the parts other modules provide, each a module with ``reproduce_part(out_dir, quick)``;
#: imported normally (a part that cannot be imported or run fails the command loudly)
PARTS = ((_verify_part, "order-of-accuracy studies"),
         (_latex_part, "derivation documents"))


def add_parser(sub):
    p = sub.add_parser("reproduce", help="regenerate Adam's implicit-bias correction, prove it, "
                                         "verify it numerically, write a report",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="modeq-report", help="report folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="smaller numerical studies")
    p.add_argument("--symbolic-only", action="store_true",
                   help="only the derivation, proof and regime table")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress lines on stderr")
    add_cache_arg(p)
    p.set_defaults(run=run)


def symbolic_part():
    """Derive, prove, tabulate; returns the printed text."""
    from modeq.symbolic import derive, optimizers
    from modeq.symbolic.recognize import recognize
    from modeq.symbolic.regimes import regime_table
    t0 = time.perf_counter()
    flow = derive(optimizers.adam(), order=1)
    out = ["modeq reproduce — Adam's implicit bias, regenerated from the recursion",
           "=" * 72, "", str(flow).replace("full batch, exact in n", "full batch, exact in n"), ""]
    for stationary, dims in ((True, (1, 2, 3, 4)), (False, (1, 2))):
        recs = recognize(flow, stationary=stationary, dims=dims, components="prove")
        label = "stationary (n -> oo)" if stationary else "exact in n (memory moments b_n, r_n)"
        paper = [r for r in recs if "Adam" in r.name]
        if not paper:
            raise RuntimeError(f"the derived Adam flow ({label}) could not be proved equal to "
                               f"the paper's correction")
        rec = paper[0]
        out.append(f"Recognized [{label}]: {rec.name} — {rec.source}")
        out.append(f"  {rec.display}")
        for check in rec.checks:
            out.append(f"  [{check_label(check)}] {check[0]}")
        out.append("")
    out.append("Regime table (limits of the derived correction):")
    out.append(regime_table(flow).text())
    out.append(f"\n(symbolic part: {time.perf_counter() - t0:.1f} s)")
    return "\n".join(out)


def run(args):
    from modeq.proofs.atomic import atomic_write_text
    check_output_folder(args.out, "--out")      # before any work
    parts = [] if args.symbolic_only else list(PARTS)
    for module, what in parts:
        if not callable(getattr(module, "reproduce_part", None)):
            raise RuntimeError(f"the {what} part ({module.__name__}) has no reproduce_part()")
    progress = Progress("modeq reproduce", 1 + len(parts), enabled=not args.no_progress)
    with _background(parts[1:], args) as pending:
        with progress.step("derivation, proof and regime table"):
            text = symbolic_part()
        print(text)
        atomic_write_text(os.path.join(args.out, "adam-correction.txt"), text + "\n")
        for k, (module, what) in enumerate(parts):
            with progress.step(what) as update:
                if k == 0:
                    kwargs = {"quick": args.quick}
                    if "progress" in inspect.signature(module.reproduce_part).parameters:
                        kwargs["progress"] = update
                    result = module.reproduce_part(args.out, **kwargs)
                else:
                    result = pending[k - 1].get()      # its exception, if any, is raised here
            print(f"\n--- {what} ---")
            print(result)
    print(f"\nreport written to {os.path.abspath(args.out)}/")
    return 0


@contextlib.contextmanager
def _background(parts, args):
    """Run ``parts`` (all but the first) in one worker process, started at once: the
    documents are built while this process derives and runs the studies (two cores, about
    half the wall time).  Yields their ``AsyncResult`` objects, in order; an interruption or an
    error here stops the worker at once."""
    if not parts:
        yield []
        return
    context = multiprocessing.get_context("spawn")      # a clean interpreter, no inherited state
    # the worker leaves Ctrl-C to this process, which stops it
    pool = context.Pool(1, initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))
    try:
        pending = [pool.apply_async(module.reproduce_part, (args.out,), {"quick": args.quick})
                   for module, _ in parts]
        yield pending
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()

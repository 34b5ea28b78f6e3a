"""``modeq experiment rho-sweep|beta-sweep``: the paper's empirical trends with full-batch Adam.

Trains a small MLP or CNN on scikit-learn's digits (CPU, float32) for several values of the swept
hyperparameter and several seeds, with and without the penalty that cancels Adam's first-order
implicit bias, and writes a CSV of every logged value, two PNG plots and a summary (see
:mod:`modeq.numeric.experiments`).  torch is imported only when the command runs.
"""
from __future__ import annotations

import sys

from ._common import check_output_folder, require_extra

SWEEPS = ("rho-sweep", "beta-sweep")


def add_parser(subparsers):
    p = subparsers.add_parser(
        "experiment",
        help="rho/beta sweeps of full-batch Adam on digits: the one-norm and test accuracy",
        description="Full-batch Adam (eps inside the square root) on scikit-learn's digits: "
                    "sweep rho (beta fixed) or beta (rho fixed), log per step the train loss, "
                    "the perturbed one-norm of the gradient and train/test accuracy, and compare "
                    "with the paper's four trends. Writes SWEEP.csv, two PNG plots and a summary.")
    p.add_argument("sweep", metavar="{rho-sweep,beta-sweep}", help="which hyperparameter to sweep")
    p.add_argument("--steps", default="1000", help="full-batch steps per run (default 1000)")
    p.add_argument("--seeds", default="3", help="number of seeds 0..N-1 (default 3)")
    p.add_argument("--values", default=None,
                   help="comma-separated values in (0,1) of the swept hyperparameter "
                        "(default rho: 0.99,0.995,0.999,0.9995,0.9999; "
                        "beta: 0.5,0.8,0.9,0.95,0.99)")
    p.add_argument("--model", default="mlp",
                   help="mlp or cnn (default mlp; cnn runs about ten times slower, mostly the "
                        "counter-experiment's double backward through convolutions: try "
                        "--steps 200 or --no-counter)")
    p.add_argument("--out", default=None, help="output folder (default ./modeq-SWEEP)")
    p.add_argument("--lr", default="1e-3", help="learning rate h (default 1e-3)")
    p.add_argument("--eps", default="1e-8", help="Adam's eps, inside the square root (default 1e-8)")
    p.add_argument("--beta", default=None, help="fixed beta of a rho sweep (default 0.99)")
    p.add_argument("--rho", default=None, help="fixed rho of a beta sweep (default 0.999)")
    p.add_argument("--no-counter", action="store_true",
                   help="skip the counter-experiment with the cancelling penalty")
    p.add_argument("--counter-weight", default="1.0",
                   help="weight of the cancelling penalty (default 1: cancel exactly)")
    p.add_argument("--threads", default="1", help="torch threads (default 1, fastest here)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p


def _int(name, text):
    try:
        return int(str(text).strip())
    except ValueError:
        raise ValueError(f"--{name} must be an integer, got {text!r}") from None


def _float(name, text):
    try:
        return float(str(text).strip())
    except ValueError:
        raise ValueError(f"--{name} must be a number, got {text!r}") from None


def _values(text):
    if text is None:
        return None
    parts = [t for t in str(text).replace(" ", "").split(",") if t]
    if not parts:
        raise ValueError("--values is empty")
    return [_float("values", t) for t in parts]


def run(args) -> int:
    if args.sweep not in SWEEPS:
        raise ValueError(f"unknown sweep {args.sweep!r}; choose rho-sweep or beta-sweep")
    kind = args.sweep.split("-")[0]
    steps = _int("steps", args.steps)
    seeds = _int("seeds", args.seeds)
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    model = str(args.model).lower()
    if model not in ("mlp", "cnn"):
        raise ValueError(f"unknown model {args.model!r}; choose mlp or cnn")
    if kind == "rho" and args.rho is not None:
        raise ValueError("--rho is the swept hyperparameter of rho-sweep; use --values")
    if kind == "beta" and args.beta is not None:
        raise ValueError("--beta is the swept hyperparameter of beta-sweep; use --values")
    kwargs = dict(
        steps=steps, seeds=seeds, model=model, lr=_float("lr", args.lr),
        eps=_float("eps", args.eps), counter=not args.no_counter,
        counter_weight=_float("counter-weight", args.counter_weight),
        num_threads=_int("threads", args.threads), progress=not args.no_progress,
        beta=None if args.beta is None else _float("beta", args.beta),
        rho=None if args.rho is None else _float("rho", args.rho))
    values = _values(args.values)
    out = args.out or f"modeq-{args.sweep}"

    require_extra(("torch", "sklearn"), "experiments")   # before any work
    from modeq.numeric import experiments  # lazy: imports torch and scikit-learn

    # validate everything (and fail with one line) before loading data and training
    experiments.check_sweep_values(kind, values)
    check_output_folder(out, "--out", create=False)
    result = experiments.adam_sweep(kind, values, **kwargs)
    paths = experiments.write_outputs(result, out)
    sys.stdout.write(result.summary())
    sys.stdout.write("\nWrote:\n" + "".join(f"  {p}\n" for p in paths.values()))
    return 0

"""``modeq verify OPTIMIZER``: observed order of accuracy of the modified flows.

Runs the optimizer and integrates its modified flows of the requested orders in high precision
(mpmath) for each step size, prints the convergence table (discrepancy, observed rates,
integrator and rounding estimates, least-squares slope and verdict per order) and optionally
writes a log-log plot and the JSON result.  Exit code 0 when every order passes, 1 otherwise.
"""
from __future__ import annotations

import os
import sys

from ._common import (PLOT_SUFFIXES, UsageError, add_cache_arg, add_optimizer_args,
                      check_output_file, csv_items, int_list, number, optimizer_from_args,
                      report_study, require_extra)
from ._verify_torch import DTYPES, run_torch

DEFAULT_FULL_PROBLEM = "logcosh2d"
DEFAULT_MINI_PROBLEM = "leastsquares3"


class _ProblemNames:
    """The embedded problems' names as argparse ``choices``, read from
    :mod:`modeq.numeric.problems` only when an option is checked or help is printed (building
    the parser for another command does not load the numeric layer)."""

    def _names(self):
        from modeq.numeric.problems import names
        return names()

    def __contains__(self, item):
        return item in self._names()

    def __iter__(self):
        return iter(self._names())


def add_parser(sub):
    p = sub.add_parser("verify", help="measure the order of accuracy of the modified flows",
                       description=__doc__.split("\n\n")[1])
    add_optimizer_args(p, required=False)
    p.add_argument("--torch", metavar="SPEC",
                   help='instead of OPTIMIZER: a torch.optim optimizer as you would write it, '
                        'e.g. "AdamW(betas=(0.9, 0.99), weight_decay=0.01)", checked against '
                        "torch's own float64 iterates with lr = each h (needs torch)")
    p.add_argument("--dtype", default="float64", choices=DTYPES,
                   help="with --torch: torch's dtype (the check runs in float64 only)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--problem", choices=_ProblemNames(),
                     help=f"an embedded problem (default {DEFAULT_FULL_PROBLEM}, or "
                          f"{DEFAULT_MINI_PROBLEM} with --batch mini)")
    src.add_argument("--loss", help="a loss in the parameters, e.g. 'x**4/4 + x*y + y**2' "
                                    "(numbers, + - * / **, exp, log, sqrt, sin, cos, tanh, ...; "
                                    "read safely, never run as code); for --batch mini several "
                                    "losses separated by ';'")
    p.add_argument("--params", help="parameters of --loss, comma separated (e.g. x,y)")
    p.add_argument("--theta0", help="starting point, comma separated (e.g. 1,1/2)")
    p.add_argument("--batch", choices=("full", "mini"), default="full")
    p.add_argument("--schedule", choices=("cyclic", "random"), default=None,
                   help="mini batch: the batches in a fixed cyclic order (default), or "
                        "reshuffled every epoch (each epoch a random order of at least 2 "
                        "batches; see --seed)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of --schedule random (default 0)")
    p.add_argument("--orders", default="0,1", help="flow orders (default %(default)s)")
    p.add_argument("--hs", help="step sizes, comma separated, strictly decreasing, e.g. "
                                "1/16,1/32,1/64 or 2^-4,2^-5 (default 2^-4 ... 2^-9)")
    p.add_argument("--T", default=None, help="horizon (default: the problem's, 1)")
    p.add_argument("--dps", type=int, default=40, help="decimal digits (default %(default)s)")
    p.add_argument("--stationary", action="store_true",
                   help="the n -> oo flow (full batch)")
    for name in ("beta", "rho", "eps"):
        p.add_argument(f"--{name}", help=f"value of {name} (default: the problem's)")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes")
    p.add_argument("--scheduler", help="Dask scheduler address: run on that cluster")
    p.add_argument("--plot", help="write the log-log plot here (PNG/PDF/SVG)")
    p.add_argument("--json", help="write the result as JSON here")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    add_cache_arg(p)
    p.set_defaults(run=run)


def _csv(text, what):
    return csv_items(text, what)


def _number(text, what="number"):
    return number(text, what)


def _losses(args):
    """The ``--loss`` expressions (``;``-separated), parsed by the whitelist parser of
    :mod:`modeq.proofs.expressions` (never evaluated as Python), and their parameters."""
    import sympy as sp
    from modeq.proofs.expressions import ExpressionError, parse_expression, parse_names
    try:
        names = parse_names(args.params, "--params")
    except ExpressionError as exc:
        raise UsageError(str(exc)) from None
    params = [sp.Symbol(s, real=True) for s in names]
    local = {str(s): s for s in params}
    parts = args.loss.split(";")
    if len(parts) > 1 and not all(p.strip() for p in parts):
        raise UsageError(f"--loss: empty loss between ';' in {args.loss!r}")
    try:
        return [parse_expression(s, local, "--loss") for s in parts], params
    except ExpressionError as exc:
        raise UsageError(str(exc)) from None


def problem_from_args(args, optimizer):
    """``(loss_or_losses, params, theta0, T, values, name)`` from the command line."""
    from modeq.numeric import problems
    overrides = {k: _number(getattr(args, k), f"--{k}") for k in ("beta", "rho", "eps")
                 if getattr(args, k) is not None}
    if args.loss is not None:
        if not args.params or not args.theta0:
            raise ValueError("--loss needs --params and --theta0")
        losses, params = _losses(args)
        if args.batch == "full" and len(losses) != 1:
            raise ValueError("--batch full takes one loss (use --batch mini for several)")
        theta0 = [_number(s, "--theta0") for s in _csv(args.theta0, "--theta0")]
        base = dict(problems.DEFAULT_VALUES)
        base.update(overrides)
        values = {k: v for k, v in base.items()
                  if k in {str(s) for s in optimizer.hyperparameters}}
        loss = losses if args.batch == "mini" else losses[0]
        T = _number(args.T, "--T") if args.T else 1
        return loss, params, theta0, T, values, "user loss"
    if args.params or args.theta0:
        raise ValueError("--params and --theta0 go with --loss")
    name = args.problem or (DEFAULT_MINI_PROBLEM if args.batch == "mini"
                            else DEFAULT_FULL_PROBLEM)
    prob = problems.get(name)
    if args.batch == "mini" and not prob.mini:
        raise ValueError(f"problem {name!r} is full batch; mini-batch problems: "
                         f"{[n for n in problems.names() if problems.get(n).mini]}")
    loss = prob.loss_or_losses if args.batch == "mini" else prob.full_batch_loss()
    T = _number(args.T, "--T") if args.T else prob.T
    return loss, list(prob.params), list(prob.theta0), T, prob.values_for(optimizer, overrides), \
        name


def run(args):
    from tqdm import tqdm
    from modeq.numeric.study import order_study, validate_inputs
    # every option is checked before any work
    if args.torch is not None:
        require_extra(("torch",), "torch")
        return run_torch(args, problem_from_args, *_orders_and_hs(args))
    if args.dtype != "float64":
        raise UsageError("--dtype goes with --torch")
    if args.optimizer is None:
        raise UsageError("the following arguments are required: OPTIMIZER (or --torch SPEC)")
    optimizer = optimizer_from_args(args)
    if args.batch == "mini" and args.stationary:
        raise ValueError("--stationary is for --batch full")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    check_output_file(args.plot, "--plot", PLOT_SUFFIXES)
    check_output_file(args.json, "--json")
    if args.batch != "mini" and (args.schedule or args.seed is not None):
        raise UsageError("--schedule and --seed are for --batch mini")
    if args.seed is not None and args.schedule != "random":
        raise UsageError("--seed is for --schedule random")
    loss, params, theta0, T, values, name = problem_from_args(args, optimizer)
    if args.schedule == "random" and len(loss) < 2:
        raise UsageError(f"--schedule random needs at least 2 batch losses (got {len(loss)}): "
                         "with one batch every epoch has the same order, which is --schedule "
                         "cyclic; give several losses separated by ';' in --loss")
    orders, hs = _orders_and_hs(args)
    validate_inputs(optimizer, loss, params, theta0, T, hs, orders, args.dps)
    schedule = None
    if args.schedule == "random":
        schedule = reshuffled_schedule(len(loss), int(T / min(hs)) + 1,
                                       0 if args.seed is None else args.seed)
        name = f"{name}, reshuffled every epoch (seed {0 if args.seed is None else args.seed})"
    optimizer.check_values(values)
    jobs, backend = args.jobs, None
    client = None
    if args.scheduler:
        from modeq.numeric.sweep import dask_client as _client
        client = _client(args.scheduler)
        jobs, backend = -1, "dask"
    # a bar on a terminal only: logs and pipes stay free of carriage returns
    bar = tqdm(total=len(hs), desc=f"verify {optimizer.name}", unit="h", leave=False,
               disable=not sys.stderr.isatty())
    try:
        result = order_study(optimizer, loss, params, theta0, T=T, hs=hs, orders=orders,
                             dps=args.dps, stationary=args.stationary, schedule=schedule,
                             jobs=jobs,
                             backend=backend, problem_name=name,
                             progress=lambda done, total: bar.update(done - bar.n), **values)
    finally:
        bar.close()
        if client is not None:
            client.close()
    t = result.timings
    return report_study(result, args, [f"time: {t['total']:.1f} s (iterates "
                                       f"{t['iterates']:.2f} s, flows {t['flows']:.2f} s)"])


def _orders_and_hs(args):
    """``--orders`` (each 0, 1 or 2) and ``--hs`` (default 2^-4 ... 2^-9) as read."""
    from modeq.numeric.problems import DEFAULT_HS
    orders = tuple(int_list(args.orders, "--orders"))
    if any(r not in (0, 1, 2) for r in orders):
        raise UsageError(f"--orders: each order must be 0, 1 or 2, got {args.orders}")
    hs = [_number(s, "--hs") for s in _csv(args.hs, "--hs")] if args.hs else list(DEFAULT_HS)
    return orders, hs


def reshuffled_schedule(m, steps, seed):
    """``steps`` batch indices, epoch after epoch, each epoch a random order of ``0..m-1``
    (NumPy's ``default_rng(seed)``): training with the data reshuffled every epoch.

    >>> reshuffled_schedule(3, 7, 0)
    [2, 0, 1, 2, 1, 0, 2]
    """
    import numpy as np
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < steps:
        out.extend(int(b) for b in rng.permutation(m))
    return out[:steps]


def reproduce_part(out_dir, quick=False, progress=None) -> str:
    """The default Adam order study, full batch (exact-n flow, orders 0-2) and mini batch
    (orders 0-1), written to
    ``out_dir`` as Markdown tables, JSON and PNG plots (atomically); returns a short summary.
    ``progress(done, total, what)`` is called as each step size of each study is done."""
    from modeq.numeric import problems
    from modeq.numeric.study import atomic_write, order_study
    from modeq.symbolic import optimizers
    import sympy as sp
    os.makedirs(out_dir, exist_ok=True)
    adam = optimizers.adam()
    hs_full = problems.DEFAULT_HS[:4] if quick else problems.DEFAULT_HS
    hs_mini = [sp.Rational(1, 2 ** k) for k in ((5, 6, 7) if quick else (5, 6, 7, 8))]
    dps = 30 if quick else 40
    lines = []
    # full batch also checks the h^2 term (no published result); mini batch orders 0-1 here
    # (its order 2: modeq verify ... --batch mini --orders 0,1,2)
    studies = (("full", "logcosh2d", hs_full, (0, 1, 2)),
               ("mini", "leastsquares3", hs_mini, (0, 1)))
    total = sum(len(hs) for _, _, hs, _ in studies)
    offset = 0
    for k, (batch, pname, hs, orders) in enumerate(studies):
        prob = problems.get(pname)
        label = f"study {k + 1}/{len(studies)}: Adam, {batch} batch ({pname})"

        def tick(done, _total, offset=offset, label=label):
            if progress is not None:
                progress(offset + done, total, label)

        tick(0, len(hs))
        res = order_study(adam, prob.loss_or_losses, prob.params, prob.theta0, T=prob.T, hs=hs,
                          orders=orders, dps=dps, problem_name=pname, progress=tick,
                          **prob.values_for(adam))
        offset += len(hs)
        stem = os.path.join(out_dir, f"order-study-adam-{batch}")
        atomic_write(stem + ".md", res.table("markdown"))
        res.to_json(stem + ".json")
        res.plot(stem + ".png")
        slopes = ", ".join(f"order {r}: slope {o.slope:.3f} {o.verdict}"
                           if o.slope is not None else f"order {r}: {o.verdict}"
                           for r, o in res.orders.items())
        lines.append(f"Adam, {batch} batch ({pname}, h = {hs[0]} ... {hs[-1]}, dps={dps}): "
                     f"{slopes}; {res.timings['total']:.1f} s -> {stem}.md/.json/.png")
    return "\n".join(lines)

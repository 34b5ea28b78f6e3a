"""The order study driver, :func:`order_study` (conventions in :mod:`modeq.numeric.study`)."""
from __future__ import annotations

import time

import mpmath
import sympy as sp

from .._compile import normalize_values
from ..integrate import method_for
from ..iterate import as_losses
from ..problems import DEFAULT_HS
from .cache import field_factory_for
from .inputs import validate_inputs
from .judge import judge_runs, tolerances
from .result import StudyResult
from .run import run_step_size, run_tasks, study_spec

__all__ = ["order_study"]


def order_study(optimizer, loss_or_losses, params, theta0, T=1, hs=DEFAULT_HS, orders=(0, 1),
                dps=40, stationary=False, schedule=None, *, tol=None, method="auto",
                substeps=1, refine=True, fields=None, jobs=1, backend=None, progress=None,
                problem_name=None, **values) -> StudyResult:
    """Run the order-of-accuracy study of ``optimizer``'s modified flows
    (:mod:`modeq.numeric.study`).

    ``loss_or_losses``: a SymPy loss (full batch) or a list (mini batch, ``schedule`` as in
    ``flow.field``: ``None`` is cyclic).  ``hs``: strictly decreasing step sizes (exact
    rationals advised; floats are taken as their binary value).  ``values``: hyperparameters by
    name.  ``tol``: slope tolerance, a number or ``{order: tol}`` (default 0.1 for orders 0, 1
    and 0.15 for order 2).  ``method``: ``"auto"`` (per order the cheapest embedded pair whose
    estimate converges faster than the discrepancy, see :data:`.integrate.AUTO_METHOD`) or a
    name in :data:`.integrate.TABLEAUX`; ``substeps`` per interval to start with, raised
    automatically while ``refine`` and the integrator estimate prevents resolution.
    ``fields``: ``{order: factory(h) -> f(n, theta)}`` to study hand-written (or deliberately
    wrong) fields instead of the derived ones.  ``jobs > 1`` runs the step sizes in parallel with
    joblib (``backend``: a joblib backend name, e.g. ``"dask"``).  ``progress(done, total)`` is
    called after each step size.

    >>> import sympy as sp
    >>> from modeq.symbolic import optimizers
    >>> x = sp.Symbol("x")
    >>> res = order_study(optimizers.gd(), x**4 / 4 + x, [x], [1], hs=["1/8", "1/16", "1/32"],
    ...                   orders=(0, 1), dps=20)
    >>> res.verdicts
    {0: 'pass', 1: 'pass'}
    """
    T, hs = validate_inputs(optimizer, loss_or_losses, params, theta0, T, hs, orders, dps, tol)
    values = normalize_values(values)
    losses, mini = as_losses(loss_or_losses)
    tols = tolerances(tol)
    for r in orders:
        method_for(r, method)  # ValueError for an unknown name
    if int(substeps) != substeps or substeps < 1:
        raise ValueError(f"substeps must be a positive integer, got {substeps}")
    if mini and stationary:
        raise ValueError("stationary=True is for full batch; give a single loss")
    if schedule is not None and (callable(schedule) or len(schedule) < T / hs[-1]):
        raise ValueError(f"schedule must be a sequence of at least T/h = "
                         f"{int(T / hs[-1])} loss indices for the smallest h")
    theta0 = [sp.Rational(x) if isinstance(x, str) else sp.sympify(x) for x in theta0]
    values = {k: v for k, v in values.items() if k != "h"}
    optimizer.check_values(values)
    spec = study_spec(optimizer, list(losses) if mini else losses[0], params, theta0, T, orders,
                      dps, stationary, schedule, values, method, substeps, refine)
    t_start = time.perf_counter()
    factory = None
    if fields is not None:
        unknown = set(fields) - set(orders)
        if unknown:
            raise ValueError(f"fields given for orders {sorted(unknown)} not in orders")
        base = field_factory_for(spec) if set(orders) - set(fields) else None
        factory = lambda r, h: fields[r](h) if r in fields else base(r, h)  # noqa: E731
    if jobs == 1 or factory is not None:
        runs = []
        with mpmath.workdps(int(dps)):
            factory = factory or field_factory_for(spec)
            for i, h in enumerate(hs):
                runs.append(run_step_size(spec, h, factory))
                if progress:
                    progress(i + 1, len(hs))
    else:
        runs = run_tasks([(spec, h) for h in hs], jobs, backend, progress)
    judged, timings = judge_runs(orders, runs, tols)
    total = time.perf_counter() - t_start
    name = problem_name or (f"{len(losses)} batch losses" if mini else f"E = {losses[0]}")
    return StudyResult(
        optimizer=optimizer.name, problem=name, batch="mini" if mini else "full",
        stationary=bool(stationary), dps=int(dps), T=str(T),
        values={k: str(v) for k, v in spec["values"].items()}, orders=judged,
        timings={"total": total, **timings,
                 "setup": max(0.0, total - timings["iterates"] - timings["flows"])})

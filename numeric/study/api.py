"""The order study driver, :func:`order_study`, and the validation of its inputs (shared with
the sweeps and ``modeq verify``); conventions in :mod:`modeq.numeric.study`.

Inputs: ``T`` and the step sizes become exact rationals (a float is taken as its binary value, a
string such as ``"1/16"`` exactly); ``hs`` must be strictly decreasing; ``dps`` is the mpmath
working precision in decimal digits.
"""
import math
import time

import mpmath
import sympy as sp

from modeq.symbolic.family import Optimizer
from modeq.symbolic.emit import normalize_values
from ..integrate import method_for
from ..iterate import as_losses
from ..problems import DEFAULT_HS
from .judge import judge_study, tolerances
from .result import StudyResult
from .run import field_factory_for, run_step_size, run_tasks, study_spec


MIN_DPS = 15


def validate_inputs(optimizer, loss_or_losses, params, theta0, T, hs, orders, dps, tol=None):
    """Check the study's inputs; returns ``(T, hs)`` as exact rationals.  ``ValueError`` for
    non-positive ``hs`` or ``hs`` not strictly decreasing, ``T <= 0``, ``dps < 15``, ``theta0``
    of the wrong length, orders outside 0, 1, 2.

    >>> import sympy as sp
    >>> from modeq.symbolic import optimizers
    >>> x = sp.Symbol("x")
    >>> validate_inputs(optimizers.gd(), x**2, [x], [1], 1, [0.5, "1/4"], (0, 1), 20)
    (1, [1/2, 1/4])
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"expected an Optimizer, got {optimizer!r}")
    as_losses(loss_or_losses)
    if len(theta0) != len(params):
        raise ValueError(f"theta0 has {len(theta0)} components but there are {len(params)} "
                         f"parameters {[str(p) for p in params]}")
    T = _rational("T", T)
    if T <= 0:
        raise ValueError(f"the horizon T must be > 0, got {T}")
    hs = [_rational("h", h) for h in hs]
    if len(hs) < 2:
        raise ValueError("give at least two step sizes hs to fit a slope")
    if any(h <= 0 for h in hs):
        raise ValueError(f"step sizes must be > 0, got {[str(h) for h in hs]}")
    if any(b >= a for a, b in zip(hs, hs[1:])):
        raise ValueError(f"step sizes hs must be strictly decreasing, got {[str(h) for h in hs]}")
    if hs[0] > T:
        raise ValueError(f"the largest step size {hs[0]} exceeds the horizon T = {T}")
    if int(dps) != dps or dps < MIN_DPS:
        raise ValueError(f"dps must be an integer >= {MIN_DPS}, got {dps}")
    orders = tuple(orders)
    if not orders or any(r not in (0, 1, 2) for r in orders) or len(set(orders)) != len(orders):
        raise ValueError(f"orders must be distinct values among 0, 1, 2, got {orders}")
    if tol is not None and not (isinstance(tol, dict) or float(tol) > 0):
        raise ValueError(f"tol must be > 0, got {tol}")
    return T, hs


def _rational(name, value):
    try:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError
            return sp.Rational(value)
        v = sp.Rational(value) if isinstance(value, str) else sp.sympify(value)
        if not isinstance(v, sp.Basic):
            raise TypeError
        v = sp.nsimplify(v)
        if not v.is_Rational:
            raise ValueError
        return v
    except (TypeError, ValueError, ZeroDivisionError, sp.SympifyError):
        raise ValueError(f"{name} must be a finite real number, got {value!r}") from None


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
    name = problem_name or (f"{len(losses)} batch losses" if mini else f"E = {losses[0]}")
    result = judge_study(spec, runs, tols, name)
    total, t = time.perf_counter() - t_start, result.timings
    result.timings = {"total": total, **t, "setup": max(0.0, total - t["iterates"] - t["flows"])}
    return result

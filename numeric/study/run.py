"""Runs of an order study: the iterates and each requested flow for one step size ``h``.

A *spec* (:func:`study_spec`) is a plain, picklable dict describing one study; a *task* is a
``(spec, h)`` pair, the grain at which :func:`run_tasks` spreads work over joblib workers (shared
by :func:`~modeq.numeric.study.order_study` and :func:`~modeq.numeric.sweep.sweep`).

Per run the discrepancy is ``max_n ||theta^(n) - theta~(n h)||_inf``.  It is *resolved* when it
is at least ``RESOLUTION`` times the integrator estimate plus the rounding model
``ROUNDING_FACTOR * u * N * max(1, |theta|)`` per run (``u = 2^(1 - prec)``, ``N = T/h``); while
it is not, and ``refine`` is on, the flow is integrated again with more substeps (at most
``MAX_SUBSTEPS``), unless rounding limits it.
"""
from __future__ import annotations

import math
import threading
import time
from contextlib import nullcontext

import mpmath

from ..integrate import TABLEAUX, integrate, method_for
from .cache import field_factory_for, iterator_for
from .result import Point

__all__ = ["study_spec", "run_step_size", "run_tasks", "RESOLUTION", "ROUNDING_FACTOR",
           "MAX_SUBSTEPS"]

RESOLUTION = 1000
ROUNDING_FACTOR = 64
MAX_SUBSTEPS = 256


def study_spec(optimizer, loss_or_losses, params, theta0, T, orders, dps, stationary=False,
               schedule=None, values=None, method="auto", substeps=1, refine=True) -> dict:
    """The spec of one study (``T`` exact, ``values`` the hyperparameters by name, ``h``
    excluded).

    >>> import sympy as sp
    >>> from modeq.symbolic import optimizers
    >>> x = sp.Symbol("x")
    >>> spec = study_spec(optimizers.gd(), x**2 / 2, [x], [1], sp.Integer(1), (0,), 20)
    >>> sorted(spec)[:4]
    ['T', 'dps', 'loss_or_losses', 'method']
    """
    return dict(optimizer=optimizer, loss_or_losses=loss_or_losses, params=list(params),
                theta0=list(theta0), T=T, orders=tuple(orders), dps=int(dps),
                stationary=bool(stationary), schedule=list(schedule) if schedule else None,
                values=dict(values or {}), method=method, substeps=int(substeps),
                refine=bool(refine))


def run_step_size(spec, h, factory=None):
    """Iterates and every requested flow for one ``h`` at the spec's precision; returns
    ``({order: Point}, seconds spent on the iterates)``.

    >>> import sympy as sp
    >>> from modeq.symbolic import optimizers
    >>> x = sp.Symbol("x")
    >>> spec = study_spec(optimizers.gd(), x**2 / 2, [x], [1], sp.Integer(1), (0, 1), 20)
    >>> points, _ = run_step_size(spec, sp.Rational(1, 8))
    >>> points[0].steps, points[1].error < points[0].error
    (8, True)
    """
    with mpmath.workdps(spec["dps"]):
        factory = factory or field_factory_for(spec)
        t0 = time.perf_counter()
        N = int(math.floor(spec["T"] / h))
        its = iterator_for(spec).run(spec["theta0"], h, N)
        t_it = time.perf_counter() - t0
        u = mpmath.mpf(2) ** (1 - mpmath.mp.prec)
        scale = max(1, max(abs(x) for th in its for x in th))
        return {r: _run_flow(spec, factory, r, h, N, its, u, scale) for r in spec["orders"]}, t_it


def _sup_dist(a, b):
    return max(max(abs(x - y) for x, y in zip(p, q)) for p, q in zip(a, b))


def _run_flow(spec, factory, r, h, N, its, u, scale):
    method = method_for(r, spec["method"])
    q_hat = TABLEAUX[method].order_hat
    substeps = spec["substeps"]
    f = factory(r, h)  # the first call per order lowers and compiles the flow (setup time)
    t0 = time.perf_counter()
    evals = 0
    while True:
        run = integrate(f, spec["theta0"], h, N, method, substeps)
        evals += run.evaluations
        err = _sup_dist(its, run.path)
        integ = run.error_estimate
        flow_scale = max(scale, max(abs(x) for th in run.path for x in th))
        rounding = ROUNDING_FACTOR * u * N * (scale + flow_scale)
        floor = integ + rounding
        resolved = err > 0 and err >= RESOLUTION * floor
        if resolved or not spec["refine"] or substeps >= MAX_SUBSTEPS:
            break
        if err <= RESOLUTION * rounding * 2:
            break  # rounding-limited: more substeps cannot help
        need = RESOLUTION * integ * 4 / (err - RESOLUTION * rounding)
        factor = max(2, int(math.ceil(float(need) ** (1.0 / q_hat))))
        substeps = min(MAX_SUBSTEPS, substeps * factor)
    reason = ""
    if not resolved:
        if err == 0:
            reason = "zero discrepancy (the flow is exact here)"
        elif integ >= rounding:
            reason = (f"integrator estimate {mpmath.nstr(integ, 2)} is not {RESOLUTION}x below "
                      f"the discrepancy (method {method}, {substeps} substeps)")
        else:
            reason = (f"rounding estimate {mpmath.nstr(rounding, 2)} at dps={spec['dps']} is "
                      f"not {RESOLUTION}x below the discrepancy")
    return Point(h=str(h), steps=N, error=float(err), integrator_error=float(integ),
                 rounding_error=float(rounding), resolved=bool(resolved), reason=reason,
                 method=method, substeps=substeps, evaluations=evals,
                 seconds=time.perf_counter() - t0, error_digits=mpmath.nstr(err, 15))


_MPMATH_LOCK = threading.Lock()


def _task(spec, h):
    # mpmath's working precision is global to a process: tasks that share a process (Dask
    # workers with threads, processes=False) run one at a time so none changes another's dps.
    with _MPMATH_LOCK:
        return run_step_size(spec, h)


def run_tasks(tasks, jobs=1, backend=None, progress=None) -> list:
    """:func:`run_step_size` of every ``(spec, h)`` in ``tasks`` through joblib, results in
    task order.  ``jobs``: worker count (``-1``: all); ``backend``: a joblib backend name (e.g.
    ``"dask"``, with a ``dask.distributed.Client`` open); ``progress(done, total)`` after each
    task.  Parallelism comes from processes: mpmath's precision is per process.

    >>> import sympy as sp
    >>> from modeq.symbolic import optimizers
    >>> x = sp.Symbol("x")
    >>> spec = study_spec(optimizers.gd(), x**2 / 2, [x], [1], sp.Integer(1), (0,), 20)
    >>> [pts[0].steps for pts, _ in run_tasks([(spec, sp.Rational(1, 4)), (spec, sp.Rational(1, 8))])]
    [4, 8]
    """
    from joblib import Parallel, delayed, parallel_config
    results = []
    with parallel_config(backend=backend) if backend else nullcontext():
        par = Parallel(n_jobs=jobs, return_as="generator")
        for k, res in enumerate(par(delayed(_task)(spec, h) for spec, h in tasks)):
            results.append(res)
            if progress:
                progress(k + 1, len(tasks))
    return results

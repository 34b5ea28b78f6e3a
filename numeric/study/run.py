"""Runs of an order study: the iterates and each requested flow for one step size ``h``.

A *spec* (:func:`study_spec`) is a plain, picklable dict describing one study; a *task* is a
``(spec, h)`` pair, the grain at which :func:`run_tasks` spreads work over joblib workers (shared
by :func:`~modeq.numeric.study.order_study` and :func:`~modeq.numeric.sweep.sweep`).

Resolution and refinement (``RESOLUTION``, ``ROUNDING_FACTOR``, ``MAX_SUBSTEPS``) as stated in
:mod:`modeq.numeric.study`.  Compiled fields and iterators are cached per process (at most
``CACHE_SIZE``, oldest dropped first), iterators also by mpmath precision.
"""
import math
import threading
import time
from contextlib import nullcontext

import mpmath
import sympy as sp

from ..integrate import TABLEAUX, integrate, method_for
from ..iterate import Iterator
from .fields import FieldFactory
from .result import Point


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


CACHE_SIZE = 32
_CACHE = {}   # per process, keyed by the problem (_key)


def _key(spec, what):
    loss = spec["loss_or_losses"]
    return what + repr((repr(spec["optimizer"]), spec["optimizer"].name,
                        [sp.srepr(e) for e in loss] if isinstance(loss, list) else sp.srepr(loss),
                        [str(p) for p in spec["params"]], spec["stationary"], spec["schedule"],
                        sorted((k, str(v)) for k, v in spec["values"].items())))


def _cached(key, make):
    if key not in _CACHE:
        while len(_CACHE) >= CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = make()
    return _CACHE[key]


def field_factory_for(spec) -> FieldFactory:
    """The (cached) :class:`FieldFactory` of a study spec (:func:`study_spec`)."""
    return _cached(_key(spec, "factory"), lambda: FieldFactory(
        spec["optimizer"], spec["loss_or_losses"], spec["params"], spec["stationary"],
        spec["schedule"], **spec["values"]))


def iterator_for(spec) -> Iterator:
    """The (cached) :class:`~modeq.numeric.iterate.Iterator` of a study spec, compiled at the
    current mpmath precision."""
    return _cached(_key(spec, "iterator") + str(mpmath.mp.prec), lambda: Iterator(
        spec["optimizer"], spec["loss_or_losses"], spec["params"], spec["schedule"],
        **spec["values"]))


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
    def rounding(flow_scale):
        return (ROUNDING_FACTOR * u * N * (scale + flow_scale), f"at dps={spec['dps']}")
    f = factory(r, h)  # the first call per order lowers and compiles the flow (setup time)
    return flow_point(f, spec["theta0"], h, its, method_for(r, spec["method"]),
                      spec["substeps"], spec["refine"], rounding)


def flow_point(field, theta0, h, its, method, substeps=1, refine=True, rounding=None) -> Point:
    """The flow ``field(n, theta)`` integrated from ``theta0`` over the ``len(its) - 1``
    intervals of length ``h`` and measured against the iterates ``its``: a
    :class:`~.result.Point` with ``error = max_n |its[n] - theta(n h)|``.

    The discrepancy is *resolved* when it is at least ``RESOLUTION`` times the floor: the
    integrator's error estimate plus ``rounding(flow_scale)[0]``, the iterates' rounding
    estimate (``rounding`` returns ``(estimate, where it comes from)``, e.g. ``"at dps=30"``;
    ``None``: no rounding floor).  With ``refine``, an unresolved run is repeated with more
    substeps per interval (a factor from the method's order ``q_hat`` of its estimate, up to
    ``MAX_SUBSTEPS``) until it resolves or the rounding alone keeps it below the floor.
    """
    rounding = rounding or (lambda flow_scale: (0, ""))
    q_hat = TABLEAUX[method].order_hat
    N = len(its) - 1
    scale = max(1, max(abs(x) for th in its for x in th))
    t0 = time.perf_counter()
    evals = 0
    while True:
        run = integrate(field, theta0, h, N, method, substeps)
        evals += run.evaluations
        err = _sup_dist(its, run.path)
        integ = run.error_estimate
        flow_scale = max(scale, max(abs(x) for th in run.path for x in th))
        round_err, source = rounding(flow_scale)
        floor = integ + round_err
        resolved = err > 0 and err >= RESOLUTION * floor
        if resolved or not refine or substeps >= MAX_SUBSTEPS:
            break
        if err <= RESOLUTION * round_err * 2:
            break  # rounding-limited: more substeps cannot help
        need = RESOLUTION * integ * 4 / (err - RESOLUTION * round_err)
        factor = max(2, int(math.ceil(float(need) ** (1.0 / q_hat))))
        substeps = min(MAX_SUBSTEPS, substeps * factor)
    reason = ""
    if not resolved:
        if err == 0:
            reason = "zero discrepancy (the flow is exact here)"
        elif integ >= round_err:
            reason = (f"integrator estimate {mpmath.nstr(integ, 2)} is not {RESOLUTION}x below "
                      f"the discrepancy (method {method}, {substeps} substeps)")
        else:
            reason = (f"rounding estimate {mpmath.nstr(round_err, 2)} {source} is "
                      f"not {RESOLUTION}x below the discrepancy")
    return Point(h=str(h), steps=N, error=float(err), integrator_error=float(integ),
                 rounding_error=float(round_err), resolved=bool(resolved), reason=reason,
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
    >>> tasks = [(spec, sp.Rational(1, 4)), (spec, sp.Rational(1, 8))]
    >>> [points[0].steps for points, _ in run_tasks(tasks)]
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

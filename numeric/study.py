"""Order-of-accuracy studies: optimizer iterates against their modified flows (MATH.md §3, §5).

For each step size ``h`` and flow order ``r`` the study runs the optimizer and integrates the
flow of order ``r`` on ``[0, T]`` in the same precision, and records the discrepancy

    e(h, r) = max_{0 <= n <= T/h} || theta^(n) - theta~(n h) ||_inf .

Theory: ``e = O(h^(r+1))``, so the least-squares slope of ``log e`` against ``log h`` over the
asymptotic points must be ``r + 1`` within ``tol``.

A point is *resolved* only if ``e >= RESOLUTION * (integrator estimate + rounding estimate)``
(``RESOLUTION = 1000``).  The integrator estimate is the run's sum of embedded local error
estimates (:mod:`.integrate`); when it is too large and ``refine`` is on, the run is repeated
with more substeps per interval.  The rounding estimate is a model, not a measurement:
``ROUNDING_FACTOR * u * N * max(1, |theta|)`` for each of the two runs, with unit roundoff
``u = 2^(1 - prec)`` and ``N = T/h`` steps.  Any unresolved point makes the order's verdict
``unresolved``: a slope fitted where rounding or the integrator dominates is never reported as
pass or fail.

Asymptotic points: starting from all points, the coarsest is dropped while more than
``min_points`` remain and its observed rate differs from the slope fitted over the remaining
points by more than ``tol``.
"""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext as _nullcontext
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import mpmath
import sympy as sp

from modeq.symbolic.family import Optimizer
from ._compile import normalize_values
from .atomic import atomic_savefig, atomic_write
from .integrate import TABLEAUX, integrate, method_for
from .iterate import Iterator, as_losses
from .problems import DEFAULT_HS

__all__ = ["order_study", "StudyResult", "OrderResult", "Point", "DEFAULT_TOL", "RESOLUTION",
           "ROUNDING_FACTOR", "atomic_write", "validate_inputs", "FieldFactory"]

DEFAULT_TOL = {0: 0.1, 1: 0.1, 2: 0.15}
RESOLUTION = 1000
ROUNDING_FACTOR = 64
MIN_DPS = 15
MAX_SUBSTEPS = 256


# ---------------------------------------------------------------------------------- results
@dataclass
class Point:
    """One run: step size ``h``, ``steps = floor(T/h)``, the discrepancy ``error`` and the
    estimates that decide whether it is resolved."""
    h: str
    steps: int
    error: float
    integrator_error: float
    rounding_error: float
    resolved: bool
    reason: str
    method: str
    substeps: int
    evaluations: int
    seconds: float
    error_digits: str = ""

    @property
    def hf(self) -> float:
        return float(sp.Rational(self.h))


@dataclass
class OrderResult:
    """Points, observed rates, fitted slope and verdict (pass / fail / unresolved) of one
    flow order."""
    order: int
    expected: int
    tol: float
    points: List[Point]
    rates: List[Optional[float]]
    slope: Optional[float]
    fit_from: int
    verdict: str
    reason: str


@dataclass
class StudyResult:
    """The outcome of :func:`order_study`; ``.table()``, ``.plot(path)``, ``.to_json()``."""
    optimizer: str
    problem: str
    batch: str
    stationary: bool
    dps: int
    T: str
    values: Dict[str, str]
    orders: Dict[int, OrderResult]
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def verdicts(self) -> Dict[int, str]:
        return {r: o.verdict for r, o in self.orders.items()}

    @property
    def passed(self) -> bool:
        return all(v == "pass" for v in self.verdicts.values())

    # -- presentation ----------------------------------------------------------------------
    def title(self):
        kind = "stationary" if self.stationary else "exact-n"
        vals = ", ".join(f"{k}={v}" for k, v in sorted(self.values.items()))
        return (f"{self.optimizer} on {self.problem} ({self.batch} batch, {kind} flow; {vals}; "
                f"T={self.T}, dps={self.dps})")

    def table(self, fmt="text") -> str:
        """The convergence table: per ``h`` and order the discrepancy, the observed rate from
        the previous ``h``, and the integrator and rounding estimates; then slope and verdict
        per order.  ``fmt`` is ``"text"`` or ``"markdown"``."""
        if fmt not in ("text", "markdown"):
            raise ValueError(f"fmt must be 'text' or 'markdown', got {fmt!r}")
        orders = sorted(self.orders)
        head = ["h"]
        for r in orders:
            head += [f"error r={r}", "rate", "integ. est.", "round. est."]
        rows = []
        npts = len(self.orders[orders[0]].points)
        for i in range(npts):
            row = [self.orders[orders[0]].points[i].h]
            for r in orders:
                pt = self.orders[r].points[i]
                rate = self.orders[r].rates[i]
                mark = "" if pt.resolved else " (unresolved)"
                row += [f"{pt.error:.3e}{mark}", "" if rate is None else f"{rate:.3f}",
                        f"{pt.integrator_error:.1e}", f"{pt.rounding_error:.1e}"]
            rows.append(row)
        summary = []
        for r in orders:
            o = self.orders[r]
            slope = "n/a" if o.slope is None else f"{o.slope:.3f}"
            summary.append(f"order {r}: slope {slope} (expected {o.expected} +/- {o.tol}, fit "
                           f"from h={o.points[o.fit_from].h}) -> {o.verdict.upper()}"
                           f"{': ' + o.reason if o.reason else ''}")
        if fmt == "markdown":
            lines = [f"**{self.title()}**", "", "| " + " | ".join(head) + " |",
                     "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
            lines += [""] + [f"- {s}" for s in summary]
            return "\n".join(lines) + "\n"
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        fmt_row = lambda row: "  ".join(str(x).rjust(w) for x, w in zip(row, widths))  # noqa
        lines = [self.title(), fmt_row(head), "  ".join("-" * w for w in widths)]
        lines += [fmt_row(row) for row in rows] + summary
        return "\n".join(lines) + "\n"

    def to_dict(self):
        d = asdict(self)
        d["orders"] = {str(r): asdict(o) for r, o in self.orders.items()}
        d["verdicts"] = {str(r): v for r, v in self.verdicts.items()}
        d["passed"] = self.passed
        return d

    def to_json(self, path=None) -> str:
        """JSON text of the whole result; written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False,
                          default=str)
        if path is not None:
            atomic_write(path, text + "\n")
        return text

    def plot(self, path):
        """Log–log plot of the discrepancy against ``h`` per order, with reference slopes
        ``h^(r+1)`` and the integrator + rounding floor; written atomically (PNG, PDF or SVG by
        the file suffix)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
        for r in sorted(self.orders):
            o = self.orders[r]
            c = colors[r % len(colors)]
            hs = [pt.hf for pt in o.points]
            es = [pt.error if pt.error > 0 else float("nan") for pt in o.points]
            label = f"order {r} flow: slope {o.slope:.2f} ({o.verdict})" if o.slope is not None \
                else f"order {r} flow ({o.verdict})"
            ax.loglog(hs, es, "o-", color=c, label=label)
            bad = [(hh, e) for hh, e, pt in zip(hs, es, o.points) if not pt.resolved]
            if bad:
                ax.loglog(*zip(*bad), "x", color="k", markersize=9)
            floor = [pt.integrator_error + pt.rounding_error for pt in o.points]
            ax.loglog(hs, [f if f > 0 else float("nan") for f in floor], ":", color=c,
                      label=f"order {r}: integrator + rounding estimate")
            anchor = o.points[-1]
            if anchor.error > 0:
                ref = [anchor.error * (hh / anchor.hf) ** (r + 1) for hh in hs]
                ax.loglog(hs, ref, "--", color=c, alpha=0.5, label=f"reference slope {r + 1}")
        from matplotlib.ticker import LogFormatterMathtext, NullLocator
        ax.set_xscale("log", base=2)            # h = 2^-k: one labelled tick per step size
        ax.xaxis.set_major_formatter(LogFormatterMathtext(base=2))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("step size h")
        ax.set_ylabel(r"max$_{n \leq T/h}$ $\|\theta^{(n)} - \tilde\theta(nh)\|_\infty$")
        ax.set_title(self.title(), fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        try:
            atomic_savefig(fig, path, dpi=120)
        finally:
            plt.close(fig)
        return path


# ---------------------------------------------------------------------------------- files
# ---------------------------------------------------------------------------------- fields
class FieldFactory:
    """``factory(order, h) -> f(n, theta)``: the modified flow of ``optimizer`` from
    :func:`modeq.symbolic.derive`.

    Full batch: the engine's exact field ``flow.field(E, params, stationary=...)`` (a SymPy
    matrix in ``n``, ``h`` and the hyperparameters) gets the hyperparameter values and is compiled
    once per order by :class:`~modeq.numeric._compile.CompiledField` (common factors pulled
    out of sums, constants bound once, ``n``-only subexpressions hoisted), then bound to each
    ``h``; it is the expression ``flow.lambdify`` prints, evaluated faster (the tests check the
    two agree to rounding).  Mini batch: ``flow.lambdify(...)`` as is.
    """

    def __init__(self, optimizer, loss_or_losses, params, stationary=False, schedule=None,
                 **values):
        self.optimizer, self.params = optimizer, list(params)
        self.loss_or_losses = loss_or_losses
        self.losses, self.mini = as_losses(loss_or_losses)
        self.stationary, self.schedule, self.values = stationary, schedule, values
        self._compiled = {}

    def flow(self, order):
        from modeq.symbolic import derive
        return derive(self.optimizer, order=order)

    def __call__(self, order, h):
        if self.mini:
            return self.flow(order).lambdify(self.loss_or_losses, self.params,
                                             backend="mpmath", stationary=self.stationary,
                                             schedule=self.schedule, h=h, **self.values)
        from modeq.numeric._compile import CompiledField
        from modeq.symbolic.family import h as hsym, n as nsym
        if order not in self._compiled:
            M = self.flow(order).field(self.losses[0], self.params, stationary=self.stationary)
            subs = {s: sp.sympify(self.values[str(s)])
                    for s in self.optimizer.hyperparameters}
            # factor_terms pulls common factors out of sums (x c1 + x c2 -> x (c1 + c2)), so
            # that more coefficients depend on n only and are hoisted: ~1/3 fewer operations
            exprs = [sp.factor_terms(sp.sympify(e).xreplace(subs)) for e in M]
            self._compiled[order] = CompiledField(exprs, nsym, self.params, [hsym])
        return self._compiled[order].bind(h)


# ---------------------------------------------------------------------------------- inputs
def validate_inputs(optimizer, loss_or_losses, params, theta0, T, hs, orders, dps, tol=None):
    """Check the study's inputs; returns ``(T, hs)`` as exact rationals.  ``ValueError`` for
    non-positive ``hs`` or ``hs`` not strictly decreasing, ``T <= 0``, ``dps < 15``, ``theta0``
    of the wrong length, orders outside 0, 1, 2."""
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
        v = sp.Rational(value) if isinstance(value, str) else sp.nsimplify(sp.sympify(value))
        if not v.is_Rational:
            raise ValueError
        return v
    except (TypeError, ValueError, sp.SympifyError):
        raise ValueError(f"{name} must be a finite real number, got {value!r}") from None


# ---------------------------------------------------------------------------------- runs
def _sup_dist(a, b):
    return max(max(abs(x - y) for x, y in zip(p, q)) for p, q in zip(a, b))


def _run_h(spec, h, factory=None):
    """Iterates and every requested flow for one ``h``; returns ``{order: Point}`` and the
    seconds spent on the iterates."""
    with mpmath.workdps(spec["dps"]):
        factory = factory or _factory_for(spec)
        t0 = time.perf_counter()
        it = _iterator_for(spec)
        N = int(math.floor(spec["T"] / h))
        its = it.run(spec["theta0"], h, N)
        t_it = time.perf_counter() - t0
        u = mpmath.mpf(2) ** (1 - mpmath.mp.prec)
        scale = max(1, max(abs(x) for th in its for x in th))
        out = {}
        for r in spec["orders"]:
            out[r] = _run_flow(spec, factory, r, h, N, its, u, scale)
        return out, t_it


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


_CACHE: Dict[str, object] = {}


def _key(spec, what):
    return what + repr((repr(spec["optimizer"]), spec["optimizer"].name,
                        sp.srepr(spec["loss_or_losses"]) if not isinstance(
                            spec["loss_or_losses"], list) else
                        [sp.srepr(e) for e in spec["loss_or_losses"]],
                        [str(p) for p in spec["params"]], spec["stationary"], spec["schedule"],
                        sorted((k, str(v)) for k, v in spec["values"].items())))


_CACHE_SIZE = 32


def _remember(key, value):
    while len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = value


def _factory_for(spec):
    key = _key(spec, "factory")
    if key not in _CACHE:
        _remember(key, FieldFactory(spec["optimizer"], spec["loss_or_losses"], spec["params"],
                                    spec["stationary"], spec["schedule"], **spec["values"]))
    return _CACHE[key]


def _iterator_for(spec):
    key = _key(spec, "iterator") + str(mpmath.mp.prec)
    if key not in _CACHE:
        _remember(key, Iterator(spec["optimizer"], spec["loss_or_losses"], spec["params"],
                                spec["schedule"], **spec["values"]))
    return _CACHE[key]


# ---------------------------------------------------------------------------------- verdicts
def _rates(points):
    rates = [None]
    for a, b in zip(points, points[1:]):
        if a.error > 0 and b.error > 0:
            rates.append(math.log(a.error / b.error) / math.log(a.hf / b.hf))
        else:
            rates.append(None)
    return rates


def _fit(points):
    import numpy as np
    x = np.log([p.hf for p in points])
    y = np.log([p.error for p in points])
    return float(np.polyfit(x, y, 1)[0])


def _judge(order, points, tol, min_points=3) -> OrderResult:
    expected = order + 1
    rates = _rates(points)
    bad = [p for p in points if not p.resolved]
    if bad:
        good = [p for p in points if p.resolved and p.error > 0]
        slope = _fit(good) if len(good) >= 2 else None
        why = "; ".join(f"h={p.h}: {p.reason}" for p in bad)
        return OrderResult(order, expected, tol, points, rates, slope, 0, "unresolved",
                           f"{len(bad)} of {len(points)} points unresolved ({why})")
    start = 0
    k = min(min_points, len(points))
    while len(points) - start > k:
        slope = _fit(points[start + 1:])
        if abs(rates[start + 1] - slope) <= tol:
            break
        start += 1
    fit_pts = points[start:]
    slope = _fit(fit_pts)
    fit_rates = [r for r in rates[start + 1:] if r is not None]
    if abs(slope - expected) > tol:
        return OrderResult(order, expected, tol, points, rates, slope, start, "fail",
                           f"slope {slope:.3f} differs from {expected} by more than {tol}")
    spread = max(abs(r - slope) for r in fit_rates) if fit_rates else 0.0
    if spread > 2 * tol:
        return OrderResult(order, expected, tol, points, rates, slope, start, "fail",
                           f"observed rates scatter by {spread:.3f} around the slope: not in "
                           f"the asymptotic regime")
    return OrderResult(order, expected, tol, points, rates, slope, start, "pass", "")


# ---------------------------------------------------------------------------------- the study
def order_study(optimizer, loss_or_losses, params, theta0, T=1, hs=DEFAULT_HS, orders=(0, 1),
                dps=40, stationary=False, schedule=None, *, tol=None, method="auto",
                substeps=1, refine=True, fields=None, jobs=1, backend=None, progress=None,
                problem_name=None, **values) -> StudyResult:
    """Run the order-of-accuracy study of ``optimizer``'s modified flows (module docstring).

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
    """
    T, hs = validate_inputs(optimizer, loss_or_losses, params, theta0, T, hs, orders, dps, tol)
    values = normalize_values(values)
    losses, mini = as_losses(loss_or_losses)
    tols = dict(DEFAULT_TOL)
    if isinstance(tol, dict):
        tols.update(tol)
    elif tol is not None:
        tols = {r: float(tol) for r in (0, 1, 2)}
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
    optimizer.check_values({k: v for k, v in values.items() if k != "h"})
    spec = dict(optimizer=optimizer, loss_or_losses=list(losses) if mini else losses[0],
                params=list(params), theta0=theta0, T=T, orders=tuple(orders), dps=int(dps),
                stationary=bool(stationary), schedule=list(schedule) if schedule else None,
                values={k: v for k, v in values.items() if k != "h"}, method=method,
                substeps=int(substeps), refine=bool(refine))
    t_start = time.perf_counter()
    factory = None
    if fields is not None:
        unknown = set(fields) - set(orders)
        if unknown:
            raise ValueError(f"fields given for orders {sorted(unknown)} not in orders")
        base = _factory_for(spec) if set(orders) - set(fields) else None
        factory = lambda r, h: fields[r](h) if r in fields else base(r, h)  # noqa: E731
    results = []
    t_iter = 0.0
    if jobs == 1 or factory is not None:
        with mpmath.workdps(int(dps)):
            factory = factory or _factory_for(spec)
            for i, h in enumerate(hs):
                results.append(_run_h(spec, h, factory))
                if progress:
                    progress(i + 1, len(hs))
    else:
        from joblib import Parallel, delayed
        from joblib import parallel_config
        from .sweep import _task
        with parallel_config(backend=backend) if backend else _nullcontext():
            par = Parallel(n_jobs=jobs, return_as="generator")
            for i, (_, _, res) in enumerate(par(delayed(_task)(spec, 0, h) for h in hs)):
                results.append(res)
                if progress:
                    progress(i + 1, len(hs))
    orders_out = {}
    for r in orders:
        pts = [res[0][r] for res in results]
        orders_out[r] = _judge(r, pts, tols[r])
    t_iter = sum(res[1] for res in results)
    t_flow = sum(p.seconds for o in orders_out.values() for p in o.points)
    total = time.perf_counter() - t_start
    name = problem_name or (f"{len(losses)} batch losses" if mini else f"E = {losses[0]}")
    return StudyResult(
        optimizer=optimizer.name, problem=name, batch="mini" if mini else "full",
        stationary=bool(stationary), dps=int(dps), T=str(T),
        values={k: str(v) for k, v in spec["values"].items()}, orders=orders_out,
        timings={"total": total, "iterates": t_iter, "flows": t_flow,
                 "setup": max(0.0, total - t_iter - t_flow)})

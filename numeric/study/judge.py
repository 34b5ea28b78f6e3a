"""Verdicts of an order study: observed rates, the fitted slope and pass / fail / unresolved.

Slope fit, asymptotic points and ``unresolved`` as stated in :mod:`modeq.numeric.study`; a fit
that passes still fails when the observed rates scatter by more than ``2 tol`` around it.

A memory long against the run is not yet asymptotic either.  The flows expand in ``h`` at a
fixed step index ``n``, and a state of decay ``d`` weighs about ``M = 1/(1 - d)`` past steps:
the terms ``h^r F_r`` grow like ``(h min(n, M))^r``, so they are small on the whole horizon
only once the memory's time ``h M`` is short against ``T``, i.e. ``M`` small against the
``N = T/h`` steps of a run.  Measured (Adam, ``beta = 0.9``, ``rho = 0.99``, ``M = 100``, on
``T = 1/2``): order-0 rates 0.61, 0.81, 0.90 at ``M/N`` = 0.1, 0.05, 0.024; with torch's default
``rho = 0.999`` the rates are negative up to ``N = 64``.  A fit that fails is reported
``unresolved`` (pre-asymptotic) when the slowest memory outlasts the finest run, or spans more
than :data:`MEMORY_FRACTION` of it while the last two rates still differ by more than ``tol/2``;
a wrong flow whose rates have settled on another slope still fails.
"""
import math

import sympy as sp

from .result import OrderResult, StudyResult


DEFAULT_TOL = {0: 0.1, 1: 0.1, 2: 0.15}

#: a memory spanning more than this fraction of the finest run's steps may be pre-asymptotic
MEMORY_FRACTION = 1 / 50


def memory_span(optimizer, values):
    """``(d, M)``: the slowest state decay ``d`` at ``values`` (hyperparameters by name) and
    the number of steps ``M = 1/(1 - d)`` its memory weighs; ``None`` without states or where no
    decay is a number in ``[0, 1)``.

    >>> from modeq.symbolic import optimizers
    >>> memory_span(optimizers.adam(), {"beta": "9/10", "rho": "999/1000", "eps": "1/10"})
    (0.999, 1000.0)
    """
    rows = [len(v) for v in values.values() if isinstance(v, (list, tuple))]
    found = []
    for k in range(max(rows, default=1)):     # a constant per component: each component's
        by_name = {str(name): v[k] if isinstance(v, (list, tuple)) else v
                   for name, v in values.items()}
        for d in getattr(optimizer, "decays", ()):
            d = sp.sympify(d)
            d = d.xreplace({s: sp.sympify(by_name[str(s)]) for s in d.free_symbols
                            if str(s) in by_name})
            if d.is_number and d.is_real and 0 <= d < 1:
                found.append(d)
    if not found:
        return None
    d = max(found)
    return float(d), float(1 / (1 - d))


def tolerances(tol=None) -> dict[int, float]:
    """``{order: tol}`` from ``None`` (:data:`DEFAULT_TOL`), one number, or a partial dict.

    >>> tolerances({2: 0.2})
    {0: 0.1, 1: 0.1, 2: 0.2}
    """
    if isinstance(tol, dict):
        return {**DEFAULT_TOL, **tol}
    return dict(DEFAULT_TOL) if tol is None else {r: float(tol) for r in (0, 1, 2)}


def _rates(points):
    rates = [None]
    for a, b in zip(points, points[1:]):
        if a.error > 0 and b.error > 0:
            rates.append(math.log(a.error / b.error) / math.log(a.hf / b.hf))
        else:
            rates.append(None)
    return rates


def _fit(points):
    """The least-squares slope of ``log error`` against ``log h`` (a line fitted to the
    points)."""
    x = [math.log(p.hf) for p in points]
    y = [math.log(p.error) for p in points]
    xm, ym = sum(x) / len(x), sum(y) / len(y)
    return (sum((a - xm) * (b - ym) for a, b in zip(x, y))
            / sum((a - xm) ** 2 for a in x))


def _pre_asymptotic(points, rates, memory, tol):
    """Why a failed fit is not yet asymptotic (module docstring), or ``None``."""
    if memory is None:
        return None
    decay, span = memory
    steps = points[-1].steps
    last = [r for r in rates[-2:] if r is not None]
    if span >= steps:
        why = f"outlasts the {steps} steps of the finest run"
    elif span > MEMORY_FRACTION * steps and len(last) == 2 and abs(last[1] - last[0]) > tol / 2:
        why = (f"is {span / steps:.2g} of the {steps} steps of the finest run, and the last "
               f"rates ({last[0]:.2f}, {last[1]:.2f}) still move")
    else:
        return None
    return (f"pre-asymptotic: the slowest memory (decay {decay:g}) weighs about {span:.0f} "
            f"steps, which {why}; the expansion in h needs that memory short against the "
            f"horizon (h * {span:.0f} << T): take smaller h or a longer T")


def judge_order(order, points, tol, min_points=3, memory=None) -> OrderResult:
    """The :class:`OrderResult` of the flow of ``order`` from its points (coarsest first).
    ``memory``: :func:`memory_span` of the optimizer, which turns a failed fit of a memory long
    against the run into ``unresolved`` (module docstring).

    >>> from modeq.numeric.study.result import Point
    >>> pts = [Point(str(h), 0, h ** 2, 0.0, 0.0, True, "", "ck45", 1, 0, 0.0)
    ...        for h in (1 / 8, 1 / 16, 1 / 32)]
    >>> o = judge_order(1, pts, 0.1)
    >>> o.verdict, round(o.slope, 6)
    ('pass', 2.0)
    """
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
    slope = _fit(points[start:])
    fit_rates = [r for r in rates[start + 1:] if r is not None]
    spread = max(abs(r - slope) for r in fit_rates) if fit_rates else 0.0
    if abs(slope - expected) > tol:
        why = f"slope {slope:.3f} differs from {expected} by more than {tol}"
    elif spread > 2 * tol:
        why = (f"observed rates scatter by {spread:.3f} around the slope: not in the asymptotic "
               f"regime")
    else:
        return OrderResult(order, expected, tol, points, rates, slope, start, "pass", "")
    early = _pre_asymptotic(points, rates, memory, tol)
    if early is not None:
        return OrderResult(order, expected, tol, points, rates, slope, start, "unresolved",
                           f"{early} ({why})")
    return OrderResult(order, expected, tol, points, rates, slope, start, "fail", why)


def judge_study(spec, runs, tols, problem) -> StudyResult:
    """The :class:`StudyResult` of one study (``spec``: :func:`.run.study_spec`) from its runs
    (:func:`.run.run_step_size` results, one per ``h``), with the seconds spent on
    ``"iterates"`` and ``"flows"`` as timings."""
    memory = memory_span(spec["optimizer"], spec["values"])
    judged = {r: judge_order(r, [pts[r] for pts, _ in runs], tols[r], memory=memory)
              for r in spec["orders"]}
    return StudyResult(
        optimizer=spec["optimizer"].name, problem=problem,
        batch="mini" if isinstance(spec["loss_or_losses"], list) else "full",
        stationary=spec["stationary"], dps=spec["dps"], T=str(spec["T"]),
        values={k: str(v) for k, v in spec["values"].items()}, orders=judged,
        timings={"iterates": sum(t for _, t in runs),
                 "flows": sum(p.seconds for o in judged.values() for p in o.points)})

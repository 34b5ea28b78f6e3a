"""Verdicts of an order study: observed rates, the fitted slope and pass / fail / unresolved.

Slope fit, asymptotic points and ``unresolved`` as stated in :mod:`modeq.numeric.study`; a fit
that passes still fails when the observed rates scatter by more than ``2 tol`` around it.
"""
import math

from .result import OrderResult, StudyResult


DEFAULT_TOL = {0: 0.1, 1: 0.1, 2: 0.15}


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


def judge_order(order, points, tol, min_points=3) -> OrderResult:
    """The :class:`OrderResult` of the flow of ``order`` from its points (coarsest first).

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
    if abs(slope - expected) > tol:
        return OrderResult(order, expected, tol, points, rates, slope, start, "fail",
                           f"slope {slope:.3f} differs from {expected} by more than {tol}")
    spread = max(abs(r - slope) for r in fit_rates) if fit_rates else 0.0
    if spread > 2 * tol:
        return OrderResult(order, expected, tol, points, rates, slope, start, "fail",
                           f"observed rates scatter by {spread:.3f} around the slope: not in "
                           f"the asymptotic regime")
    return OrderResult(order, expected, tol, points, rates, slope, start, "pass", "")


def judge_study(spec, runs, tols, problem) -> StudyResult:
    """The :class:`StudyResult` of one study (``spec``: :func:`.run.study_spec`) from its runs
    (:func:`.run.run_step_size` results, one per ``h``), with the seconds spent on
    ``"iterates"`` and ``"flows"`` as timings."""
    judged = {r: judge_order(r, [pts[r] for pts, _ in runs], tols[r]) for r in spec["orders"]}
    return StudyResult(
        optimizer=spec["optimizer"].name, problem=problem,
        batch="mini" if isinstance(spec["loss_or_losses"], list) else "full",
        stationary=spec["stationary"], dps=spec["dps"], T=str(spec["T"]),
        values={k: str(v) for k, v in spec["values"].items()}, orders=judged,
        timings={"iterates": sum(t for _, t in runs),
                 "flows": sum(p.seconds for o in judged.values() for p in o.points)})

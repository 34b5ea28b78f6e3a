"""Integration of piecewise modified flows in high precision, with an error estimate per run.

The flow of ``shared/MATH.md`` §3 is ``d theta/dt = f(n, theta)`` on ``[nh, (n+1)h)`` (``f`` is
``-F^(n)``, e.g. from ``flow.lambdify``).  The field changes with ``n`` (and jumps between
batches in mini batch), so the integrator never steps across an interval boundary: each interval
is split into ``substeps`` equal steps of an explicit Runge–Kutta pair.

Each pair advances with its higher-order solution (local extrapolation) and estimates the local
error by the difference to its embedded lower-order solution; this over-estimates the error of the
propagated solution.  The run's error estimate is the sum of these local estimates (max-norm)
over all steps -- an estimate of the global error that assumes no strong amplification along
``[0, T]`` (true on the short horizons studied here, where the flows are contractive or mildly
expanding).  All tableaux are exact rationals, converted at the working precision.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction as Fr
from typing import Callable, List, Sequence

import mpmath

__all__ = ["Tableau", "TABLEAUX", "FlowRun", "integrate", "DEFAULT_METHOD"]


@dataclass(frozen=True)
class Tableau:
    """An explicit embedded Runge–Kutta pair: ``b`` (order ``order``) propagates, ``bhat``
    (order ``order_hat < order``) gives the error estimate ``dt * sum (b - bhat) k``."""
    name: str
    c: Sequence
    a: Sequence[Sequence]
    b: Sequence
    bhat: Sequence
    order: int
    order_hat: int

    @property
    def stages(self):
        return len(self.b)


def _fr(*xs):
    return [Fr(x) if not isinstance(x, str) else Fr(x) for x in xs]


HEUN21 = Tableau("heun21", _fr(0, 1), [[], _fr(1)], _fr("1/2", "1/2"), _fr(1, 0), 2, 1)

# Bogacki–Shampine 3(2) (the 4th stage is f at the new point).
BS32 = Tableau(
    "bs32", _fr(0, "1/2", "3/4", 1),
    [[], _fr("1/2"), _fr(0, "3/4"), _fr("2/9", "1/3", "4/9")],
    _fr("2/9", "1/3", "4/9", 0), _fr("7/24", "1/4", "1/3", "1/8"), 3, 2)

# Cash–Karp 5(4), six stages, no first-same-as-last.
CK45 = Tableau(
    "ck45", _fr(0, "1/5", "3/10", "3/5", 1, "7/8"),
    [[], _fr("1/5"), _fr("3/40", "9/40"), _fr("3/10", "-9/10", "6/5"),
     _fr("-11/54", "5/2", "-70/27", "35/27"),
     _fr("1631/55296", "175/512", "575/13824", "44275/110592", "253/4096")],
    _fr("37/378", 0, "250/621", "125/594", 0, "512/1771"),
    _fr("2825/27648", 0, "18575/48384", "13525/55296", "277/14336", "1/4"), 5, 4)

# Dormand–Prince 5(4), seven stages (the last is f at the new point).
DP54 = Tableau(
    "dp54", _fr(0, "1/5", "3/10", "4/5", "8/9", 1, 1),
    [[], _fr("1/5"), _fr("3/40", "9/40"), _fr("44/45", "-56/15", "32/9"),
     _fr("19372/6561", "-25360/2187", "64448/6561", "-212/729"),
     _fr("9017/3168", "-355/33", "46732/5247", "49/176", "-5103/18656"),
     _fr("35/384", 0, "500/1113", "125/192", "-2187/6784", "11/84")],
    _fr("35/384", 0, "500/1113", "125/192", "-2187/6784", "11/84", 0),
    _fr("5179/57600", 0, "7571/16695", "393/640", "-92097/339200", "187/2100", "1/40"), 5, 4)

TABLEAUX = {t.name: t for t in (HEUN21, BS32, CK45, DP54)}
DEFAULT_METHOD = "ck45"


@dataclass
class FlowRun:
    """The flow at the grid ``path[n] = theta~(n h)``, ``n = 0..steps``, the run's error
    estimate (sum of local estimates, max-norm), the number of field evaluations and steps."""
    path: List[list]
    error_estimate: object
    evaluations: int
    substeps: int
    method: str
    extra: dict = field(default_factory=dict)


def integrate(f: Callable, theta0, h, steps: int, method: str = DEFAULT_METHOD,
              substeps: int = 1, check: bool = True) -> FlowRun:
    """Integrate ``d theta/dt = f(n, theta)`` on ``[n h, (n+1) h)``, ``n = 0 .. steps-1``, from
    ``theta(0) = theta0`` at the current ``mpmath.mp.dps``; ``substeps`` equal RK steps per
    interval with the pair ``method`` (see :data:`TABLEAUX`)."""
    if method not in TABLEAUX:
        raise ValueError(f"unknown integration method {method!r}; known: {sorted(TABLEAUX)}")
    if int(substeps) != substeps or substeps < 1:
        raise ValueError(f"substeps must be a positive integer, got {substeps}")
    tab = TABLEAUX[method]
    mpf = mpmath.mpf
    dt = mpf(h) / substeps
    conv = lambda q: mpf(q.numerator) / q.denominator  # noqa: E731
    # coefficients times dt, zeros dropped
    arows = [[(j, conv(q) * dt) for j, q in enumerate(row) if q] for row in tab.a]
    bw = [(j, conv(q) * dt) for j, q in enumerate(tab.b) if q]
    ew = [(j, conv(q - qh) * dt) for j, (q, qh) in enumerate(zip(tab.b, tab.bhat)) if q != qh]
    y = [mpf(x) for x in theta0]
    p = len(y)
    rng = range(p)
    path = [list(y)]
    est = mpf(0)
    evals = 0
    for n in range(steps):
        for _ in range(substeps):
            ks = []
            for row in arows:
                if row:
                    yi = list(y)
                    for j, w in row:
                        kj = ks[j]
                        yi = [yi[i] + w * kj[i] for i in rng]
                else:
                    yi = y
                ks.append(f(n, yi))
            evals += len(arows)
            ynew = list(y)
            for j, w in bw:
                kj = ks[j]
                ynew = [ynew[i] + w * kj[i] for i in rng]
            err = [mpf(0)] * p
            for j, w in ew:
                kj = ks[j]
                err = [err[i] + w * kj[i] for i in rng]
            est += max(abs(e) for e in err)
            y = ynew
        if check:
            for x in y:
                if not mpmath.isfinite(x) or abs(x) > mpf(10) ** 30:
                    raise ValueError(f"the flow diverges at t = {n + 1} h (component "
                                     f"{mpmath.nstr(x, 5)}); take a smaller h")
        path.append(y)
    return FlowRun(path, est, evals, substeps, method)

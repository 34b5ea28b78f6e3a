"""Integration of piecewise modified flows in high precision, with an error estimate per run.

The flow of ``docs/conventions.md`` §3 is ``d theta/dt = f(n, theta)`` on ``[nh, (n+1)h)`` (``f`` is
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
from mpmath.libmp import from_man_exp, to_fixed

__all__ = ["Tableau", "TABLEAUX", "FlowRun", "integrate", "method_for", "AUTO_METHOD",
           "DEFAULT_METHOD"]


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

# Kutta's third-order method with the midpoint rule embedded (order 2), three stages.
KUTTA32 = Tableau("kutta32", _fr(0, "1/2", 1), [[], _fr("1/2"), _fr(-1, 2)],
                  _fr("1/6", "2/3", "1/6"), _fr(0, 1, 0), 3, 2)

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

# Merson 4(3), five stages (Hairer–Nørsett–Wanner I, II.4).
MERSON43 = Tableau(
    "merson43", _fr(0, "1/3", "1/3", "1/2", 1),
    [[], _fr("1/3"), _fr("1/6", "1/6"), _fr("1/8", 0, "3/8"), _fr("1/2", 0, "-3/2", 2)],
    _fr("1/6", 0, 0, "2/3", "1/6"), _fr("1/10", 0, "3/10", "2/5", "1/5"), 4, 3)

TABLEAUX = {t.name: t for t in (HEUN21, KUTTA32, BS32, MERSON43, CK45, DP54)}

#: The cheapest pair whose error estimate (order ``order_hat + 1`` locally, ``order_hat``
#: globally) is of higher order than the discrepancy ``O(h^(r+1))`` of a flow of order ``r``,
#: so that the ratio discrepancy / estimate grows as ``h`` shrinks.
AUTO_METHOD = {0: "kutta32", 1: "merson43", 2: "ck45"}
DEFAULT_METHOD = "auto"

#: Fixed-point guard bits below the working precision for the stage combinations.
GUARD_BITS = 64

#: A component above this in absolute value makes a run "divergent" (``ValueError``).
DIVERGENCE_BOUND = mpmath.mpf(10) ** 30


def method_for(order, method=DEFAULT_METHOD):
    """The tableau name used for a flow of ``order`` under ``method`` (``"auto"`` or a name).

    >>> method_for(1), method_for(2, "dp54")
    ('merson43', 'dp54')
    """
    if isinstance(method, dict):
        method = method.get(order, "auto")
    if method == "auto":
        return AUTO_METHOD.get(order, "dp54")
    if method not in TABLEAUX:
        raise ValueError(f"unknown integration method {method!r}; known: auto, "
                         f"{', '.join(sorted(TABLEAUX))}")
    return method


@dataclass
class FlowRun:
    """The flow at the grid ``path[n] = theta~(n h)``, ``n = 0..steps``, the run's error
    estimate (sum of local estimates, max-norm), the number of field evaluations and steps.

    >>> import mpmath
    >>> run = integrate(lambda n, th: [-th[0]], [1], mpmath.mpf(1) / 4, 4, "ck45")
    >>> len(run.path), run.method, run.error_estimate < 1e-6
    (5, 'ck45', True)
    """
    path: List[list]
    error_estimate: object
    evaluations: int
    substeps: int
    method: str
    extra: dict = field(default_factory=dict)


def integrate(f: Callable, theta0, h, steps: int, method: str = "ck45",
              substeps: int = 1, check: bool = True) -> FlowRun:
    """Integrate ``d theta/dt = f(n, theta)`` on ``[n h, (n+1) h)``, ``n = 0 .. steps-1``, from
    ``theta(0) = theta0`` at the current ``mpmath.mp.dps``; ``substeps`` equal RK steps per
    interval with the pair ``method`` (see :data:`TABLEAUX`).

    ``f`` receives and returns lists of ``mpmath.mpf``; a field with a ``fixed(n, values, bits,
    out_bits)`` method (:class:`~modeq.symbolic.emit.FullBatchField`) is called through it with
    the fixed-point values themselves, where it does not return ``None``.  The stage
    combinations are accumulated in fixed point with ``GUARD_BITS`` bits below the working
    precision (absolute resolution ``2^-(prec + GUARD_BITS)``), which is exact enough for any
    ``|theta| >= 2^-GUARD_BITS`` and several times faster than ``mpf`` arithmetic.

    >>> import mpmath
    >>> run = integrate(lambda n, th: [-th[0]], [1], mpmath.mpf(1) / 8, 8, "ck45")
    >>> mpmath.nstr(run.path[-1][0], 8), run.evaluations     # exp(-1)
    ('0.36787944', 48)
    """
    if method not in TABLEAUX:
        raise ValueError(f"unknown integration method {method!r}; known: {sorted(TABLEAUX)}")
    if int(substeps) != substeps or substeps < 1:
        raise ValueError(f"substeps must be a positive integer, got {substeps}")
    tab = TABLEAUX[method]
    prec = mpmath.mp.prec
    P = prec + GUARD_BITS
    mpf = mpmath.mpf
    make = mpmath.mp.make_mpf
    dt = mpf(h) / substeps

    def fixed(q):  # rational coefficient times dt, as an integer scaled by 2^P
        return to_fixed((mpf(q.numerator) / q.denominator * dt)._mpf_, P)

    arows = [[(j, fixed(q)) for j, q in enumerate(row) if q] for row in tab.a]
    bw = [(j, fixed(q)) for j, q in enumerate(tab.b) if q]
    ew = [(j, fixed(q - qh)) for j, (q, qh) in enumerate(zip(tab.b, tab.bhat)) if q != qh]
    y = [to_fixed(mpf(x)._mpf_, P) for x in theta0]
    p = len(y)
    rng = range(p)
    path = [[make(from_man_exp(v, -P, prec, "n")) for v in y]]
    fast = getattr(f, "fixed", None)

    def stage(n, point, bits, known=None):
        """``f(n, .)`` at ``point * 2^-bits`` (rounded to the working precision) as integers
        scaled by ``2^P``; ``known``: the point as mpf, if at hand."""
        if fast is not None:
            k = fast(n, point, bits, P)
            if k is not None:
                return k
        if known is None:
            known = [make(from_man_exp(v, -bits, prec, "n")) for v in point]
        return _to_fixed_list(f(n, known), P, n)

    est = 0
    evals = 0
    for n in range(steps):
        for _ in range(substeps):
            ks = []
            for row in arows:
                if row:
                    acc = [v << P for v in y]
                    for j, w in row:
                        kj = ks[j]
                        acc = [acc[i] + w * kj[i] for i in rng]
                    ks.append(stage(n, acc, 2 * P))
                else:
                    ks.append(stage(n, y, P, path[-1] if _ == 0 else None))
            evals += len(arows)
            acc = [v << P for v in y]
            for j, w in bw:
                kj = ks[j]
                acc = [acc[i] + w * kj[i] for i in rng]
            err = [0] * p
            for j, w in ew:
                kj = ks[j]
                err = [err[i] + w * kj[i] for i in rng]
            est += max(abs(e) for e in err)
            y = [v >> P for v in acc]
        point = [make(from_man_exp(v, -P, prec, "n")) for v in y]
        if check:
            for x in point:
                if abs(x) > DIVERGENCE_BOUND:
                    raise ValueError(f"the flow diverges at t = {n + 1} h (component "
                                     f"{mpmath.nstr(x, 5)}); take a smaller h")
        path.append(point)
    estimate = make(from_man_exp(est, -2 * P, prec, "n"))
    return FlowRun(path, estimate, evals, substeps, method)


def _to_fixed_list(values, P, n):
    out = []
    for v in values:
        try:
            if not isinstance(v, mpmath.mpf):
                v = mpmath.mpf(v)
            if not mpmath.isfinite(v):
                raise ValueError
            out.append(to_fixed(v._mpf_, P))
        except (TypeError, ValueError):
            raise ValueError(f"the flow's field is not a finite real number at step n = {n} "
                             f"(got {v!r}); the flow leaves its domain or diverges") from None
    return out

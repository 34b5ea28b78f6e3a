"""An independent oracle: power series in ``h`` of the first iterates and of the flow.

Exact rational arithmetic on truncated power series (:class:`TPS`), so "agree through
``h^(r+1)``" means equal coefficients, not a tolerance.  Nothing here uses the derivation
code: the iterates come from a plain loop over the declaration (states as EMAs with bias
correction), and the flow is integrated step by step with the Taylor method applied to the
field that ``flow.field(E, params, n=l)`` returns for each step ``l``.

Square roots must stay rational: choose the loss, point and ``eps`` so that every ``g_j^2+eps``
(or ``g_j^2``) at the start is a perfect square.
"""
from __future__ import annotations

from fractions import Fraction

import mpmath

import sympy as sp
from sympy.printing.pycode import MpmathPrinter

__all__ = ["TPS", "by_recurrence", "iterate_series", "flow_series", "taylor_prefix", "compare"]


def _exact_root(q: Fraction, r: Fraction) -> Fraction:
    """``q**r`` for rational ``r`` when it is rational (perfect powers only)."""
    q = Fraction(q)
    a, b = r.numerator, r.denominator

    def iroot(x):
        y = round(x ** (1.0 / b)) if x > 0 else 0
        for cand in (y - 1, y, y + 1):
            if cand >= 0 and cand ** b == x:
                return cand
        raise ValueError(f"{x}^(1/{b}) is not an integer: choose rational-square data")

    if q < 0:
        raise ValueError("negative base for a fractional power")
    root = Fraction(iroot(q.numerator), iroot(q.denominator))
    return root ** a


class TPS:
    """Truncated power series ``sum_{i<=D} c_i x^i`` at nesting ``level`` (0: ``h``; 1: time).
    Coefficients are Fractions (level 0) or level-0 series (level 1)."""
    __slots__ = ("c", "D", "level")

    def __init__(self, coeffs, D, level=0):
        c = list(coeffs)[: D + 1]
        if level == 0:
            zero = Fraction(0)
        else:                             # a zero of the coefficients' own degree, or 0
            zero = next((0 * a for a in c if isinstance(a, TPS)), 0)
        c += [zero] * (D + 1 - len(c))
        self.c, self.D, self.level = c, D, level

    # helpers
    def _lift(self, other):
        if isinstance(other, TPS) and other.level == self.level:
            return other
        return TPS([other], self.D, self.level)

    def _is_scalar(self, other):
        return not (isinstance(other, TPS) and other.level >= self.level)

    def __add__(self, other):
        if isinstance(other, TPS) and other.level > self.level:
            return other + self
        o = self._lift(other)
        return TPS([a + b for a, b in zip(self.c, o.c)], self.D, self.level)

    __radd__ = __add__

    def __neg__(self):
        return TPS([-a for a in self.c], self.D, self.level)

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if isinstance(other, TPS) and other.level > self.level:
            return other * self
        if self._is_scalar(other):
            return TPS([a * other for a in self.c], self.D, self.level)
        D = self.D
        out = [0] * (D + 1)
        for i, a in enumerate(self.c):
            if _iszero(a):
                continue
            for j in range(D + 1 - i):
                out[i + j] = out[i + j] + a * other.c[j]
        return TPS(out, D, self.level)

    __rmul__ = __mul__

    def inverse(self):
        c0 = self.c[0]
        if _iszero(c0):
            raise ZeroDivisionError("series with zero constant term")
        inv0 = 1 / c0
        b = [inv0]
        for k in range(1, self.D + 1):
            s = 0
            for i in range(1, k + 1):
                s = s + self.c[i] * b[k - i]
            b.append(-inv0 * s)
        return TPS(b, self.D, self.level)

    def __rtruediv__(self, other):
        return self.inverse() * other

    def __truediv__(self, other):
        if isinstance(other, TPS) and other.level >= self.level:
            return self * other.inverse()
        return self * (Fraction(1, other) if isinstance(other, int) else 1 / other)

    def __pow__(self, r):
        r = Fraction(r) if isinstance(r, (int, Fraction)) else \
            Fraction(float(r)).limit_denominator(1000)
        if r.denominator == 1:
            k = r.numerator
            base = self if k >= 0 else self.inverse()
            out = None                        # binary powering: base^|k|
            for bit in bin(abs(k))[2:]:
                out = out if out is None else out * out
                out = (base if out is None else out * base) if bit == "1" else out
            return TPS([1] if out is None else out.c, self.D, self.level)    # a new series
        # Miller's recurrence (from x y' = r x' y): k x_0 y_k = sum_j ((r + 1) j - k) x_j y_{k-j}
        y = by_recurrence(self.c, _power(self.c[0], r), lambda j, k: (r + 1) * j - k,
                          scale=self.c[0])
        return TPS(y, self.D, self.level)


def by_recurrence(x, y0, weight, scale=None):
    """Coefficients ``y_0..y_D`` of a series with ``k scale y_k = sum_{j=1}^{k} weight(j, k)
    x_j y_{k-j}`` (``D = len(x) - 1``): ``exp`` (``weight = j``, no scale, from ``y' = x' y``)
    and powers ``x^r`` (Miller: ``weight = (r + 1) j - k``, ``scale = x_0``, from
    ``x y' = r x' y``).  Works on Fractions, mpmath numbers and series alike."""
    inv = None if scale is None else 1 / scale
    y = [y0]
    for k in range(1, len(x)):
        s = 0
        for j in range(1, k + 1):
            if not _iszero(x[j]):
                s = s + x[j] * y[k - j] * weight(j, k)
        y.append((s if inv is None else s * inv) / k)
    return y


def _iszero(a):
    return all(_iszero(x) for x in a.c) if isinstance(a, TPS) else a == 0


def _power(x, r):
    if isinstance(x, TPS):
        return x ** r
    if isinstance(x, (int, Fraction)):
        return _exact_root(x, r)
    return x ** (mpmath.mpf(r.numerator) / r.denominator)   # high-precision mode


class _Namespace:
    """What the printed code calls ``mpmath``: exact rationals and series functions."""
    mpf = Fraction

    @staticmethod
    def sqrt(x):
        return _power(x, Fraction(1, 2))


class _MpNamespace(_Namespace):
    """High-precision mode: mpmath numbers where square roots are irrational."""
    mpf = mpmath.mpf


def _number(value, exact):
    return Fraction(str(value)) if exact else mpmath.mpf(sp.Rational(value).p) / sp.Rational(value).q


def _compile(args, exprs, exact=True):
    """A callable evaluating ``exprs`` with exact rationals (or mpmath numbers when not
    ``exact``); works on :class:`TPS`."""
    ns = _Namespace if exact else _MpNamespace
    return sp.lambdify(args, exprs, modules=[{"mpmath": ns}], cse=True,
                       printer=MpmathPrinter({"fully_qualified_modules": True, "order": "none",
                                              "user_functions": {}}))


def iterate_series(optimizer, E, params, theta0, steps, D, values, h, exact=True):
    """``theta^(1..steps)`` as series in ``h`` to degree ``D`` (a plain loop over the
    declaration: EMA states from zero, bias correction by ``1 - d^(k+1)``)."""
    from modeq.symbolic import g as g_sym, theta as th_sym
    sub = {s: v for s, v in values.items()}
    grad = _compile(params, [sp.diff(E, p) for p in params], exact)
    states = optimizer.states
    phis = [_compile([g_sym, th_sym], s.of.xreplace(sub), exact) for s in states]
    step = _compile([*states, g_sym, th_sym], optimizer.step.xreplace(sub), exact)
    decays = [_number(s.decay.xreplace(sub), exact) for s in states]
    hs = TPS([0, 1], D)
    theta = [TPS([_number(t, exact)], D) for t in theta0]
    acc = [[0 * hs for _ in theta] for _ in states]
    out = []
    for k in range(steps):
        gk = grad(*theta)
        new = []
        for i, s in enumerate(states):
            d = decays[i]
            c = (1 - d) if s.normalized else 1
            acc[i] = [d * a + c * phis[i](gj, tj) for a, gj, tj in zip(acc[i], gk, theta)]
        hats = []
        for i, s in enumerate(states):
            d = decays[i]
            hats.append([a / (1 - d ** (k + 1)) if s.bias_correction else a for a in acc[i]])
        for j in range(len(theta)):
            psi = step(*[hats[i][j] for i in range(len(states))], gk[j], theta[j])
            new.append(theta[j] - hs * psi)
        theta = new
        out.append(theta)
    return out


def taylor_prefix(th, q, cut=None):
    """The local-time series ``th`` cut to degree ``q``: ``[f(theta(tau))]_q`` reads the
    coefficients up to ``q`` only (the Taylor method's step ``q`` costs ``q^2``, not ``D^2``);
    ``cut``: their coefficients, series in ``h``, cut to that degree too."""
    if cut is None:
        return [TPS(t.c[:q + 1], q, level=1) for t in th]
    return [TPS([_cut(a, cut) for a in t.c[:q + 1]], q, level=1) for t in th]


def flow_series(flow, E, params, theta0, steps, D, values, h, stationary=False, exact=True,
                schedule=None):
    """``theta(h), ..., theta(steps*h)`` of the piecewise flow, as series in ``h``: on step
    ``l`` the Taylor method for ``d theta/dt = field(E, params, n=l)`` (its ``h`` being the
    series variable) from the value reached at ``l h``; ``E`` a list of batch losses: mini
    batch, step ``l`` on ``E[schedule[l]]``."""
    hs = TPS([0, 1], D)
    y = [TPS([_number(t, exact)], D) for t in theta0]
    named = {str(k): v for k, v in values.items()}
    out = []
    # y = sum_q c_q h^q (tau = h) to degree D in h reads c_q only to degree D - q in h: the
    # step q of the Taylor method, which gives c_{q+1}, runs on series in h cut to D - q - 1
    for l in range(steps):
        if isinstance(E, list):
            F = flow.field(E, params, n=l, schedule=schedule, **named)
        else:
            F = flow.field(E, params, n=None if stationary else l, stationary=stationary,
                           **named)
        F = [e.xreplace(values) for e in F]
        f = _compile([h, *params], F, exact)
        # Taylor coefficients in local time tau: c_{q+1} = [f(theta(tau))]_q / (q+1)
        th = [TPS([yj], D, level=1) for yj in y]
        for q in range(D):
            cut = D - q - 1
            fv = f(_cut(hs, cut), *taylor_prefix(th, q, cut))
            for j in range(len(th)):
                c = fv[j].c[q] / (q + 1) if isinstance(fv[j], TPS) \
                    else (fv[j] / (q + 1) if q == 0 else 0 * hs)
                th[j].c[q + 1] = TPS(_cut(c, cut).c, D)        # zeros above D - q - 1
        y = [sum((th[j].c[q] * hs ** q for q in range(D + 1)), 0 * hs) for j in range(len(th))]
        out.append(y)
    return out


def _cut(a, degree):
    """The series in ``h`` ``a`` (a number: constant) to ``degree``."""
    return TPS(a.c[:degree + 1] if isinstance(a, TPS) else [a], degree)


def compare(a, b, tol=0):
    """Lowest power of ``h`` at which two lists of series vectors differ by more than ``tol``
    (``None`` if never); ``tol = 0`` for exact series."""
    lowest = None
    for va, vb in zip(a, b):
        for sa, sb in zip(va, vb):
            for p, (x, y) in enumerate(zip(sa.c, sb.c)):
                if abs(x - y) > tol:
                    lowest = p if lowest is None else min(lowest, p)
                    break
    return lowest

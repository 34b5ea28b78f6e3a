"""The stationary part of a mini-batch memory sum under a cyclic schedule, in closed form.

With the cyclic schedule (step ``l`` uses batch ``l mod m``) and decays ``0 <= d_i < 1``, the
scalar memory weights of step ``l`` approach periodic limits:

* ``u_ib(l) = sum_{k<=l, batch(k)=b} d_i^(l-k)`` tends to
  ``u*_ib(r) = sum_{s=0}^{m-1} [batch(r-s) = b] d_i^s / (1 - d_i^m)`` (``r = l mod m``), with a
  relative deviation of at most ``d_i^(l+2-m)``;
* the weight of the newest input ``w_i(l, l)`` (``c_i / (1 - d_i^(l+1))`` with bias correction)
  tends to its stationary value ``c_i``, with a relative deviation of at most ``2 d_i^(l+1)``.

From the step :attr:`CyclicTail.start` on, every weight equals its limit to within
``2^-(prec+GUARD) (1-d)^3`` relative, so whatever a step computes from its weights and the
current point (its ``F0``, ``DF0``, ``F1``) is periodic in ``l`` with period ``m`` at the working
precision, and a memory sum over those steps groups into ``m`` residues, each a
geometric-polynomial sum over whole periods: with ``z = d^m``,
``sum_{t=0}^{T} t^k z^t`` (``k = 0, 1, 2``) in closed form (:func:`period_moments`).  The cost of
a field evaluation then stops growing with ``n``: ``m`` kernel calls for the stationary part,
whatever its length.  The exact arithmetic (``flow.field``) never takes this path.
"""
from __future__ import annotations

import math

import mpmath

from .arrays import to_mpf

__all__ = ["CyclicTail", "cyclic_tail", "period_moments", "GUARD"]

#: guard bits below the working precision for the deviation of the weights from their limits
GUARD = 10
#: remembered lag sums per tail (a few steps' worth: the stages of one step share them)
LAG_MEMO = 4096


def period_moments(z, T, prec):
    """``[sum_{t=0}^{T} t^k z^t for k in (0, 1, 2)]`` for ``0 <= z < 1`` and ``T >= 0``, as
    ``mpf`` correct to ``prec`` bits (closed forms evaluated with the guard bits their
    cancellation needs near ``z = 1``)."""
    T = int(T)
    z = mpmath.mpf(z)
    extra = 20 + 2 * max(1, T + 2).bit_length()
    if z > 0:
        extra += 3 * max(0, int(-mpmath.log(1 - z, 2)) + 1)
    with mpmath.workprec(prec + extra):
        z = +z
        zT = z ** T
        q = 1 - z
        s0 = (1 - zT * z) / q
        s1 = z * (1 - (T + 1) * zT + T * zT * z) / q ** 2
        s2 = z * (1 + z - (T + 1) ** 2 * zT + (2 * T * T + 2 * T - 1) * zT * z
                  - T * T * zT * z * z) / q ** 3
    return [+s0, +s1, +s2]


class CyclicTail:
    """Periodic limits of the scalar memory weights of a cyclic schedule (module docstring).

    ``decays`` and ``limits`` are the numbers ``d_i`` and ``c_i`` per state (backend scalars or
    ``mpf``), ``batch(r)`` the loss index of residue ``r``, ``m`` the period, ``prec`` the working
    precision in bits, ``scalar`` converts an ``mpf`` to the backend's scalar type.
    """

    def __init__(self, decays, limits, m, batch, prec, scalar):
        self.m, self.prec, self.scalar = m, prec, scalar
        self.d = [to_mpf(d) for d in decays]
        self.c = [to_mpf(c) for c in limits]
        self.batch = [batch(r) for r in range(m)]
        tol = mpmath.mpf(2) ** -(prec + GUARD)
        start = 0
        for d in self.d:
            if d > 0:
                # 3 d^(l+2-m) <= tol (1-d)^3
                bound = (mpmath.log(tol) + 3 * mpmath.log(1 - d) - mpmath.log(3)) / mpmath.log(d)
                start = max(start, int(math.ceil(bound)) + m - 2)
        self.start = max(start, 0)
        self._u = [[[self._u_limit(i, r, b) for b in range(m)] for i in range(len(self.d))]
                   for r in range(m)]
        self._u_scalar = [[[scalar(v) for v in row] for row in rows] for rows in self._u]
        self._w_scalar = [[scalar(self.c[i] * v) for i, row in enumerate(rows) for v in row]
                          for rows in self._u]
        self._d_powers = [[scalar(d ** s) for s in range(m + 1)] for d in self.d]
        self._c_scalar = [scalar(c) for c in self.c]
        self._lag_sums = {}              # (i, s, T) -> sums: a step's stages share its n

    def _u_limit(self, i, r, b):
        d, m = self.d[i], self.m
        with mpmath.workprec(self.prec + 20):
            num = sum((d ** s for s in range(m) if self.batch[(r - s) % m] == b),
                      mpmath.mpf(0))
            return num / (1 - d ** m)

    def u(self, r):
        """``u*[i][b]`` of residue ``r`` (backend scalars)."""
        return self._u_scalar[r % self.m]

    def weights(self, r):
        """The flat weights ``[c_i u*_ib(r)]`` (state-major) of residue ``r``."""
        return self._w_scalar[r % self.m]

    def residues(self, n, lo):
        """The stationary steps ``lo <= l < n`` grouped by lag ``s = 1..m`` (``l = n - s - m t``,
        ``t = 0..T``): ``[(s, r, T)]`` with ``r = (n - s) mod m``; lags with no step left out."""
        out = []
        for s in range(1, self.m + 1):
            if n - s >= lo:
                out.append((s, (n - s) % self.m, (n - s - lo) // self.m))
        return out

    def lag_sums(self, i, s, T):
        """``[d_i^s sum_{t=0}^{T} t^k d_i^(m t) for k in (0, 1, 2)]`` (backend scalars;
        remembered: they depend on the step, not on the point)."""
        key = (i, s, T)
        hit = self._lag_sums.get(key)
        if hit is None:
            if len(self._lag_sums) >= LAG_MEMO:
                self._lag_sums.clear()
            d = self.d[i]
            with mpmath.workprec(self.prec + 20):
                ds = d ** s
                z = d ** self.m
            hit = self._lag_sums[key] = [self.scalar(ds * v)
                                         for v in period_moments(z, T, self.prec)]
        return hit

    def limit(self, i):
        """The stationary newest-input weight ``c_i`` (backend scalar)."""
        return self._c_scalar[i]

    def power(self, i, s):
        """``d_i^s`` for ``0 <= s <= m`` (backend scalar)."""
        return self._d_powers[i][s]


def cyclic_tail(decays, limits, w_last, m, batch, prec, backend):
    """A :class:`CyclicTail` for the default cyclic schedule, or ``None`` where it does not
    apply: no memory, a decay outside ``[0, 1)``, or a newest-input weight ``w_last[i](l)``
    that does not reach its stationary value ``limits[i]`` by the tail's first steps (bias
    corrections ``1 / (1 - d^(l+1))`` always do; any other weight is checked, not assumed)."""
    if not decays or not all(0 <= float(d) < 1 for d in decays):
        return None
    scalar = (lambda v: +mpmath.mpf(v)) if backend == "mpmath" else float
    tail = CyclicTail(decays, limits, m, batch, prec, scalar)
    tol = mpmath.mpf(2) ** -(prec - 8)                  # a few roundings of w(l)
    for w, c in zip(w_last, tail.c):
        for l in (tail.start, tail.start + 1, 2 * tail.start + m):
            if abs(to_mpf(w(l)) - c) > tol * abs(c):
                return None
    return tail

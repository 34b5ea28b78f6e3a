"""Past its transient, an exact-in-``n`` full-batch field equals its stationary limit.

A full-batch flow's ``F^(n)(theta)`` depends on the step index only through its memory: the
weights of past inputs (``d^(n-k)``, bias corrections ``1/(1 - d^(n+1))``) and the past steps'
own terms ``F0^(k)``, ``F1^(k)``, which depend on ``k`` the same way.  With ``d`` the largest
decay in ``[0, 1)``:

* step ``k``'s own weights and terms differ from their limits by ``O(d^(k+1))`` relative (the
  deviation of an EMA's weights, as in :mod:`.cyclic_tail`; ``1/(1-d)`` per sum of them);
* step ``k`` enters a sum over past steps at ``n`` with a weight ``O(d^(n-k))`` (a sum without a
  geometric weight enters as a difference ``sum_{l=k}^{n-1}``, which converges), so its share of
  ``F^(n) - F^(oo)`` is ``O(d^(n+1))``, whatever ``k``; nested at most ``depth`` deep, there are
  at most ``(n+1)^(depth+1)`` of them.

From the least ``N`` with ``3 (N+1)^(depth+1) d^(N+1) <= tol (1-d)^3``, ``tol = 2^-(prec+GUARD)``
(the ``(1-d)^3`` and the ``3`` as in the tail start of :mod:`.cyclic_tail`), the deviation is
below ``tol`` relative.  From :meth:`StationaryLimit.start` on, the field is therefore the
stationary field (``stationary=True``: the ``n -> oo`` limit of the same derivation) at the
working precision, ``O(1)`` per call where the exact field's node tables (:mod:`.nested_sums`)
cost ``O(n)``.  The exact arithmetic (``flow.field``) never takes this path.  A step that reads
``n`` itself has transients of its own: where they are geometric (NAdam's momentum schedule
``mu_t = beta (1 - 0.96^(t psi)/2)`` and its products ``P_t``, whose coefficients reach their
limits like ``0.96^(t psi)`` and ``beta^t``: :func:`~modeq.symbolic.coefficients.transient_rates`)
their rates join the decays above (step ``k``'s coefficients differ from their limits by
``O(r^k)``, as its weights do), elsewhere (a coefficient like ``1/(n+1)``) the step is given
no limit.  Nor is a flow with no stationary limit (its derivation refused: centered RMSprop,
whose coefficients grow with ``n``).
"""
from __future__ import annotations

import math

import mpmath
import sympy as sp

from ..coefficients import transient_rates
from ..family import Refused
from .arrays import to_mpf
from .cyclic_tail import GUARD

__all__ = ["StationaryLimit", "limit_decays", "limit_start", "sum_depth"]


def sum_depth(e, _memo=None):
    """An upper bound on the polynomial growth in ``n`` of the sums over past steps in ``e``:
    one per ``Sum``, added over the factors of a product (``P(n)^2`` grows like ``n^2``)."""
    memo = {} if _memo is None else _memo
    if e not in memo:
        if isinstance(e, sp.Sum):
            memo[e] = len(e.limits) + sum_depth(e.function, memo)
        elif not e.args:
            memo[e] = 0
        elif e.is_Mul:
            memo[e] = sum(sum_depth(a, memo) for a in e.args)
        elif e.is_Pow and e.exp.is_Integer and e.exp > 0:
            memo[e] = int(e.exp) * sum_depth(e.base, memo)
        else:
            memo[e] = max(sum_depth(a, memo) for a in e.args)
    return memo[e]


def limit_start(decays, prec, depth):
    """The least step ``N`` of the module docstring for the decay values ``decays`` (numbers in
    ``[0, 1)``), the working precision ``prec`` in bits and the nesting ``depth`` of the sums
    over past steps."""
    tol = mpmath.mpf(2) ** -(prec + GUARD)
    start = 0
    with mpmath.workprec(64):
        for d in (to_mpf(v) for v in decays):
            if not 0 < d < 1:
                continue
            margin = mpmath.log(tol) + 3 * mpmath.log(1 - d) - mpmath.log(3)
            N = max(0, int(math.ceil(margin / mpmath.log(d))) - 1)

            def above(m):
                return (depth + 1) * mpmath.log(m + 1) + (m + 1) * mpmath.log(d) > margin
            step = max(1, N // 16)
            while above(N):                      # coarse steps up, then back to the least
                N += step
            while step > 1:
                step //= 2
                if not above(N - step):
                    N -= step
            while N > 0 and not above(N - 1):
                N -= 1
            start = max(start, N)
    return start


def limit_decays(optimizer, values):
    """``{decay or transient rate: its exact value, or None where it reads a constant not in
    values}`` for :class:`StationaryLimit`: the states' decays and the rates of the step's own
    transients (module docstring); ``None`` where the step reads ``n`` otherwise (no limit)."""
    rates = transient_rates(optimizer.step)
    if rates is None:
        return None
    return {d: _value(d, values) for d in (*optimizer.decays, *rates)}


def _value(d, values):
    v = sp.sympify(d).xreplace({sp.sympify(k): v for k, v in values.items()
                                if not isinstance(v, tuple)})     # not one per component
    return v if v.is_number else None


class StationaryLimit:
    """The stationary counterpart of an exact-in-``n`` field and the step from which it stands
    in for it.

    ``build()`` returns the stationary field (built at first use, with the same late-bound
    symbols as the exact one; for the periodic mini-batch field of :mod:`.step_indexed`, the
    stationary terms, whose existence is what is asked) or raises
    :class:`~modeq.symbolic.family.Refused` where the flow has no stationary limit (centered
    RMSprop: ``v - a^2 -> 0`` under the root, its coefficients grow without bound in ``n``:
    there is no limit to hand over to, and the exact field keeps every step).  ``decays`` maps
    each decay symbol (and transient rate of the step: :func:`limit_decays`) to its exact
    value, or to ``None`` where it reads a late-bound constant (its value then comes from
    :meth:`start`'s ``late``); ``depth`` is the nesting depth of the exact field's
    sums over past steps.
    """

    def __init__(self, build, decays, depth):
        self._build, self.decays, self.depth = build, dict(decays), depth
        self._field, self._built = None, False
        self._starts = {}

    @property
    def field(self):
        """The stationary counterpart (unbound where the exact field has late-bound
        constants); ``None`` where the flow has no stationary limit."""
        if not self._built:
            try:
                self._field = self._build()
            except Refused:
                self._field = None
            self._built = True
        return self._field

    def start(self, prec, late=None):
        """The first step at which the stationary field is used, at ``prec`` bits; ``late``:
        the late-bound symbols' exact values (``{symbol: value}``); ``None`` while a decay is
        still unbound."""
        late = late or {}
        values = [self.decays[d] if self.decays[d] is not None else _value(d, late)
                  for d in self.decays]
        if any(v is None for v in values):
            return None
        key = (prec, tuple(values))
        if key not in self._starts:        # a rate outside [0, 1): no limit (asked once)
            self._starts[key] = (limit_start(values, prec, self.depth)
                                 if all(0 <= v < 1 for v in values) else None)
        return self._starts[key]

"""Step-index growth taken out of a field before it meets floats.

A field exact in the step index ``n`` may carry its powers in forms that grow: the derivation's
expansion writes NAdam's ``(24/25)^(n psi)`` as ``24^(n psi) / 25^(n psi)``, and rational
simplification then clears denominators into ``600^(n psi)``, ``24^(3 n psi)``, ... on both
sides of a fraction, in the field and in the summands of its sums over past steps
(``25^(l+1)`` against ``24^(l+1)``).  The field is of order one, but float64 overflows on the
parts (``600^(n psi)`` at ``n psi > 110``, ``25^l`` at ``l > 220``).

:func:`balance_growth` rewrites each expression as ``S * e'`` with ``S`` a product of powers
(the *scale*) and ``e'`` of order one, bottom up:

* a power ``b^(a n + c)`` of a number: its own scale, growth ``a log|b|`` per step;
* a product ``prod_{i=lo}^{n+c} f(i)`` whose factor tends to ``L != 0``: scale ``|L|^n``
  (only outside sums over past steps, where the rest is a coefficient evaluated in mpmath);
* products and rational powers: the scales multiply;
* a sum of terms: the scale of its fastest-growing term, every term divided by it;
* a sum over past steps: its summand balanced alike (its index and the enclosing ones count as
  steps, growth added over them), the sum itself of scale 1; anything else (functions, per-step
  data) of scale 1, with its arguments balanced.

A scale is kept as exponents per base and written out with the powers of one linear form of the
steps merged into one power of a rational base: ``24^(l+1) 25^(-l-1)`` becomes
``(24/25)^(l+1)``, ``24^(l/250) 25^(-l/250)`` becomes ``(24/25)^(l/250)``; ``r^(n-k)`` stays
one power, and a power of one base keeps its form (``4^(-2k-l)``, not ``16^(-k-l/2)``, which
no longer factors against ``4^(-k-l)``).  Outside the sums, the step-index parts (``S_i /
S``, ``c / S_c``) are free of the point, so :func:`~.prepare.hoist_coefficients` takes them into
one coefficient with the other step-index factors of their product, evaluated in mpmath.
Rates need numbers: where an exponent keeps a symbol (a hyperparameter bound late), the
expressions are returned unchanged.
"""
from __future__ import annotations

from functools import reduce

import sympy as sp

from .. import dag

__all__ = ["balance_growth"]


class _Symbolic(Exception):
    """A growth rate that is not a number."""


def balance_growth(exprs, step, point=None):
    """``exprs`` with the growth in ``step`` (a symbol or a set of them: the steps, and the
    indices of their sums over past steps) balanced (module docstring); unchanged where a rate
    is not a number.  Outside the sums over past steps, a part free of the symbols ``point``
    (and of per-step data) is a coefficient: only its scale is taken, its form is kept (it is
    evaluated in mpmath, where memory sums run by their recurrence in ``n``); ``point=None``:
    every part is rewritten (nothing is evaluated apart)."""
    try:
        steps = set(step) if isinstance(step, (set, frozenset)) else {step}
        balance = _Balance(steps, None if point is None else frozenset(point), {})
        return [balance.whole(sp.sympify(e)) for e in exprs]
    except _Symbolic:
        return list(exprs)


class _Balance:
    """The pass over one set of steps; ``split(e) -> (scale {base: exponent}, rate, rest)``.
    ``point`` is ``None`` inside a sum over past steps (no coefficient evaluated apart)."""

    def __init__(self, steps, point, memo):
        self.steps = frozenset(steps)
        self.point = point
        self.memo = memo                   # shared by the passes over every sum's summand

    def inner(self, limits):
        return _Balance(self.steps | {lim[0] for lim in limits}, None, self.memo)

    def whole(self, e):
        scale, _, rest = self.split(e)
        return _written(scale, self.steps) * rest

    def split(self, e):
        key = (e, self.steps, self.point)
        if key not in self.memo:
            self.memo[key] = self._split(e)
        return self.memo[key]

    def _split(self, e):
        free = dag.free_symbols(e)
        if not free & self.steps and not isinstance(e, sp.Sum) or not e.args:
            return {}, 0.0, e
        if self.point is not None and not free & self.point \
                and not dag.contains(e, sp.core.function.AppliedUndef):
            scale, rate, _ = self._split_parts(e)
            return scale, rate, e / _written(scale, self.steps) if scale else e
        return self._split_parts(e)

    def _split_parts(self, e):
        if isinstance(e, sp.Sum):
            return self._sum(e)
        if e.is_Pow and not dag.free_symbols(e.base):
            return self._power(e)
        if isinstance(e, sp.Product):
            return self._product(e)
        if e.is_Mul or (e.is_Pow and e.exp.is_Rational):
            parts = [self.split(a) for a in (e.args if e.is_Mul else [e.base])]
            rests = [r for _, _, r in parts]
            if not any(s for s, _, _ in parts):
                return {}, 0.0, dag.rebuilt(e, rests if e.is_Mul else [rests[0], e.exp])
            k = sp.S.One if e.is_Mul else e.exp
            scale = _scaled(reduce(_times, [s for s, _, _ in parts], {}), k)
            rest = sp.Mul(*rests) ** k
            return scale, float(k) * sum(r for _, r, _ in parts), rest
        if e.is_Add:
            parts = [self.split(a) for a in e.args]
            if not any(s for s, _, _ in parts):
                return {}, 0.0, dag.rebuilt(e, [r for _, _, r in parts])
            top, rate, _ = max(parts, key=lambda p: p[1])
            over = _scaled(top, -1)
            return top, rate, sp.Add(*[_written(_times(s, over), self.steps) * r
                                       for s, _, r in parts])
        return {}, 0.0, dag.rebuilt(e, [self.whole(a) for a in e.args])

    def _sum(self, e):
        """A sum over past steps: its summand balanced; a single sum's scale is its summand's
        at the end of the range where that grows (``sum_k rho^(-k) c_k`` -> ``rho^(-l)
        sum_k rho^(l-k) c_k``), which the summand then reads as ratios."""
        inner = self.inner(e.limits)
        if len(e.limits) > 1:
            return {}, 0.0, dag.rebuilt(e, [inner.whole(e.function), *e.limits])
        k, lo, hi = e.limits[0]
        scale, _, rest = inner.split(e.function)
        slope = sum(inner._rate(base, x, {k}) for base, x in scale.items())
        edge = hi if slope > 0 else lo
        if (edge.free_symbols - self.steps) or not _linear(edge, self.steps):
            return {}, 0.0, dag.rebuilt(e, [inner.whole(e.function), *e.limits])
        top = {base: x.xreplace({k: edge}) for base, x in scale.items()}
        top = {base: x for base, x in top.items() if x != 0}
        summand = _written(_times(scale, _scaled(top, -1)), inner.steps) * rest
        rate = sum(self._rate(base, x) for base, x in top.items())
        return top, rate, dag.rebuilt(e, [summand, *e.limits])

    def _rate(self, base, exponent, steps=None):
        """The growth of ``base^exponent`` per unit of each step (of ``steps``, default all),
        added up: ``sum_s d(exponent)/ds log|base|``."""
        total = 0.0
        for s in exponent.free_symbols & (self.steps if steps is None else steps):
            slope = sp.diff(exponent, s)
            value = sp.N(slope * sp.log(sp.Abs(base)), 20)
            if not value.is_number or not value.is_real:
                raise _Symbolic
            total += float(value)
        return total

    def _power(self, e):
        if not _linear(e.exp, self.steps):
            return {}, 0.0, e
        return {e.base: e.exp}, self._rate(e.base, e.exp), sp.S.One

    def _product(self, e):
        (i, lo, hi), f = e.limits[0], e.function
        if self.point is None or len(e.limits) != 1 or lo.free_symbols & self.steps \
                or not _linear(hi, self.steps):
            return {}, 0.0, e
        limit = f.xreplace({p: 0 for p in f.atoms(sp.Pow) if i in p.exp.free_symbols})
        if limit.free_symbols or limit == 0:
            return {}, 0.0, e
        scale = {sp.Abs(limit): hi}
        rate = self._rate(sp.Abs(limit), hi)
        return scale, rate, e / _written(scale, self.steps)


def _linear(exponent, steps):
    return all(not (sp.diff(exponent, s).free_symbols & steps) for s in steps)


def _times(a, b):
    out = dict(a)
    for base, exponent in b.items():
        out[base] = out.get(base, 0) + exponent
    return {k: v for k, v in out.items() if v != 0}


def _scaled(scale, k):
    return {base: k * exponent for base, exponent in scale.items()} if k != 1 else scale


def _written(scale, steps):
    """The product of ``scale``'s powers, those along one linear form of the steps with
    rational bases merged into one power (module docstring)."""
    groups, out = {}, []
    for base, exponent in scale.items():
        slopes = {s: sp.diff(exponent, s)
                  for s in sorted(exponent.free_symbols & steps, key=str)}
        if not (base.is_Rational and base > 0) or not slopes \
                or not all(v.is_Rational for v in slopes.values()):
            out.append(base ** exponent)
            continue
        values = list(slopes.values())
        lead = sp.sign(values[0]) * reduce(sp.gcd, [abs(v) for v in values])
        form = tuple((s, v / lead) for s, v in slopes.items())
        offset = sp.expand(exponent - sum(v * s for s, v in slopes.items()))
        groups.setdefault(form, []).append((base, lead, offset))
    for form, members in groups.items():
        if len(members) == 1:                  # one base: its power as it is
            base, lead, offset = members[0]
            out.append(base ** (lead * sum(v * s for s, v in form) + offset))
            continue
        q = reduce(sp.ilcm, [lead.q for _, lead, _ in members], 1)
        merged = sp.Mul(*[base ** (lead * q) for base, lead, _ in members])
        u = sum(v * s for s, v in form)
        out.append(merged ** (u / q) if merged != 1 else sp.S.One)
        out.extend(base ** offset for base, _, offset in members)
    return sp.Mul(*out)

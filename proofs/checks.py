"""Exact checks used when a derivation document is built (independent of the engine's own
simplification routines wherever possible).

Conventions: expressions are component expressions of :mod:`modeq.symbolic.operators`
(``Grad``, ``Hess``, ``D3``), possibly with sums over step indices.  Every test here is exact:
a difference is reduced to a rational function and its numerator must expand to ``0``.

* :func:`is_zero`, :func:`same_in_algebra`, :func:`same_in_components` — the exact prover
  shared with :mod:`modeq.symbolic.recognize` (:mod:`modeq.symbolic.prove`): scalars with
  powers ``d**(a n + b)`` of decays and square roots, the operator algebra, and generic
  components ``g_i, H_ij, T_ijk`` for dimension ``p`` (full batch).
* :func:`equal` — the document's equality: components compared exactly at random rational
  points (a difference there refutes soundly, before any simplification), then the
  dimension-free proof :func:`same_canonical`.
* :func:`same_at_steps` — mini batch: substitute concrete step indices ``n``, unroll every sum,
  lower with one set of generic symbols per batch, compare.
* :func:`evaluate_sums` — evaluate step-index sums of a *lowered* scalar expression term by term
  with :func:`sympy.summation` (an independent route to the engine's operator-level sums).
* :func:`taylor_coefficient`, :func:`lie_series_coefficient` — the ``h^r`` coefficient of the
  optimizer's step and of the flow's one-step map, recomputed from their definitions.
"""
from __future__ import annotations

import itertools
import math

import sympy as sp

from modeq.symbolic.components import lower_vector
from modeq.symbolic.family import h, n, theta
from modeq.symbolic.memory import resolve_piecewise
from modeq.symbolic.operators import Grad, factored, lie, linearize
from modeq.symbolic.prove import (component_verdict, components_agree, is_zero, powers_of_step,
                                  same_in_algebra)

from .notation import FieldSymbol, canonical_terms, find_radicand

__all__ = ["is_zero", "equal", "same_canonical", "same_in_algebra", "same_in_components",
           "components_at_points", "equal_method",
           "same_at_steps", "BatchSymbols", "evaluate_sums", "taylor_coefficient",
           "lie_series_coefficient", "nice_closed_form", "stationary_value", "infinite_sum"]


def same_in_components(a, b, dims=(1, 2)):
    """``a == b`` component by component for generic ``g_i, H_ij, T_ijk`` in each ``p``."""
    return all(components_agree(a, b, p) for p in dims)



class BatchSymbols:
    """Generic symbols with one loss per batch: ``g^(b)_j``, symmetric ``H^(b)_ij``, ``T^(b)``.
    ``FULL`` is batch ``F``, so a full-batch expression lowers to the same symbols for every
    step — the reduction check of mini batch to full batch uses that."""

    def __init__(self, p, merge=False):
        self.p = p
        self.merge = merge
        self._cache = {}

    def _tag(self, b):
        return "F" if self.merge or not getattr(b, "is_Integer", False) else str(int(b))

    def _sym(self, kind, b, idx):
        idx = tuple(sorted(idx)) if kind != "g" else idx
        key = (kind, self._tag(b), idx)
        if key not in self._cache:
            name = f"{kind}{key[1]}_" + "".join(str(i + 1) for i in idx)
            self._cache[key] = sp.Symbol(name, real=True)
        return self._cache[key]

    def grad(self, b, j):
        return self._sym("g", b, (j,))

    def hess(self, b, j, i):
        return self._sym("H", b, (j, i))

    def d3(self, b, j, i, k):
        return self._sym("T", b, (j, i, k))

    def theta(self, j):
        return sp.Symbol(f"theta_{j + 1}", real=True)


def same_at_steps(a, b, steps=(0, 1, 2), p=1, merge=False):
    """``a == b`` after substituting ``n = step`` for each step, unrolling all sums and
    lowering with :class:`BatchSymbols` (``merge=True``: every batch has the same loss)."""
    for step in steps:
        P = BatchSymbols(p, merge)
        va = lower_vector(sp.sympify(a).xreplace({n: sp.Integer(step)}), P)
        vb = lower_vector(sp.sympify(b).xreplace({n: sp.Integer(step)}), P)
        va = va.applyfunc(lambda e: e.doit())
        vb = vb.applyfunc(lambda e: e.doit())
        if not all(is_zero(u - v) for u, v in zip(va, vb)):
            return False
    return True


def evaluate_sums(e):
    """Evaluate every step-index sum of a lowered scalar expression, innermost first, term by
    term with :func:`sympy.summation` (decays taken in (0, 1))."""
    e = sp.sympify(e)
    if not e.has(sp.Sum):
        return e
    if isinstance(e, sp.Sum):
        f = evaluate_sums(e.function)
        for (k, lo, hi) in e.limits:
            f = _summation(sp.expand(sp.powsimp(sp.expand_power_exp(sp.expand(f)))), k, lo, hi)
        return f
    return e.func(*[evaluate_sums(a) for a in e.args])


def _summation(f, k, lo, hi):
    """``sum_{k=lo}^{hi} f`` term by term by :func:`sympy.summation`, constants pulled out,
    the branch valid for decays in (0, 1) taken."""
    total = sp.S.Zero
    for t in sp.Add.make_args(f):
        c, dep = t.as_independent(k, as_Add=False)
        total += c * resolve_piecewise(sp.summation(dep, (k, lo, hi)))
    return total


def taylor_coefficient(step, series, r):
    """``(1/r!) d^r/dh^r step(s_1(h), ...)|_{h=0}`` with ``s_i(h) = sum_q h^q S_iq``:
    the ``h^r`` term of the optimizer's step, by differentiation (``series`` maps each state
    symbol to its list ``[S_i0, S_i1, ...]``)."""
    sub = {s: sp.Add(*[h ** q * t for q, t in enumerate(terms)]) for s, terms in series.items()}
    e = step.xreplace(sub)
    return sp.diff(e, h, r).xreplace({h: 0}) / math.factorial(r)


def lie_series_coefficient(F, p):
    """Coefficient of ``h^p`` in ``exp(h L_{-F}) theta - theta = sum_m h^m/m! L_{-F}^m theta``
    with ``F = sum_a h^a F[a]`` (a single series in ``h``; the term of stage ``m`` is truncated
    at ``h^(p-m)``, which is all that can reach ``h^p``)."""
    def upto(e, q):
        e = sp.expand(e)
        return sp.Add(*[e.coeff(h, i) * h ** i for i in range(q + 1)])

    total, term = sp.S.Zero, theta
    for m in range(1, p + 1):
        Fh = sp.Add(*[h ** a * f for a, f in enumerate(F) if a <= p - m])
        term = upto(linearize(lie(upto(term, p - m), -Fh)), p - m)
        total += h ** m * term / math.factorial(m)
    total = sp.expand(linearize(total))
    return total.coeff(h, p)


def same_canonical(a, b):
    """``a == b`` for any dimension: operators are made linear in their arguments and each
    argument is written in a basis of point functions (canonical layout of
    :mod:`modeq.proofs.notation`), then the coefficient of every operator monomial must agree
    exactly.  With more than one square root, falls back to opaque operator symbols
    (:func:`same_in_algebra`)."""
    a, b = sp.sympify(a), sp.sympify(b)
    d = a - b
    R = find_radicand(a + b)
    if R is None and any(p.exp.is_Rational and p.exp.q == 2 and p.base.has(Grad)
                         for p in d.atoms(sp.Pow)):
        return same_in_algebra(a, b)
    s = FieldSymbol("s_check", positive=True)
    back = {s: sp.sqrt(R)} if R is not None else {}
    coeffs = {}
    for e, sign in ((a, 1), (b, -1)):
        for m, c in canonical_terms(e, R, s).items():
            m = m.xreplace(back)
            coeffs[m] = coeffs.get(m, 0) + sign * c.xreplace(back)
    return all(is_zero(c) for c in coeffs.values())


def components_at_points(a, b, dims):
    """``a == b`` component by component for generic ``g_i, H_ij, T_ijk`` in each ``p`` of
    ``dims``, in exact rational arithmetic at :data:`~modeq.symbolic.prove.FAST_TRIALS`
    random points (:func:`~modeq.symbolic.prove.component_verdict`): ``False`` is a sound
    refutation; where a side cannot be evaluated exactly the components are proved
    (:func:`~modeq.symbolic.prove.components_agree`)."""
    return all(component_verdict(a, b, p, components_agree)[0] for p in dims)


def equal(a, b, dims=()):
    """The document's equality test.  With ``dims``, the components for those dimensions are
    compared first at random rational points (:func:`components_at_points`: cheap, and a
    wrong coefficient ends the check there); then :func:`same_canonical` proves the identity
    for every dimension."""
    return components_at_points(a, b, dims) and same_canonical(a, b)


def equal_method(dims):
    """How :func:`equal` decides, as a document states it (LaTeX).

    >>> equal_method((1, 2))
    'components $p=1,2$ at random rational points, then the canonical form'
    """
    return (f"components $p={','.join(map(str, dims))}$ at random rational points, "
            "then the canonical form")


def nice_closed_form(e, step=n):
    """A factored form of an expression in ``d**step`` and ``step``: rational in the powers
    ``P_d = d**step``, cancelled and factored, then ``P_d`` written back as ``d**step``."""
    e = sp.sympify(e)
    return _restore_powers(factored(powers_of_step(e, step)), e, step)


def _restore_powers(f, original, step):
    """Undo :func:`~modeq.symbolic.prove.powers_of_step` on ``f``: each dummy ``P`` stands for
    ``d**step`` of the one base it was created for (recovered by substituting back and
    comparing)."""
    ps = [p for p in f.free_symbols if isinstance(p, sp.Dummy) and p.name == "P"]
    if not ps:
        return f
    bases = sorted({p.base for p in sp.expand_power_exp(original).atoms(sp.Pow)
                    if step in p.exp.free_symbols and step not in p.base.free_symbols},
                   key=sp.default_sort_key)
    for perm in itertools.permutations(bases, len(ps)):
        cand = f.xreplace({p: b ** step for p, b in zip(ps, perm)})
        if is_zero(cand - original):
            return cand
    raise ValueError("could not restore the powers of the step index")


def stationary_value(e, step=n):
    """``lim_{step -> oo}`` of an expression rational in ``step`` and ``d**step`` (decays in
    (0, 1)): write it as ``N/D`` in ``P_d = d**step``; the limit is ``N/D`` at ``P_d = 0``,
    which must not depend on ``step`` (``step^a d^(b step) -> 0`` for ``b > 0``)."""
    f = sp.together(powers_of_step(e, step))
    num, den = sp.fraction(f)
    ps = [p for p in f.free_symbols if isinstance(p, sp.Dummy) and p.name == "P"]
    num0 = sp.expand(num).xreplace({p: 0 for p in ps})
    den0 = sp.expand(den).xreplace({p: 0 for p in ps})
    if den0 == 0:
        raise ValueError(f"no stationary limit of {e}: the denominator vanishes as {step} -> oo")
    lim = factored(num0 / den0)
    if step in lim.free_symbols:
        raise ValueError(f"no stationary limit of {e}: it grows with {step}")
    return lim


def infinite_sum(term, j):
    """``sum_{j>=0} term`` by :func:`sympy.summation`, constants pulled out first and the
    convergent branch (decays in (0, 1)) taken."""
    total = _summation(sp.expand(term), j, 0, sp.oo)
    if total.has(sp.oo, sp.zoo, sp.Sum):
        raise ValueError(f"sum of {term} over j >= 0 did not converge to a closed form")
    return total

"""Coefficients of a flow term split into memory coefficients and point factors.

A derived term reads ``c * K`` with ``K`` an operator monomial (``H.u``, ``T[u, w]``, ...) and
``c`` a scalar in the point quantities (the gradient ``g``, ``theta``, ``eps``) and the memory
quantities (the decays, the step index ``n``, other hyperparameters).  :func:`split_coefficient`
writes it the way the math reads,

    c = P(g, eps) * sum_j  a_j(beta, rho, n) * m_j(g, eps),

with ``P`` the point prefactor (e.g. ``(eps + g^2)^(-3/2)``), ``m_j`` point monomials
(``eps``, ``g^2``) and ``a_j`` memory coefficients, each factored once.  For Adam's stationary
``F1`` (eps inside): ``P = s^(-3)``, ``a_eps = (1+beta)/(2(1-beta))``,
``a_g2 = (beta-rho)/((1-beta)(1-rho))`` — Cattaneo, Klusowski & Shigida's
``(1/2){(1+beta)/(1-beta) - (1+rho)/(1-rho) + (1+rho)/(1-rho) eps/s^2}/s`` over ``s^2``.
The split is exact: ``P * sum_j a_j m_j == c``.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .expand import expand
from .family import eps
from .operators import is_field

__all__ = ["SplitCoefficient", "split_coefficient", "memory_symbols"]


def memory_symbols(optimizer, n):
    """The symbols of memory coefficients: every hyperparameter but ``eps``, and ``n``."""
    return {s for s in optimizer.hyperparameters if s != eps} | {n}


@dataclass(frozen=True)
class SplitCoefficient:
    """``prefactor * sum(a * m for m, a in terms)``: point prefactor, ``[(point monomial,
    memory coefficient)]``."""
    prefactor: sp.Expr
    terms: tuple

    def expr(self):
        return self.prefactor * sp.Add(*[a * m for m, a in self.terms])


def _is_memory(f, memory):
    return not is_field(f) and f.free_symbols <= memory


def _is_point(f, memory):
    return not (f.free_symbols & memory)


def _factors(term, memory):
    """``(memory factors, point factors, mixed factors)`` of a product."""
    K, P, mixed = [], [], []
    for f in sp.Mul.make_args(term):
        (K if _is_memory(f, memory) else P if _is_point(f, memory) else mixed).append(f)
    return K, P, mixed


def _separate(term, memory):
    """``(memory part, point part)`` of a product, or ``None`` if a factor mixes both."""
    K, P, mixed = _factors(term, memory)
    return None if mixed else (sp.Mul(*K), sp.Mul(*P))


def split_coefficient(c, memory):
    """``c`` as a :class:`SplitCoefficient`, or ``None`` when it does not separate (a factor
    that mixes memory and point quantities other than one sum of separable terms)."""
    K, P, mixed = _factors(c, memory)
    K = sp.Mul(*K)
    if not mixed:
        return SplitCoefficient(sp.Mul(*P), ((sp.S.One, K),))
    if len(mixed) != 1 or not isinstance(mixed[0], sp.Add):
        return None
    groups = {}
    for term in sp.Add.make_args(expand(mixed[0])):
        parts = _separate(term, memory)
        if parts is None:
            return None
        groups.setdefault(parts[1], []).append(parts[0])
    terms = tuple((m, sp.factor(K * sp.Add(*a)))
                  for m, a in sorted(groups.items(), key=lambda t: sp.default_sort_key(t[0])))
    return SplitCoefficient(sp.Mul(*P), terms)

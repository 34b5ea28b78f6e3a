"""The regime table of Adam-type corrections, as computed limits of the derived flow.

For a stationary first correction of the form ``F1 = c(g) · (H·u(g))`` with leading term
``F0 = g / s(g)`` (Adam, RMSProp), the paper's correction is ``h s F1``, i.e.
``correction_j = K(g_j) · (H·u)_j`` with ``K = h s c``.  The table takes

* ε → 0 (``g_j ≠ 0``): ``K_0 = lim K`` and ``u → sign(g)``, so the correction is
  ``K_0 ∇‖∇E‖_1``: penalised when ``K_0 > 0``, anti-penalised when ``K_0 < 0``;
* ε → ∞: ``K_∞ = lim K`` and ``sqrt(ε) u → g``, so ``sqrt(ε) · correction → K_∞ H∇E =
  (K_∞/2) ∇‖∇E‖²_2``.

Every entry is a SymPy limit of the derived expression; the sign split ``ρ > β`` / ``β ≥ ρ``
is read off the factored ``K_0``.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .family import beta, eps, h, rho
from .operators import FULL, Grad, Hess, collect_fields

__all__ = ["RegimeTable", "regime_table"]


@dataclass
class RegimeTable:
    K: sp.Expr            # correction coefficient K(g)
    u: sp.Expr            # operator argument u(g)
    K_small: sp.Expr      # lim_{eps->0} K
    u_small: sp.Expr      # lim_{eps->0} u
    K_large: sp.Expr      # lim_{eps->oo} K
    u_large: sp.Expr      # lim_{eps->oo} sqrt(eps) u
    rows: list            # [(case, small-eps verdict, large-eps verdict)]

    def text(self):
        lines = [f"correction_j = K(g_j) (H.u)_j with K = {self.K}, u = {self.u}",
                 f"  eps -> 0  : K -> {self.K_small},  u -> {self.u_small}",
                 f"  eps -> oo : K -> {self.K_large},  sqrt(eps) u -> {self.u_large}",
                 "", f"{'':10s} | {'eps small':32s} | eps large"]
        for case, small, large in self.rows:
            lines.append(f"{case:10s} | {small:32s} | {large}")
        return "\n".join(lines)


def _single_operator(F1):
    F1 = collect_fields(F1)
    atoms = [a for a in F1.atoms(Hess)]
    if len(atoms) != 1 or atoms[0].args[0] != FULL:
        raise ValueError("regime table: F1 is not of the form c(g) (H.u)")
    a = atoms[0]
    c = sp.simplify(F1.coeff(a)) if F1.is_Add else sp.simplify(F1 / a)
    if c.has(Hess):
        raise ValueError("regime table: F1 is not linear in one operator")
    return c, a.args[1]


def _sign_cases(K0):
    """Sign of K0 in the two regions of (beta, rho), from its factored form."""
    num, den = sp.fraction(sp.factor(sp.together(K0)))
    out = {}
    for case, sample in (("rho > beta", {beta: sp.Rational(1, 2), rho: sp.Rational(9, 10)}),
                         ("beta > rho", {beta: sp.Rational(9, 10), rho: sp.Rational(1, 2)}),
                         ("beta = rho", {beta: sp.Rational(1, 2), rho: sp.Rational(1, 2)})):
        out[case] = sp.sign((num / den).subs(sample))
    zero_set = sp.solve(num, rho) if num.has(rho) else []
    return out, zero_set


def regime_table(flow):
    """Compute the table for a flow whose stationary ``F1`` is ``c(g) (H.u)`` with
    ``F0 = g/s``; raises ``ValueError`` otherwise.

    >>> from modeq.symbolic import derive, optimizers
    >>> table = regime_table(derive(optimizers.adam(), 1))
    >>> table.K_small
    h*(beta - rho)/((beta - 1)*(rho - 1))
    >>> table.rows[0]
    ('rho > beta', '-||grad E||_1 penalized (anti)', '||grad E||_2^2 penalized')
    """
    F0, F1 = flow.terms("full", stationary=True)[:2]
    g = Grad(FULL)
    c, u = _single_operator(F1)
    s = sp.simplify(g / F0)
    if s.has(Hess):
        raise ValueError("regime table: F0 is not of the form g/s(g)")
    x = sp.Symbol("g_j", real=True, nonzero=True)
    K = sp.simplify((h * s * c).subs(g, x))
    uu = sp.simplify(u.subs(g, x))
    K_small = sp.simplify(sp.limit(K, eps, 0, "+"))
    u_small = sp.simplify(sp.limit(uu, eps, 0, "+"))
    K_large = sp.simplify(sp.limit(K, eps, sp.oo))
    u_large = sp.simplify(sp.limit(sp.sqrt(eps) * uu, eps, sp.oo))
    signs, _ = _sign_cases(K_small)
    def verdict(sgn):
        return {1: "||grad E||_1 penalized", -1: "-||grad E||_1 penalized (anti)",
                0: "no first-order bias"}[int(sgn)]
    large = ("||grad E||_2^2 penalized" if sp.simplify(K_large).subs(
        {beta: sp.Rational(1, 2), h: 1}).is_positive else "||grad E||_2^2 anti-penalized")
    rows = [("rho > beta", verdict(signs["rho > beta"]), large),
            ("beta > rho", verdict(signs["beta > rho"]), large),
            ("beta = rho", verdict(signs["beta = rho"]), large)]
    return RegimeTable(K.subs(x, sp.Symbol("g")), uu.subs(x, sp.Symbol("g")), K_small,
                       u_small.subs(x, sp.Symbol("g")), K_large, u_large.subs(x, sp.Symbol("g")),
                       rows)

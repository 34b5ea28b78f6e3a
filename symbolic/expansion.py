"""Expansion passes: past iterates through the flow, states and the step as series in ``h``.

Convention (docs/conventions.md §3): the flow on ``[lh, (l+1)h)`` is ``d theta/dt = -F^(l)``.  With
``L_V q = Dq . V`` and Groebner's lemma, a quantity at a past iterate is, from the current point
``theta = theta(nh)``,

    q(theta^(k)) = exp(h L_{F^(n-1)}) ... exp(h L_{F^(k)}) q
                 = q + h sum_{l=k}^{n-1} L_{F0^(l)} q
                   + h^2 [ sum_l (L_{F1^(l)} + 1/2 L_{F0^(l)}^2) q
                           + sum_{k<=l<l'<=n-1} L_{F0^(l')} L_{F0^(l)} q ] + O(h^3).

A state ``s = sum_k w(n,k) phi(g_k, theta^(k))`` is then ``S0 + h S1 + h^2 S2``.  In the
stationary form (``n -> oo``, fields independent of ``l``) the lag ``j = n-k`` enters only
through the weight moments ``mu_m = sum_j w_j j^m``:
``S0 = mu0 phi``, ``S1 = mu1 L_{F0} phi``, ``S2 = mu1 L_{F1} phi + mu2/2 L_{F0}^2 phi``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .family import g, n
from .memory import closed_sum, simplify_sums
from .operators import FULL, Grad, collect_fields, lie, linearize

__all__ = ["StateSeries", "state_series", "step_series", "weight_moment", "MAX_ORDER"]

MAX_ORDER = 2


def _clean(e):
    return collect_fields(simplify_sums(linearize(e)))


def batch_of(step, batch):
    """The batch index of the loss used at ``step``: :data:`FULL` in full batch."""
    return FULL if batch == "full" else step


def weight_moment(state, m):
    """``mu_m = sum_{j>=0} w_j j^m`` for the stationary weights of ``state`` (closed form)."""
    j = sp.Dummy("j", integer=True, nonnegative=True)
    mu = closed_sum(state.stationary_weight(j) * j ** m, j, 0, sp.oo)
    if mu is None:
        raise ValueError(f"no closed form for the moment {m} of the weights of {state.name}")
    return sp.factor(mu)


@dataclass
class StateSeries:
    """``S0 + h S1 + h^2 S2`` for one EMA state, with the unsimplified memory sums kept for the
    derivation documents."""
    state: object
    terms: list = field(default_factory=list)
    raw: list = field(default_factory=list)


def state_series(state, F, order, batch="full", stationary=False):
    """Series of ``state`` through ``h^order`` given the already-solved ``F = [F0, ...]``
    (component expressions in ``n``; ``len(F) >= order``)."""
    if stationary:
        phi = state.of.xreplace({g: Grad(FULL)})
        mus = [weight_moment(state, m) for m in range(order + 1)]
        raw = [mus[0] * phi]
        if order >= 1:
            raw.append(mus[1] * lie(phi, F[0]))
        if order >= 2:
            raw.append(mus[1] * lie(phi, F[1]) + mus[2] / 2 * lie(lie(phi, F[0]), F[0]))
        return StateSeries(state, [collect_fields(linearize(r)) for r in raw], raw)
    k = sp.Dummy("k", integer=True, nonnegative=True)
    l1 = sp.Dummy("l", integer=True, nonnegative=True)
    l2 = sp.Dummy("l'", integer=True, nonnegative=True)
    w = state.weight(n, k)
    phi = state.of.xreplace({g: Grad(batch_of(k, batch))})
    F0 = [f.xreplace({n: l1}) for f in F]
    F0b = [f.xreplace({n: l2}) for f in F]
    raw = [sp.Sum(w * phi, (k, 0, n))]
    if order >= 1:
        raw.append(sp.Sum(w * sp.Sum(lie(phi, F0[0]), (l1, k, n - 1)), (k, 0, n)))
    if order >= 2:
        inner = sp.Sum(lie(phi, F0[1]) + lie(lie(phi, F0[0]), F0[0]) / 2, (l1, k, n - 1)) \
            + sp.Sum(sp.Sum(lie(lie(phi, F0[0]), F0b[0]), (l2, l1 + 1, n - 1)), (l1, k, n - 1))
        raw.append(sp.Sum(w * inner, (k, 0, n)))
    return StateSeries(state, [_clean(r) for r in raw], raw)


def step_series(optimizer, series, order, batch="full"):
    """``psi = psi0 + h psi1 + h^2 psi2`` for the step with its states replaced by series."""
    psi = optimizer.step.xreplace({g: Grad(batch_of(n, batch))})
    states = [s.state for s in series]
    at0 = {s.state: s.terms[0] for s in series}
    d1 = {s: sp.diff(psi, s).xreplace(at0) for s in states}
    out = [psi.xreplace(at0)]
    if order >= 1:
        out.append(sp.Add(*[d1[s.state] * s.terms[1] for s in series]))
    if order >= 2:
        t = sp.Add(*[d1[s.state] * s.terms[2] for s in series])
        for a in series:
            for b in series:
                t += sp.diff(psi, a.state, b.state).xreplace(at0) * a.terms[1] * b.terms[1] / 2
        out.append(t)
    return [_clean(o) for o in out]

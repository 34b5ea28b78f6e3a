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

States that read earlier states (docs/conventions.md §2.3): the input of step ``k`` is then a
series itself, ``Phi(k) = phi(g, theta, s_e^(k+1)) = Phi0(k) + h Phi1(k) + h^2 Phi2(k)`` at the
point ``theta(kh)``, with ``s_e^(k+1)`` the series of the earlier state after step ``k`` (its
``n`` set to ``k``); transporting it to the current point adds ``h Phi1 + h^2 (Phi2 +
sum_l L_{F0^(l)} Phi1)`` to the terms above.  A state that starts at its first input (torch's
momentum buffer) has the extra weight ``(1 - c) d^n`` on step 0 (zero in the stationary form).
Step-index-dependent coefficients of the step (NAdam's schedule) go to their ``n -> oo``
limits in the stationary form (:func:`stationary_step`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import sympy as sp

from . import dag
from .family import Refused, g, n
from .memory import closed_sum, simplify_sums
from .operators import FULL, Grad, collect_fields, lie, linearize

__all__ = ["StateSeries", "state_series", "step_series", "weight_moment", "MAX_ORDER",
           "stationary_step", "compose", "require_smooth"]

MAX_ORDER = 2


@lru_cache(maxsize=1024)
def _clean(e):
    return collect_fields(simplify_sums(linearize(e)))


def batch_of(step, batch):
    """The batch index of the loss used at ``step``: :data:`FULL` in full batch."""
    return FULL if batch == "full" else step


_MOMENT_INDEX = sp.Dummy("j", integer=True, nonnegative=True)


def weight_moment(state, m):
    """``mu_m = sum_{j>=0} w_j j^m`` for the stationary weights of ``state`` (closed form)."""
    j = _MOMENT_INDEX    # one summation index, so that closed_sum's cache serves every call
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
    stationary: bool = False


def compose(expr, series, order):
    """``[c0, ..., c_order]``: the ``h``-series of ``expr`` with every state symbol ``s`` of the
    mapping ``series`` (``s -> [S0, S1, ...]``) replaced by ``S0 + h S1 + h^2 S2`` (Taylor)."""
    at0 = {s: t[0] for s, t in series.items()}
    out = [expr.xreplace(at0)]
    if order >= 1:
        d1 = {s: sp.diff(expr, s).xreplace(at0) for s in series}
        out.append(sp.Add(*[d1[s] * t[1] for s, t in series.items()]))
    if order >= 2:
        t2 = sp.Add(*[d1[s] * t[2] for s, t in series.items()])
        for a, ta in series.items():
            for b, tb in series.items():
                t2 += sp.diff(expr, a, b).xreplace(at0) * ta[1] * tb[1] / 2
        out.append(t2)
    for c in out:
        if c.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            raise Refused(f"the expression {expr} is not smooth at the states' limiting values "
                          f"{at0} (a derivative is infinite there, e.g. the square root of a "
                          f"variance that vanishes for a constant gradient): no modified flow "
                          f"of this form")
    return out


def require_smooth(optimizer, series, order):
    """:class:`~.family.Refused` where :func:`compose` refuses: the inputs of the states that
    read states, and the step, composed with the ``series`` (state -> ``[S0, S1, ...]``,
    stationary: the step's coefficients at ``n -> oo``) through ``h^order``."""
    for state in optimizer.states:
        if state.reads:
            compose(state.of.xreplace({g: Grad(FULL)}), {e: series[e] for e in state.reads},
                    order)
    compose(stationary_step(optimizer.step.xreplace({g: Grad(FULL)})), series, order)


_SERIES = {}


def _earlier(state, F, order, batch, stationary):
    """The series of the states ``state`` reads (computed once per variant)."""
    out = {}
    for e in state.reads:
        key = (e, tuple(F), order, batch, stationary)
        if key not in _SERIES:
            if len(_SERIES) > 256:
                _SERIES.clear()
            _SERIES[key] = state_series(e, F, order, batch, stationary)
        out[e] = _SERIES[key].terms
    return out


def state_series(state, F, order, batch="full", stationary=False):
    """Series of ``state`` through ``h^order`` given the already-solved ``F = [F0, ...]``
    (component expressions in ``n``; ``len(F) >= order``)."""
    earlier = _earlier(state, F, order, batch, stationary)
    if stationary:
        of = state.of.xreplace({g: Grad(FULL)})
        Phi = compose(of, earlier, order) if earlier else [of] + [sp.S.Zero] * order
        mus = [weight_moment(state, m) for m in range(order + 1)]
        raw = [mus[0] * Phi[0]]
        if order >= 1:
            raw.append(mus[0] * Phi[1] + mus[1] * lie(Phi[0], F[0]))
        if order >= 2:
            raw.append(mus[0] * Phi[2] + mus[1] * (lie(Phi[1], F[0]) + lie(Phi[0], F[1]))
                       + mus[2] / 2 * lie(lie(Phi[0], F[0]), F[0]))
        return StateSeries(state, [collect_fields(linearize(r)) for r in raw], raw, True)
    raw = [_raw_term(state, t, F, earlier, batch) for t in range(order + 1)]
    return StateSeries(state, [_clean(r) for r in raw], raw)


_INDICES = {}


def _indices(state, t):
    """The summation indices ``(k, l, l')`` of the ``h^t`` term of ``state``'s series.  Fixed
    per state and term, so that the term met again (every order re-derives the lower ones) is
    the same expression, simplified once (:func:`_clean`'s cache); distinct per state and
    term, so that a term of ``F``, which carries the indices of lower terms bound in its sums,
    never meets its own indices inside another term's sums."""
    if (state, t) not in _INDICES:
        _INDICES[state, t] = (sp.Dummy("k", integer=True, nonnegative=True),
                              sp.Dummy("l", integer=True, nonnegative=True),
                              sp.Dummy("l'", integer=True, nonnegative=True))
    return _INDICES[state, t]


def _raw_term(state, t, F, earlier, batch):
    """The ``h^t`` term of ``state`` after step ``n``, its memory sums unevaluated:
    ``sum_k w(n, k) I_t(k)`` with ``I_t`` the ``h^t`` term of the input of step ``k``
    carried to step ``n`` by the flow (the past iterates' expansion, docs/conventions.md)."""
    k, l1, l2 = _indices(state, t)
    of = state.of.xreplace({g: Grad(batch_of(k, batch))})
    if earlier:
        at_k = {e: [dag.xreplace(s, {n: k}) for s in ts] for e, ts in earlier.items()}
        Phi = compose(of, at_k, t)
    else:
        Phi = [of] + [sp.S.Zero] * t
    F0 = [dag.xreplace(f, {n: l1}) for f in F]
    if t == 0:
        inner = Phi[0]
    elif t == 1:
        inner = Phi[1] + sp.Sum(lie(Phi[0], F0[0]), (l1, k, n - 1))
    else:
        F0b = [dag.xreplace(f, {n: l2}) for f in F]
        inner = (Phi[2] + sp.Sum(lie(Phi[1], F0[0]) + lie(Phi[0], F0[1])
                                 + lie(lie(Phi[0], F0[0]), F0[0]) / 2, (l1, k, n - 1))
                 + sp.Sum(sp.Sum(lie(lie(Phi[0], F0[0]), F0b[0]), (l2, l1 + 1, n - 1)),
                          (l1, k, n - 1)))
    w = state.weight(n, k)
    # decay 0 keeps only the current input: SymPy's summation drops 0**(n - k) at k = n.
    r = dag.xreplace(w * inner, {k: n}).doit() if state.decay == 0 else sp.Sum(w * inner, (k, 0, n))
    extra = state.first_weight_extra(n)
    if extra != 0:
        r = r + extra * dag.xreplace(inner, {k: sp.S.Zero})
    return r


def stationary_step(expr):
    """The ``n -> oo`` limit of a step's step-index-dependent coefficients: powers ``d^(a n + b)``
    (``a > 0``) of numbers or decays in ``[0, 1)`` and products ``prod_{i<=n+c} f(i)`` whose
    factors tend to a value in ``[0, 1)`` go to 0; anything else in ``n`` is an error."""
    expr = sp.sympify(expr)
    if n not in expr.free_symbols:
        return expr

    def below_one(x):
        x = sp.sympify(x)
        if x.is_number:
            return bool(0 <= x < 1)
        from .family import RANGES
        if x.is_Symbol and str(x) in RANGES and RANGES[str(x)][1] == 1 \
                and not RANGES[str(x)][3]:
            return True
        if x.is_Mul:
            return all(below_one(a) or (a.is_number and 0 <= a <= 1) for a in x.args)
        return False

    def decays(e, var):
        if isinstance(e, sp.Pow) and var in e.exp.free_symbols and var not in e.base.free_symbols:
            a = sp.diff(e.exp, var)
            return a.is_positive and below_one(e.base)
        return False

    def vanish_powers(e, var):
        return e.replace(lambda x: decays(x, var), lambda x: sp.S.Zero)

    def product_limit(p):
        (i, lo, hi) = p.limits[0]
        if len(p.limits) != 1 or n not in hi.free_symbols or sp.diff(hi, n) != 1:
            raise ValueError(f"no stationary limit for the product {p}")
        lim = sp.simplify(vanish_powers(p.function, i))
        if i in lim.free_symbols or not below_one(sp.expand(lim)) and not below_one(lim):
            raise ValueError(f"no stationary limit for the product {p}: its factors tend to "
                             f"{lim}, not to a value in [0, 1)")
        return sp.S.Zero

    out = expr.replace(lambda x: isinstance(x, sp.Product) and n in x.free_symbols,
                       product_limit)
    out = vanish_powers(sp.expand_power_exp(out), n)
    if n in out.free_symbols:
        raise ValueError(f"no stationary (n -> oo) limit of the step's coefficients in {expr}")
    return sp.simplify(out) if out != expr else out


def step_series(optimizer, series, order, batch="full"):
    """``psi = psi0 + h psi1 + h^2 psi2`` for the step with its states replaced by series."""
    psi = optimizer.step.xreplace({g: Grad(batch_of(n, batch))})
    if any(s.stationary for s in series):
        psi = stationary_step(psi)
    out = compose(psi, {s.state: s.terms for s in series}, order)
    return [_clean(o) for o in out]

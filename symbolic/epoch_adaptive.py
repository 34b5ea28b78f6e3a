"""Epoch flows of adaptive steps (Adam, RMSProp) under random reshuffling: an expansion in the
spread of the batches (see :mod:`epoch` for the definitions, :mod:`epoch_memory` for steps
linear in the states).

Class covered.  States that are EMAs of a componentwise function of the gradient,
``s_i <- d_i s_i + c_i f_i(g)`` (no ``theta``, no state reading another), and a step
``psi(g, s_1, .., s_k)`` nonlinear in them: Adam (eps inside or outside the root, with or
without bias correction: stationary, the corrections are 1), RMSProp, user declarations of that
shape.  In the stationary regime at a frozen point the states of a step at position ``p`` of its
epoch are kernels over the batches of past steps, whose order is random:

    s_i = sum_{j>=0} w_i(j) f_i(g_{b_{n-j}}),    w_i(j) = c_i d_i^j,

and the current gradient is a channel of its own (``w(j) = [j = 0]``, ``f = g``).  Every step
of an epoch sees a uniformly random batch at every lag, so ``E s_i = kappa_i fbar_i`` exactly
(``kappa_i = sum_j w_i(j)``, ``fbar_i = (1/m) sum_b f_i(g_b)``).  The fluctuations
``s_i - E s_i = sum_j w_i(j) phi_i(b_{n-j})``, ``phi_i(b) = f_i(g_b) - fbar_i``, are sums of the
centred batch inputs with order-dependent weights; their covariance is exact: for two lags the
pair of batches is the same batch (same step), two distinct uniform batches (same epoch,
``E phi_i(a) phi_k(c) = -Sigma_ik / (m - 1)``) or independent (different epochs, 0), so

    Cov(s_i, s_k) = Sigma_ik [m P_ik - sum_e W_i(e) W_k(e)] / (m - 1),
    Sigma_ik = (1/m) sum_b f_i(g_b) f_k(g_b) - fbar_i fbar_k,

``P_ik = sum_j w_i(j) w_k(j)``, ``W_i(e)`` the total weight of epoch ``e`` (the current one holds
lags ``0..p``, epoch ``E`` back lags ``p+1+(E-1)m .. p+Em``): geometric sums in closed form,
averaged over the ``m`` positions ``p``.

What is derived.  ``F0`` is the mean over the orders of the step at the frozen point, expanded
to second order in the fluctuations (the *delta method*):

    F0 = psi(sbar) + (1/2) sum_{i,k} d_i d_k psi(sbar) Cov(s_i, s_k) + O(spread^3),

exact in ``h`` at this order, with the spread ``|g_b - gbar|`` the expansion's small parameter:
the dropped terms are the third and higher central moments of the states.  ``F1`` (order 1) is
the noise-free part, the stationary full-batch ``F1`` of the mean loss ``C = (1/m) sum_b E_b``;
its ``O(spread^2)`` part (the batch noise acting on the memory correction, the effect Cattaneo
& Shigida (arXiv:2602.01642, 2026) study through the mean over the orders of their correction
term ``Corr_n``; the comparison of settings is in docs/conventions.md §3.4) is not derived.
The linear part of the fluctuations telescopes over complete epochs (the centred inputs sum to
zero), so the iterate's spread over the orders stays ``O(h spread)``; its
quadratic part random-walks at ``O(h spread^2)`` per epoch, whose effect on the mean is
``O(h spread^4)`` on a fixed horizon.  Hence the order-``r`` flow tracks the mean iterate over
the orders up to

    O(h^(r+1)) + O(spread^3) + [r >= 1] O(h spread^2)

(tests/test_epoch_adaptive.py measures both limits).  With all batches equal the result is the
stationary full-batch flow exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .epoch_memory import outside_state_family
from .family import g
from .operators import D3, FULL, Grad, Hess, collect_fields, factored, linearize
from .pipeline import derivation

__all__ = ["adaptive_terms", "channels", "covariance_coefficient", "spread_expansion",
           "SpreadExpansion", "MAX_ADAPTIVE_ORDER",
           "EXPANSION_NOTE"]

MAX_ADAPTIVE_ORDER = 1

EXPANSION_NOTE = ("expansion in the batch spread: F0 exact through the second central moments "
                  "of the order-dependent states (O(spread^3) dropped); F1 the noise-free part, "
                  "the stationary full-batch F1 of the mean loss C (O(h spread^2) not derived)")


def channels(optimizer):
    """``[(symbol, (a0, [(c, d)]), f)]``: the step's inputs with their stationary kernels
    ``w(j) = a0 [j = 0] + sum c d^j`` and their componentwise inputs ``f(g)``; the current
    gradient (if the step reads it) is the channel ``(g, (1, []), g)``.
    ``NotImplementedError`` naming what is outside the class."""
    why = outside_state_family(optimizer)
    if why is not None:
        raise NotImplementedError(
            f"epoch flow of {optimizer.name!r} under reshuffling: {why}. Covered: memoryless "
            f"steps, steps linear in g and the states, and adaptive steps psi(g, states) whose "
            f"states are EMAs of functions of g (Adam, RMSProp)")
    out = [(g, (sp.S.One, []), g)] if optimizer.step.has(g) else []
    for s in optimizer.states:
        out.append((s, (sp.S.Zero, [(s.scale, s.decay)]), s.of))
    return out


def _epoch_weight(kernel, p):
    """``W(0)``: the kernel's weight on the current epoch, lags ``0..p``."""
    a0, parts = kernel
    return a0 + sp.Add(*[c * (1 - d ** (p + 1)) / (1 - d) for c, d in parts])


def covariance_coefficient(ki, kk, m):
    """``C_ik`` with ``Cov(s_i, s_k) = C_ik Sigma_ik`` averaged over the ``m`` positions of an
    epoch (module docstring): ``(1/m) sum_p [m P_ik - sum_e W_i(e) W_k(e)] / (m - 1)``."""
    (a, pi), (b, pk) = ki, kk
    P = a * b + a * sp.Add(*[c for c, _ in pk]) + b * sp.Add(*[c for c, _ in pi]) \
        + sp.Add(*[c * c2 / (1 - d * d2) for c, d in pi for c2, d2 in pk])
    total = sp.S.Zero
    for p in range(m):
        past = sp.Add(*[c * c2 * (1 - d ** m) * (1 - d2 ** m) / ((1 - d) * (1 - d2))
                        * (d * d2) ** (p + 1) / (1 - (d * d2) ** m)
                        for c, d in pi for c2, d2 in pk])
        total += m * P - _epoch_weight(ki, p) * _epoch_weight(kk, p) - past
    return factored(total / (m * (m - 1)))


@dataclass
class SpreadExpansion:
    """The parts of ``F0 = psi(sbar) + (1/2) sum_{i,k} psi_ik(sbar) C_ik Sigma_ik`` (module
    docstring): ``channels`` the step's inputs (``g`` and the states, as symbols), ``means[x]``
    their stationary means ``sbar`` in the batches' gradients (``kappa[x] * mean_b inputs[x]``
    with ``inputs[x]`` a function of ``g``), ``pairs`` the pairs ``i <= k`` in channel order
    ``(x_i, x_k, psi_ik, C_ik, Sigma_ik)`` with a nonzero second derivative of the step (an
    off-diagonal pair stands for both orders: weight 1 in ``F0``, a diagonal one 1/2)."""
    step: sp.Expr
    channels: list
    means: dict
    pairs: list
    kappa: dict
    inputs: dict

    def F0(self):
        out = self.step.xreplace(self.means)
        for xi, xk, d2, c, sigma in self.pairs:
            weight = sp.Rational(1, 2) if xi == xk else sp.S.One
            out += weight * d2.xreplace(self.means) * c * sigma
        return out


def spread_expansion(optimizer, m):
    """The :class:`SpreadExpansion` of the reshuffled epoch drift of ``optimizer`` with ``m``
    batches (batch ``b``'s gradient ``Grad(b)``)."""
    chans = channels(optimizer)
    mean = lambda f: sp.Add(*[f.xreplace({g: Grad(b)}) for b in range(m)]) / m  # noqa: E731
    fbar = [mean(f) for _, _, f in chans]
    kappa = [sp.cancel(a0 + sp.Add(*[c / (1 - d) for c, d in parts]))
             for _, (a0, parts), _ in chans]
    means = {x: k * fb for (x, _, _), k, fb in zip(chans, kappa, fbar)}
    step = optimizer.step
    equal = {x: k * f for (x, _, f), k in zip(chans, kappa)}
    pairs = []
    for i, (xi, ki, fi) in enumerate(chans):
        for k, (xk, kk, fk) in enumerate(chans[i:], start=i):
            d2 = sp.diff(step, xi, xk)
            if d2 == 0:
                continue
            if d2.xreplace(equal).has(sp.zoo, sp.nan, sp.oo):
                raise NotImplementedError(
                    f"epoch flow of {optimizer.name!r} under reshuffling: the step's second "
                    f"derivative in ({xi}, {xk}) is singular at the mean states of equal "
                    f"batches (e.g. centered RMSprop's v - a^2 is the batch variance itself), "
                    f"so the step has no expansion in the spread of the batches")
            sigma = mean(fi * fk) - fbar[i] * fbar[k]
            pairs.append((xi, xk, d2, covariance_coefficient(ki, kk, m), sigma))
    return SpreadExpansion(step, [x for x, _, _ in chans], means, pairs,
                           {x: k for (x, _, _), k in zip(chans, kappa)},
                           {x: f for x, _, f in chans})


def _on_mean_loss(e, m):
    """A full-batch component expression of the loss ``E`` read for the mean loss
    ``C = (1/m) sum_b E_b``: ``g -> gbar``, ``H.u -> (1/m) sum_b H_b.u``, likewise ``T``."""
    if isinstance(e, Grad) and e.args[0] == FULL:
        return sp.Add(*[Grad(b) for b in range(m)]) / m
    if isinstance(e, (Hess, D3)) and e.args[0] == FULL:
        rest = [_on_mean_loss(a, m) for a in e.args[1:]]
        return sp.Add(*[type(e)(b, *rest) for b in range(m)]) / m
    if not e.args:
        return e
    return e.func(*[_on_mean_loss(a, m) for a in e.args])


def adaptive_terms(optimizer, m, order):
    """``[F0, .., F_order]`` of the reshuffled epoch flow of an adaptive step (module
    docstring), in the component algebra with batch ``b`` written ``Grad(b)``, ``Hess(b, u)``."""
    if order > MAX_ADAPTIVE_ORDER:
        raise NotImplementedError(
            f"epoch flows of adaptive steps are derived to order {MAX_ADAPTIVE_ORDER}; got "
            f"order {order}")
    terms = [linearize(spread_expansion(optimizer, m).F0())]
    if order >= 1:
        F1 = derivation(optimizer, 1, "full", stationary=True).F[1]
        terms.append(collect_fields(linearize(_on_mean_loss(F1, m))))
    return terms

"""Recognize derived flows as published closed forms — only after proving equality.

A :class:`Recognition` carries the closed form, the name of its source, and the checks that
ran (:func:`~modeq.symbolic.prove.prove_equal`): the difference between the derived term and
the closed form simplified to exactly ``0`` in the dimension-free component algebra (operators
as opaque symbols; a proof for every dimension) and, independently, both lowered to generic
components ``g_i, H_ij`` for ``p = 1..4`` and compared in exact arithmetic at random rational
points (``components="prove"``: each ``p`` proved exactly too).  Nothing is presented in a
published form whose proof failed.  Results are cached on disk (:mod:`.cache`).

Published forms (docs/conventions.md §4), written here as *references*, never fed to the
derivation:

* Adam, ε inside (Cattaneo, Klusowski, Shigida 2024): ``h F1 = correction / sqrt(g^2+eps)``,
  ``correction_j = (h/2){(1+β)/(1-β) - (1+ρ)/(1-ρ) + (1+ρ)/(1-ρ) ε/(g_j²+ε)} ∂_j‖∇E‖_{1,ε}``,
  ``∂_j‖∇E‖_{1,ε} = (H·(g/sqrt(g²+ε)))_j``; exact in ``n`` with the memory moments ``b_n, r_n``.
* RMSProp: the same with ``β = 0``.
* GD (Barrett & Dherin 2021): ``F1 = (1/2) H g = ∇(‖∇E‖²/4)``; to ``h²`` (Hairer–Lubich–Wanner,
  ch. IX): ``F2 = (1/12) T[g,g] + (1/3) H² g``.
* Heavy-ball, stationary: ``F0 = g/(1-β)``, ``F1 = (1+β)/(2(1-β)³) H g``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from . import cache
from .family import beta, eps, g as g_sym, n, rho
from .operators import FULL, Grad, Hess, D3
from .prove import is_zero_linear, prove_equal

__all__ = ["Recognition", "recognize", "prove_equal", "is_zero_linear", "adam_reference_F1",
           "memory_moment", "one_norm_gradient"]


@dataclass
class Recognition:
    """A derived term shown equal to a published closed form."""
    name: str
    source: str
    term: str                # which term: "F1", "F2", "F"
    closed_form: sp.Expr     # component algebra
    display: str             # the published form, as text
    checks: list = field(default_factory=list)   # (description, passed)

    @property
    def proved(self):
        return bool(self.checks) and all(ok for _, ok in self.checks)


def one_norm_gradient(eps_symbol=eps):
    """``∂_j ‖∇E‖_{1,ε} = (H·(g/sqrt(g²+ε)))_j`` as a component expression."""
    g = Grad(FULL)
    return Hess(FULL, g / sp.sqrt(g ** 2 + eps_symbol))


def memory_moment(decay, bias_correction=True, stationary=False):
    """``b_n = sum_{k=0}^n w(n,k) (n-k)`` for normalised weights, by the textbook closed form
    ``sum_{j=0}^n (1-d) d^j j = d (1 - (n+1) d^n + n d^(n+1)) / (1-d)``; ``b_oo = d/(1-d)``."""
    if stationary:
        return decay / (1 - decay)
    s = decay * (1 - (n + 1) * decay ** n + n * decay ** (n + 1)) / (1 - decay)
    return s / (1 - decay ** (n + 1)) if bias_correction else s


def adam_reference_F1(beta_value=beta, stationary=True):
    """``F1`` of Adam (ε inside, bias-corrected) from the published correction:
    stationary: ``correction/(h s)``; exact in ``n``:
    ``(H F0)/s [b_n - r_n g²/s² + ε/(2 s²)]`` (docs/conventions.md §3)."""
    g = Grad(FULL)
    s2 = g ** 2 + eps
    if stationary:
        bracket = ((1 + beta_value) / (1 - beta_value) - (1 + rho) / (1 - rho)
                   + (1 + rho) / (1 - rho) * eps / s2)
        return bracket / 2 * one_norm_gradient() / sp.sqrt(s2)
    b = memory_moment(beta_value) if beta_value != 0 else 0
    r = memory_moment(rho)
    return one_norm_gradient() / sp.sqrt(s2) * (b - r * g ** 2 / s2 + eps / (2 * s2))


_PAPER = ("correction_j = (h/2){(1+β)/(1-β) - (1+ρ)/(1-ρ) + (1+ρ)/(1-ρ)·ε/(g_j²+ε)} "
          "∂_j‖∇E‖_{1,ε},  dθ/dt = -(∇E + correction)/sqrt(∇E² + ε)")


def _candidates(flow, stationary):
    """(name, source, term index, reference) for the published forms that may apply."""
    opt = flow.optimizer
    names = {s.name for s in opt.states}
    g = Grad(FULL)
    out = []
    if not opt.states and opt.step == g_sym:
        out.append(("gradient descent: implicit gradient regularization", "Barrett & Dherin, ICLR 2021",
                    1, Hess(FULL, g) / 2, "F1 = (1/2) H∇E = ∇(‖∇E‖²/4)"))
        out.append(("gradient descent: explicit Euler's modified equation to h²",
                    "Hairer, Lubich, Wanner, Geometric Numerical Integration, ch. IX",
                    2, D3(FULL, g, g) / 12 + Hess(FULL, Hess(FULL, g)) / 3,
                    "F2 = (1/12) ∇³E[∇E,∇E] + (1/3) (∇²E)²∇E"))
    if names == {"u"} and stationary:
        out.append(("heavy-ball momentum (stationary)", "docs/conventions.md §4", 1,
                    (1 + beta) / (2 * (1 - beta) ** 3) * Hess(FULL, g),
                    "F = g/(1-β) + h (1+β)/(2(1-β)³) H g"))
    if names == {"m", "v"} and all(s.bias_correction for s in opt.states):
        out.append(("Adam's implicit bias (ε inside)",
                    "Cattaneo, Klusowski, Shigida, ICML 2024", 1,
                    adam_reference_F1(beta, stationary), _PAPER))
    if names == {"v"} and all(s.bias_correction for s in opt.states):
        out.append(("RMSProp = Adam with β = 0", "Cattaneo, Klusowski, Shigida, ICML 2024", 1,
                    adam_reference_F1(sp.S.Zero, stationary), _PAPER.replace("(1+β)/(1-β)", "1")))
    return out


def recognize(flow, stationary=True, dims=(1, 2, 3, 4), components="fast"):
    """Published closed forms that the derived full-batch flow provably equals
    (``components``: see :func:`~modeq.symbolic.prove.prove_equal`).

    >>> from modeq.symbolic import derive, optimizers
    >>> from modeq.symbolic.recognize import recognize
    >>> [(r.term, r.proved) for r in recognize(derive(optimizers.gd(), 1), dims=(1,))]
    [('F1', True)]
    """
    dims = tuple(int(p) for p in dims)
    return cache.cached("recognize", flow.optimizer,
                        lambda: _recognize(flow, stationary, dims, components),
                        order=flow.order, stationary=bool(stationary), dims=dims,
                        components=components)


def _recognize(flow, stationary, dims, components):
    candidates = _candidates(flow, stationary)
    if not candidates:
        return []
    terms = flow.terms("full", stationary)
    found = []
    for name, source, r, ref, display in candidates:
        if r >= len(terms):
            continue
        checks = prove_equal(terms[r], ref, dims, components)
        if all(ok for _, ok in checks):
            found.append(Recognition(name, source, f"F{r}", ref, display, checks))
    return found

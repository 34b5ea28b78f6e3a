"""Built-in optimizers, each a short declaration in the EMA family (``family.py``).

Hyperparameters are the SymPy symbols ``beta`` (gradient momentum), ``rho`` (squared-gradient
momentum) and ``eps`` from :mod:`modeq.symbolic.family`; the step size ``h`` multiplies the step.
"""
from __future__ import annotations

import sympy as sp

from .family import EMA, Optimizer, beta, eps, g, rho

__all__ = ["gd", "sgd", "heavy_ball", "rmsprop", "adam", "BUILTINS", "get"]

EPS_PLACEMENTS = ("inside", "outside")

_OUTSIDE_NOTE = ("epsilon outside the square root (torch.optim.Adam): the step "
                 "m/(sqrt(v)+eps) is smooth only where no gradient component vanishes, so the "
                 "modified flow is valid only away from g_j = 0")


def _eps_step(numerator, v, placement):
    if placement not in EPS_PLACEMENTS:
        raise ValueError(f"eps_placement must be one of {EPS_PLACEMENTS}, got {placement!r}")
    if placement == "inside":
        return numerator / sp.sqrt(v + eps)
    return numerator / (sp.sqrt(v) + eps)


def gd():
    """Gradient descent ``theta <- theta - h g`` (SGD when each step has its own loss)."""
    return Optimizer("gd", states=[], step=g)


def sgd():
    """Stochastic gradient descent: the same declaration as :func:`gd`, used with mini batches."""
    return Optimizer("sgd", states=[], step=g)


def heavy_ball():
    """Heavy-ball momentum ``u <- beta u + g``, ``theta <- theta - h u`` (unnormalised, u = 0)."""
    u = EMA("u", decay=beta, of=g, normalized=False, bias_correction=False)
    return Optimizer("heavy_ball", states=[u], step=u)


def rmsprop(eps_placement="inside", bias_correction=True):
    """RMSProp: Adam with ``beta = 0``: ``v <- rho v + (1-rho) g^2``, step ``g/sqrt(v_hat+eps)``."""
    v = EMA("v", decay=rho, of=g**2, normalized=True, bias_correction=bias_correction)
    notes = _OUTSIDE_NOTE if eps_placement == "outside" else ""
    return Optimizer("rmsprop", states=[v], step=_eps_step(g, v, eps_placement), notes=notes)


def adam(eps_placement="inside", bias_correction=True):
    """Adam.  ``eps_placement="inside"``: the paper's step ``m_hat/sqrt(v_hat + eps)``
    (Cattaneo, Klusowski, Shigida 2024).  ``"outside"``: torch.optim.Adam's
    ``m_hat/(sqrt(v_hat) + eps)``, whose modified flow is smooth, hence valid, only where no
    gradient component is zero."""
    m = EMA("m", decay=beta, of=g, normalized=True, bias_correction=bias_correction)
    v = EMA("v", decay=rho, of=g**2, normalized=True, bias_correction=bias_correction)
    notes = _OUTSIDE_NOTE if eps_placement == "outside" else ""
    name = "adam" if eps_placement == "inside" else "adam_eps_outside"
    if not bias_correction:
        name += "_no_bias_correction"
    return Optimizer(name, states=[m, v], step=_eps_step(m, v, eps_placement), notes=notes)


BUILTINS = {"gd": gd, "sgd": sgd, "heavy_ball": heavy_ball, "rmsprop": rmsprop, "adam": adam}


def get(name, eps_placement="inside", bias_correction=True):
    """A built-in by name (the names every ``modeq`` subcommand takes)."""
    key = name.replace("-", "_")
    if key not in BUILTINS:
        raise ValueError(f"unknown optimizer {name!r}; built-ins: {sorted(BUILTINS)}")
    if key in ("adam", "rmsprop"):
        return BUILTINS[key](eps_placement=eps_placement, bias_correction=bias_correction)
    return BUILTINS[key]()

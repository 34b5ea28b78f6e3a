"""The derivation chain: declaration -> memory -> expansion -> matching -> ``F0, F1, F2``.

:func:`derive` returns a :class:`~modeq.symbolic.flow.ModifiedFlow`; the work is done lazily, once
per variant (full batch exact in ``n``, full batch stationary, mini batch), by
:func:`derivation`, which keeps every intermediate result for the derivation documents.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .expansion import MAX_ORDER, state_series, step_series
from .family import Optimizer
from .solve import flow_step_coefficients, solve_next

__all__ = ["derive", "derivation", "Derivation", "ModifiedFlow"]


@dataclass
class Derivation:
    """All intermediate results of one derivation (component algebra, symbol ``n``).

    ``states[i].raw[r]`` / ``.terms[r]``: the ``h^r`` term of state ``i`` before / after the
    memory sums are evaluated; ``psi[r]``: the ``h^r`` term of the step; ``flow_step[p]``: the
    ``h^p`` coefficient of the flow's own step (with the solved ``F``); ``F[r]``: the solution.
    """
    optimizer: Optimizer
    order: int
    batch: str
    stationary: bool
    states: list = field(default_factory=list)
    psi: list = field(default_factory=list)
    F: list = field(default_factory=list)
    flow_step: dict = field(default_factory=dict)


_CACHE = {}


def derivation(optimizer, order, batch="full", stationary=False):
    """Derive ``F_0..F_order`` for one variant (cached per optimizer object and variant)."""
    if batch not in ("full", "mini"):
        raise ValueError(f"batch must be 'full' or 'mini', got {batch!r}")
    if batch == "mini" and stationary:
        raise ValueError("a stationary (n -> oo) flow is defined for full batch only")
    if batch == "mini" and order > 1 and optimizer.states:
        raise NotImplementedError(
            "mini-batch flows with memory are derived to order 1; at order 2 the memory sums "
            "of the h^2 term run over pairs of past batches with no closed form (use full batch "
            "or order=1)")
    key = (id(optimizer), order, batch, stationary)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is optimizer:
        return hit[1]
    lower = None
    for r in range(order - 1, -1, -1):
        k2 = (id(optimizer), r, batch, stationary)
        if k2 in _CACHE and _CACHE[k2][0] is optimizer:
            lower = _CACHE[k2][1]
            break
    d = Derivation(optimizer, order, batch, stationary)
    start = 0
    if lower is not None:
        d.F = list(lower.F)
        d.psi = list(lower.psi)
        start = lower.order + 1
    for r in range(start, order + 1):
        d.states = [state_series(s, d.F, r, batch, stationary) for s in optimizer.states]
        d.psi = step_series(optimizer, d.states, r, batch)
        d.F.append(solve_next(d.psi[r], d.F))
    d.flow_step = flow_step_coefficients(d.F, order + 1)
    _CACHE[key] = (optimizer, d)
    return d


def derive(optimizer, order=1):
    """The modified flow of ``optimizer`` to ``order`` (0, 1 or 2): ``F = F0 + h F1 + h^2 F2``
    with ``d theta/dt = -F^(n)(theta)`` on ``[nh, (n+1)h)`` (MATH.md §3).

    >>> from modeq.symbolic import derive, optimizers
    >>> flow = derive(optimizers.gd(), order=1)
    >>> flow.terms()[1]
    (H.(g))/2
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"derive expects an Optimizer declaration, got {type(optimizer).__name__}")
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise ValueError(f"order must be an integer >= 0, got {order!r}")
    if order > MAX_ORDER:
        raise NotImplementedError(f"order {order} > {MAX_ORDER} needs fourth derivatives of the "
                                  f"loss; orders 0..{MAX_ORDER} are implemented")
    from .flow import ModifiedFlow
    return ModifiedFlow(optimizer, order)


def __getattr__(name):
    if name == "ModifiedFlow":
        from .flow import ModifiedFlow
        return ModifiedFlow
    raise AttributeError(name)

"""Validation of an order study's inputs (shared by :func:`~.api.order_study`, the sweeps and
``modeq verify``).

Conventions: ``T`` and the step sizes become exact rationals (a float is taken as its binary
value, a string such as ``"1/16"`` exactly); ``hs`` must be strictly decreasing; ``dps`` is the
mpmath working precision in decimal digits.
"""
from __future__ import annotations

import math

import sympy as sp

from modeq.symbolic.family import Optimizer
from ..iterate import as_losses

__all__ = ["validate_inputs", "MIN_DPS"]

MIN_DPS = 15


def validate_inputs(optimizer, loss_or_losses, params, theta0, T, hs, orders, dps, tol=None):
    """Check the study's inputs; returns ``(T, hs)`` as exact rationals.  ``ValueError`` for
    non-positive ``hs`` or ``hs`` not strictly decreasing, ``T <= 0``, ``dps < 15``, ``theta0``
    of the wrong length, orders outside 0, 1, 2.

    >>> import sympy as sp
    >>> from modeq.symbolic import optimizers
    >>> x = sp.Symbol("x")
    >>> validate_inputs(optimizers.gd(), x**2, [x], [1], 1, [0.5, "1/4"], (0, 1), 20)
    (1, [1/2, 1/4])
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"expected an Optimizer, got {optimizer!r}")
    as_losses(loss_or_losses)
    if len(theta0) != len(params):
        raise ValueError(f"theta0 has {len(theta0)} components but there are {len(params)} "
                         f"parameters {[str(p) for p in params]}")
    T = _rational("T", T)
    if T <= 0:
        raise ValueError(f"the horizon T must be > 0, got {T}")
    hs = [_rational("h", h) for h in hs]
    if len(hs) < 2:
        raise ValueError("give at least two step sizes hs to fit a slope")
    if any(h <= 0 for h in hs):
        raise ValueError(f"step sizes must be > 0, got {[str(h) for h in hs]}")
    if any(b >= a for a, b in zip(hs, hs[1:])):
        raise ValueError(f"step sizes hs must be strictly decreasing, got {[str(h) for h in hs]}")
    if hs[0] > T:
        raise ValueError(f"the largest step size {hs[0]} exceeds the horizon T = {T}")
    if int(dps) != dps or dps < MIN_DPS:
        raise ValueError(f"dps must be an integer >= {MIN_DPS}, got {dps}")
    orders = tuple(orders)
    if not orders or any(r not in (0, 1, 2) for r in orders) or len(set(orders)) != len(orders):
        raise ValueError(f"orders must be distinct values among 0, 1, 2, got {orders}")
    if tol is not None and not (isinstance(tol, dict) or float(tol) > 0):
        raise ValueError(f"tol must be > 0, got {tol}")
    return T, hs


def _rational(name, value):
    try:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError
            return sp.Rational(value)
        v = sp.Rational(value) if isinstance(value, str) else sp.nsimplify(sp.sympify(value))
        if not v.is_Rational:
            raise ValueError
        return v
    except (TypeError, ValueError, sp.SympifyError):
        raise ValueError(f"{name} must be a finite real number, got {value!r}") from None

"""Matching powers of ``h``: the flow's own step against the optimizer's step.

The flow ``d theta/dt = -F``, ``F = sum_r h^r F_r``, moves by
``exp(h L_{-F}) theta - theta = sum_{m>=1} h^m/m! L_{-F}^m theta`` in one step (Lie series).
The optimizer moves by ``-h psi = -h sum_r h^r psi_r``.  The coefficient of ``h^(r+1)`` on the
flow side is ``-F_r + R_r(F_0, ..., F_{r-1})``, so ``F_r = psi_r + R_r``.
"""
from __future__ import annotations

import sympy as sp

from .operators import collect_fields, lie, linearize
from .memory import simplify_sums

__all__ = ["flow_step_coefficients", "solve_next"]


def flow_step_coefficients(F, top):
    """Coefficients ``c_p`` of ``h^p`` (``1 <= p <= top``) of the flow's one-step displacement
    ``exp(h L_{-F}) theta - theta``, with ``F = [F_0, ..., F_{R}]`` (higher terms taken as 0)."""
    coeffs = {}
    T = {a: -f for a, f in enumerate(F)}           # T_1 = L_{-F} theta = -F, by powers of h
    fact = 1
    for m in range(1, top + 1):
        fact *= m
        for p, t in T.items():
            if m + p <= top:
                coeffs[m + p] = coeffs.get(m + p, 0) + t / fact
        if m == top:
            break
        nxt = {}
        for p, t in T.items():
            for a, f in enumerate(F):
                if m + 1 + p + a <= top:
                    nxt[p + a] = nxt.get(p + a, 0) + lie(t, -f)
        T = nxt
    return {p: coeffs.get(p, sp.S.Zero) for p in range(1, top + 1)}


def solve_next(psi_r, F_known):
    """``F_r = psi_r + R_r``: the next term given ``F_0..F_{r-1}`` and the step's ``psi_r``."""
    r = len(F_known)
    rest = flow_step_coefficients(list(F_known), r + 1)[r + 1]
    return collect_fields(simplify_sums(linearize(psi_r + rest)))

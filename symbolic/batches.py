"""Mini-batch pass: the step terms with the memory sums grouped by batch.

With ``m`` batches, every past step ``k`` of batch ``b`` contributes ``phi_i(Grad(b))``: the
sums over past steps then collapse into a few scalar weights ``W`` and vectors ``V`` per batch
(filled in numerically by :mod:`modeq.symbolic.emit.minibatch`), so the cost of a field
evaluation does not grow with the number of steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .family import g, n
from .operators import Grad, Vec, lie
from .solve import solve_next

__all__ = ["GroupedTerms", "grouped_step_terms", "check_groupable"]


@dataclass
class GroupedTerms:
    """Mini-batch ``F0``, ``F1`` with the memory sums grouped by batch (see
    :func:`grouped_step_terms`): ``W[i][b]`` scalar symbols, ``V[i][b]`` external vectors,
    ``F0[c]``, ``F1[c]`` for the current step's batch ``c``."""
    W: list
    V: list
    F0: list
    F1: list


def check_groupable(optimizer):
    """``NotImplementedError`` for declarations the grouping does not cover yet (rather than a
    silently wrong field): a state whose input reads another state, a state started at its
    first input (torch's momentum buffer), a step that uses the step index."""
    for s in optimizer.states:
        if any(isinstance(x, type(s)) for x in s.of.free_symbols):
            raise NotImplementedError(f"mini batch: state {s.name!r} reads another state; the "
                                      f"batch grouping covers inputs of g and theta only")
        if getattr(s, "start", "zero") != "zero":
            raise NotImplementedError(f"mini batch: state {s.name!r} starts at its first input "
                                      f"(torch's momentum buffer); not covered yet")
    if n in optimizer.step.free_symbols:
        raise NotImplementedError("mini batch: the step uses the step index n; not covered yet")


def grouped_step_terms(optimizer, m, order):
    """The mini-batch step terms with the sums over past steps grouped by batch.

    With ``m`` batches, ``phi_i(g_k) = phi_i(Grad(b))`` for every step ``k`` of batch ``b``, and
    ``L_V`` is linear in ``V``, so the ``h^0`` and ``h^1`` terms of :func:`state_series` are

        S0_i = sum_b W_ib phi_i(Grad(b)),        W_ib = sum_{k<=n, batch(k)=b} w_i(n, k),
        S1_i = sum_b L_{V_ib} phi_i(Grad(b)),    V_ib = sum_{k<=n, batch(k)=b} w_i(n, k)
                                                        sum_{l=k}^{n-1} F0^(l).

    ``W`` and ``V`` are left as symbols; a numeric lowering fills them in.
    """
    check_groupable(optimizer)
    W = [[sp.Symbol(f"W_{s.name}_{b}") for b in range(m)] for s in optimizer.states]
    V = [[Vec(sp.Symbol(f"V_{s.name}_{b}")) for b in range(m)] for s in optimizer.states]
    phis = [[s.of.xreplace({g: Grad(b)}) for b in range(m)] for s in optimizer.states]
    S0 = {s: sp.Add(*[W[i][b] * phis[i][b] for b in range(m)])
          for i, s in enumerate(optimizer.states)}
    F0s, F1s = [], []
    for c in range(m):
        psi = optimizer.step.xreplace({g: Grad(c)})
        F0 = psi.xreplace(S0)
        F0s.append(F0)
        if order >= 1:
            psi1 = sp.Add(*[sp.diff(psi, s).xreplace(S0)
                            * sp.Add(*[lie(phis[i][b], V[i][b]) for b in range(m)])
                            for i, s in enumerate(optimizer.states)])
            F1s.append(solve_next(psi1, [F0]))
    return GroupedTerms(W, V, F0s, F1s)

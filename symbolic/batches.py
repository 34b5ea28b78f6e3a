"""Mini-batch pass: the step terms with the memory sums grouped by batch.

With ``m`` batches, every past step ``k`` of batch ``b`` contributes ``phi_i(Grad(b))``: the
sums over past steps then collapse into a few scalar weights ``W`` and vectors ``V`` per batch
(filled in numerically by :mod:`modeq.symbolic.emit.minibatch`), so the cost of a field
evaluation does not grow with the number of steps beyond the memory window.

Order 2 (:func:`grouped_step_terms` with ``order=2``) needs, per state and batch, three more
objects: a vector ``U`` (the sums of ``F1`` and of the derivatives of past ``F0`` along later
ones), the second moment ``A (x) A`` of the displacements to past iterates (a symmetric matrix;
``Vec(A)`` stands for it in a quadratic form), and the Jacobian of ``V`` (``Hess(J, u) = DV.u``,
with ``J`` a batch tag), because ``L_{F0} F1`` differentiates ``V`` along the current flow.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .expansion import compose
from .family import g, n
from .operators import Grad, Hess, Vec, lie
from .solve import flow_step_coefficients, solve_next

__all__ = ["GroupedTerms", "grouped_step_terms", "check_groupable"]


@dataclass
class GroupedTerms:
    """Mini-batch ``F0``, ``F1`` with the memory sums grouped by batch (see
    :func:`grouped_step_terms`): ``W[i][b]`` scalar symbols, ``V[i][b]`` external vectors,
    ``F0[c]``, ``F1[c]`` for the current step's batch ``c``; order 2 adds ``U[i][b]``,
    ``A[i][b]`` (external vectors; ``A`` enters only through the second moments ``A A^T``),
    ``J[i][b]`` (batch tags: ``Hess(J, u)`` is the Jacobian of ``V[i][b]`` applied to ``u``)
    and ``F2[c]``, ``DF0[c]``: ``L_e F0[c]`` along a constant direction ``Vec(e)`` (the
    Jacobian of a past step's ``F0``), and ``Q[i]``: the external vector in ``F2`` that stands
    for the quadratic form ``Qform[i]`` in the ``A[i][b]``."""
    W: list
    V: list
    F0: list
    F1: list
    U: list = field(default_factory=list)
    A: list = field(default_factory=list)
    J: list = field(default_factory=list)
    F2: list = field(default_factory=list)
    DF0: list = field(default_factory=list)
    Q: list = field(default_factory=list)
    Qform: list = field(default_factory=list)


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

    Order 2: the ``h^2`` term of a past input is (docs/conventions.md §3.2, :func:`state_series`)
    ``sum_l (L_{F1^(l)} + 1/2 L_{F0^(l)}^2) phi + sum_{l<l'} L_{F0^(l')} L_{F0^(l)} phi``.  Split
    ``L_B L_A phi = Q_phi(A, B) + L_{DA.B} phi`` into the symmetric bilinear part (``A``, ``B``
    frozen) and the rest; with ``D_k = sum_{l=k}^{n-1} F0^(l)`` the bilinear parts add up to
    ``1/2 Q_phi(D_k, D_k)``, so

        S2_i = sum_b [ L_{U_ib} phi_ib + 1/2 Q_phi_ib(A_ib, A_ib) ],
        U_ib = sum_{k<=n, batch(k)=b} w_i(n, k) sum_{l=k}^{n-1}
                   ( F1^(l) + DF0^(l) . (F0^(l)/2 + D_{l+1}) ),
        A_ib A_ib^T := sum_{k<=n, batch(k)=b} w_i(n, k) D_k D_k^T,

    and ``F2 = psi2 + R2(F0, F1)`` (:func:`~.solve.solve_next`) with ``psi2`` the Taylor term of
    the step in the state series (:func:`~.expansion.compose`).  ``R2`` differentiates ``F1``
    along ``F0``: the external ``V_ib`` then gives ``Hess(J_ib, F0)``, ``J_ib = DV_ib``.
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
    out = GroupedTerms(W, V, F0s, F1s)
    if order >= 2:
        _order2(optimizer, m, out, phis, S0)
    return out


def _frozen_square(phi, A):
    """``Q_phi(A, A)``: the part of ``L_A L_A phi`` bilinear in ``A`` with ``A`` held fixed
    (``A`` an external vector; a gradient of a fresh batch tag stands for it while
    differentiating, its own derivatives dropped)."""
    tag = sp.Dummy("A")
    q = lie(lie(phi, Grad(tag)), Grad(tag))
    q = q.replace(lambda e: isinstance(e, Hess) and e.args[0] == tag, lambda e: sp.S.Zero)
    return q.xreplace({Grad(tag): A})


def _order2(optimizer, m, out, phis, S0):
    """The order-2 grouping (see :func:`grouped_step_terms`), filled into ``out``.  ``F2`` is
    kept as ``psi2 + R2`` unexpanded (products of the state series stay factored), and the
    quadratic part of ``S2_i`` enters as the external vector ``Q_i``, given by ``Qform[i]``
    (a quadratic form in the ``A[i][b]``)."""
    states = optimizer.states
    out.U = [[Vec(sp.Symbol(f"U_{s.name}_{b}")) for b in range(m)] for s in states]
    out.A = [[Vec(sp.Symbol(f"A_{s.name}_{b}")) for b in range(m)] for s in states]
    out.J = [[sp.Symbol(f"J_{s.name}_{b}") for b in range(m)] for s in states]
    out.Q = [Vec(sp.Symbol(f"Q_{s.name}")) for s in states]
    out.Qform = [sp.Add(*[_frozen_square(phis[i][b], out.A[i][b]) for b in range(m)]) / 2
                 for i in range(len(states))]
    series = {}
    for i, s in enumerate(states):
        S1 = sp.Add(*[lie(phis[i][b], out.V[i][b]) for b in range(m)])
        S2 = sp.Add(*[lie(phis[i][b], out.U[i][b]) for b in range(m)]) + out.Q[i]
        series[s] = [S0[s], S1, S2]
    # V as a field of the point: its derivative along u is Hess(J, u)
    to_field = {out.V[i][b]: Grad(out.J[i][b]) for i in range(len(states)) for b in range(m)}
    back = {v: k for k, v in to_field.items()}
    for c in range(m):
        psi = compose(optimizer.step.xreplace({g: Grad(c)}), series, 2)
        F1 = psi[1] + flow_step_coefficients([out.F0[c]], 2)[2]     # = F1[c], unexpanded
        R2 = flow_step_coefficients([out.F0[c], F1.xreplace(to_field)], 3)[3]
        out.F2.append(psi[2] + R2.xreplace(back))
        out.DF0.append(lie(out.F0[c], Vec(sp.Symbol("e"))))

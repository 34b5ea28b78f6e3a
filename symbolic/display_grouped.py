"""Display of a mini-batch flow through its batch-grouped terms (the form every order uses).

Mini batch at order 2 has no step-indexed closed form: the memory sums of the ``h^2`` term run
over pairs of past batches.  What is exact for any schedule is the grouped form the numeric
evaluation uses (:func:`~modeq.symbolic.pipeline.grouped_terms`): on a step of batch ``c``,
``F0``, ``F1``, ``F2`` are expressions in the loss derivatives of the ``m`` batches at the
current point and a few per-state, per-batch quantities, each a finite sum over past steps
(:data:`DEFINITIONS`, the sums ``modeq.symbolic.emit.minibatch_order2`` evaluates).
"""
from __future__ import annotations

import sympy as sp

from . import cache
from .display import NOTATION, grouped_terms

__all__ = ["grouped_flow_text", "DEFINITIONS"]

#: What the grouped symbols stand for; state ``i`` (decay ``d_i``, newest-input weight
#: ``w_i(l, l)``), batch ``b``; ``F0^(l)``, ``F1^(l)``, ``DF0^(l)`` are the terms of past step
#: ``l`` (its batch, its weights ``W(l)``) at the current point.
DEFINITIONS = (
    "W_i_b = w_i(n, n) u_ib(n),  u_ib(l) = sum_{k <= l, batch(k) = b} d_i^(l-k)",
    "V_i_b = w_i(n, n) sum_{l < n} d_i^(n-l) u_ib(l) F0^(l)",
    "U_i_b = w_i(n, n) sum_{l < n} d_i^(n-l) u_ib(l) E_l,  "
    "E_l = F1^(l) + DF0^(l).(F0^(l)/2 + D_(l+1))",
    "(H[J_i_b].(u)) = w_i(n, n) sum_{l < n} d_i^(n-l) u_ib(l) DF0^(l).u  (the Jacobian of V_i_b "
    "along u)",
    "Q_i = Qform_i with every A_i_b A_i_b^T replaced by M_i_b = w_i(n, n) sum_{k < n, "
    "batch(k) = b} d_i^(n-k) D_k D_k^T,  D_k = sum_{l = k}^{n-1} F0^(l)",
    "DF0^(l).u: the derivative of step l's F0 along u (its W(l) fixed)",
)


def _lines(name, expr):
    groups = [sp.sstr(c) if k == 1 else f"({sp.sstr(c)}) * {sp.sstr(k)}"
              for k, c in grouped_terms(expr)]
    if not groups:
        return [f"  {name} = 0"]
    if len(groups) == 1:
        return [f"  {name} = {groups[0]}"]
    return [f"  {name} = sum of {len(groups)} terms:"] + [f"      + {g}" for g in groups]


def grouped_flow_text(flow, m):
    """The mini-batch flow of ``m`` batches as text, on a step of batch 0 (any other batch:
    exchange the indices), with the grouped symbols defined (module docstring); cached on disk
    per declaration, order and ``m``."""
    if not isinstance(m, int) or isinstance(m, bool) or not 1 <= m <= 6:
        raise ValueError(f"the number of batches m must be an integer in 1..6, got {m!r}")
    return cache.cached("display", flow.optimizer, lambda: _text(flow, m), order=flow.order,
                        batch="mini-grouped", batches=m, format="text")


def _text(flow, m):
    opt = flow.optimizer
    terms = flow.grouped_terms(m)
    lines = [f"{opt.name}: modified flow of order {flow.order} (mini batch, m = {m} batches, "
             f"exact for any schedule; grouped by batch)",
             "  recursion: theta <- theta - h*(" + sp.sstr(opt.step) + ")"]
    lines += ["    " + s.describe() for s in opt.states]
    order = flow.order
    rhs = " + ".join(["F0"] + [f"h{'^' + str(r) if r > 1 else ''} F{r}"
                               for r in range(1, order + 1)])
    lines.append(f"  on a step n of batch 0: d theta_j/dt = -({rhs})")
    for r in range(order + 1):
        lines += _lines(f"F{r}", getattr(terms, f"F{r}")[0])
    if order >= 2:
        for q, form in zip(terms.Q, terms.Qform):
            lines.append(f"  Qform_{str(q).split('_', 1)[1]} = {sp.sstr(form)}")
    if opt.states:
        lines.append("  where, for state i (decay d_i, weight w_i(l, l) of its newest input) "
                     "and batch b:")
        used = DEFINITIONS[:2] if order < 2 else DEFINITIONS
        lines += [f"    {d}" for d in used]
    lines.append("  " + NOTATION + ";  g[b], H[b], T[b]: the derivatives of batch b's loss")
    return "\n".join(lines)

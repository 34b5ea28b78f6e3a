"""Text and LaTeX display of derived flows (grouped by operator structure)."""
from __future__ import annotations

import sympy as sp

from .operators import ATOMS, collect_fields, is_field

__all__ = ["flow_text", "flow_latex", "grouped_terms", "NOTATION"]

NOTATION = ("g = g_j = dE/dtheta_j;  (H.(u)) = sum_i d2E/dtheta_j dtheta_i u_i;  "
            "T[u, w] = sum_ik d3E/dtheta_j dtheta_i dtheta_k u_i w_k;  g[k], H[k]: the loss of "
            "step k (mini batch)")


def grouped_terms(expr):
    """``[(operator monomial, coefficient)]``: the terms of ``expr`` grouped by their
    operator structure (``H.u``, ``H.(a H.u)``, ``T[u,w]``, ...), coefficients simplified."""
    groups = {}
    for term in sp.Add.make_args(sp.expand_mul(collect_fields(expr))):
        ops = [f for f in sp.Mul.make_args(term) if isinstance(f, ATOMS[1:]) or
               (isinstance(f, sp.Pow) and isinstance(f.base, ATOMS[1:])) or
               isinstance(f, sp.Sum) and is_field(f)]
        key = sp.Mul(*ops)
        groups[key] = groups.get(key, 0) + term / key
    return [(k, sp.factor(sp.simplify(c))) for k, c in groups.items()]


def _variant(batch, stationary):
    if batch == "mini":
        return "mini batch, exact in the step index n"
    return "full batch, stationary (n -> oo)" if stationary else "full batch, exact in n"


def flow_text(flow, batch="full", stationary=False):
    opt = flow.optimizer
    lines = [f"{opt.name}: modified flow of order {flow.order} ({_variant(batch, stationary)})",
             "  recursion: theta <- theta - h*(" + sp.sstr(opt.step) + ")"]
    for s in opt.states:
        lines.append("    " + s.describe())
    if opt.notes:
        lines.append(f"  note: {opt.notes}")
    terms = flow.terms(batch, stationary)
    rhs = " + ".join(["F0"] + [f"h{'^' + str(r) if r > 1 else ''} F{r}"
                                for r in range(1, len(terms))])
    lines.append(f"  d theta_j/dt = -({rhs})")
    for r, F in enumerate(terms):
        groups = grouped_terms(F)
        if len(groups) == 1:
            k, c = groups[0]
            lines.append(f"  F{r} = {sp.sstr(c * k)}")
            continue
        lines.append(f"  F{r} = sum of {len(groups)} terms:")
        for k, c in groups:
            lines.append(f"      + [{sp.sstr(c)}] * {sp.sstr(k)}")
    lines.append("  where " + NOTATION)
    return "\n".join(lines)


def flow_latex(flow, batch="full", stationary=False):
    terms = flow.terms(batch, stationary)
    rows = []
    for r, F in enumerate(terms):
        parts = [sp.latex(c) + r"\," + sp.latex(k) if k != 1 else sp.latex(c)
                 for k, c in grouped_terms(F)]
        rows.append(f"F_{{{r}}} &= " + r" \\ &\quad + ".join(parts) if parts
                    else f"F_{{{r}}} &= 0")
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}"

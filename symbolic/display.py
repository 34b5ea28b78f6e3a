"""Text and LaTeX display of derived flows (grouped by operator structure).

:func:`flow_text` and :func:`flow_latex` are cached on disk per declaration and variant
(:mod:`.cache`)."""
from __future__ import annotations

import sympy as sp

from . import cache
from .operators import ATOMS, collect_fields, is_field

__all__ = ["flow_text", "flow_latex", "grouped_terms", "structured_coefficient", "NOTATION"]

NOTATION = ("g = g_j = dE/dtheta_j;  (H.(u)) = sum_i d2E/dtheta_j dtheta_i u_i;  "
            "T[u, w] = sum_ik d3E/dtheta_j dtheta_i dtheta_k u_i w_k")
#: added to :data:`NOTATION` for mini-batch output only
MINI_NOTATION = ";  g[k], H[k]: the derivatives of the loss E_k of step k"


#: Coefficients up to this many operations are simplified in full (``factor(simplify(c))``);
#: larger ones (e.g. Adam's exact-in-``n`` ``F2``, ~3,000 operations) get the bounded
#: structured form of :func:`structured_coefficient`: a full simplification of those runs for
#: many CPU-minutes.
SIMPLIFY_MAX_OPS = 400
#: Budget of operations simplified in full over all coefficients of one expression (an
#: expression with hundreds of small coefficients, e.g. Adam without bias correction at order 2,
#: gets the structured form for those beyond it).
SIMPLIFY_TOTAL_OPS = 1500
#: Scalar sub-coefficients of a structured form up to this size are cancelled and factored.
CANCEL_MAX_OPS = 500


def grouped_terms(expr, max_ops=SIMPLIFY_MAX_OPS):
    """``[(operator monomial, coefficient)]``: the terms of ``expr`` grouped by their
    operator structure (``H.u``, ``H.(a H.u)``, ``T[u,w]``, ...).

    A coefficient of at most ``max_ops`` operations is simplified in full, as long as the
    coefficients simplified so far stay within :data:`SIMPLIFY_TOTAL_OPS`; the others are
    given in the bounded :func:`structured_coefficient` form (never an unbounded
    simplification: the cost grows with the size of the expression, not beyond)."""
    groups = {}
    for term in sp.Add.make_args(sp.expand_mul(collect_fields(expr))):
        ops = [f for f in sp.Mul.make_args(term) if isinstance(f, ATOMS[1:]) or
               (isinstance(f, sp.Pow) and isinstance(f.base, ATOMS[1:])) or
               isinstance(f, sp.Sum) and is_field(f)]
        key = sp.Mul(*ops)
        groups[key] = groups.get(key, 0) + term / key
    out, spent = [], 0
    for k, c in groups.items():
        ops = sp.count_ops(c)
        if ops <= max_ops and spent + ops <= max(SIMPLIFY_TOTAL_OPS, max_ops):
            spent += ops
            out.append((k, _simplified(c)))
        else:
            out.append((k, structured_coefficient(c)))
    return out


def _simplified(c):
    """``c`` simplified.  A rational function of symbols, powers ``d**n`` and square roots of
    sums of monomials with integer exponents (Adam's coefficients, ``sqrt(eps + g**2)``) is
    brought to lowest terms and factored (``factor(cancel(c))``: what ``simplify`` returns for
    them, at a fraction of the cost); anything else (sums, products, functions, roots of roots,
    ``sqrt(g**2)``) gets SymPy's ``simplify`` first."""
    if all(_plain(e) for e in sp.preorder_traversal(c)):
        return sp.factor(sp.cancel(c))
    return sp.factor(sp.simplify(c))


def _plain(e):
    if isinstance(e, (sp.Add, sp.Mul, sp.Symbol, sp.Number, ATOMS[0])):
        return True
    if not isinstance(e, sp.Pow):
        return False
    if e.exp.is_Integer or e.exp.is_Symbol:
        return True
    return (e.exp.is_Rational and e.exp.q == 2 and isinstance(e.base, sp.Add) and
            all(not isinstance(x, sp.Pow) or x.exp.is_Integer
                for x in sp.preorder_traversal(e.base)))


def structured_coefficient(c, max_ops=CANCEL_MAX_OPS):
    """``c`` as a sum of (scalar memory coefficient) x (point factor in ``g`` and
    ``s = sqrt(eps + g^2)``-like roots), one summand per distinct point factor.

    Each term is split once (common factors pulled out of its denominators); the scalar parts
    of a point factor are added, and their closed part (the terms without an unevaluated
    ``Sum``) is cancelled and factored when it has at most ``max_ops`` operations.  Exact (the sum equals ``c``), and bounded in cost."""
    sub = {}
    for term in sp.Add.make_args(sp.expand_mul(c)):
        scal, point = [], []
        for f in sp.Mul.make_args(_pull_common(term)):
            (point if is_field(f) else scal).append(f)
        key = sp.Mul(*point)
        sub[key] = sub.get(key, 0) + sp.Mul(*scal)
    out = []
    for key, s in sub.items():
        closed = [t for t in sp.Add.make_args(s) if not t.has(sp.Sum)]
        sums = [t for t in sp.Add.make_args(s) if t.has(sp.Sum)]
        closed = sp.Add(*closed)
        if sp.count_ops(closed) <= max_ops:
            closed = sp.factor(sp.cancel(closed))
        s = closed + sp.Add(*sums)
        if s != 0:
            out.append(sp.Mul(s, key, evaluate=False) if key != 1 else s)
    return sp.Add(*out)


def _pull_common(term):
    """``term`` with the content and common point factors of its sums pulled out
    (``2*b*s - 2*s -> 2*s*(b - 1)``), so that scalar and point factors separate."""
    return sp.Mul(*[sp.Pow(sp.factor_terms(f.base), f.exp) if isinstance(f, sp.Pow)
                    and isinstance(f.base, sp.Add) and is_field(f.base) else f
                    for f in sp.Mul.make_args(term)])


def _variant(batch, stationary):
    if batch == "mini":
        return "mini batch, exact in the step index n"
    return "full batch, stationary (n -> oo)" if stationary else "full batch, exact in n"


def flow_text(flow, batch="full", stationary=False):
    """The flow as text: the recursion, notes, and each ``F_r`` grouped by structure."""
    return cache.cached("display", flow.optimizer, lambda: _flow_text(flow, batch, stationary),
                        order=flow.order, batch=batch, stationary=bool(stationary),
                        format="text")


def _flow_text(flow, batch, stationary):
    opt = flow.optimizer
    lines = [f"{opt.name}: modified flow of order {flow.order} ({_variant(batch, stationary)})",
             "  recursion: theta <- theta - h*(" + sp.sstr(opt.step) + ")"]
    for s in opt.states:
        lines.append("    " + s.describe())
    for note in flow.notes(batch, stationary):
        lines.append(f"  note: {note}")
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
    lines.append("  where " + NOTATION + (MINI_NOTATION if batch == "mini" else ""))
    return "\n".join(lines)


def flow_latex(flow, batch="full", stationary=False):
    """The terms ``F_r`` as a LaTeX ``align*`` block, grouped by structure."""
    return cache.cached("display", flow.optimizer, lambda: _flow_latex(flow, batch, stationary),
                        order=flow.order, batch=batch, stationary=bool(stationary),
                        format="latex")


def _flow_latex(flow, batch, stationary):
    terms = flow.terms(batch, stationary)
    rows = []
    for r, F in enumerate(terms):
        parts = [sp.latex(c) + r"\," + sp.latex(k) if k != 1 else sp.latex(c)
                 for k, c in grouped_terms(F)]
        rows.append(f"F_{{{r}}} &= " + r" \\ &\quad + ".join(parts) if parts
                    else f"F_{{{r}}} &= 0")
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}"

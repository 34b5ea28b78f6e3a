"""The steps of a mini-batch document at order 2: the batch-grouped form.

At order 2 a mini-batch flow with memory has no step-indexed closed form (the memory sums of
the ``h^2`` term run over pairs of past batches).  The document shows the form that is exact
for every schedule, the one :meth:`~modeq.symbolic.flow.ModifiedFlow.grouped_terms` gives and
the numeric evaluation uses: on a step of batch ``0`` of ``m`` batches, ``F_0, F_1, F_2`` in the
batches' derivatives at the current point and per-state, per-batch quantities, each a finite
sum over past steps (:data:`modeq.symbolic.display_grouped.DEFINITIONS`).

Check: with every batch's loss equal, the document's grouped form (read back from the document)
with its sums over past steps written out equals the full-batch flow exact in ``n`` (a
different pass of the engine) on the last step of two batch orders (a step of batch 0 after
steps of both batches), on a concrete loss, point and hyperparameters, in exact arithmetic.  The test
suite also runs the series oracle per step (``tests/test_minibatch_order2.py``).
"""
from __future__ import annotations

from dataclasses import replace

import sympy as sp

from modeq.symbolic import derive
from modeq.symbolic.components import LossProvider
from modeq.symbolic.emit.minibatch_order2 import Order2Sweep
from modeq.symbolic.operators import Vec

from .context import text_escape
from .document import Equation
from .printer import DocPrinter, tex

__all__ = ["BATCHES", "grouped_convention", "grouped_terms", "grouped_definitions",
           "reduction_check", "summary"]

#: the number of batches the document's grouped form is written for
BATCHES = 2
#: the width of an equation line (visible characters as :func:`~modeq.proofs.printer.width`
#: counts them): wider than the full-batch documents' — the grouped terms break inside, and the
#: estimate counts sub- and superscripts, which fill most of them, as whole characters
LINE_WIDTH = 72
#: the concrete instance of the reduction check (p = 2, rational data)
_X, _Y = sp.symbols("x y")
CHECK_LOSS = (_X - 1) ** 2 / 2 + _X * _Y / 3 + _Y ** 4 / 4 + sp.cos(_X) / 5
CHECK_POINT = {_X: sp.Rational(1, 2), _Y: sp.Rational(-1, 3)}
CHECK_VALUES = {"beta": sp.Rational(1, 4), "rho": sp.Rational(1, 3), "eps": sp.Rational(1, 100),
                "lam": sp.Rational(1, 5), "h": sp.Rational(1, 10)}
#: batch orders whose last step (a step of batch 0, every grouped quantity nonzero) is checked
CHECK_SCHEDULES = ((0, 1, 0), (1, 0, 0, 1, 0))
CHECK_DIGITS = 50


def _grouped(ctx):
    if ctx.grouped is None:
        ctx.grouped = derive(ctx.opt, ctx.order).grouped_terms(BATCHES)
    return ctx.grouped


def _names(T):
    """LaTeX of the grouped symbols: ``W_u_0 -> W_{u,0}``; an external vector ``Vec(V_u_0)``
    prints as ``V_{u,0}`` (inside an operator: the whole vector), ``Q_u`` as ``Q_{u,j}``."""
    names = {}
    for rows in (T.W, T.V, T.U, T.A, T.J, [T.Q]):
        for row in rows:
            for x in row:
                sym = x.args[0] if isinstance(x, Vec) else x
                kind, state, *batch = str(sym).split("_")
                sub = ",".join([state] + batch) + (",j" if kind == "Q" else "")
                names[sym] = f"{kind}_{{{sub}}}"
    return names


def _terms(names):
    """The document's term printer: one term per top-level term, external vectors printed by
    name; each term a :class:`~modeq.proofs.printer.Piece`, so that the renderer's line
    breaking (:func:`modeq.proofs.latex._break`) also breaks a term wider than a line inside
    its sums, operator arguments and products."""
    def terms(expr, renderer):
        unwrap = {v: v.args[0] for v in expr.atoms(Vec)}
        return [DocPrinter(names).piece(t.xreplace(unwrap))
                for t in sp.Add.make_args(expr)] or ["0"]
    return terms


def grouped_convention(ctx):
    """What the grouped form is and why the document uses it; the printer of its terms."""
    names = _names(_grouped(ctx))
    ctx.doc.display.names.update(names)
    ctx.doc.display.term_printer = _terms(names)
    ctx.doc.display.line_width = LINE_WIDTH
    st = ctx.doc.step("Mini batch at order 2: the grouped form")
    st.text(r"Step $k$ uses its own loss $E_{b(k)}$, one of $m$ batch losses; here $m="
            f"{BATCHES}" r"$ and the step $n$ is a step of batch $0$ (any other batch: exchange "
            r"the indices). $g^{(b)}$, $H^{(b)}$, $T^{(b)}$ are the derivatives of $E_b$ at the "
            r"current point. At order 2 the memory sums of the $h^2$ term run over pairs of "
            r"past batches and have no closed form in $n$; what is exact for every schedule is "
            r"the form below, in a few per-state, per-batch quantities, each a finite sum over "
            r"past steps.")


def grouped_terms(ctx):
    """``F_0, F_1, F_2`` of a step of batch 0, and the quadratic forms ``Q``."""
    doc, T = ctx.doc, _grouped(ctx)
    st = doc.step("The flow on a step of batch 0")
    eqs = []
    for r in range(ctx.order + 1):
        key = doc.add(f"F{r}", getattr(T, f"F{r}")[0])
        eqs.append(Equation(f"F^{{(n)}}_{{{r},j}}", key=key))
    st.equations(*eqs)
    if T.Qform:
        st.text(r"$Q_i$ is the quadratic form below in the vectors $A_{i,b}$, with every "
                r"product $A_{i,b}A_{i,b}^{\top}$ replaced by the second moment $M_{i,b}$:")
        names = ctx.doc.display.names
        st.equations(*[Equation(tex(q.args[0], names).replace(",j}", "}"),
                                key=doc.add(f"Qform{k}", form))
                       for k, (q, form) in enumerate(zip(T.Q, T.Qform))])


def grouped_definitions(ctx):
    """The sums over past steps behind ``W, V, U, J, M`` (optimizers with memory)."""
    if not ctx.opt.states:
        return
    st = ctx.doc.step("The grouped quantities")
    st.text(r"For state $i$ (decay $d_i$, weight $w_i(l,l)$ of its newest input) and batch "
            r"$b$; $F_0^{(l)}$, $F_1^{(l)}$ and $DF_0^{(l)}$ are the terms of past step $l$ (its "
            r"batch, its weights) at the current point, $DF_0^{(l)}u$ the derivative of "
            r"$F_0^{(l)}$ along $u$ with its weights fixed:")
    rows = [
        (r"u_{i,b}(l)", r"\sum_{k\le l,\ b(k)=b} d_i^{\,l-k}"),
        (r"W_{i,b}", r"w_i(n,n)\,u_{i,b}(n)"),
        (r"V_{i,b}", r"w_i(n,n)\sum_{l<n} d_i^{\,n-l}\,u_{i,b}(l)\,F_0^{(l)}"),
        (r"D_k", r"\sum_{l=k}^{n-1} F_0^{(l)}"),
        (r"E_l", r"F_1^{(l)} + DF_0^{(l)}\left(\tfrac12 F_0^{(l)} + D_{l+1}\right)"),
        (r"U_{i,b}", r"w_i(n,n)\sum_{l<n} d_i^{\,n-l}\,u_{i,b}(l)\,E_l"),
        (r"H^{(J_{i,b})}u", r"w_i(n,n)\sum_{l<n} d_i^{\,n-l}\,u_{i,b}(l)\,DF_0^{(l)}u"),
        (r"M_{i,b}", r"w_i(n,n)\sum_{k<n,\ b(k)=b} d_i^{\,n-k}\,D_kD_k^{\top}"),
    ]
    st.equations(*[Equation(lhs, tex=rhs) for lhs, rhs in rows])


class _DocumentTerms:
    """A flow whose grouped terms of batch 0 (``F_r`` and the quadratic forms) are the
    document's quantities, the rest the engine's: what the check evaluates."""

    def __init__(self, flow, doc):
        self.optimizer, self.order = flow.optimizer, flow.order
        self._flow, self._doc = flow, doc

    def grouped_terms(self, m):
        T = self._flow.grouped_terms(m)
        read = {f"F{r}": [self._doc.q(f"F{r}")] + list(getattr(T, f"F{r}")[1:])
                for r in range(self.order + 1)}
        if T.Qform:
            read["Qform"] = [self._doc.q(f"Qform{k}") for k in range(len(T.Qform))]
        return replace(T, **read)


def _grouped_field(flow, losses, params, schedule, n, values):
    """``-(F0 + h F1 + h^2 F2)`` at step ``n`` from ``flow``'s grouped terms, every past step
    written out in exact arithmetic (the engine's evaluation, on the given terms)."""
    subs = {s: sp.nsimplify(values[str(s)]) for s in flow.optimizer.hyperparameters}
    sweep = Order2Sweep(flow, LossProvider(losses, params, schedule), subs, "exact")
    table = sweep.table(lambda k: schedule[k], sweep.extra)
    F0, F1, F2 = sweep(n, list(params), table, None, sweep.extra)
    h = values["h"]
    return [-(a + h * b + h ** 2 * c) for a, b, c in zip(F0, F1, F2)]


def reduction_check(ctx):
    """Equal batches: the document's grouped form, its sums written out, is the full-batch
    flow exact in ``n`` (a different pass of the engine)."""
    doc, opt, order = ctx.doc, ctx.opt, ctx.order
    st = doc.step("Check against the full-batch flow")
    flow = derive(opt, order)
    params = [_X, _Y]
    need = {str(s) for s in opt.hyperparameters} | {"h"}
    values = {k: v for k, v in CHECK_VALUES.items() if k in need}

    def run(dd):
        shown = _DocumentTerms(flow, dd)
        for schedule in CHECK_SCHEDULES:
            step = len(schedule) - 1
            mini = _grouped_field(shown, [CHECK_LOSS] * BATCHES, params, schedule, step, values)
            full = flow.field(CHECK_LOSS, params, n=step, **values)
            for a, b in zip(mini, full):
                d = (a - b).xreplace(CHECK_POINT)
                if abs(sp.N(d, CHECK_DIGITS + 10)) > sp.Float(10) ** -CHECK_DIGITS:
                    return False
        return True

    data = ", ".join(f"{tex(sp.Symbol(k))}={tex(v)}" for k, v in values.items() if k != "h")
    schedules = "; ".join(",".join(map(str, s)) for s in CHECK_SCHEDULES)
    lab = doc.check(
        f"with every batch loss equal to $E={tex(CHECK_LOSS)}$, the printed $F_0,F_1,F_2$ "
        + ("and $Q$ " if ctx.opt.states else "")
        + f"(every past step's term written out, exact arithmetic) on the last step of the "
        f"batch orders ${schedules}$ equal the full-batch flow exact in $n$ at that step, "
        f"$\\theta=(1/2,-1/3)$, $h=1/10$" + (f", ${data}$" if data else "")
        + f" (difference below $10^{{-{CHECK_DIGITS}}}$)", run)
    st.text(r"When every batch has the same loss, the grouped form is the full-batch flow "
            f"exact in $n$, a different pass of the engine [{lab}]. Its evaluation per step "
            r"of any schedule is also checked, in the test suite, against the power series "
            r"of the iterates ($h^3$ agreement on three batches).")


def summary(ctx):
    """The abstract."""
    ctx.doc.summary = (
        f"For {text_escape(ctx.opt.name.replace('_', ' '))} with a different loss at every "
        r"step, this appendix gives the modified flow to order 2, "
        r"$\dot{\tilde\theta}=-(F_0^{(n)}+hF_1^{(n)}+h^2F_2^{(n)})$ on $[nh,(n+1)h)$, in the "
        r"batch-grouped form that is exact for every order of batches, with each grouped "
        r"quantity defined as a finite sum over past steps; with equal batches it reduces to "
        r"the full-batch flow exact in $n$.")

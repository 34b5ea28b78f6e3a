"""The closing steps of a full-batch document: the stationary limit, the recognized published
forms and the summary.

Exact in ``n``, the memory coefficients are rational in ``n`` and ``d**n`` for decays
``d in [0, 1)``; their limits ``n -> oo`` give the stationary flow ``F^oo``.  A recognized form
is a published closed form (:mod:`modeq.symbolic.recognize`) shown equal to ``F_r`` or
``F^oo_r``; the reference's textbook memory moments are written as the document's ``b_n, r_n``.
"""
from __future__ import annotations

import sympy as sp

from modeq.symbolic.family import n
from modeq.symbolic.operators import collect_fields
from modeq.symbolic.recognize import memory_moment, recognize

from . import checks as C
from .context import RecognizedTerm, text_escape
from .document import Equation
from .printer import tex

__all__ = ["stationary_limit", "recognized", "summary"]


def stationary_limit(ctx):
    """Step 8 (exact in ``n`` with memory): every memory coefficient's limit ``n -> oo`` and
    the stationary flow ``F^oo_r``, checked against the engine's stationary derivation.  When
    ``n`` still enters through sums without closed form, says so and states no limit."""
    if not ctx.exact:
        return
    doc = ctx.doc
    limits = {}
    for c in ctx.coeffs:
        lim = C.stationary_value(c.value)
        limits[c.sym] = lim
        doc.add(f"lim:{c.sym.name}", lim)
    ctx.limits = limits
    finf = [collect_fields(doc.quantities[f"F{r}"].xreplace(limits))
            for r in range(ctx.order + 1)]
    if any(f.has(n) or f.has(sp.Sum) for f in finf):
        # n still enters through sums without closed form: no stationary limit to show
        for c in ctx.coeffs:
            del doc.quantities[f"lim:{c.sym.name}"]
        ctx.exact_limit = False
        st = doc.step(r"The stationary limit $n\to\infty$")
        st.text(r"The step index still enters through memory sums without a closed form, "
                r"so no stationary limit is stated here; derive with the stationary memory "
                r"(\texttt{--stationary}) for the $n\to\infty$ flow.")
        return
    ctx.exact_limit = True
    for r, f in enumerate(finf):
        doc.add(f"Finf{r}", f)
    st = doc.step(r"The stationary limit $n\to\infty$")
    if not ctx.coeffs:
        st.text(r"No memory coefficient depends on $n$ at this order.")
    else:
        st.text(r"The memory coefficients converge geometrically (decays in $[0,1)$):")
    eqs = []
    jj = sp.Symbol("j", integer=True, nonnegative=True)
    for c in ctx.coeffs:
        key = f"lim:{c.sym.name}"
        if c.moment is not None:
            def run(dd, c=c, key=key):
                ref = C.infinite_sum(c.state.stationary_weight(jj) * jj ** c.moment, jj)
                return C.is_zero(dd.q(key) - ref)
            lab = doc.check(f"$\\lim_n {c.latex} = \\sum_{{j\\ge0}}"
                            f"{tex(c.state.stationary_weight(jj))}\\,j^{{{c.moment}}}$ "
                            f"(\\texttt{{sympy.summation}} to $\\infty$)", run)
        else:
            def run(dd, c=c, key=key):
                ok = True
                for bv in (sp.Rational(1, 3), sp.Rational(1, 2), sp.Rational(3, 4)):
                    sub = {s_.decay: bv for s_ in ctx.opt.states}
                    val = dd.q(f"coef:{c.sym.name}").xreplace(sub).xreplace({n: 400})
                    ok = ok and abs(sp.N(val - dd.q(key).xreplace(sub), 50)) < sp.Rational(1, 10**30)
                return ok
            lab = doc.check(f"$\\lim_n {c.latex}$: the closed form at $n=400$ agrees to $10^{{-30}}$ "
                            f"for decays $1/3, 1/2, 3/4$", run)
        eqs.append(Equation(r"\lim_{n\to\infty}" + c.latex, key=key, checks=[lab]))
    if eqs:
        st.equations(*eqs)
    zero = [c for c in ctx.coeffs if c.moment == 1]
    if zero:
        names = ", ".join(f"${c.latex}$" for c in zero)
        lab = doc.check("the first moments vanish at $n=0$ (no memory at the first step)",
                        lambda dd: all(C.is_zero(dd.q(f"coef:{c.sym.name}").xreplace({n: 0}))
                                       for c in zero))
        st.text(f"At $n=0$ the first step has no memory: {names} vanish [{lab}].")
    st.text(r"Hence the stationary flow:")
    eqs = []
    for r in range(ctx.order + 1):
        lab1 = doc.check(f"$F^\\infty_{r}$ is $F_{r}$ with the memory coefficients at their limits",
                         lambda dd, r=r: C.equal(dd.q(f"Finf{r}"), dd.expand(
                             dd.quantities[f"F{r}"].xreplace(
                                 {c.sym: dd.quantities[f"lim:{c.sym.name}"] for c in ctx.coeffs}))))
        lab2 = doc.check(f"$F^\\infty_{r}$ equals the engine's separate stationary derivation "
                         f"(moments $\\mu_m$; {C.equal_method((1, 2))})",
                         lambda dd, r=r: C.equal(dd.q(f"Finf{r}"),
                                                 ctx.flow.terms("full", True)[r], dims=(1, 2)))
        eqs.append(Equation(f"F^{{\\infty}}_{{{r},j}}", key=f"Finf{r}", checks=[lab1, lab2]))
    st.equations(*eqs)


def recognized(ctx):
    """Step 9: the published forms the derived terms provably equal
    (:func:`~modeq.symbolic.recognize.recognize`, exact in ``n`` and in the stationary limit),
    each re-checked against the document's own terms."""
    doc = ctx.doc
    variants = [(ctx.stationary or not ctx.memory, "F")]
    if ctx.exact:
        variants = [(False, "F")] + ([(True, "Finf")] if ctx.exact_limit else [])
    for stationary, prefix in variants:
        dims = (1, 2) if not stationary else (1, 2, 3)
        for rec in recognize(ctx.flow, stationary=stationary, dims=dims):
            key = f"rec{len(ctx.recognitions)}"
            doc.add(key, rec.closed_form)
            r = int(rec.term[1:])
            ctx.recognitions.append(RecognizedTerm(rec, key, f"{prefix}{r}", stationary))
    st = doc.step("Recognized closed forms")
    if not ctx.recognitions:
        st.text(r"No published closed form is registered for this flow; the result above "
                r"stands as derived.")
        return
    st.text(r"The derived terms are equal to the following published forms (the references "
            r"are written independently of the derivation):")
    for item in ctx.recognitions:
        rec, key, fkey, stationary_ = item.recognition, item.key, item.term_key, item.stationary
        r = int(rec.term[1:])
        _abbreviate_reference(ctx, key)
        lhs = f"F^{{\\infty}}_{{{r},j}}" if fkey.startswith("Finf") else f"F_{{{r},j}}"
        dims = (1, 2, 3) if stationary_ else (1, 2)
        lab = doc.check(f"${lhs}$ equals the published form of {text_escape(rec.source)} "
                        f"({C.equal_method(dims)})",
                        lambda dd, key=key, fkey=fkey, dims=dims: C.equal(dd.q(fkey), dd.q(key),
                                                                          dims=dims))
        st.text(r"\textbf{" + text_escape(rec.name) + r"} --- " + text_escape(rec.source)
                + ".")
        extra = ctx.extra_checks.get(key, [])
        st.equations(Equation(lhs, key=key, checks=[lab] + extra))


def _abbreviate_reference(ctx, key):
    """Write the reference's textbook memory moments (``recognize.memory_moment``) as the
    document's symbols ``b_n, r_n``, and check the document's closed forms against them."""
    doc = ctx.doc
    for c in ctx.coeffs:
        if c.moment == 1 and c.state.normalized:
            ref = memory_moment(c.state.decay, c.state.bias_correction)
            new = doc.quantities[key].subs(ref, c.sym)
            if new != doc.quantities[key]:
                doc.quantities[key] = new
                lab = doc.check(f"${c.latex}$ (closed form of step~\\ref{{step:closed}}) equals the "
                                f"textbook $\\frac{{d(1-(n+1)d^n+nd^{{n+1}})}}{{(1-d)"
                                + ("(1-d^{n+1})" if c.state.bias_correction else "")
                                + f"}}$, $d={tex(c.state.decay)}$",
                                lambda dd, c=c, ref=ref: C.is_zero(dd.q(f"coef:{c.sym.name}") - ref))
                ctx.extra_checks.setdefault(key, []).append(lab)


def summary(ctx):
    """Last step: the abstract (what was derived, in which regime, what it was proved equal
    to)."""
    what = (r"exactly in the step index $n$ (bias correction and the start of the memory "
            r"included), then in the stationary limit $n\to\infty$" if ctx.exact else
            r"in the stationary regime (memory through the weight moments)" if ctx.memory else
            r"(no memory)")
    recs = sorted({text_escape(r.recognition.name) for r in ctx.recognitions})
    rec = (" The result is proved equal to: " + "; ".join(recs) + ".") if recs else ""
    ctx.doc.summary = (
        f"From the recursion of {text_escape(ctx.opt.name.replace('_', ' '))} alone, this "
        f"appendix derives the modified flow "
        f"$\\dot{{\\tilde\\theta}}=-{_flow_sum(ctx.order)}$ {what}: "
        r"memory written through the flow, the step and the flow's own step expanded in "
        r"$h$, powers of $h$ matched." + rec + r" Every equation was produced by the "
        r"\texttt{modeq} engine and every equality was verified by SymPy when the document "
        r"was generated.")


def _flow_sum(order):
    """``F_0``, ``(F_0+hF_1)``, ``(F_0+hF_1+h^{2}F_2)``: the modified field in LaTeX."""
    terms = ["F_0"] + [("h" if r == 1 else f"h^{{{r}}}") + f"F_{{{r}}}" for r in range(1, order + 1)]
    return terms[0] if order == 0 else "(" + "+".join(terms) + ")"

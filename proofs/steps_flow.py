"""The step and the flow in powers of ``h``, and matching them (full-batch documents).

The update is ``theta^{(n+1)} = theta^{(n)} - h psi`` with ``psi = sum_r h^r psi_r``; the flow
``d theta/dt = -F``, ``F = sum_r h^r F_r``, moves over one step by its Lie series
``sum_{m>=1} h^m/m! L_{-F}^m theta``, whose ``h^{r+1}`` coefficient is ``-F_r + R_r`` with
``R_r`` built from ``F_0..F_{r-1}``; matching gives ``F_r = psi_r + R_r``.
"""
from __future__ import annotations

from modeq.symbolic.expansion import step_series
from modeq.symbolic.family import g as g_sym
from modeq.symbolic.operators import FULL, Grad, collect_fields
from modeq.symbolic.solve import flow_step_coefficients

from . import checks as C
from .document import Equation

__all__ = ["step_expansion", "flow_step", "matching"]

def step_expansion(ctx):
    """Step 4: the step ``psi`` at the state series, ``psi = sum_r h^r psi_r`` (Taylor in
    ``h``); each ``psi_r`` checked by differentiation and against the engine."""
    doc, opt = ctx.doc, ctx.opt
    psi = step_series(opt, ctx.series, ctx.order, "full")
    for r, p in enumerate(psi):
        doc.add(f"psi{r}", p)
    st = doc.step("The step in powers of $h$")
    if opt.states:
        hats = ", ".join(("\\hat " if s.bias_correction else "") + s.name for s in opt.states)
        st.text(r"The update is $\theta^{(n+1)}=\theta^{(n)}-h\,\psi$ with $\psi$ the step "
                r"evaluated at the states $" + hats + r"$ of the previous step; inserting their "
                r"series and expanding (Taylor in $h$) gives $\psi=\sum_r h^r\psi_r$ with")
    else:
        st.text(r"The update is $\theta^{(n+1)}=\theta^{(n)}-h\,\psi$ with $\psi$ independent "
                r"of $h$:")
    eqs = []
    step = opt.step.xreplace({g_sym: Grad(FULL)})
    for r in range(ctx.order + 1):
        key = f"psi{r}"

        def taylor(dd, r=r):
            series = {s: [dd.q(f"S[{s.name}]{q}") for q in range(ctx.order + 1)]
                      for s in opt.states}
            return C.equal(C.taylor_coefficient(step, series, r), dd.q(f"psi{r}"))

        lab1 = doc.check(f"$\\psi_{r} = \\frac{{1}}{{{r}!}}\\partial_h^{r}\\psi|_{{h=0}}$ by SymPy "
                         f"differentiation of the step at the printed state series", taylor)
        lab2 = doc.check(f"$\\psi_{r}$ as printed equals the engine's step term",
                         lambda dd, r=r: C.equal(dd.q(f"psi{r}"), ctx.derivation.psi[r]))
        eqs.append(Equation(f"\\psi_{{{r},j}}", key=key, checks=[lab1, lab2]))
    st.equations(*eqs)


# -- 5. the flow's own step ------------------------------------------------------------------------

def flow_step(ctx):
    """Step 5: the flow's own step (Lie series); ``R_r`` from ``F_0..F_{r-1}`` and the
    solution ``F_r = psi_r + R_r`` as quantities."""
    doc = ctx.doc
    F = []
    for r in range(ctx.order + 1):
        if r == 0:
            F.append(doc.quantities["psi0"])
            continue
        Rr = flow_step_coefficients(F, r + 1)[r + 1]
        doc.add(f"R{r}", collect_fields(Rr))
        F.append(collect_fields(doc.quantities[f"psi{r}"] + Rr))
    for r, f in enumerate(F):
        doc.add(f"F{r}", f)
    st = doc.step("The flow's own step")
    st.text(r"Over one step the flow moves by its Lie series, "
            r"$\tilde\theta((n+1)h)-\tilde\theta(nh)=\sum_{m\ge1}\frac{h^m}{m!}L_{-F}^m\theta$:")
    rows = [r"\tilde\theta((n+1)h)-\tilde\theta(nh) &= -hF + \tfrac{h^2}{2}L_FF"]
    if ctx.order >= 2:
        rows[-1] += r" - \tfrac{h^3}{6}L_F^2F"
    rows[-1] += r" + O(h^{%d})" % (ctx.order + 2)
    st.items.append(("raw", rows))
    if ctx.order >= 1:
        st.text(r"With $F=\sum_r h^rF_r$ the coefficient of $h^{r+1}$ is $-F_r+R_r$, where "
                r"$R_r$ involves only $F_0,\dots,F_{r-1}$: $R_1=\tfrac12L_{F_0}F_0$"
                + (r", $R_2=\tfrac12(L_{F_0}F_1+L_{F_1}F_0)-\tfrac16L_{F_0}^2F_0$"
                   if ctx.order >= 2 else "") + ". Computed:")
        eqs = []
        for r in range(1, ctx.order + 1):
            def lie_check(dd, r=r):
                F = [dd.q(f"F{a}") for a in range(r)]
                return C.equal(C.lie_series_coefficient(F, r + 1), dd.q(f"R{r}"))

            lab1 = doc.check(f"$R_{r}$ is the $h^{{{r + 1}}}$ coefficient of "
                             f"$\\sum_m \\frac{{h^m}}{{m!}}L^m_{{-F}}\\theta$ with "
                             f"$F=\\sum_{{a<{r}}}h^aF_a$ (series in $h$ expanded independently)",
                             lie_check)
            lab2 = doc.check(f"$R_{r}$ equals the engine's flow-step coefficient plus $F_{r}$",
                             lambda dd, r=r: C.equal(dd.q(f"R{r}"),
                                                     ctx.derivation.flow_step[r + 1] + ctx.derivation.F[r]))
            eqs.append(Equation(f"R_{{{r},j}}", key=f"R{r}", checks=[lab1, lab2]))
        st.equations(*eqs)


# -- 6./7. matching and solution -------------------------------------------------------------------

def matching(ctx):
    """Steps 6-7: matching powers of ``h``, ``F_r = psi_r + R_r``, checked against the
    engine's ``derive()`` result."""
    doc = ctx.doc
    st = doc.step("Matching powers of $h$")
    st.text(r"The optimizer moves by $-h\psi=-\sum_r h^{r+1}\psi_r$. Equating the coefficients "
            r"of $h^{r+1}$ with the flow's step, $-\psi_r=-F_r+R_r$ ($R_0=0$), gives")
    rows = [r"F_0 &= \psi_0"]
    for r in range(1, ctx.order + 1):
        rows.append(r"F_{%d} &= \psi_{%d} + R_{%d}" % (r, r, r))
    st.items.append(("raw", [" \\\\ ".join(rows)]))
    st2 = doc.step("The modified flow" + (" (exact in $n$)" if ctx.exact else ""))
    eqs = []
    for r in range(ctx.order + 1):
        def match(dd, r=r):
            rhs = dd.q(f"psi{r}") + (dd.q(f"R{r}") if r else 0)
            return C.equal(dd.q(f"F{r}"), rhs)

        lab1 = doc.check(f"$F_{r} = \\psi_{r}" + (f" + R_{r}$" if r else "$")
                         + " (canonical operator form)", match)
        lab2 = doc.check(f"$F_{r}$ equals the engine's \\texttt{{derive()}} result "
                         f"({C.equal_method((1, 2))})",
                         lambda dd, r=r: C.equal(dd.q(f"F{r}"), ctx.derivation.F[r], dims=(1, 2)))
        eqs.append(Equation(f"F_{{{r},j}}", key=f"F{r}", checks=[lab1, lab2]))
    st2.text(r"Solving in turn:")
    st2.equations(*eqs)
    if ctx.exact and ctx.coeffs:
        st2.text(r"The step index enters only through the memory coefficients.")

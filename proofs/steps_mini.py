"""The steps of a mini-batch derivation document (order 1).

Mini batch: step ``k`` uses its own loss ``E_k`` (``g^{(k)} = grad E_k``, ``H^{(k)}``, all at
the current point ``theta = tilde theta(nh)``); the flow on ``[nh, (n+1)h)`` is
``d theta/dt = -(F_0^{(n)} + h F_1^{(n)})`` and depends on ``E_0, ..., E_n``.  The quantities
are the engine's; the printed forms are the named-state display forms of
:mod:`modeq.proofs.mini_display`.  Checks:

* every printed form, expanded back, equals the engine's expression at ``n = 0, 1, 2``
  (sums unrolled, components ``p = 1`` with one set of generic symbols per batch);
* the memory sums as written equal their rearranged form (same, ``n = 0..3``);
* ``psi_r`` is the Taylor coefficient of the step, ``R_1`` the Lie-series coefficient,
  ``F_r = psi_r + R_r`` (same, ``n = 0..2``);
* with all batches equal the flow reduces to the full-batch flow exact in ``n``;
* SGD: ``F_1 = (1/2) H^{(n)} g^{(n)}``, the published mini-batch form.
"""
from __future__ import annotations

import sympy as sp

from modeq.symbolic.family import g as g_sym, n
from modeq.symbolic.operators import Grad, Hess
from modeq.symbolic.pipeline import derivation

from . import checks as C
from .context import text_escape
from .document import Equation
from .mini_display import MiniDisplay, MiniTerms
from .printer import tex

__all__ = ["named_display", "mini_batch_convention", "named_states", "engine_quantities",
           "memory_sums", "step_expansion", "flow_step", "modified_flow",
           "reduction_checks", "summary"]

STEPS = (0, 1, 2)


def _shown(ctx, key, lhs, checks_=(), steps=STEPS):
    """An equation printing the display form of quantity ``key``, checked by expanding it back
    and comparing with the engine's expression at the steps ``steps``."""
    doc, disp = ctx.doc, ctx.mini
    dk = f"show:{key}"
    doc.add(dk, disp.transform(doc.quantities[key]))
    lab = doc.check(f"the printed ${lhs}$, expanded back, equals the engine's expression "
                    f"($n={','.join(map(str, steps))}$, components, one loss per batch)",
                    lambda dd, dk=dk, key=key: C.same_at_steps(
                        disp.expand(dd.quantities[dk]), dd.q(key), steps=steps))
    return Equation(lhs, key=dk, checks=[lab] + list(checks_))


def named_display(ctx):
    """First step: the named states, weights and ``f^{(X)}`` of the display, and their
    printer."""
    ctx.mini = MiniDisplay(ctx.opt, ctx.derivation.F[0])
    ctx.doc.display.names = ctx.mini.names
    ctx.doc.display.term_printer = MiniTerms(ctx.mini).terms


def mini_batch_convention(ctx):
    """The convention that distinguishes mini batch: one loss per step."""
    ctx.doc.conventions.insert(1, r"Mini batch: step $k$ uses its own loss $E_k$; $g^{(k)}="
                                  r"\nabla E_k(\theta)$, $H^{(k)}=\nabla^2E_k(\theta)$, all at "
                                  r"the current point $\theta=\tilde\theta(nh)$.")


def named_states(ctx):
    """The recursion's step, continued: the named states ``m^{(X+1)}``, ``sigma^{(X+1)}``,
    ``f^{(X)}`` as sums over the past losses."""
    doc, disp = ctx.doc, ctx.mini
    if not disp.opt.states:
        return
    st = doc.steps[-1]
    rows = []
    X, k = sp.Symbol("X", integer=True), sp.Symbol("k", integer=True)
    for name, (E, s) in disp.ema.items():
        W, _ = disp.W[name]
        rows.append(Equation(tex(E(X), disp.names), tex=tex(sp.Sum(sp.Mul(
            W(X, k), s.of.xreplace({g_sym: Grad(k)}), evaluate=False), (k, 0, X)), disp.names),
            relation=":="))
    if disp.sigma is not None:
        Ev, _ = disp.ema["v"]
        rows.append(Equation(tex(disp.sigma(X), disp.names),
                             tex=r"\sqrt{%s + \varepsilon}" % tex(Ev(X), disp.names),
                             relation=":="))
    if disp.F0_display is not None:
        rows.append(Equation(tex(disp.f(X), disp.names),
                             tex=r"F^{(X)}_{0,j} = " + tex(disp.F0_display.xreplace({n: X}),
                                                           disp.names), relation=":="))
    st.text(r"In mini batch the states are sums over the past losses; for any step $X$ we "
            r"name (with $g^{(k)}=\nabla E_k$ at the current point):")
    st.equations(*rows)


def engine_quantities(ctx):
    """The engine's state terms, ``psi_r``, ``F_r`` and ``R_1`` as the document's
    quantities."""
    doc, d = ctx.doc, ctx.derivation
    for ser in d.states:
        for r in range(ctx.order + 1):
            doc.add(f"raw[{ser.state.name}]{r}", ser.raw[r])
            doc.add(f"S[{ser.state.name}]{r}", ser.terms[r])
    for r in range(ctx.order + 1):
        doc.add(f"psi{r}", d.psi[r])
        doc.add(f"F{r}", d.F[r])
    doc.add("R1", d.flow_step[2] + d.F[1])


def memory_sums(ctx):
    """Memory written through the flow (the sums keep their batch index), then rearranged."""
    doc, opt, order = ctx.doc, ctx.opt, ctx.order
    if not opt.states:
        return
    st = doc.step("Memory written through the flow")
    st.text(r"Past iterates are written through the flow backwards from "
            r"$\theta=\tilde\theta(nh)$, $q(\theta^{(k)})=q+h\sum_{l=k}^{n-1}"
            r"L_{F_0^{(l)}}q+O(h^2)$; now each $\nabla E_k$ is a different loss, so "
            r"the sums keep their batch index:")
    eqs = []
    for s in opt.states:
        for r in range(order + 1):
            lab = doc.check(f"$S_{{{s.name},{r}}}$: the sums as written equal the "
                            f"rearranged form below ($n=0,\\dots,3$, components, one loss "
                            f"per batch)",
                            lambda dd, s=s, r=r: C.same_at_steps(
                                dd.q(f"raw[{s.name}]{r}"), dd.q(f"S[{s.name}]{r}"),
                                steps=(0, 1, 2, 3)))
            eqs.append(_shown(ctx, f"raw[{s.name}]{r}", f"S_{{{s.name},{r}}}", [lab]))
    st.items.append(("equations", eqs))
    st2 = doc.step("The memory sums, rearranged")
    st2.text(r"The sums do not collapse in mini batch; the engine pushes them into the "
             r"linear operators and swaps the triangular double sums:")
    st2.items.append(("equations", [_shown(ctx, f"S[{s.name}]{r}", f"S_{{{s.name},{r}}}")
                                    for s in opt.states for r in range(order + 1)]))


def step_expansion(ctx):
    """The step in powers of ``h`` at the state series, checked by differentiation."""
    doc, opt, order = ctx.doc, ctx.opt, ctx.order
    st = doc.step("The step in powers of $h$")
    st.text(r"Inserting the state series into the step $\psi$ and expanding in $h$:")
    step = opt.step.xreplace({g_sym: Grad(n)})
    eqs = []
    for r in range(order + 1):
        lab = doc.check(f"$\\psi_{r}$ is the $h^{r}$ Taylor coefficient of the step at the "
                        f"state series ($n=0,1,2$)",
                        lambda dd, r=r: C.same_at_steps(C.taylor_coefficient(step, {
                            s: [dd.q(f"S[{s.name}]{q}") for q in range(order + 1)]
                            for s in opt.states}, r), dd.q(f"psi{r}")))
        eqs.append(_shown(ctx, f"psi{r}", f"\\psi_{{{r},j}}", [lab]))
    st.items.append(("equations", eqs))


def flow_step(ctx):
    """The flow's own step and matching: ``R_1`` from the Lie series."""
    doc = ctx.doc
    st = doc.step("The flow's own step and matching")
    st.text(r"The flow's step is $-hF+\tfrac{h^2}{2}L_FF+O(h^3)$ on $[nh,(n+1)h)$; the "
            r"coefficient of $h^2$ is $-F_1+R_1$ with $R_1=\tfrac12L_{F_0}F_0$, and matching "
            r"gives $F_0=\psi_0$, $F_1=\psi_1+R_1$.")
    lab_r = doc.check(r"$R_1$ is the $h^2$ coefficient of $\sum_m\frac{h^m}{m!}L^m_{-F}\theta$ "
                      r"with $F=F_0$ ($n=1$: two past losses)",
                      lambda dd: C.same_at_steps(C.lie_series_coefficient([dd.q("F0")], 2),
                                                 dd.q("R1"), steps=(1,)))
    st.items.append(("equations", [_shown(ctx, "R1", r"R_{1,j}", [lab_r])]))


def modified_flow(ctx):
    """The modified flow ``F_r = psi_r + R_r`` on ``[nh, (n+1)h)``."""
    doc = ctx.doc
    st = doc.step("The modified flow")
    st.text(r"On $[nh,(n+1)h)$, with the losses $E_0,\dots,E_n$ of the steps so far:")
    eqs = []
    for r in range(ctx.order + 1):
        lab = doc.check(f"$F_{r}=\\psi_{r}" + ("+R_1$" if r else "$") + " ($n=0,1,2$)",
                        lambda dd, r=r: C.same_at_steps(
                            dd.q(f"F{r}"), dd.q(f"psi{r}") + (dd.q("R1") if r else 0)))
        eqs.append(_shown(ctx, f"F{r}", f"F^{{(n)}}_{{{r},j}}", [lab]))
    st.items.append(("equations", eqs))


def reduction_checks(ctx):
    """Equal losses give the full-batch flow exact in ``n``; SGD's published correction."""
    doc, opt, order = ctx.doc, ctx.opt, ctx.order
    st = doc.step("Checks against the full-batch flow and published forms")
    full = derivation(opt, order, "full", False)
    labs = []
    for r in range(order + 1):
        labs.append(doc.check(
            f"with every $E_k=E$, $F_{r}$ reduces to the full-batch $F_{r}$ exact in $n$ "
            f"(components: $p=1$ for $n=0,1,2$ and $p=2$ for $n=0,1$)",
            lambda dd, r=r: C.same_at_steps(dd.q(f"F{r}"), full.F[r], steps=(0, 1, 2),
                                            p=1, merge=True)
            and C.same_at_steps(dd.q(f"F{r}"), full.F[r], steps=(0, 1), p=2, merge=True)))
    st.text(r"When all losses are equal the flow is the full-batch flow (exact in $n$) "
            f"[{', '.join(labs)}].")
    if not opt.states and opt.step == g_sym:
        ref = Hess(n, Grad(n)) / 2
        doc.add("sgd_ref", ref)
        lab = doc.check(r"$F_1=\frac12H^{(n)}g^{(n)}$ (SGD's modified flow on each step, as in "
                        r"Smith, Dherin, Barrett, De, ICLR 2021)",
                        lambda dd: C.same_at_steps(dd.q("F1"), dd.q("sgd_ref"), steps=(0, 1, 2),
                                                   p=2))
        st.text(r"For SGD this is the published per-step correction:")
        st.items.append(("equations", [Equation(r"F^{(n)}_{1,j}", key="sgd_ref",
                                                checks=[lab])]))


def summary(ctx):
    """Last step: the abstract."""
    ctx.doc.summary = (
        f"From the recursion of {text_escape(ctx.opt.name.replace('_', ' '))} "
        r"with a different loss $E_k$ at every step, this appendix derives the "
        r"modified flow $\dot{\tilde\theta}=-(F_0^{(n)}+hF_1^{(n)})$ on "
        r"$[nh,(n+1)h)$; it depends on $E_0,\dots,E_n$. Every printed form was "
        r"expanded back and compared with the engine's result, and the flow was "
        r"checked to reduce to the full-batch flow when all losses are equal.")

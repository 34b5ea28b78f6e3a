"""The opening steps of a document: abbreviations, conventions and the recursion.

:func:`conventions` and :func:`recursion` open both the full-batch and the mini-batch
documents; :func:`square_root_abbreviations` is the full-batch document's first step.

Conventions: component ``j`` of vectors, ``g^{(k)} = grad E(theta^{(k)})`` (full batch) or
``grad E_k`` (mini batch); a state ``x^{(n+1)} = d x^{(n)} + c phi(g^{(n)})`` started at zero is
the weighted sum ``sum_{k=0}^n w_{n,k} phi(g^{(k)})`` (``w_{n,k}`` the EMA weight, divided by
the bias-correction factor ``1 - d^(n+1)`` when bias-corrected).
"""
from __future__ import annotations

import sympy as sp

from modeq.symbolic.family import g as g_sym, n

from . import checks as C
from .context import text_escape
from .document import Equation
from .notation import FieldSymbol, find_radicand
from .printer import tex

__all__ = ["square_root_abbreviations", "conventions", "recursion", "K_IDX"]

K_IDX = sp.Symbol("k", integer=True)
S_SYM = FieldSymbol("s", positive=True)
U_SYM = FieldSymbol("u")


def square_root_abbreviations(ctx):
    """Full batch: ``s_j = sqrt(R)`` for the single radicand ``R`` of ``F_0`` and, when ``F_0``
    does not depend on ``n`` (Adam, RMSProp stationary: ``u = g/s``), ``u = F_0``, the field
    that appears as the operators' argument."""
    doc = ctx.doc
    F0 = ctx.derivation.F[0]
    R = find_radicand(F0)
    doc.display.radicand = R
    doc.display.s = S_SYM if R is not None else None
    if R is not None:
        doc.abbreviate(S_SYM, sp.sqrt(R), "the square root in the step",
                       latex=f"s_j = \\sqrt{{{tex(R, ctx.names)}}}")
    if R is not None and not F0.has(n):
        doc.abbreviate(U_SYM, F0, "the leading term F_0", latex="")
        doc.display.u, doc.display.u_value = U_SYM, F0


# -- conventions ---------------------------------------------------------------------------------

def conventions(ctx):
    """The conventions of every document (notation, the flow, what a check label means)."""
    doc, opt = ctx.doc, ctx.opt
    doc.conventions = [
        r"Parameters $\theta\in\mathbb{R}^p$, a smooth loss $E$, step size $h>0$. "
        r"$g=\nabla E(\theta)$, $H=\nabla^2E(\theta)$, $T=\nabla^3E(\theta)$. Products, "
        r"quotients and square roots of vectors are componentwise. A formula for component "
        r"$j$ uses $g_j$, $s_j$, \dots; inside an operator the same letters denote the whole "
        r"vector: $(H\,u)_j=\sum_i H_{ji}u_i$ and $T[u,w]_j=\sum_{i,k}T_{jik}u_iw_k$.",
        r"The modified flow on $[nh,(n+1)h)$ is $\dot{\tilde\theta}=-F^{(n)}(\tilde\theta)$ with "
        r"$F=F_0+hF_1+h^2F_2+\cdots$; iterates are $\theta^{(n)}$, steps counted from $0$, and "
        r"truncating after $F_r$ keeps $\theta^{(n)}-\tilde\theta(nh)=O(h^{r+1})$ on a fixed "
        r"horizon. $L_Vq=Dq\cdot V$ is the Lie derivative along $V$: $L_Vg=H\,V$, "
        r"$L_V(H\,w)=T[V,w]+H\,(L_Vw)$.",
        r"Every equation tagged with a check label [C$k$] was verified by SymPy (exact "
        r"arithmetic, symbolic hyperparameters) when this document was generated; the list of "
        r"checks and what each one compares is at the end. A failed check stops the "
        r"generation: no document is written.",
    ]
    if opt.notes:
        doc.conventions.append("Note: " + text_escape(opt.notes) + ".")


# -- 1. the recursion ------------------------------------------------------------------------------

def _state_tex(s, when, hat=False):
    base = ("\\hat " if hat else "") + s.name
    return f"{base}^{{({when})}}_j"


def _phi_tex(ctx, s, when):
    gk = sp.Symbol(f"g^{{({when})}}_j")
    return tex(s.of.xreplace({g_sym: gk}), ctx.names)


def recursion(ctx):
    """Step 1: the optimizer's recursion and its unrolled weighted sums ``w_{n,k}``."""
    doc, opt = ctx.doc, ctx.opt
    st = doc.step("The recursion")
    if not opt.states:
        st.text(r"The optimizer keeps no state; one step is")
        st.equations(Equation(r"\theta^{(n+1)}_j",
                              tex=r"\theta^{(n)}_j - h\," + tex(opt.step.xreplace(
                                  {g_sym: sp.Symbol("g^{(n)}_j")}))))
        st.text(r"with $g^{(n)}=\nabla " + ("E_n" if ctx.batch == "mini" else "E")
                + r"(\theta^{(n)})$.")
        return
    loss = r"E_k" if ctx.batch == "mini" else "E"
    st.text(r"The declaration, component $j$, with $g^{(k)}=\nabla " + loss
            + r"(\theta^{(k)})$ and zero initial states:")
    eqs = []
    for s in opt.states:
        d_ = s.decay
        c_ = (1 - d_) if s.normalized else sp.S.One
        rhs = f"{tex(d_)}\\,{_state_tex(s, 'n')} + "
        rhs += _phi_tex(ctx, s, "n") if c_ == 1 else \
            f"\\left({tex(c_)}\\right){_phi_tex(ctx, s, 'n')}"
        eqs.append(Equation(_state_tex(s, "n+1"), tex=rhs))
        if s.bias_correction:
            eqs.append(Equation(_state_tex(s, "n+1", hat=True),
                                tex=r"\frac{%s}{1-%s}" % (_state_tex(s, "n+1"),
                                                         tex(d_ ** (n + 1)))))
    step_syms = {s: sp.Symbol(_state_tex(s, "n+1", hat=s.bias_correction)) for s in opt.states}
    step = opt.step.xreplace(step_syms).xreplace({g_sym: sp.Symbol("g^{(n)}_j")})
    eqs.append(Equation(r"\theta^{(n+1)}_j", tex=r"\theta^{(n)}_j - h\," + tex(step)))
    st.equations(*eqs)
    st.text(r"Unrolled, every state is a weighted sum of the whole history,")
    eqs = []
    for s in opt.states:
        W = sp.Function(f"w_{s.name}")
        ctx.names[W] = (lambda P, a, k, name=s.name:
                      f"w^{{({name})}}_{{{P._print(a)},{P._print(k)}}}")
        lhs = _state_tex(s, "n+1", hat=s.bias_correction)
        gk = sp.Symbol("g^{(k)}_j")
        rhs = tex(sp.Sum(sp.Mul(W(n, K_IDX), s.of.xreplace({g_sym: gk}), evaluate=False),
                         (K_IDX, 0, n)), ctx.names)

        def run(_doc, s=s):
            d_ = s.decay
            bc = (lambda m: (1 - d_ ** (m + 1))) if s.bias_correction else (lambda m: 1)
            c_ = (1 - d_) if s.normalized else 1
            kk = sp.Symbol("kk", integer=True)
            first = s.weight(n + 1, kk) * bc(n + 1) - d_ * s.weight(n, kk) * bc(n)
            last = s.weight(n, n) * bc(n) - c_
            return C.is_zero(first) and C.is_zero(last)

        lab = doc.check(f"the weights $w^{{({s.name})}}_{{n,k}}$ satisfy the recursion of "
                        f"${s.name}$: $w_{{n+1,k}}\\,B_{{n+1}} = {tex(s.decay)}\\,w_{{n,k}}\\,B_n$ "
                        f"for $k\\le n$ and $w_{{n,n}}B_n = {tex((1 - s.decay) if s.normalized else 1)}$"
                        f" ($B_n$ the bias-correction factor, or $1$)", run)
        eqs.append(Equation(lhs, tex=rhs, checks=[lab]))
        eqs.append(Equation(f"w^{{({s.name})}}_{{n,k}}", tex=tex(s.weight(n, K_IDX))))
        doc.display.weights[s.name] = (W, s)
        if s.normalized and s.bias_correction:
            def norm(_doc, s=s):
                return C.is_zero(C.evaluate_sums(sp.Sum(s.weight(n, K_IDX), (K_IDX, 0, n))) - 1)
            lab = doc.check(f"the weights of ${s.name}$ sum to $1$ (SymPy summation)", norm)
            eqs[-1].checks.append(lab)
    st.equations(*eqs)
    if any(s.normalized and s.bias_correction for s in opt.states):
        st.text(r"Bias correction makes the normalised weights sum to one, so a constant "
                r"gradient gives exact averages.")

"""Adam-type flows (Adam, RMSProp; eps inside, bias-corrected): the paper's correction, its
perturbed one-norm form and the regime table, as steps of a derivation document.

The reference is written here from the paper (Cattaneo, Klusowski, Shigida, "On the Implicit
Bias of Adam", ICML 2024): ``correction_j = K_j (H u)_j`` with
``K = (h/2){(1+beta)/(1-beta) - (1+rho)/(1-rho) + (1+rho)/(1-rho) eps/(g_j^2+eps)}``, ``u = g/s``,
``s = sqrt(g^2+eps)``, and ``dtheta/dt = -(g + correction)/s``; RMSProp is ``beta = 0``.
The regime table is the engine's (:func:`modeq.symbolic.regimes.regime_table`), each entry
re-derived as a limit of the printed ``K`` and compared with the published coefficients.
"""
from __future__ import annotations

import sympy as sp

from modeq.symbolic.components import LossProvider, lower_vector
from modeq.symbolic.family import beta, eps, h, rho
from modeq.symbolic.operators import FULL, Grad, Hess
from modeq.symbolic.regimes import regime_table

from . import checks as C
from .document import Equation
from .notation import find_radicand

__all__ = ["paper_correction", "regimes"]


def _adam_like(ctx):
    """Adam or RMSProp, bias-corrected, eps inside the root, order >= 1."""
    names = {s.name for s in ctx.opt.states}
    return (ctx.order >= 1 and names in ({"m", "v"}, {"v"})
            and all(s.bias_correction for s in ctx.opt.states)
            and find_radicand(ctx.derivation.F[0]) == sp.expand(Grad(FULL) ** 2 + eps))


def _beta(ctx):
    """``beta`` for Adam, ``0`` for RMSProp."""
    return beta if "m" in {s.name for s in ctx.opt.states} else sp.S.Zero


def _paper_K(beta_value):
    """The correction coefficient of Cattaneo, Klusowski, Shigida (ICML 2024), written from the
    paper: correction_j = K_j (H u)_j with this K (beta_value = 0 for RMSProp)."""
    g = Grad(FULL)
    A = (1 + beta_value) / (1 - beta_value)
    B = (1 + rho) / (1 - rho)
    return h / 2 * (A - B + B * eps / (g ** 2 + eps))


def paper_correction(ctx):
    """Step 10 (Adam-type): ``(H u)_j`` is the gradient of the perturbed one-norm, and
    ``h s_j F^oo_{1,j}`` is the paper's correction."""
    if not _adam_like(ctx):
        return
    doc, bval = ctx.doc, _beta(ctx)
    g = Grad(FULL)
    s_ = sp.sqrt(g ** 2 + eps)
    st = doc.step("The correction in the paper's form")
    st.text(r"With $u=F_0=g/s$ the single operator in $F_1$ is the gradient of the perturbed "
            r"one-norm $\|v\|_{1,\varepsilon}=\sum_i\sqrt{v_i^2+\varepsilon}$:")
    lab1 = doc.check(r"$(H\,u)_j=\partial_j\|\nabla E\|_{1,\varepsilon}$ for an arbitrary smooth "
                     r"$E$ (undefined SymPy function) in dimensions $p=1,2,3$", _one_norm_check)
    st.items.append(("raw", [r"(H\,u)_j &= \sum_i \partial_j\partial_iE\,\frac{\partial_iE}"
                             r"{\sqrt{(\partial_iE)^2+\varepsilon}} = \partial_j\|\nabla E\|_"
                             r"{1,\varepsilon} \qquad [\mathrm{" + lab1 + "}]"]))
    K = _paper_K(bval)
    doc.add("Kpaper", K)
    corr = K * Hess(FULL, g / s_)
    doc.add("corr", corr)
    fkey = "Finf1" if ctx.exact else "F1"
    lab2 = doc.check(r"$h\,s_j\,F^\infty_{1,j}$ equals the paper's correction$_j$ "
                     f"({C.equal_method((1, 2, 3))})",
                     lambda dd: C.equal(h * sp.sqrt(Grad(FULL) ** 2 + eps) * dd.q(fkey), dd.q("corr"),
                                        dims=(1, 2, 3)))
    st.text(r"In the stationary regime this is the correction of Cattaneo, Klusowski and "
            r"Shigida (ICML 2024): $\dot{\tilde\theta}_j=-(g_j+\mathrm{correction}_j)/s_j$ with")
    A = r"1" if bval == 0 else r"\frac{1+\beta}{1-\beta}"
    paper = (r"\frac{h}{2}\Bigl\{" + A + r"-\frac{1+\rho}{1-\rho}+\frac{1+\rho}{1-\rho}"
             r"\,\frac{\varepsilon}{g_j^2+\varepsilon}\Bigr\}\,"
             r"\partial_j\|\nabla E\|_{1,\varepsilon}")
    st.equations(Equation(r"\mathrm{correction}_j", tex=paper, checks=[lab2]))
    A_inline = r"1" if bval == 0 else r"(1+\beta)/(1-\beta)"
    st.text(r"Inline: $\mathrm{correction}_j=\frac h2\bigl\{" + A_inline + r"-(1+\rho)/(1-\rho)"
            r"+(1+\rho)/(1-\rho)\cdot\varepsilon/(g_j^2+\varepsilon)\bigr\}\,\partial_j"
            r"\|\nabla E\|_{1,\varepsilon}$ with the perturbed one-norm "
            r"$\|\nabla E\|_{1,\varepsilon}=\sum_i\sqrt{(\partial_iE)^2+\varepsilon}$.")
    st.text(r"(the published formula" + (r" with $\beta=0$" if bval == 0 else "")
            + r"; the check compares it, as a SymPy expression, with the derived "
            r"$h\,s_j\,F^\infty_{1,j}$), that is, in the canonical layout,")
    st.equations(Equation(r"\mathrm{correction}_j", key="corr", checks=[lab2]))


def _one_norm_check(_doc):
    for p in (1, 2, 3):
        th = sp.symbols(f"x1:{p + 1}", real=True)
        E = sp.Function("E")(*th)
        P = LossProvider(E, list(th))
        lhs = lower_vector(Hess(FULL, Grad(FULL) / sp.sqrt(Grad(FULL) ** 2 + eps)), P)
        norm = sum(sp.sqrt(sp.diff(E, t) ** 2 + eps) for t in th)
        for j, t in enumerate(th):
            if sp.simplify(lhs[j] - sp.diff(norm, t)) != 0:
                return False
    return True


def regimes(ctx):
    """Step 11 (Adam-type): the regime table, each entry re-derived as a limit of the printed
    ``K`` and compared with the published coefficients."""
    if not _adam_like(ctx):
        return
    doc, bval = ctx.doc, _beta(ctx)
    rt = regime_table(ctx.flow)
    st = doc.step("Regime table")
    st.text(r"Write $\mathrm{correction}_j=K(g_j)\,(H\,u)_j$. The table is computed as limits "
            r"of the derived coefficient $K=h\,s\,c$, where $c$ is the coefficient of $(H\,u)_j$ "
            r"in $F^\infty_1$:")
    G = Grad(FULL)
    doc.add("K", rt.K.xreplace({x_: G for x_ in rt.K.free_symbols if x_.name == "g"}))
    doc.add("K0", rt.K_small)
    doc.add("Kinf", rt.K_large)
    fkey = "Finf1" if ctx.exact else "F1"

    def k_is_derived(dd):
        return C.equal(dd.q("K") * Hess(FULL, G / sp.sqrt(G ** 2 + eps)),
                       h * sp.sqrt(G ** 2 + eps) * dd.q(fkey))

    lab1 = doc.check(r"$K\,(H\,u)_j = h\,s_j\,F^\infty_{1,j}$", k_is_derived)
    x = sp.Symbol("x", positive=True)

    def small(dd):
        K = dd.q("K").xreplace({G: x})
        lim = sp.limit(K, eps, 0, "+")
        pub = h / 2 * ((1 + bval) / (1 - bval) - (1 + rho) / (1 - rho))
        return C.is_zero(lim - dd.q("K0")) and C.is_zero(dd.q("K0") - pub)

    def large(dd):
        K = dd.q("K").xreplace({G: x})
        lim = sp.limit(K, eps, sp.oo)
        return C.is_zero(lim - dd.q("Kinf")) and C.is_zero(
            dd.q("Kinf") - h / 2 * (1 + bval) / (1 - bval))

    def sign(dd):
        return C.is_zero(dd.q("K0") * (1 - bval) * (1 - rho) / h - (bval - rho))

    lab2 = doc.check(r"$\lim_{\varepsilon\to0}K$ recomputed from the printed $K$ equals the "
                     r"printed value and the paper's $\frac h2\{\frac{1+\beta}{1-\beta}-"
                     r"\frac{1+\rho}{1-\rho}\}$", small)
    lab3 = doc.check(r"$\lim_{\varepsilon\to\infty}K$ recomputed equals the printed value and "
                     r"$\frac h2\frac{1+\beta}{1-\beta}$", large)
    lab4 = doc.check(r"$K_0\,(1-\beta)(1-\rho)/h=\beta-\rho$, so $\mathrm{sign}\,K_0="
                     r"\mathrm{sign}(\beta-\rho)$", sign)
    st.equations(Equation(r"K(g_j)", key="K", checks=[lab1]),
                 Equation(r"K_0=\lim_{\varepsilon\to0}K", key="K0", checks=[lab2, lab4]),
                 Equation(r"K_\infty=\lim_{\varepsilon\to\infty}K", key="Kinf", checks=[lab3]))
    st.text(r"So $K_0=\frac h2\{" + (r"1" if bval == 0 else r"(1+\beta)/(1-\beta)")
            + r"-(1+\rho)/(1-\rho)\}$" + (r", negative for every $\rho\in(0,1)$." if bval == 0
                                            else r", negative exactly when $\rho>\beta$."))
    st.text(r"As $\varepsilon\to0$ (with $g_j\ne0$), $u_j\to\mathrm{sign}(g_j)$ and the "
            r"correction is $K_0\,\partial_j\|\nabla E\|_1$; as $\varepsilon\to\infty$, "
            r"$\sqrt\varepsilon\,u\to g$ and $\sqrt\varepsilon\,\mathrm{correction}_j\to "
            r"K_\infty(H\,g)_j=\frac{K_\infty}{2}\partial_j\|\nabla E\|_2^2$, a penalty like "
            r"gradient descent's.")
    rows = []
    verdict = {"||grad E||_1 penalized": r"penalises $\|\nabla E\|_1$",
               "-||grad E||_1 penalized (anti)": r"anti-penalises $\|\nabla E\|_1$",
               "no first-order bias": r"no first-order bias"}
    large_v = {"||grad E||_2^2 penalized": r"penalises $\|\nabla E\|_2^2$",
               "||grad E||_2^2 anti-penalized": r"anti-penalises $\|\nabla E\|_2^2$"}
    cases = {"rho > beta": r"$\rho>\beta$", "beta > rho": r"$\beta>\rho$",
             "beta = rho": r"$\beta=\rho$"}
    for case, sm, lg in rt.rows:
        if bval == 0 and case != "rho > beta":
            continue
        rows.append([cases[case] if bval != 0 else r"$\beta=0<\rho$", verdict[sm], large_v[lg]])
    st.table([r"case", r"$\varepsilon\to0$", r"$\varepsilon\to\infty$"], rows)



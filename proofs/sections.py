"""The steps of a full-batch derivation document: prose, equations and the checks behind them.

Each function fills one or two named steps of the :class:`~modeq.proofs.document.Document`
being built by :class:`~modeq.proofs.build._FullBuilder` (``b``) and registers the checks that
establish its equations.  Checks read the quantities back from the document (``doc.q``), so
they verify what is printed.
"""
from __future__ import annotations

import sympy as sp

from modeq.symbolic.components import lower_vector
from modeq.symbolic.family import g as g_sym, n
from modeq.symbolic.operators import FULL, Grad

from . import checks as C
from .document import Equation
from .printer import tex

K_IDX = sp.Symbol("k", integer=True)
L_IDX = sp.Symbol("l", integer=True)
J_IDX = sp.Symbol("j", integer=True)


def text_escape(s):
    """Unicode of the engine's source strings -> LaTeX text."""
    table = {"&": r"\&", "–": "--", "—": "---", "²": "$^2$", "³": "$^3$", "ε": r"$\varepsilon$",
             "β": r"$\beta$", "ρ": r"$\rho$", "∇": r"$\nabla$", "‖": r"$\|$", "·": r"$\cdot$",
             "θ": r"$\theta$", "∂": r"$\partial$", "_": r"\_", "%": r"\%", "#": r"\#"}
    return "".join(table.get(ch, ch) for ch in s)


def title(opt, order, batch, stationary):
    kind = "mini batch" if batch == "mini" else "full batch"
    variant = "" if batch == "mini" or not opt.states else (
        ", stationary" if stationary else ", exact in $n$")
    return (f"Modified flow of {text_escape(opt.name.replace('_', ' '))}: derivation to order "
            f"{order} ({kind}{variant})")


# -- conventions ---------------------------------------------------------------------------------

def conventions(doc, b):
    opt = b.opt
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

def _state_tex(b, s, when, hat=False):
    base = ("\\hat " if hat else "") + s.name
    return f"{base}^{{({when})}}_j"


def _phi_tex(b, s, when):
    gk = sp.Symbol(f"g^{{({when})}}_j")
    return tex(s.of.xreplace({g_sym: gk}), b.names)


def recursion(doc, b):
    opt = b.opt
    st = doc.step("The recursion")
    if not opt.states:
        st.text(r"The optimizer keeps no state; one step is")
        st.equations(Equation(r"\theta^{(n+1)}_j",
                              tex=r"\theta^{(n)}_j - h\," + tex(opt.step.xreplace(
                                  {g_sym: sp.Symbol("g^{(n)}_j")}))))
        st.text(r"with $g^{(n)}=\nabla E(\theta^{(n)})$.")
        return
    st.text(r"The declaration, component $j$, with $g^{(k)}=\nabla E(\theta^{(k)})$ and zero "
            r"initial states:")
    eqs = []
    for s in opt.states:
        d_ = s.decay
        c_ = (1 - d_) if s.normalized else sp.S.One
        rhs = f"{tex(d_)}\\,{_state_tex(b, s, 'n')} + "
        rhs += (f"{tex(c_)}\\,{_phi_tex(b, s, 'n')}" if c_ != 1 else _phi_tex(b, s, "n")) \
            if c_ == 1 else f"\\left({tex(c_)}\\right){_phi_tex(b, s, 'n')}"
        eqs.append(Equation(_state_tex(b, s, "n+1"), tex=rhs))
        if s.bias_correction:
            eqs.append(Equation(_state_tex(b, s, "n+1", hat=True),
                                tex=r"\frac{%s}{1-%s}" % (_state_tex(b, s, "n+1"),
                                                         tex(d_ ** (n + 1)))))
    step_syms = {s: sp.Symbol(_state_tex(b, s, "n+1", hat=s.bias_correction)) for s in opt.states}
    step = opt.step.xreplace(step_syms).xreplace({g_sym: sp.Symbol("g^{(n)}_j")})
    eqs.append(Equation(r"\theta^{(n+1)}_j", tex=r"\theta^{(n)}_j - h\," + tex(step)))
    st.equations(*eqs)
    st.text(r"Unrolled, every state is a weighted sum of the whole history,")
    eqs = []
    for s in opt.states:
        W = sp.Function(f"w_{s.name}")
        b.names[W] = (lambda P, a, k, name=s.name:
                      f"w^{{({name})}}_{{{P._print(a)},{P._print(k)}}}")
        lhs = _state_tex(b, s, "n+1", hat=s.bias_correction)
        gk = sp.Symbol("g^{(k)}_j")
        rhs = tex(sp.Sum(sp.Mul(W(n, K_IDX), s.of.xreplace({g_sym: gk}), evaluate=False),
                         (K_IDX, 0, n)), b.names)

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
        b.doc.display.setdefault("weights", {})[s.name] = (W, s)
        if s.normalized and s.bias_correction:
            def norm(_doc, s=s):
                return C.is_zero(C.evaluate_sums(sp.Sum(s.weight(n, K_IDX), (K_IDX, 0, n))) - 1)
            lab = doc.check(f"the weights of ${s.name}$ sum to $1$ (SymPy summation)", norm)
            eqs[-1].checks.append(lab)
    st.equations(*eqs)
    if any(s.normalized and s.bias_correction for s in opt.states):
        st.text(r"Bias correction makes the normalised weights sum to one, so a constant "
                r"gradient gives exact averages.")


# -- 2./3. memory ----------------------------------------------------------------------------------

def _groebner_tex(order, exact):
    if exact:
        rows = [r"q(\theta^{(k)}) &= q + h\sum_{l=k}^{n-1} L_{F_0^{(l)}}q"]
        if order >= 2:
            rows.append(r"&\quad + h^2\Bigl[\sum_{l=k}^{n-1}\bigl(L_{F_1^{(l)}}"
                        r"+\tfrac12 L_{F_0^{(l)}}^2\bigr)q + \sum_{k\le l<l'\le n-1}"
                        r"L_{F_0^{(l')}}L_{F_0^{(l)}}q\Bigr]")
        rows[-1] += r" + O(h^{%d})" % (order + 1)
        return rows
    rows = [r"q(\theta^{(n-j)}) &= q + h\,j\,L_{F_0}q"]
    if order >= 2:
        rows.append(r"&\quad + h^2\bigl(j\,L_{F_1}q + \tfrac{j^2}{2}L_{F_0}^2q\bigr)")
    rows[-1] += r" + O(h^{%d})" % (order + 1)
    return rows


def memory(doc, b):
    opt = b.opt
    st = doc.step("Memory written through the flow")
    if b.exact:
        st.text(r"Every past iterate is written through the flow, backwards from "
                r"$\theta=\tilde\theta(nh)$: $\theta^{(k)}=\tilde\theta(kh)$, and a quantity "
                r"$q$ evaluated there is, by Gr\"obner's lemma "
                r"($e^{hL_{F^{(n-1)}}}\cdots e^{hL_{F^{(k)}}}q$),")
    else:
        st.text(r"In the stationary regime ($n\to\infty$, $F$ independent of the step) the "
                r"iterate $j$ steps back is $\tilde\theta(-jh)$ from the current point, so")
    st.items.append(("raw", _groebner_tex(b.order, b.exact)))
    if b.exact:
        st.text(r"Inserting this into the weighted sums gives each state as a series in $h$; "
                r"the coefficients, with the memory sums as they arise, are")
    else:
        mus = ", ".join(r"\mu^{(%s)}_m=\sum_{j\ge0}w^{(%s)}_j\,j^m" % (s.name, s.name)
                        for s in opt.states)
        st.text(r"so with the stationary weights $w_j=\lim_n w_{n,n-j}$ and their moments $"
                + mus + r"$ the states are")
    eqs = []
    for s in opt.states:
        for r in range(b.order + 1):
            key = f"raw[{s.name}]{r}"
            if b.exact and doc.quantities[f"S[{s.name}]{r}"].has(sp.Sum):
                # the engine left sums it cannot close (not polynomial-geometric): only the
                # finite-n comparison applies
                lab2 = doc.check(
                    f"$S_{{{s.name},{r}}}$: the sums as written equal the printed form (sums "
                    f"without closed form kept) at $n=0,\\dots,4$ by explicit finite sums ($p=2$)",
                    lambda dd, s=s, r=r: C.same_at_steps(dd.q(f"raw[{s.name}]{r}"),
                                                         dd.q(f"S[{s.name}]{r}"),
                                                         steps=range(5), p=2, merge=True))
                eqs.append(Equation(f"S_{{{s.name},{r}}}", key=key, checks=[lab2]))
                continue
            lab1 = doc.check(
                f"$S_{{{s.name},{r}}}$: the sums as written (lowered to components $g_i, H_{{ij}}$, "
                f"$p=2$) evaluated term by term by \\texttt{{sympy.summation}} equal the closed form "
                f"of step~\\ref{{step:closed}}" if b.exact else
                f"$S_{{{s.name},{r}}}$: the moment form equals the closed form (canonical "
                f"operator form, any dimension)",
                (lambda dd, s=s, r=r: _sums_equal(dd, s.name, r)) if b.exact else
                (lambda dd, s=s, r=r: C.equal(dd.q(f"raw[{s.name}]{r}"),
                                              dd.q(f"S[{s.name}]{r}"))))
            checks_ = [lab1]
            if b.exact and doc.quantities[key].has(sp.Sum):
                lab2 = doc.check(
                    f"$S_{{{s.name},{r}}}$: the same at $n=0,\\dots,4$ by explicit finite sums "
                    f"($p=2$)",
                    lambda dd, s=s, r=r: C.same_at_steps(dd.q(f"raw[{s.name}]{r}"),
                                                         dd.q(f"S[{s.name}]{r}"),
                                                         steps=range(5), p=2, merge=True))
                checks_.append(lab2)
            eqs.append(Equation(f"S_{{{s.name},{r}}}", key=key, checks=checks_))
        hat = "\\hat " if s.bias_correction else ""
        eqs_head = Equation(f"{hat}{s.name}^{{(n+1)}}_j",
                            tex=" + ".join([f"S_{{{s.name},0}}"] + [
                                f"h{'^' + str(r) if r > 1 else ''}\\,S_{{{s.name},{r}}}"
                                for r in range(1, b.order + 1)]) + f" + O(h^{{{b.order + 1}}})")
        eqs.insert(len(eqs) - (b.order + 1), eqs_head)
    st.items.append(("sumtree", eqs))
    if not b.exact:
        _moment_equations(doc, b, st)

    st2 = doc.step("The memory sums in closed form")
    st2.label = "step:closed"
    if b.exact:
        st2.text(r"The sums over past steps are polynomial-geometric in the step indices and "
                 r"have closed forms. Named memory coefficients (defined once, below):")
        eqs = []
        for c in b.coeffs:
            eqs.append(_coefficient_equation(doc, b, c))
        if eqs:
            st2.equations(*eqs)
        st2.text(r"With them the states are")
    else:
        st2.text(r"Evaluating the Lie derivatives and collecting by operator structure:")
    eqs = []
    for s in opt.states:
        for r in range(b.order + 1):
            key = f"S[{s.name}]{r}"
            i = [x.name for x in opt.states].index(s.name)
            lab = doc.check(f"$S_{{{s.name},{r}}}$ as printed equals the engine's evaluated "
                            f"memory term (canonical operator form)",
                            lambda dd, i=i, r=r, key=key: C.equal(dd.q(key), b.d.states[i].terms[r]))
            eqs.append(Equation(f"S_{{{s.name},{r}}}", key=key, checks=[lab]))
    st2.equations(*eqs)


def _sums_equal(doc, name, r):
    from modeq.symbolic.components import SymbolProvider
    raw, closed = doc.q(f"raw[{name}]{r}"), doc.q(f"S[{name}]{r}")
    P = SymbolProvider(2)
    a, c = lower_vector(raw, P), lower_vector(closed, P)
    return all(C.is_zero(C.evaluate_sums(x) - y) for x, y in zip(a, c))


def _moment_equations(doc, b, st):
    """Stationary moments mu_m of each state: printed and checked by summation to infinity."""
    eqs = []
    jj = sp.Symbol("j", integer=True, nonnegative=True)
    for s in b.opt.states:
        for m in range(b.order + 1):
            key = f"mu[{s.name}]{m}"
            from modeq.symbolic.expansion import weight_moment
            doc.add(key, weight_moment(s, m))
            lab = doc.check(f"$\\mu^{{({s.name})}}_{m} = \\sum_{{j\\ge0}} {tex(s.stationary_weight(jj))}"
                            f"\\,j^{m}$ (\\texttt{{sympy.summation}} to $\\infty$)",
                            lambda dd, s=s, m=m, key=key: C.is_zero(
                                dd.q(key) - C.infinite_sum(s.stationary_weight(jj) * jj ** m, jj)))
            eqs.append(Equation(f"\\mu^{{({s.name})}}_{m}", key=key, checks=[lab]))
    st.equations(*eqs)


def _coefficient_equation(doc, b, c):
    key = f"coef:{c.sym.name}"
    doc.add(key, c.value)
    defn = c.definition(K_IDX)
    if defn is not None:
        W, _ = doc.display["weights"][c.state.name]
        lag = sp.Symbol("(n-k)")
        body = W(n, K_IDX) if c.moment == 0 else sp.Mul(W(n, K_IDX), lag ** c.moment,
                                                         evaluate=False)
        pretty = sp.Sum(body, (K_IDX, 0, n))
        lhs = c.latex + r" := " + tex(pretty, b.names)

        def run(dd, c=c, key=key):
            closed = dd.q(key)
            total = C.evaluate_sums(c.definition(sp.Dummy("k", integer=True, nonnegative=True)))
            finite = all(C.is_zero(c.definition(K_IDX).xreplace({n: m}).doit()
                                   - closed.xreplace({n: m})) for m in range(5))
            return C.is_zero(total - closed) and finite

        lab = doc.check(f"${c.latex}$: the defining sum equals the closed form "
                        f"(\\texttt{{sympy.summation}}, and $n=0,\\dots,4$ explicitly)", run)
        return Equation(lhs, key=key, checks=[lab])
    # a coefficient that is not a weight moment is defined by its closed form; it is checked
    # through the state terms that use it (the closed-form checks of the states)
    return Equation(c.latex, key=key, relation=":=")



# -- 4. the step -----------------------------------------------------------------------------------

def step_expansion(doc, b):
    opt = b.opt
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
    for r in range(b.order + 1):
        key = f"psi{r}"

        def taylor(dd, r=r):
            series = {s: [dd.q(f"S[{s.name}]{q}") for q in range(b.order + 1)]
                      for s in opt.states}
            return C.equal(C.taylor_coefficient(step, series, r), dd.q(f"psi{r}"))

        lab1 = doc.check(f"$\\psi_{r} = \\frac{{1}}{{{r}!}}\\partial_h^{r}\\psi|_{{h=0}}$ by SymPy "
                         f"differentiation of the step at the printed state series", taylor)
        lab2 = doc.check(f"$\\psi_{r}$ as printed equals the engine's step term",
                         lambda dd, r=r: C.equal(dd.q(f"psi{r}"), b.d.psi[r]))
        eqs.append(Equation(f"\\psi_{{{r},j}}", key=key, checks=[lab1, lab2]))
    st.equations(*eqs)


# -- 5. the flow's own step ------------------------------------------------------------------------

def flow_step(doc, b):
    st = doc.step("The flow's own step")
    st.text(r"Over one step the flow moves by its Lie series, "
            r"$\tilde\theta((n+1)h)-\tilde\theta(nh)=\sum_{m\ge1}\frac{h^m}{m!}L_{-F}^m\theta$:")
    rows = [r"\tilde\theta((n+1)h)-\tilde\theta(nh) &= -hF + \tfrac{h^2}{2}L_FF"]
    if b.order >= 2:
        rows[-1] += r" - \tfrac{h^3}{6}L_F^2F"
    rows[-1] += r" + O(h^{%d})" % (b.order + 2)
    st.items.append(("raw", rows))
    if b.order >= 1:
        st.text(r"With $F=\sum_r h^rF_r$ the coefficient of $h^{r+1}$ is $-F_r+R_r$, where "
                r"$R_r$ involves only $F_0,\dots,F_{r-1}$: $R_1=\tfrac12L_{F_0}F_0$"
                + (r", $R_2=\tfrac12(L_{F_0}F_1+L_{F_1}F_0)-\tfrac16L_{F_0}^2F_0$"
                   if b.order >= 2 else "") + ". Computed:")
        eqs = []
        for r in range(1, b.order + 1):
            def lie_check(dd, r=r):
                F = [dd.q(f"F{a}") for a in range(r)]
                return C.equal(C.lie_series_coefficient(F, r + 1), dd.q(f"R{r}"))

            lab1 = doc.check(f"$R_{r}$ is the $h^{{{r + 1}}}$ coefficient of "
                             f"$\\sum_m \\frac{{h^m}}{{m!}}L^m_{{-F}}\\theta$ with "
                             f"$F=\\sum_{{a<{r}}}h^aF_a$ (series in $h$ expanded independently)",
                             lie_check)
            lab2 = doc.check(f"$R_{r}$ equals the engine's flow-step coefficient plus $F_{r}$",
                             lambda dd, r=r: C.equal(dd.q(f"R{r}"),
                                                     b.d.flow_step[r + 1] + b.d.F[r]))
            eqs.append(Equation(f"R_{{{r},j}}", key=f"R{r}", checks=[lab1, lab2]))
        st.equations(*eqs)


# -- 6./7. matching and solution -------------------------------------------------------------------

def matching(doc, b):
    st = doc.step("Matching powers of $h$")
    st.text(r"The optimizer moves by $-h\psi=-\sum_r h^{r+1}\psi_r$. Equating the coefficients "
            r"of $h^{r+1}$ with the flow's step, $-\psi_r=-F_r+R_r$ ($R_0=0$), gives")
    rows = [r"F_0 &= \psi_0"]
    for r in range(1, b.order + 1):
        rows.append(r"F_{%d} &= \psi_{%d} + R_{%d}" % (r, r, r))
    st.items.append(("raw", [" \\\\ ".join(rows)]))
    st2 = doc.step("The modified flow" + (" (exact in $n$)" if b.exact else ""))
    eqs = []
    for r in range(b.order + 1):
        def match(dd, r=r):
            rhs = dd.q(f"psi{r}") + (dd.q(f"R{r}") if r else 0)
            return C.equal(dd.q(f"F{r}"), rhs)

        lab1 = doc.check(f"$F_{r} = \\psi_{r}" + (f" + R_{r}$" if r else "$")
                         + " (canonical operator form)", match)
        lab2 = doc.check(f"$F_{r}$ equals the engine's \\texttt{{derive()}} result (canonical "
                         f"form, and components for $p=1,2$)",
                         lambda dd, r=r: C.equal(dd.q(f"F{r}"), b.d.F[r], dims=(1, 2)))
        eqs.append(Equation(f"F_{{{r},j}}", key=f"F{r}", checks=[lab1, lab2]))
    st2.text(r"Solving in turn:")
    st2.equations(*eqs)
    if b.exact and b.coeffs:
        st2.text(r"The step index enters only through the memory coefficients.")


# -- 8. stationary limit ---------------------------------------------------------------------------

def stationary(doc, b):
    st = doc.step(r"The stationary limit $n\to\infty$")
    if not b.coeffs:
        st.text(r"No memory coefficient depends on $n$ at this order.")
    else:
        st.text(r"The memory coefficients converge geometrically (decays in $[0,1)$):")
    eqs = []
    jj = sp.Symbol("j", integer=True, nonnegative=True)
    for c in b.coeffs:
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
                    sub = {s_.decay: bv for s_ in b.opt.states}
                    val = dd.q(f"coef:{c.sym.name}").xreplace(sub).xreplace({n: 400})
                    ok = ok and abs(sp.N(val - dd.q(key).xreplace(sub), 50)) < sp.Rational(1, 10**30)
                return ok
            lab = doc.check(f"$\\lim_n {c.latex}$: the closed form at $n=400$ agrees to $10^{{-30}}$ "
                            f"for decays $1/3, 1/2, 3/4$", run)
        eqs.append(Equation(r"\lim_{n\to\infty}" + c.latex, key=key, checks=[lab]))
    if eqs:
        st.equations(*eqs)
    zero = [c for c in b.coeffs if c.moment == 1]
    if zero:
        names = ", ".join(f"${c.latex}$" for c in zero)
        lab = doc.check("the first moments vanish at $n=0$ (no memory at the first step)",
                        lambda dd: all(C.is_zero(dd.q(f"coef:{c.sym.name}").xreplace({n: 0}))
                                       for c in zero))
        st.text(f"At $n=0$ the first step has no memory: {names} vanish [{lab}].")
    st.text(r"Hence the stationary flow:")
    eqs = []
    for r in range(b.order + 1):
        lab1 = doc.check(f"$F^\\infty_{r}$ is $F_{r}$ with the memory coefficients at their limits",
                         lambda dd, r=r: C.equal(dd.q(f"Finf{r}"), dd.expand(
                             dd.quantities[f"F{r}"].xreplace(
                                 {c.sym: dd.quantities[f"lim:{c.sym.name}"] for c in b.coeffs}))))
        lab2 = doc.check(f"$F^\\infty_{r}$ equals the engine's separate stationary derivation "
                         f"(moments $\\mu_m$; canonical form and components $p=1,2$)",
                         lambda dd, r=r: C.equal(dd.q(f"Finf{r}"),
                                                 b.flow.terms("full", True)[r], dims=(1, 2)))
        eqs.append(Equation(f"F^{{\\infty}}_{{{r},j}}", key=f"Finf{r}", checks=[lab1, lab2]))
    st.equations(*eqs)


# -- 9. recognized closed forms --------------------------------------------------------------------

def recognized(doc, b):
    st = doc.step("Recognized closed forms")
    if not b.recognitions:
        st.text(r"No published closed form is registered for this flow; the result above "
                r"stands as derived.")
        return
    st.text(r"The derived terms are equal to the following published forms (the references "
            r"are written independently of the derivation):")
    for rec, key, fkey, stationary_ in b.recognitions:
        r = int(rec.term[1:])
        _abbreviate_reference(doc, b, key)
        lhs = f"F^{{\\infty}}_{{{r},j}}" if fkey.startswith("Finf") else f"F_{{{r},j}}"
        dims = (1, 2, 3) if stationary_ else (1, 2)
        lab = doc.check(f"${lhs}$ equals the published form of {text_escape(rec.source)} "
                        f"(canonical form, and components $p={','.join(map(str, dims))}$)",
                        lambda dd, key=key, fkey=fkey, dims=dims: C.equal(dd.q(fkey), dd.q(key),
                                                                          dims=dims))
        st.text(r"\textbf{" + text_escape(rec.name) + r"} --- " + text_escape(rec.source)
                + ".")
        extra = doc.display.get("extra_checks", {}).get(key, [])
        st.equations(Equation(lhs, key=key, checks=[lab] + extra))


def _abbreviate_reference(doc, b, key):
    """Write the reference's textbook memory moments (``recognize.memory_moment``) as the
    document's symbols ``b_n, r_n``, and check the document's closed forms against them."""
    from modeq.symbolic.recognize import memory_moment
    rep = {}
    for c in b.coeffs:
        if c.moment == 1 and c.state.normalized:
            ref = memory_moment(c.state.decay, c.state.bias_correction)
            new = doc.quantities[key].subs(ref, c.sym)
            if new != doc.quantities[key]:
                doc.quantities[key] = new
                rep[ref] = c.sym
                lab = doc.check(f"${c.latex}$ (closed form of step~\\ref{{step:closed}}) equals the "
                                f"textbook $\\frac{{d(1-(n+1)d^n+nd^{{n+1}})}}{{(1-d)"
                                + ("(1-d^{n+1})" if c.state.bias_correction else "")
                                + f"}}$, $d={tex(c.state.decay)}$",
                                lambda dd, c=c, ref=ref: C.is_zero(dd.q(f"coef:{c.sym.name}") - ref))
                doc.display.setdefault("extra_checks", {}).setdefault(key, []).append(lab)


def summary(b):
    opt = b.opt
    what = (r"exactly in the step index $n$ (bias correction and the start of the memory "
            r"included), then in the stationary limit $n\to\infty$" if b.exact else
            r"in the stationary regime (memory through the weight moments)" if b.memory else
            r"(no memory)")
    recs = sorted({text_escape(r.name) for r, *_ in getattr(b, "recognitions", [])})
    rec = (" The result is proved equal to: " + "; ".join(recs) + ".") if recs else ""
    return (f"From the recursion of {text_escape(opt.name.replace('_', ' '))} alone, this "
            f"appendix derives the modified flow "
            f"$\\dot{{\\tilde\\theta}}=-(F_0+\\dots+h^{{{b.order}}}F_{{{b.order}}})$ {what}: "
            r"memory written through the flow, the step and the flow's own step expanded in "
            r"$h$, powers of $h$ matched." + rec + r" Every equation was produced by the "
            r"\texttt{modeq} engine and every equality was verified by SymPy when the document "
            r"was generated.")

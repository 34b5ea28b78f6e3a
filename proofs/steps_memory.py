"""Memory steps of a full-batch document: the states' sums over past steps, named and closed.

A state is ``x^{(n+1)} = sum_{k=0}^n w_{n,k} phi(g^{(k)})``; writing the past iterates through
the flow turns it into ``S_0 + h S_1 + ...`` with sums over ``k``.  Exact in ``n`` the sums are
evaluated in closed form and the scalar factors depending on ``n`` are named: the weight moments
``sum_{k=0}^n w_{n,k} (n-k)^m`` (``a_n, b_n, r_n, ...``) and any other coefficient ``c_n``.
Stationary, the memory enters through ``mu_m = sum_{j>=0} w_j j^m``.
"""
from __future__ import annotations

import sympy as sp

from modeq.symbolic.components import SymbolProvider, lower_vector
from modeq.symbolic.display import grouped_terms
from modeq.symbolic.expansion import StateSeries, weight_moment
from modeq.symbolic.family import n
from modeq.symbolic.operators import collect_fields
from modeq.symbolic.prove import powers_of_step

from . import checks as C
from .context import MemoryCoefficient
from .document import Equation
from .printer import tex
from .steps_common import K_IDX

__all__ = ["name_memory_coefficients", "memory_through_flow", "memory_closed_form"]

_MOMENT_NAMES = {("beta", 1): "b_n", ("rho", 1): "r_n", ("beta", 0): "a_n",
                 ("rho", 0): "a^{\\rho}_n", ("beta", 2): "b^{(2)}_n", ("rho", 2): "r^{(2)}_n"}


def _moment_closed(state, m):
    k = sp.Dummy("k", integer=True, nonnegative=True)
    return C.nice_closed_form(C.evaluate_sums(sp.Sum(state.weight(n, k) * (n - k) ** m,
                                                     (k, 0, n))))


def _split_memory(coeff, decays):
    """``coeff = rest * mem`` with ``mem`` the factors depending only on ``n`` and decays."""
    allowed = set(decays) | {n}
    mem, rest = [], []
    for f in sp.Mul.make_args(sp.factor(coeff)):
        if f.is_number or f.free_symbols and f.free_symbols <= allowed:
            mem.append(f)
        else:
            rest.append(f)
    return sp.Mul(*rest), sp.Mul(*mem)


def name_memory_coefficients(ctx):
    """Engine data of steps 2-3: the evaluated memory sums with every ``n``-dependent scalar
    factor named once (a weight moment ``b_n, r_n, ...`` times a number, or a generic ``c_n``
    defined by its closed form); the state terms before and after, as quantities."""
    if not ctx.memory:
        return
    doc, d, opt = ctx.doc, ctx.derivation, ctx.opt
    decays = [s.decay for s in opt.states]
    # name the memory coefficients of the evaluated sums
    abbreviated = []
    generic = 0
    for i, ser in enumerate(d.states):
        st_ = ser.state
        terms = []
        for r, term in enumerate(ser.terms):
            new = sp.S.Zero
            for mono, coeff in grouped_terms(term):
                rest, mem = _split_memory(coeff, decays)
                if not mem.has(n) if ctx.exact else True:
                    new += rest * mem * mono
                    continue
                sym = _name_coefficient(ctx, st_, mem)
                if sym is None:
                    generic += 1
                    label = "c_n" if generic == 1 else f"c^{{({generic})}}_n"
                    sym = sp.Symbol(f"c{generic}_n")
                    mem = C.nice_closed_form(mem)
                    ctx.coeffs.append(MemoryCoefficient(sym, mem, st_, None, label))
                    ctx.names[sym] = label
                    doc.abbreviate(sym, mem, f"memory coefficient in $S_{{{st_.name},{r}}}$",
                                   latex=label)
                    new += rest * sym * mono
                else:
                    sym, ratio = sym
                    new += rest * ratio * sym * mono
            terms.append(collect_fields(new))
        abbreviated.append(StateSeries(st_, terms, ser.raw))
    ctx.series = abbreviated
    doc.display.scalars = tuple(c.sym for c in ctx.coeffs)
    for i, ser in enumerate(abbreviated):
        for r, term in enumerate(ser.terms):
            doc.add(f"raw[{ser.state.name}]{r}", d.states[i].raw[r])
            doc.add(f"S[{ser.state.name}]{r}", term)


def _name_coefficient(ctx, state, mem):
    """``(symbol, ratio)`` if ``mem`` is a number times a weight moment of ``state``."""
    for c in ctx.coeffs:
        if c.state is state and c.moment is not None:
            ratio = sp.cancel(mem / c.value)
            if ratio.is_number:
                return c.sym, ratio
    for m in range(0, ctx.order + 2):
        M = _moment_closed(state, m)
        if M == 0:
            continue
        ratio = sp.cancel(powers_of_step(mem / M))
        if ratio.is_number and ratio != 0:
            key = (str(state.decay), m)
            label = _MOMENT_NAMES.get(key, f"\\mu^{{({state.name})}}_{{{m},n}}")
            sym = sp.Symbol(f"mu_{state.name}_{m}_n")
            ctx.coeffs.append(MemoryCoefficient(sym, M, state, m, label))
            ctx.names[sym] = label
            ctx.doc.abbreviate(sym, M, f"weight moment {m} of ${state.name}$", latex=label)
            return sym, ratio
    return None


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


def memory_through_flow(ctx):
    """Step 2 (with memory): past iterates written through the flow (Gröbner's lemma, or the
    stationary ``theta(-jh)``), and the states as series in ``h`` with their sums as they
    arise; stationary: the weight moments ``mu_m``."""
    if not ctx.memory:
        return
    doc, opt = ctx.doc, ctx.opt
    st = doc.step("Memory written through the flow")
    if ctx.exact:
        st.text(r"Every past iterate is written through the flow, backwards from "
                r"$\theta=\tilde\theta(nh)$: $\theta^{(k)}=\tilde\theta(kh)$, and a quantity "
                r"$q$ evaluated there is, by Gr\"obner's lemma "
                r"($e^{hL_{F^{(n-1)}}}\cdots e^{hL_{F^{(k)}}}q$),")
    else:
        st.text(r"In the stationary regime ($n\to\infty$, $F$ independent of the step) the "
                r"iterate $j$ steps back is $\tilde\theta(-jh)$ from the current point, so")
    st.items.append(("raw", _groebner_tex(ctx.order, ctx.exact)))
    if ctx.exact:
        st.text(r"Inserting this into the weighted sums gives each state as a series in $h$; "
                r"the coefficients, with the memory sums as they arise, are")
    else:
        mus = ", ".join(r"\mu^{(%s)}_m=\sum_{j\ge0}w^{(%s)}_j\,j^m" % (s.name, s.name)
                        for s in opt.states)
        st.text(r"so with the stationary weights $w_j=\lim_n w_{n,n-j}$ and their moments $"
                + mus + r"$ the states are")
    eqs = []
    for s in opt.states:
        for r in range(ctx.order + 1):
            key = f"raw[{s.name}]{r}"
            unclosed = ctx.exact and doc.quantities[f"S[{s.name}]{r}"].has(sp.Sum)
            checks_ = []
            if not unclosed:     # (else the engine left sums it cannot close: finite n only)
                checks_.append(doc.check(
                    f"$S_{{{s.name},{r}}}$: the sums as written (lowered to components $g_i, "
                    f"H_{{ij}}$, $p=2$) evaluated term by term by \\texttt{{sympy.summation}} "
                    f"equal the closed form of step~\\ref{{step:closed}}" if ctx.exact else
                    f"$S_{{{s.name},{r}}}$: the moment form equals the closed form (canonical "
                    f"operator form, any dimension)",
                    (lambda dd, s=s, r=r: _sums_equal(dd, s.name, r)) if ctx.exact else
                    (lambda dd, s=s, r=r: C.equal(dd.q(f"raw[{s.name}]{r}"),
                                                  dd.q(f"S[{s.name}]{r}")))))
            if unclosed or ctx.exact and doc.quantities[key].has(sp.Sum):
                checks_.append(doc.check(
                    f"$S_{{{s.name},{r}}}$: the sums as written equal the printed form (sums "
                    f"without closed form kept) at $n=0,\\dots,4$ by explicit finite sums ($p=2$)"
                    if unclosed else f"$S_{{{s.name},{r}}}$: the same at $n=0,\\dots,4$ by "
                    f"explicit finite sums ($p=2$)",
                    lambda dd, s=s, r=r: C.same_at_steps(dd.q(f"raw[{s.name}]{r}"),
                                                         dd.q(f"S[{s.name}]{r}"),
                                                         steps=range(5), p=2, merge=True)))
            eqs.append(Equation(f"S_{{{s.name},{r}}}", key=key, checks=checks_))
        hat = "\\hat " if s.bias_correction else ""
        eqs_head = Equation(f"{hat}{s.name}^{{(n+1)}}_j",
                            tex=" + ".join([f"S_{{{s.name},0}}"] + [
                                f"h{'^' + str(r) if r > 1 else ''}\\,S_{{{s.name},{r}}}"
                                for r in range(1, ctx.order + 1)]) + f" + O(h^{{{ctx.order + 1}}})")
        eqs.insert(len(eqs) - (ctx.order + 1), eqs_head)
    st.items.append(("sumtree", eqs))
    if not ctx.exact:
        _moment_equations(ctx, st)


def memory_closed_form(ctx):
    """Step 3 (with memory): the named memory coefficients with their defining sums, and the
    states in closed form, each checked against the engine's evaluated memory term."""
    if not ctx.memory:
        return
    doc, opt = ctx.doc, ctx.opt
    st2 = doc.step("The memory sums in closed form")
    st2.label = "step:closed"
    if ctx.exact:
        st2.text(r"The sums over past steps are polynomial-geometric in the step indices and "
                 r"have closed forms. Named memory coefficients (defined once, below):")
        eqs = []
        for c in ctx.coeffs:
            eqs.append(_coefficient_equation(ctx, c))
        if eqs:
            st2.equations(*eqs)
        st2.text(r"With them the states are")
    else:
        st2.text(r"Evaluating the Lie derivatives and collecting by operator structure:")
    eqs = []
    for s in opt.states:
        for r in range(ctx.order + 1):
            key = f"S[{s.name}]{r}"
            i = [x.name for x in opt.states].index(s.name)
            lab = doc.check(f"$S_{{{s.name},{r}}}$ as printed equals the engine's evaluated "
                            f"memory term (canonical operator form)",
                            lambda dd, i=i, r=r, key=key: C.equal(
                                dd.q(key), ctx.derivation.states[i].terms[r]))
            eqs.append(Equation(f"S_{{{s.name},{r}}}", key=key, checks=[lab]))
    st2.equations(*eqs)


def _sums_equal(doc, name, r):
    raw, closed = doc.q(f"raw[{name}]{r}"), doc.q(f"S[{name}]{r}")
    P = SymbolProvider(2)
    a, c = lower_vector(raw, P), lower_vector(closed, P)
    return all(C.is_zero(C.evaluate_sums(x) - y) for x, y in zip(a, c))


def _moment_equations(ctx, st):
    """Stationary moments mu_m of each state: printed and checked by summation to infinity."""
    doc = ctx.doc
    eqs = []
    jj = sp.Symbol("j", integer=True, nonnegative=True)
    for s in ctx.opt.states:
        for m in range(ctx.order + 1):
            key = f"mu[{s.name}]{m}"
            doc.add(key, weight_moment(s, m))
            lab = doc.check(f"$\\mu^{{({s.name})}}_{m} = \\sum_{{j\\ge0}} "
                            f"{tex(s.stationary_weight(jj))}\\,j^{m}$ (\\texttt{{sympy.summation}} to $\\infty$)",
                            lambda dd, s=s, m=m, key=key: C.is_zero(
                                dd.q(key) - C.infinite_sum(s.stationary_weight(jj) * jj ** m, jj)))
            eqs.append(Equation(f"\\mu^{{({s.name})}}_{m}", key=key, checks=[lab]))
    st.equations(*eqs)


def _coefficient_equation(ctx, c):
    doc = ctx.doc
    key = f"coef:{c.sym.name}"
    doc.add(key, c.value)
    defn = c.definition(K_IDX)
    if defn is not None:
        W, _ = doc.display.weights[c.state.name]
        lag = sp.Symbol("(n-k)")
        body = W(n, K_IDX) if c.moment == 0 else sp.Mul(W(n, K_IDX), lag ** c.moment,
                                                         evaluate=False)
        pretty = sp.Sum(body, (K_IDX, 0, n))
        lhs = c.latex + r" := " + tex(pretty, ctx.names)

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

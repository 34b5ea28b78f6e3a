"""Named memory coefficients in the displayed flow (``symbolic/named.py``, ``display.py``).

Oracles: published stationary coefficients (one line per case), and for generated declarations
the derived coefficient itself, evaluated at random points in 50 digits (the split must be an
exact rewriting of it)."""
import random
import re

import pytest
import sympy as sp
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from conftest import examples
from strategies import declarations
from modeq.symbolic import EMA, Optimizer, beta, derive, eps, g, n, optimizers, rho, theta
from modeq.symbolic.display import flow_latex, flow_text, grouped_terms
from modeq.symbolic.components import SymbolProvider, lower_vector
from modeq.symbolic.named import memory_symbols, split_coefficient
from modeq.symbolic.operators import FULL, is_field

G = sp.Symbol("G")
A_ADAM = (1 + beta) / (1 - beta)
B_ADAM = (1 + rho) / (1 - rho)

# stationary F1 = (H.F0) * (eps + g^2)^(-3/2) * sum coefficient * monomial
PUBLISHED = {
    # Cattaneo, Klusowski & Shigida (ICML 2024): h F1 = (h/2){A - B + B eps/s^2} (H.F0) / s
    "adam": {eps: A_ADAM / 2, G**2: (A_ADAM - B_ADAM) / 2},
    # RMSProp = Adam at beta = 0 (same paper)
    "rmsprop": {eps: sp.Rational(1, 2), G**2: -rho / (1 - rho)},
    # heavy ball: F1 = (1 + beta) / (2 (1 - beta)^3) H g (Kovachki & Stuart 2021)
    "heavy_ball": {1: (1 + beta) / (2 * (1 - beta) ** 3)},
    # gradient descent: F1 = H g / 2 (Barrett & Dherin 2021)
    "gd": {1: sp.Rational(1, 2)},
}


def _split_F1(name):
    opt = getattr(optimizers, name)()
    (k, c), = grouped_terms(derive(opt, 1).terms(stationary=True)[1])
    return split_coefficient(c, memory_symbols(opt, n))


def _as_G(e):
    return e.replace(lambda a: is_field(a) and a.func.__name__ == "Grad", lambda a: G)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_stationary_F1_coefficients_are_the_published_ones(name):
    split = _split_F1(name)
    got = {_as_G(m): a for m, a in split.terms}
    assert set(got) == set(PUBLISHED[name])
    for m, a in PUBLISHED[name].items():
        assert sp.simplify(got[m] - a) == 0, (name, m, got[m], a)


def _random_value(s, rnd):
    if s == n:
        return sp.Integer(rnd.randint(0, 9))
    return sp.Rational(rnd.randint(1, 99), 100)


def _evaluate(e, rnd_seed):
    rnd = random.Random(rnd_seed)
    atoms = sorted(e.atoms(sp.Function), key=str)
    e = e.xreplace({a: sp.Rational(rnd.randint(-30, 30), 7) for a in atoms if is_field(a)})
    e = e.xreplace({s: _random_value(s, rnd) for s in sorted(e.free_symbols, key=str)})
    return sp.N(e, 50)


@settings(max_examples=examples(8))
@given(opt=declarations(max_states=2), stationary=st.booleans())
def test_split_coefficients_rewrite_the_derived_coefficient_exactly(opt, stationary):
    """prefactor * sum(a_j * m_j) equals the derived coefficient at random points."""
    F1 = derive(opt, 1).terms(stationary=stationary)[1]
    for k, c in grouped_terms(F1):
        split = split_coefficient(c, memory_symbols(opt, n))
        if split is None:
            continue
        for seed in range(2):
            want, got = _evaluate(c, seed), _evaluate(split.expr(), seed)
            assert abs(want - got) <= sp.Float(10) ** -40 * max(1, abs(want)), (c, split)


@pytest.mark.parametrize("name", ["adam", "rmsprop", "heavy_ball"])
def test_every_named_coefficient_is_defined_once(name):
    flow = derive(getattr(optimizers, name)(), 1)
    for stationary in (False, True):
        text = flow_text(flow, stationary=stationary)
        body = text[text.index("d theta_j/dt"):]
        used = {u for line in body.splitlines() if line.startswith("  F")
                for u in re.findall(r"(?<![*\w])([a-z](?:_n)?)\*(?!\*)", line)} - {"g", "s"}
        defined = re.findall(r"^    ([a-z](?:_n)?) = ", body, flags=re.M)
        assert sorted(defined) == sorted(set(defined)) and used <= set(defined), text
        latex = flow_latex(flow, stationary=stationary)
        assert all(f"{d.replace('_n', '_{n}')} &= " in latex for d in defined), latex


def _components(e, seed, other=None):
    """``e`` lowered to components (p = 2, generic ``g_j, H_ij, T_ijk``) at a random point, in
    50 digits: the same value for two forms of one expression, whatever their atoms.  The point
    is drawn for the symbols of ``e`` and ``other`` together, so that a symbol only one form
    has (``n`` in an expression that simplifies to a constant) does not move the others."""
    rnd = random.Random(seed)
    v = lower_vector(e, SymbolProvider(2))[0]
    free = v.free_symbols
    if other is not None:
        free = free | lower_vector(other, SymbolProvider(2))[0].free_symbols
    values = {}
    for x in sorted(free, key=str):
        values[x] = (_random_value(x, rnd) if x in (beta, rho, eps, n) or not str(x)[0] in "gHT"
                     else sp.Rational(rnd.randint(1, 30), 7))
    return sp.N(v.xreplace(values).doit(), 50)


def _constant_weight_sum():
    """An unnormalised bias-corrected EMA: its weights sum to ``1/(1 - d)`` at every ``n``, so
    the exact ``F0`` has ``n`` in a coefficient equal to a constant (found by the long
    profile: the test's random point moved when only one form had ``n``)."""
    s0 = EMA("s0", decay=sp.Rational(9, 10), of=g, normalized=False, bias_correction=True)
    return Optimizer("generated", [s0], s0 * theta + g)


@settings(max_examples=examples(8))
@given(opt=declarations(max_states=2), stationary=st.booleans())
@example(opt=_constant_weight_sum(), stationary=False)
def test_named_terms_give_back_the_derived_terms(opt, stationary):
    """``flow.named_terms()``: the names substituted by their values are the derived terms
    (components at random points, 50 digits; where the flow is real there), and every name
    the terms use is defined."""
    flow = derive(opt, 1)
    named = flow.named_terms(stationary=stationary)
    defs = named.definitions()
    hyper = set(opt.hyperparameters) | {n, FULL}
    for term in named.terms:
        names = {x for x in term.free_symbols if not is_field(x) and x not in hyper}
        assert names <= set(defs), (names, defs)
    for want, got in zip(flow.terms(stationary=stationary), named.substituted()):
        for seed in range(2):
            a, b = _components(want, seed, got), _components(got, seed, want)
            assume(a.is_real)
            assert abs(a - b) <= sp.Float(10) ** -40 * max(1, abs(a)), (want, got)


def _adam_outside():
    return optimizers.adam(eps_placement="outside")


@pytest.mark.parametrize("stationary", [False, True])
def test_eps_outside_F1_reads_like_adams(stationary):
    """Eps outside the root (torch's ``m/(sqrt(v) + eps)``): ``F1`` is the operator times
    ``s**(-2)`` times named memory coefficients of ``eps`` and ``|g| = sqrt(g**2)``, with
    ``s = eps + sqrt(g**2)`` the one point denominator; the printed line is short, and the
    names substituted give back the derived ``F1`` (components at random points)."""
    flow = derive(_adam_outside(), 1)
    named = flow.named_terms(stationary=stationary)
    assert named.s is not None and str(named.s) == "eps + sqrt(g**2)"
    (group,) = named.groups[1]
    a, b = ("a_n", "b_n") if not stationary else ("a", "b")
    assert [str(f) for f in group] == ["(H.(g/s))", "s**(-2)", f"{a}*eps + {b}*sqrt(g**2)"]
    assert [str(x) for x, _ in named.coefficients] == [a, b]
    text = flow_text(flow, stationary=stationary)
    (line,) = [x for x in text.splitlines() if x.startswith("  F1 = ")]
    assert len(line) < 200, line
    want, = flow.terms(stationary=stationary)[1:]
    for seed in range(3):
        got = named.substituted()[1]
        x, y = _components(want, seed, got), _components(got, seed, want)
        assert abs(x - y) <= sp.Float(10) ** -40 * max(1, abs(x)), (want, named)


@pytest.mark.parametrize("make, stationary", [
    (optimizers.adam, False), (optimizers.adam, True), (optimizers.rmsprop, False),
    (_adam_outside, False), (_adam_outside, True)])
def test_generated_module_computes_the_names_modeq_derive_prints(make, stationary):
    """The generated module's code assigns every memory coefficient ``modeq derive`` names,
    to the same value (read back from the source), and its docstring defines it."""
    from modeq.symbolic.codegen import generate_module
    opt = make()
    flow = derive(opt, 1)
    named = flow.named_terms(stationary=stationary)
    assert named.coefficients
    src = generate_module(opt, order=1, stationary=stationary, verify_dims=())
    code = src[src.index("\ndef F1("):]
    assignments = dict(re.findall(r"^    (\w+) = (.+)$", code, flags=re.M))
    doc = src[:src.index('"""', 3)]
    for name, value in named.coefficients:
        assert f"{name} = " in doc
        assert str(name) in assignments, (name, code)
        # the code's line, its CSE temporaries substituted back, is the printed value
        names = {"n": n, "beta": beta, "rho": rho, "eps": eps}
        env = {k: sp.sympify(v.replace("numpy.", ""), locals=names) for k, v in
               assignments.items() if re.fullmatch(r"[tm]\d+", k)}
        expr = sp.sympify(assignments[str(name)],
                          locals={**names, **{k: sp.Symbol(k) for k in env}})
        for _ in range(len(env)):
            expr = expr.xreplace({sp.Symbol(k): v for k, v in env.items()})
        point = {beta: sp.Rational(3, 7), rho: sp.Rational(5, 9), n: 4}
        assert sp.simplify((expr - value).xreplace(point)) == 0, (name, expr, value)


@pytest.mark.parametrize("batch", ["full", "mini"])
def test_step_index_coefficients_are_displayed_opaque_and_defined(batch):
    """NAdam at order 2 (its step reads ``n`` through ``mu_1 ... mu_t``): ``F2`` written out
    does not group for display, so it is displayed in the opaque coefficients ``c0(k)``,
    ``c1(k)`` it was solved in, each defined once (text and LaTeX) as the step's own
    coefficient; :meth:`substituted` puts the definitions back (no ``c_i`` left).  With
    coupled weight decay (mini batch, derived on the shifted loss): the same named terms as the
    plain flow of the same order, the shift stated; at order 1 (the route is the same at every
    order: 8 s, against 35 s at order 2, where grouping its own terms took minutes before)."""
    from sympy.core.function import AppliedUndef
    opt = optimizers.torch_nadam()
    flow = derive(opt, 2)
    named = flow.named_terms(batch)
    assert [str(c) for c, _ in named.functions] == ["c0", "c1"]
    assert all(opt.step.has(a) for _, a in named.functions)
    assert {str(c.func) for c in named.terms[2].atoms(AppliedUndef)} >= {"c1"}
    back = named.substituted()[2]
    assert not back.atoms(AppliedUndef) and back.has(sp.Product)
    text = flow_text(flow, batch)
    assert "  c0(n) = " in text and "  c1(n) = " in text and "c1(k)" in text
    if batch == "full":
        assert r"c_{1}{\left(n \right)} &= " in flow_latex(flow)
    else:   # with coupled weight decay: the same display on E + lam |theta|^2 / 2
        coupled = derive(optimizers.torch_nadam("coupled"), 1)
        shifted = coupled.named_terms(batch)
        assert shifted.shift == optimizers.lam
        plain = derive(opt, 1).named_terms(batch)
        assert [len(t) for t in shifted.groups] == [len(t) for t in plain.groups]
        assert "every F_r above on the loss E + lam*|theta|**2/2" in flow_text(coupled, batch)


SHIFTED = {   # declarations derived on the loss E + c |theta|^2 / 2 (forced), with c; NAdam's
    # own (taken unforced) at order 2 in test_step_index_coefficients_are_displayed_opaque_...
    "sgd-nesterov-maximize-l2": (lambda: optimizers.torch_sgd(True, False, True, "coupled", True),
                                 "-lam"),
    "adam-l2": (lambda: optimizers.torch_adam("coupled"), "lam"),
}


@pytest.mark.parametrize("name", sorted(SHIFTED))
def test_a_flow_derived_on_a_shifted_loss_is_displayed_as_the_plain_one_on_that_loss(name):
    """A flow derived as its plain declaration on ``E + c |theta|^2 / 2`` (the route of NAdam's
    coupled weight decay, forced onto SGD with maximize, ``c = -lam``, and Adam L2, whose
    terms are small): the named terms are the plain declaration's, the shift ``c`` is
    stated in text and LaTeX, and the names substituted and the shift applied give back the
    flow's own terms (components at random points, 50 digits)."""
    from modeq.symbolic import cache, pipeline
    from modeq.symbolic.coupled_decay import plain_of_coupled
    make, c = SHIFTED[name]
    opt = make()
    lookup = cache.lookup
    with pytest.MonkeyPatch.context() as m:
        # derived by the shift, neither read from the disk cache nor stored there
        m.setattr(pipeline, "_derived_by_shift", plain_of_coupled)
        m.setattr(cache, "lookup", lambda kind, o, **key: cache.MISS if o is opt
                  else lookup(kind, o, **key))
        m.setattr(cache, "store", lambda *args, **key: None)
        flow = derive(opt, 1)
        assert flow.derivation().shift == sp.sympify(c, locals={"lam": optimizers.lam})
        named, text, latex = flow.named_terms(), flow_text(flow), flow_latex(flow)
    plain = derive(plain_of_coupled(opt)[0], 1).named_terms()
    assert [len(t) for t in named.groups] == [len(t) for t in plain.groups]
    assert [x for x, _ in named.coefficients] == [x for x, _ in plain.coefficients]
    assert named.shift == sp.sympify(c, locals={"lam": optimizers.lam})
    sign = "-" if c.startswith("-") else "+"
    assert f"on the loss E {sign} lam*|theta|**2/2" in text
    assert f"g -> g {sign} lam*theta, (H.(u)) -> (H.(u)) {sign} lam*u" in text
    assert rf"E {sign} \tfrac{{lam}}{{2}}\lVert\theta\rVert^2" in latex
    for want, got in zip(flow.terms(), named.substituted()):
        for seed in range(2):
            a, b = _components(want, seed, got), _components(got, seed, want)
            assert abs(a - b) <= sp.Float(10) ** -40 * max(1, abs(a)), (name, want, got)


_i = sp.Symbol("i", integer=True, positive=True)
_psi = sp.Symbol("psi", positive=True)
_opaque_leaves = st.sampled_from([
    beta, rho, eps, sp.Rational(1, 3), sp.Integer(2), sp.sqrt(eps + beta ** 2),
    sp.Product(1 - sp.Rational(24, 25) ** (_i * _psi) / 2, (_i, 1, n + 1)),
    sp.Sum(rho ** (n - _i) * beta ** _i, (_i, 0, n)), sp.Rational(24, 25) ** (_psi * (n + 2)),
    sp.sqrt(rho * sp.Sum(rho ** (n - _i), (_i, 0, n)) + eps)])


@settings(max_examples=examples(30), deadline=None)
@given(c=st.recursive(_opaque_leaves, lambda kids: st.one_of(
    st.tuples(kids, kids).map(lambda p: p[0] + p[1]),
    st.tuples(kids, kids).map(lambda p: p[0] * p[1]),
    st.tuples(kids, kids).map(lambda p: p[0] / (p[1] + 1))), max_leaves=8))
def test_a_displayed_coefficient_with_sums_products_and_symbolic_powers_is_exact(c):
    """A coefficient that is not a rational function (sums, products, powers ``x**(n psi)``,
    roots of sums: NAdam's mini-batch terms) is simplified by factoring with those parts as
    atoms: an exact rewriting (written out at n = 3 and random hyperparameters, 40 digits)."""
    from modeq.symbolic.display import simplified_coefficient
    got = simplified_coefficient(c)
    for seed in range(2):
        rnd = random.Random(seed)
        point = {n: 3, _psi: sp.Rational(rnd.randint(1, 9), 4),
                 beta: sp.Rational(rnd.randint(1, 9), 10),
                 rho: sp.Rational(rnd.randint(1, 9), 10), eps: sp.Rational(rnd.randint(1, 9), 7)}
        a, b = (sp.N(e.xreplace(point).doit(), 40) for e in (c, got))
        assert abs(a - b) <= sp.Float(10) ** -30 * max(1, abs(a)), (c, got)

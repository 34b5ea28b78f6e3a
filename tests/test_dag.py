"""``symbolic.dag``: the cached queries answer as SymPy's own, on drawn expressions with sums
(nested, with bound variables that are also free elsewhere), products, piecewise terms and
shared subexpressions; ``make_sum`` builds the same ``Sum`` as SymPy's constructor."""
import sympy as sp
from sympy.core.facts import InconsistentAssumptions
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from conftest import examples
from modeq.symbolic.dag import contains, free_symbols, make_sum, split_independent, \
    sum_variables

n, k, l = sp.symbols("n k l", integer=True, nonnegative=True)
d, x = sp.symbols("d x", positive=True)
LEAVES = st.sampled_from([n, k, l, d, x, sp.Integer(2), sp.Rational(1, 3)])


def _combine(children):
    pair = st.tuples(children, children)
    return st.one_of(
        pair.map(lambda ab: ab[0] + ab[1]),
        pair.map(lambda ab: ab[0] * ab[1]),
        pair.map(lambda ab: ab[0] ** 2 / (1 + ab[1] ** 2)),
        st.tuples(children, st.sampled_from([k, l]), st.sampled_from([0, k, l]),
                  st.sampled_from([n, n - 1, l])).map(
            lambda a: sp.Sum(a[0], (a[1], a[2], a[3]))),
        children.map(lambda a: sp.Piecewise((a, sp.Eq(d, 1)), (a + 1, True))),
        children.map(lambda a: sp.Product(1 + a, (k, 1, n))))


EXPRS = st.recursive(LEAVES, _combine, max_leaves=12)


@settings(max_examples=examples(60), deadline=None)
@given(EXPRS)
def test_the_queries_answer_as_sympy(e):
    assert free_symbols(e) == e.free_symbols
    assert contains(e, sp.Sum) == e.has(sp.Sum)
    assert contains(e, sp.Piecewise) == e.has(sp.Piecewise)
    assert sum_variables(e) == {lim[0] for s in e.atoms(sp.Sum) for lim in s.limits}
    for v in (n, k, l):
        assert split_independent(e, v) == e.as_independent(v, as_Add=False)


@settings(max_examples=examples(60), deadline=None)
@given(EXPRS, st.sampled_from([k, l]), st.sampled_from([0, 1, k, l]),
       st.sampled_from([n, n - 1, l, sp.oo]))
def test_make_sum_builds_sympys_sum(e, v, lo, hi):
    built, sympys = make_sum(e, (v, lo, hi)), sp.Sum(e, (v, lo, hi))
    assert built == sympys and built.limits == sympys.limits
    assert built.free_symbols == sympys.free_symbols
    assert built.is_commutative == sympys.is_commutative


@settings(max_examples=examples(30), deadline=None)
@given(EXPRS, st.integers(0, 3))
def test_xreplace_and_doit_answer_as_sympy(e, N):
    """``dag.xreplace`` builds SymPy's expression; ``dag.doit`` (each distinct subexpression
    once) has SymPy's value, the symbols left free after the step index is given set last."""
    from modeq.symbolic.dag import doit, xreplace
    rule = {n: sp.Integer(N), d: sp.Rational(1, 2), x: sp.Rational(1, 3)}
    assert xreplace(e, rule) == e.xreplace(rule)
    e = e.xreplace(rule)
    ours = doit(e)
    try:
        sympys = e.doit()
    except InconsistentAssumptions:
        reject()        # SymPy's own doit fails where an inner sum shadows the outer index

    assert ours.has(sp.Sum, sp.Product) == sympys.has(sp.Sum, sp.Product), (e, ours)
    at = {k: 2, l: 1}
    diff = sp.N((ours - sympys).subs(at).doit(), 30)
    assert diff == 0 or abs(diff) < 1e-25, (e, ours)

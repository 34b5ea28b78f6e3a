"""The memoised ``expand_mul`` and ``expand`` give SymPy's, structurally, on any expression.

Oracle: ``sympy.expand_mul`` and ``sympy.expand`` themselves (the algorithm the memo
replays); equality is checked on ``srepr``, so a different but equal form would fail too.
Expressions are drawn with shared subexpressions (the case the memo is for), sums over an
index, denominators of products of sums (``expand_mul`` multiplies those out), fractional
powers and powers with symbolic exponents (``expand`` splits those, in its order of hints).
"""
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from modeq.symbolic.expand import expand, expand_mul

x, y, z = sp.symbols("x y z")
k = sp.Symbol("k", integer=True, nonnegative=True)
n = sp.Symbol("n", integer=True, nonnegative=True)

_leaves = st.sampled_from([x, y, z, k, n, sp.Integer(2), sp.Rational(-1, 3), sp.Symbol("beta")])


def _grow(children):
    pair = st.tuples(children, children)
    return st.one_of(
        pair.map(lambda p: p[0] + p[1]),
        pair.map(lambda p: p[0] * p[1]),
        st.tuples(children, st.sampled_from([-2, -1, 2, 3, sp.Rational(1, 2),
                                             sp.Rational(-1, 2)])).map(lambda p: p[0] ** p[1]),
        children.map(lambda c: sp.Sum(c * (k + x), (k, 0, n))),
        children.map(lambda c: sp.sqrt(1 + c ** 2)),
        pair.map(lambda p: p[0] / (p[1] + 1) * (p[0] + y)),
        children.map(lambda c: sp.Rational(24, 25) ** (c * (n + 2))),
    )


expressions = st.recursive(_leaves, _grow, max_leaves=14)


@settings(max_examples=examples(150), deadline=None)
@given(a=expressions, b=expressions)
def test_equals_sympys_expand_mul_structurally(a, b):
    e = a * (b + x) + sp.Sum(a * b, (k, 0, n)) * (a + b) + a / (b * (b + 1) + 2)
    assert sp.srepr(expand_mul(e)) == sp.srepr(sp.expand_mul(e))


@settings(max_examples=examples(25), deadline=None)
@given(a=expressions, b=expressions)
def test_equals_sympys_expand_structurally(a, b):
    e = a * (b + x) + sp.Sum(a * b, (k, 0, n)) * (a + y) + a / (b * (b + 1) + 2)
    assert sp.srepr(expand(e)) == sp.srepr(sp.expand(e))

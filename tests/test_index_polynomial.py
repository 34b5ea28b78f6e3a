"""The cheap canonical form of large memory-sum coefficients (``operators.index_polynomial``,
``operators.coefficient_form``) against the expression itself, evaluated exactly at random
rational points: the form may regroup, never change a value."""
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from modeq.symbolic import beta, rho
from modeq.symbolic.operators import LARGE, coefficient_form, index_polynomial

n = sp.Symbol("n", integer=True, nonnegative=True)
k = sp.Symbol("k", integer=True, nonnegative=True)
lam = sp.Symbol("lam", positive=True)

rationals = st.fractions(min_value=-3, max_value=3, max_denominator=7).map(sp.Rational)


@st.composite
def index_terms(draw):
    """One product as memory sums produce them: a rational times powers of decays with
    exponents affine in the step indices, polynomial factors in the indices, and
    denominators ``(1 - d^m)^e`` of closed geometric sums."""
    d = draw(st.sampled_from([beta, rho, beta * rho]))
    a, b, c = (draw(st.integers(-2, 3)) for _ in range(3))
    term = draw(rationals) * d ** (a * n + b * k + c)
    term *= n ** draw(st.integers(0, 2)) * k ** draw(st.integers(0, 1))
    term *= lam ** draw(st.integers(0, 2))
    m, e = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    return term / (1 - d ** m) ** e


def _points(draw_values):
    return [{beta: b, rho: r, lam: q, n: i, k: j} for b, r, q, i, j in draw_values]


points = st.lists(st.tuples(st.sampled_from([sp.Rational(1, 3), sp.Rational(9, 10),
                                             sp.Rational(2, 7)]),
                            st.sampled_from([sp.Rational(1, 2), sp.Rational(99, 100)]),
                            rationals, st.integers(0, 6), st.integers(0, 6)),
                  min_size=2, max_size=4)


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(index_terms(), min_size=1, max_size=12), points)
def test_index_polynomial_keeps_the_value(terms, at):
    c = sp.Add(*terms) * (1 + beta ** (n + 1)) ** 2
    out = index_polynomial(c)
    for p in _points(at):
        assert out.xreplace(p) == c.xreplace(p)


@settings(max_examples=examples(40), deadline=None)
@given(st.lists(index_terms(), min_size=1, max_size=8))
def test_index_polynomial_is_canonical(terms):
    """Two spellings of one value give one form: expanded or not, terms in any order."""
    c = sp.Add(*terms)
    assert index_polynomial(c) == index_polynomial(sp.Add(*reversed(terms)))
    assert index_polynomial(c) == index_polynomial(sp.expand(c))


@settings(max_examples=examples(20), deadline=None)
@given(st.lists(index_terms(), min_size=LARGE + 1, max_size=LARGE + 20), points)
def test_large_coefficients_keep_the_value(terms, at):
    c = sp.Add(*terms)
    if len(sp.Add.make_args(c)) <= LARGE:
        c = c + sp.Add(*[sp.Rational(1, j + 2) * beta ** (j * n) for j in range(LARGE + 1)])
    out = coefficient_form(c)
    for p in _points(at):
        assert out.xreplace(p) == c.xreplace(p)

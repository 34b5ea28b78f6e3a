"""The growth balancing of float fields (``modeq.symbolic.emit.growth``): the rewritten
expression equals the original exactly (Hypothesis over generated products, quotients and sums
of powers in ``n``, and sums over past steps, compared at 50 digits; with the parts free of the
point kept whole as coefficients, and without), its powers in the steps no longer grow where
the original's cancel, and a rate that is not a number leaves it alone."""
import mpmath
import sympy as sp
from hypothesis import given, settings, strategies as st

from conftest import examples
from modeq.symbolic.emit.growth import balance_growth
from modeq.symbolic.emit.prepare import hoist_coefficients

n, k = sp.symbols("n k", integer=True, nonnegative=True)
x, y = sp.symbols("x y")
D = sp.Function("_D0")
BASES = [sp.Integer(24), sp.Integer(25), sp.Integer(600), sp.Rational(3, 5), sp.Rational(1, 4),
         sp.Integer(2)]


@st.composite
def powers(draw):
    base = draw(st.sampled_from(BASES))
    return base ** (draw(st.integers(-3, 3)) * n + draw(st.integers(-2, 2)))


@st.composite
def terms(draw):
    factors = draw(st.lists(st.one_of(powers(), st.sampled_from([x, y, 1 + x ** 2])),
                            min_size=1, max_size=3))
    return draw(st.integers(-5, 5).filter(bool)) * sp.Mul(*factors)


@st.composite
def fields(draw):
    top = sp.Add(*draw(st.lists(terms(), min_size=1, max_size=3)))
    bottom = sp.Add(*draw(st.lists(terms(), min_size=1, max_size=3)))
    root = draw(st.booleans())
    return top / bottom if not root else top * sp.sqrt(1 + bottom ** 2)


def _value(e, N, X, Y):
    with mpmath.workdps(60):
        return sp.N(e.subs({n: N, x: X, y: Y}), 50)


@settings(max_examples=examples(40), deadline=None)
@given(e=fields(), N=st.integers(0, 40), X=st.sampled_from([sp.Rational(1, 3), sp.Rational(-5, 4)]),
       Y=st.sampled_from([sp.Rational(2, 7), sp.Integer(3)]),
       point=st.sampled_from([None, (x, y)]))
def test_the_balanced_field_equals_the_original(e, N, X, Y, point):
    """``S * e'`` is ``e``, term for term: the same value at 50 digits at any step."""
    [out] = balance_growth([e], n, point)
    want, got = _value(e, N, X, Y), _value(out, N, X, Y)
    if want.is_finite:
        assert abs(got - want) <= sp.Float(10) ** -40 * max(1, abs(want)), (e, out)


@settings(max_examples=examples(10), deadline=None)
@given(N=st.integers(0, 12), r=st.sampled_from([sp.Rational(3, 5), sp.Rational(1, 4)]),
       point=st.sampled_from([None, (x,)]))
def test_a_sum_over_past_steps_equals_the_original(N, r, point):
    """A growing summand ``r^(-k) D(k)^2`` against the enclosing ``r^n``: added up term by
    term, the balanced sum is the original."""
    e = r ** n * sp.Sum(D(k) ** 2 * r ** (-k), (k, 0, n)) / (1 + 24 ** n * x / 25 ** n)
    [out] = balance_growth([e], n, point)
    data = {D(j): sp.Rational(j + 2, 3) for j in range(N + 1)}

    def value(f):
        done = f.subs(n, N).doit()
        return sp.N(done.xreplace(data).subs(x, sp.Rational(1, 3)), 50)

    assert abs(value(out) - value(e)) < sp.Float(10) ** -40


def _largest_power(e, N=2000):
    """The largest power of a number in ``e`` at ``n = N``, over ``k`` at both ends of its
    range ``0 <= k <= n`` (in mpmath: no float range)."""
    out = mpmath.mpf(0)
    for p in e.atoms(sp.Pow):
        if p.base.is_number and p.exp.free_symbols & {n, k}:
            for K in (0, N):
                value = mpmath.power(mpmath.mpf(sp.N(abs(p.base), 30)),
                                     mpmath.mpf(sp.N(p.exp.subs({n: N, k: K}), 30)))
                out = max(out, value)
    return out


def test_parts_that_cancel_are_merged_into_powers_that_stay_in_the_float_range():
    """NAdam's shape: ``24^(n+1)`` over ``25^(n+1)`` in a sum of terms, and a summand
    ``(3/5)^(-k)`` against the enclosing ``(3/5)^n``: at n = 2000 the original has powers past
    10^2000, the balanced field none above 1 ((24/25)^n, (3/5)^(n-k))."""
    e = 24 ** (n + 1) * x / (25 ** (n + 1) * y + 25 ** (n + 1)) \
        + sp.Rational(3, 5) ** n * sp.Sum(D(k) ** 2 / sp.Rational(3, 5) ** k, (k, 0, n))
    assert _largest_power(e) > mpmath.mpf(10) ** 2000
    [out] = balance_growth([e], n)
    assert _largest_power(out) <= 1, out
    # with the point's symbols named, the parts free of them are coefficients, kept whole
    # but divided by their scale, each of them one value (in mpmath) inside the float range
    body, coefficients = hoist_coefficients(balance_growth([e], n, (x, y)), (x, y), {n})
    assert _largest_power(body[0]) <= 1, body
    for _, c in coefficients:
        assert abs(sp.N(c.subs(n, 2000), 30)) < 1e300, c


def test_a_rate_that_is_not_a_number_leaves_the_field_alone():
    psi = sp.Symbol("psi", positive=True)
    e = 24 ** (n * psi) * x / (25 ** (n * psi) + y)
    assert balance_growth([e], n) == [e]
    assert balance_growth([e], n, (x, y)) == [e]

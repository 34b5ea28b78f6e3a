"""The series oracle's own arithmetic, against independent values.

``exp`` and fractional powers of a truncated series come from recurrences
(:func:`series_oracle.by_recurrence`); here they meet ``mpmath.taylor`` of the same function
(numerical differentiation at 50 digits) and, in exact rationals, the defining identity
(``y^q = x^p`` for ``y = x^(p/q)``, coefficient by coefficient).
"""
from fractions import Fraction

import mpmath
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from series_oracle import TPS, by_recurrence

D = 5
_coeff = st.fractions(min_value=-3, max_value=3, max_denominator=7)


@settings(max_examples=examples(60), deadline=None)
@given(tail=st.lists(_coeff, min_size=D, max_size=D),
       root=st.fractions(min_value=Fraction(1, 3), max_value=3, max_denominator=5),
       exponent=st.sampled_from([(1, 2), (-1, 2), (3, 2), (-3, 2), (1, 3), (2, 3)]))
def test_fractional_powers_satisfy_their_definition_exactly(tail, root, exponent):
    p, q = exponent
    x = TPS([root ** q, *tail], D)       # constant term a perfect q-th power: y_0 is rational
    y = x ** Fraction(p, q)
    lhs, rhs = TPS([1], D), TPS([1], D)
    for _ in range(q):
        lhs = lhs * y
    for _ in range(abs(p)):
        rhs = rhs * (x if p > 0 else x.inverse())
    assert lhs.c == rhs.c


@settings(max_examples=examples(40), deadline=None)
@given(coeffs=st.lists(_coeff, min_size=D + 1, max_size=D + 1),
       r=st.fractions(min_value=-2, max_value=2, max_denominator=4))
def test_exp_and_powers_equal_mpmath_taylor(coeffs, r):
    mpmath.mp.dps = 50
    x = [mpmath.mpf(c.numerator) / c.denominator for c in coeffs]
    x[0] = abs(x[0]) + 1

    def poly(t):
        return sum(c * t ** j for j, c in enumerate(x))

    rr = mpmath.mpf(r.numerator) / r.denominator
    power = by_recurrence(x, x[0] ** rr, lambda j, k: (rr + 1) * j - k, scale=x[0])
    exp = by_recurrence(x, mpmath.exp(x[0]), lambda j, k: j)
    for mine, f in ((power, lambda t: poly(t) ** rr), (exp, lambda t: mpmath.exp(poly(t)))):
        ref = mpmath.taylor(f, 0, D)
        for a, b in zip(mine, ref):
            assert abs(a - b) <= mpmath.mpf(10) ** -30 * (1 + abs(b))

"""Double memory sums: ``memory.simplify_sums`` of ``sum_k c(k) sum_l a(l, k)`` against the
sum written out term by term at small ``n`` (SymPy's ``doit`` on numeric limits, 30 digits).

The factors are drawn from closable ones (``r^k``, ``k``, constants) and ones with no closed
form (``sqrt(1 - r^(k+1))``, the memory of an optimizer without bias correction, and
``1/(k + c)``), over rectangular ranges (``l`` from 0) and triangular ones (``l`` from ``k``).
Where neither order of a rectangular double sum closes, interchanging the sums once more
brought back the start: the simplification looped until a ``RecursionError``.
"""
import mpmath
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from modeq.symbolic.memory import simplify_sums

n = sp.Symbol("n", integer=True, nonnegative=True)
k = sp.Symbol("k", integer=True, nonnegative=True)
l = sp.Symbol("l", integer=True, nonnegative=True)

RATIOS = st.sampled_from([sp.Rational(1, 2), sp.Rational(3, 5), sp.Rational(9, 10)])


@st.composite
def factors(draw, i):
    """One factor in the index ``i``: closable or not."""
    kind = draw(st.sampled_from(["geometric", "linear", "constant", "root", "reciprocal"]))
    r = draw(RATIOS)
    if kind == "geometric":
        return r ** i
    if kind == "linear":
        return i + draw(st.integers(1, 3))
    if kind == "constant":
        return sp.Rational(draw(st.integers(1, 5)), draw(st.integers(1, 4)))
    if kind == "root":
        return sp.sqrt(1 - r ** (i + 1))
    return 1 / (i + draw(st.integers(1, 3)))


def _value(e, N):
    """The expression at ``n = N`` with every sum written out, to 30 digits."""
    return sp.N(e.subs(n, N).doit(), 30)


@settings(max_examples=examples(10), deadline=None)
@given(c=factors(k), a=factors(l), b=factors(l), mixed=factors(k),
       triangular=st.booleans(), N=st.integers(0, 3))
def test_a_double_sum_equals_its_terms_added_up(c, a, b, mixed, triangular, N):
    lo = k if triangular else 0
    inner = sp.Sum(a * b + a * mixed, (l, lo, n))      # ``mixed`` depends on the outer k
    e = sp.Sum(c * inner, (k, 0, n))
    got = simplify_sums(e)
    want = _value(e, N)
    with mpmath.workdps(30):
        assert abs(mpmath.mpf(str(_value(got, N))) - mpmath.mpf(str(want))) \
            <= mpmath.mpf(10) ** -25 * (1 + abs(mpmath.mpf(str(want)))), (e, got)


def test_neither_order_closing_is_kept_as_the_double_sum():
    """The shrunk case of the loop: ``sum_k sqrt(1 - r^(k+1)) sum_l 1/(l+1)`` (rectangular),
    where neither sum has a closed form."""
    r = sp.Rational(3, 5)
    e = sp.Sum(sp.sqrt(1 - r ** (k + 1)) * sp.Sum(1 / (l + 1), (l, 0, n)), (k, 0, n))
    got = simplify_sums(e)
    assert got.has(sp.Sum)
    for N in range(4):
        assert abs(_value(got, N) - _value(e, N)) < sp.Rational(1, 10 ** 25)

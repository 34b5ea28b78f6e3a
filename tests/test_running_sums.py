"""Memory sums of step-index coefficients by their recurrence in ``n`` (emit/running_sums.py):
every value equals the sum written out, whatever order the steps are asked in; the printer uses
the recurrence only where the summand is geometric in ``n``; NAdam's field coefficients equal
the ones summed out."""
from fractions import Fraction

import mpmath
import pytest
import sympy as sp
from conftest import examples
from hypothesis import given, settings, strategies as st

from modeq.symbolic.emit import running_sums
from modeq.symbolic.emit.kernel import Kernel
from modeq.symbolic.family import n
from modeq.symbolic.memo import Memo

l = sp.Symbol("l", integer=True)
c, d = sp.symbols("c d")

fractions = st.fractions(min_value=-2, max_value=2, max_denominator=12)
decays = st.fractions(min_value=0, max_value=Fraction(19, 20), max_denominator=20)


@settings(max_examples=examples(100), deadline=None)
@given(r=decays, a=st.lists(fractions, min_size=1, max_size=3), lo=st.integers(0, 3),
       offset=st.integers(-2, 1), steps=st.lists(st.integers(0, 40), min_size=1, max_size=12),
       checkpoint=st.sampled_from([1, 3, 7, 256]))
def test_running_sum_equals_the_sum_written_out(r, a, lo, offset, steps, checkpoint):
    """``sum_{l=lo}^{n+offset} r^(n-l) p(l)`` in exact arithmetic (Fractions), steps asked in
    any order (repeats, jumps back past checkpoints): each value is the direct sum."""
    saved = running_sums.CHECKPOINT, running_sums._TABLES
    running_sums.CHECKPOINT, running_sums._TABLES = checkpoint, Memo(limit=4096)
    try:
        _check_steps(r, a, lo, offset, steps)
    finally:
        running_sums.CHECKPOINT, running_sums._TABLES = saved


def _check_steps(r, a, lo, offset, steps):
    if r == 0:
        offset = min(offset, 0)           # 0^(n-l) is geometric in n only for l <= n
    p = lambda i: sum(Fraction(x) * (i + 1) ** k for k, x in enumerate(a))  # noqa: E731
    term = lambda m, i: Fraction(r) ** (m - i) * p(i)  # noqa: E731
    key = ("r^(n-l) p(l)", tuple(a))
    for m in steps:
        got = running_sums.running_sum(key, term, lo, offset, Fraction(r), m, (Fraction(r),))
        want = sum((term(m, i) for i in range(lo, m + offset + 1)), Fraction(0))
        assert got == want, (m, got, want)


@pytest.mark.parametrize("summand, upper, ratio", [
    (c ** (n - l) / (l + 1), n - 1, c),
    (c ** l * c ** (n - l) * d ** (4 * l + 4), n, c),
    (d ** (4 * l + 8) / (1 + l ** 2), n - 1, 1),
    (c ** (2 * n - l), n + 1, c ** 2),
    (c ** (n * l), n, None),                 # not geometric in n
    (1 / (n + l), n, None),
    (c ** (n - l), 2 * n, None),             # upper limit not n + k
])
def test_geometric_ratio(summand, upper, ratio):
    got = running_sums.geometric_ratio(summand, n, l, upper)
    assert (got is None) if ratio is None else sp.simplify(got - ratio) == 0


def test_kernel_prints_the_recurrence_only_where_it_holds():
    ok = Kernel([sp.Sum(c ** (n - l) / (l + 1), (l, 0, n - 1))], [n, c], "mpmath", running=True)
    no = Kernel([sp.Sum(c / (n + l + 1), (l, 0, n - 1))], [n, c], "mpmath", running=True)
    off = Kernel([sp.Sum(c ** (n - l) / (l + 1), (l, 0, n - 1))], [n, c], "mpmath")
    assert running_sums.NAME in ok.source
    assert running_sums.NAME not in no.source and running_sums.NAME not in off.source
    with mpmath.workdps(30):
        for m in (0, 1, 5, 300, 2, 700):
            want = mpmath.fsum(mpmath.mpf(3) ** -(m - i) / (i + 1) for i in range(m))
            assert abs(ok(m, mpmath.mpf(1) / 3)[0] - want) <= 1e-28 * max(abs(want), 1)
            assert abs(no(m, mpmath.mpf(1))[0]
                       - mpmath.fsum(mpmath.mpf(1) / (m + i + 1) for i in range(m))) <= 1e-28


@pytest.fixture(scope="module")
def nadam_field():
    from modeq.symbolic import derive, optimizers
    x, y = sp.symbols("x y")
    E = (x - 1) ** 2 / 2 + x * y / 3 + y ** 4 / 4
    return derive(optimizers.torch_nadam(), 1).lambdify(
        E, [x, y], h=sp.Rational(1, 20), beta=sp.Rational(9, 10), rho=sp.Rational(99, 100),
        eps=sp.Rational(1, 1000), psi=4)


@settings(max_examples=examples(5), deadline=None)
@given(steps=st.lists(st.integers(0, 600), min_size=1, max_size=6))
def test_nadam_coefficients_equal_the_sums_written_out(nadam_field, steps):
    """NAdam's step-index coefficients (memory sums over its momentum schedule, geometric in
    ``n``): the recurrence gives the values the summed-out kernel gives, to the guard digits."""
    coefficients = nadam_field._coefficients.kernel
    assert running_sums.NAME in coefficients.source
    direct = Kernel(coefficients.exprs, coefficients.args, "mpmath")
    assert running_sums.NAME not in direct.source
    with mpmath.workdps(40):
        for m in steps:
            for p, q in zip(coefficients(m), direct(m)):
                assert abs(p - q) <= mpmath.mpf(10) ** -36 * max(abs(q), 1)


def test_a_sum_of_zeros_is_zero_not_nan():
    """An order-2 field (torch's RMSprop with momentum and L2) hoisted the step-index
    coefficient ``Sum(0, (k, 0, n))``; its 'ratio' 0/0 made the running sum NaN at n >= 1."""
    k = sp.Symbol("k", integer=True)
    kernel = Kernel([-3 * sp.Sum(sp.S.Zero, (k, 0, n)) / 5120 + 1], [n], "mpmath", running=True)
    assert [kernel(N)[0] for N in (0, 1, 5)] == [1, 1, 1]

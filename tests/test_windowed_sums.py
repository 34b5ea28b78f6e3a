"""Memory sums at a cost bounded in n (symbolic/emit/windowed.py): the sum of every term at
twice the precision is the oracle; the truncation must stay below the working precision and
must actually truncate where the decays make the old terms negligible."""
import mpmath
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from mpmath import iv

from conftest import examples
from modeq.symbolic import derive, optimizers
from modeq.symbolic.components import LossProvider, lower
from modeq.symbolic.emit import windowed
from modeq.symbolic.emit.field import FullBatchField
from modeq.symbolic.emit.values import resolve_values

decays = st.sampled_from(["1/10", "1/2", "3/5", "9/10", "19/20"]).map(mpmath.mpf)


def _family(x, y, c, u, v, n):
    """``a(l) = c x^(n-l) / sqrt(u + v y^l) + y^l`` and its enclosure, written here (not by
    modeq's printers): recent terms weighted by ``x``, the first ones by ``y``."""
    def term(l):
        return [c * x ** (n - l) / mpmath.sqrt(u + v * y ** l) + y ** l,
                mpmath.mpf(1) / mpmath.sqrt(u + v * y ** l)]

    def enclosure(L):
        X, Y = iv.mpf(x), iv.mpf(y)
        root = iv.sqrt(iv.mpf(u) + iv.mpf(v) * Y ** L)
        return [iv.mpf(c) * X ** (n - L) / root + Y ** L, 1 / root]
    return term, enclosure


@settings(max_examples=examples(15))
@given(x=decays, y=decays, c=st.sampled_from([-3, 1, 7]), u=st.sampled_from(["1e-3", "1", "5"]),
       v=st.sampled_from(["-0.5", "0", "2"]), n=st.integers(65, 2500), dps=st.sampled_from([15, 30]))
def test_windowed_sum_equals_every_term_to_working_precision(x, y, c, u, v, n, dps):
    u, v = mpmath.mpf(u), mpmath.mpf(v)
    with mpmath.workdps(2 * dps + 20):
        term, _ = _family(x, y, c, u, v, n)
        oracle = [mpmath.fsum(col) for col in zip(*(term(l) for l in range(n + 1)))]
        scale = [mpmath.fsum(abs(t) for t in col) for col in zip(*(term(l) for l in range(n + 1)))]
    with mpmath.workdps(dps):
        term, enclosure = _family(x, y, c, u, v, n)
        got, exact = windowed.windowed_sum(term, enclosure, 2, 0, n)
        for g, o, s in zip(got, oracle, scale):
            # every-term summation at this precision could err by (n + 1) ulps of sum |a|
            assert abs(g - o) <= (exact + 2) * mpmath.eps * s, (g, o, exact)


@pytest.mark.parametrize("x,y,bound", [("1/2", "1/2", 600), ("9/10", "3/5", 1500)])
def test_windowed_sum_truncates_where_the_decays_allow(x, y, bound):
    x, y = mpmath.mpf(sp.Rational(x).p) / sp.Rational(x).q, mpmath.mpf(sp.Rational(y).p) / sp.Rational(y).q
    with mpmath.workdps(30):
        for n in (5000, 50000):
            term, enclosure = _family(x, y, 2, mpmath.mpf(1), mpmath.mpf(2), n)
            _, exact = windowed.windowed_sum(term, enclosure, 2, 0, n)
            assert exact <= bound, (n, exact)


def test_a_field_without_bias_correction_at_large_n():
    """Adam without bias correction (memory sums with no closed form in n) at n = 4000 in the
    compiled full-batch field with its sums (the route of declarations outside the batch
    grouping, e.g. torch's RMSprop with momentum; built here directly, since ``lambdify`` takes
    Adam through the one-batch route): the windowed field equals every term added at 60
    digits, and fewer terms were added."""
    x, y = sp.symbols("x y")
    E = (x - 1) ** 2 / 2 + x * y / 3 + y ** 4 / 4
    flow = derive(optimizers.adam(bias_correction=False), 1)
    subs = resolve_values(flow, dict(h="1/20", beta="1/2", rho="3/5", eps="1/1000"))
    F, provider = flow.F("full"), LossProvider(E, [x, y])
    f = FullBatchField([(-lower(F, j, provider)).xreplace(subs) for j in range(2)], [x, y],
                       "mpmath")
    theta = ["0.3", "-0.2"]
    n = 4000
    counts = []
    original = windowed.windowed_sum

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        counts.append((args[4] - args[3] + 1, out[1]))
        return out
    with mpmath.workdps(30):
        windowed.windowed_sum, saved = spy, windowed.windowed_sum
        import modeq.symbolic.emit.past_sums as field_module
        field_module.windowed_sum, saved_field = spy, field_module.windowed_sum
        try:
            got = f(n, [mpmath.mpf(t) for t in theta])
        finally:
            windowed.windowed_sum = saved
            field_module.windowed_sum = saved_field
    assert counts and all(exact < total / 2 for total, exact in counts), counts
    saved_min = windowed.MIN_TERMS
    windowed.MIN_TERMS = 10 ** 9                         # every term, term by term
    try:
        with mpmath.workdps(60):
            oracle = f(n, [mpmath.mpf(t) for t in theta])
    finally:
        windowed.MIN_TERMS = saved_min
    for g, o in zip(got, oracle):
        assert abs(g - o) <= mpmath.mpf(10) ** -26 * max(1, abs(o)), (g, o)

"""Node tables started past the transient by their periodic closed form
(symbolic/emit/node_tables.py, PeriodicRun).

The oracle is the same tables filled from the first step (one forward pass over every past
step, checked against the sums added term by term in test_nested_sums.py): at every step from
the periodic start, for hyperparameters, points and residues drawn by Hypothesis, the closed
form gives the same values to a few units of the working precision, without filling a table
from the first step; where the closed form does not apply, the call falls back to the tables
and gives their values.
"""
import mpmath
import pytest
import sympy as sp
from hypothesis import assume, given, settings, strategies as st

from conftest import examples
from every_step import tables_only
from modeq.symbolic import derive, optimizers as O
from modeq.symbolic.emit import nested_sums
from modeq.symbolic.emit.nested_sums import NestedSums
from modeq.symbolic.emit.node_tables import DEGREE, PeriodicRun, TableRun

x, y = sp.symbols("x y")
E = sp.log(sp.cosh(x)) + (y - x / 2) ** 2 / 2 + x ** 2 / 4
LOSSES = [E, (x - 1) ** 2 / 2 + sp.log(sp.cosh(y)), x * y / 3 + (y + 1) ** 2 / 2]


class Counted(TableRun):
    """Counts the tables filled from the first step."""
    runs = 0

    def __init__(self, *args, **kwargs):
        Counted.runs += 1
        super().__init__(*args, **kwargs)


class CountedPeriodic(PeriodicRun):
    """Counts the summands the closed form evaluates."""
    calls = 0

    def summands(self, g, U, j):
        CountedPeriodic.calls += 1
        return super().summands(g, U, j)


@pytest.fixture(scope="module")
def flows():
    return {"rmsprop-momentum": derive(O.torch_rmsprop(momentum=True), 1),
            "sgd-dampened-2": derive(O.torch_sgd(True, True), 2)}


@pytest.mark.parametrize("name", ["rmsprop-momentum", "sgd-dampened-2"])
@settings(max_examples=examples(5), deadline=None)
@given(rho=st.integers(30, 90), mu=st.integers(0, 90), eps=st.integers(5, 100),
       point=st.tuples(st.integers(-20, 20), st.integers(-20, 20)),
       residue=st.integers(0, 2), dps=st.sampled_from([15, 30]),
       shift=st.sampled_from([0, 7, -1000]))
def test_periodic_start_equals_the_tables_over_every_step(flows, name, rho, mu, eps, point,
                                                          residue, dps, shift):
    """torch's RMSprop with momentum (order 1: nodes of ratio 1 read by nodes of ratio mu) and
    torch's dampened buffer (order 2: products of such nodes), 3 batches, cyclic: at the
    periodic start plus a residue, and 10**9 periods later, the closed form equals the tables
    from the first step; no table is filled from the first step.  The tables of ratio 1 start
    from ``shift``: the field does not depend on it (they are read only as differences)."""
    for loss in LOSSES:
        gradient = [float(sp.diff(loss, v).subs({x: point[0] / 10, y: point[1] / 10}))
                    for v in (x, y)]
        assume(min(abs(g) for g in gradient) > 0.05)
    values = dict(rho=sp.Rational(rho, 100), mu=sp.Rational(mu, 100),
                  eps=sp.Rational(eps, 100), tau=sp.Rational(1, 3), h=sp.Rational(1, 64))
    flow = flows[name]
    names = {str(s) for s in flow.optimizer.hyperparameters} | {"h"}
    field = flow.lambdify(LOSSES, [x, y], **{k: v for k, v in values.items() if k in names})
    with mpmath.workdps(dps):
        theta = [mpmath.mpf(point[0]) / 10, mpmath.mpf(point[1]) / 10]
        N = field.periodic_start() + residue
        every = tables_only(field)(N, theta)
        scale = max(abs(v) for v in every)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(nested_sums, "TableRun", Counted)
            mp.setattr(PeriodicRun, "ratio_one_start", shift)
            Counted.runs = 0
            got = [field(N, theta), field(N + 3 * 10 ** 9, theta)]
            assert Counted.runs == 0
        for value in got:
            for a, b in zip(value, every):
                assert abs(a - b) <= 2 ** (8 - mpmath.mp.prec) * scale, (a, b)


@settings(max_examples=examples(5), deadline=None)
@given(pattern=st.lists(st.integers(0, 2), min_size=1, max_size=5), rho=st.integers(20, 60),
       point=st.tuples(st.integers(-20, 20), st.integers(-20, 20)), residue=st.integers(0, 2),
       extra=st.integers(0, 3))
def test_a_list_repeating_a_pattern_is_periodic(flows, pattern, rho, point, residue, extra):
    """A schedule given as a list that repeats a pattern (any order, batches repeated or left
    out) is periodic with the pattern's least period: from the periodic start the closed form
    equals the tables over every step, no table filled from the first step.  A list one step
    too short for the closed form's fit, or broken by one entry, is evaluated step by step."""
    for loss in LOSSES:
        gradient = [float(sp.diff(loss, v).subs({x: point[0] / 10, y: point[1] / 10}))
                    for v in (x, y)]
        assume(min(abs(g) for g in gradient) > 0.05)
    m = next(d for d in range(1, len(pattern) + 1)
             if all(b == pattern[(i + d) % len(pattern)] for i, b in enumerate(pattern)))
    values = dict(rho=sp.Rational(rho, 100), mu=sp.Rational(3, 10), eps=sp.Rational(1, 10),
                  h=sp.Rational(1, 64))
    flow = flows["rmsprop-momentum"]
    probe = flow.lambdify(LOSSES, [x, y], schedule=pattern * 400, **values)
    theta = [mpmath.mpf(point[0]) / 10, mpmath.mpf(point[1]) / 10]
    with mpmath.workdps(15):
        start = probe.periodic_start()
        assert probe.m == m and start is not None
        need = start + (DEGREE + 2) * m           # the fit reads the steps start .. need - 1
        schedule = (pattern * (need // len(pattern) + 2))[:need + extra]
        field = flow.lambdify(LOSSES, [x, y], schedule=schedule, **values)
        N = start + residue                       # < need - 1: every list below has step N
        every = tables_only(field)(N, theta)
        scale = max(abs(v) for v in every)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(nested_sums, "TableRun", Counted)
            Counted.runs = 0
            got = field(N, theta)
            assert Counted.runs == 0 and field.periodic_start() == start
        for a, b in zip(got, every):
            assert abs(a - b) <= 2 ** (8 - mpmath.mp.prec) * scale, (a, b)
        short = flow.lambdify(LOSSES, [x, y], schedule=schedule[:need - 1], **values)
        broken = schedule[:-1] + [(schedule[-1] + 1) % 3]
        for other in (short, flow.lambdify(LOSSES, [x, y], schedule=broken, **values)):
            assert other.periodic_start() is None
            assert other(N, theta) == every


def test_the_cost_does_not_grow_with_the_start(flows, monkeypatch):
    """The closed form evaluates the same number of summands for a start of ~100 steps and of
    ~14,000 (rho = 0.99): ``O(m)`` per node, not ``O(start)``."""
    monkeypatch.setattr(nested_sums, "TableRun", Counted)
    monkeypatch.setattr(nested_sums, "PeriodicRun", CountedPeriodic)
    theta = [mpmath.mpf(1), mpmath.mpf("0.3")]
    counts = []
    for rho in ("1/2", "99/100"):
        field = flows["rmsprop-momentum"].lambdify(LOSSES, [x, y], rho=rho, mu="3/10",
                                                   eps="1/10", h="1/64")
        with mpmath.workdps(30):
            N = field.periodic_start()
            field(N, theta)                   # the stationary derivation, once
            Counted.runs = CountedPeriodic.calls = 0
            field(N + 1, theta)
        assert Counted.runs == 0
        counts.append((N, CountedPeriodic.calls))
    (short, a), (long, b) = counts
    assert long > 50 * short and a == b < short, counts


n, k, l = sp.symbols("n k l", integer=True)
D = sp.Function("_D0")


@settings(max_examples=examples(10), deadline=None)
@given(ratio=st.sampled_from([sp.Rational(1, 2), sp.Rational(-2, 3), sp.Rational(9, 10)]),
       power=st.integers(1, DEGREE), m=st.integers(1, 4), offset=st.integers(0, 7),
       rows=st.lists(st.integers(-9, 9), min_size=4, max_size=4))
def test_polynomial_growth_per_period_is_summed_in_closed_form(ratio, power, m, offset, rows):
    """``sum_k r^(n-k) D_k (sum_{l=k}^{n-1} D_l)^p`` over periodic data: the inner sum (ratio
    1) grows by a fixed amount per period, the outer summand like its ``p``-th power; the
    closed form equals the tables from the first step."""
    S = sp.Sum(ratio ** (n - k) * D(k) * sp.Sum(D(l), (l, k, n - 1)) ** power, (k, 0, n))
    sums = NestedSums([S], [n], n, "mpmath")
    data = ([[mpmath.mpf(v) / 7] for v in rows[:m]], lambda j: j % m)
    with mpmath.workdps(30):
        N0 = 800                                 # |r|^N0 far below the working precision
        N = N0 + offset
        every = sums(N, data=data)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(nested_sums, "TableRun", Counted)
            Counted.runs = 0
            got = sums(N, data=data, period=(N0, m, mpmath.mp.prec))
            assert Counted.runs == 0
    assert abs(got[0] - every[0]) <= 2 ** (10 - mpmath.mp.prec) * (1 + abs(every[0]))


def test_a_summand_that_is_not_polynomial_periodic_falls_back():
    """``D_k / (k + 1)`` does not repeat with the period: the closed form refuses it and the
    call gives the tables' value."""
    S = sp.Sum(sp.Rational(1, 2) ** (n - k) * D(k) / (k + 1), (k, 0, n))
    sums = NestedSums([S], [n], n, "mpmath")
    data = ([[mpmath.mpf(2)], [mpmath.mpf(-1)], [mpmath.mpf(3) / 7]], lambda j: j % 3)
    with mpmath.workdps(30):
        every = sums(402, data=data)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(nested_sums, "TableRun", Counted)
            Counted.runs = 0
            got = sums(402, data=data, period=(400, 3, mpmath.mp.prec))
            assert Counted.runs == 1
    assert got == every

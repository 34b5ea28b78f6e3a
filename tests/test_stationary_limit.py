"""Past the transient, an exact-in-n field with nested memory sums is its stationary field
(symbolic/emit/stationary_limit.py).

The oracle is independent of the switch: the exact field's own node tables (one forward pass
over every step, checked against the sums added term by term in test_nested_sums.py) at the
step where the switch happens, against the stationary flow (a separate derivation, the
``n -> oo`` limit) at the same point.  They must agree to the working precision there, for
hyperparameters and points drawn by Hypothesis; and from that step on a call must not touch
the node tables (its cost no longer grows with ``n``).
"""
import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import assume, given, settings, strategies as st

from conftest import examples
from every_step import tables_only
from modeq.symbolic import derive, optimizers as O
from modeq.symbolic.emit.past_sums import PastSums
from modeq.symbolic.emit.stationary_limit import limit_start, sum_depth
from modeq.symbolic.emit.step_indexed import StepIndexedField

x, y = sp.symbols("x y")
E = sp.log(sp.cosh(x)) + (y - x / 2) ** 2 / 2 + x ** 2 / 4


@pytest.fixture(scope="module")
def flow():
    return derive(O.torch_rmsprop(momentum=True), 1)


def refuse(*args, **kwargs):
    raise AssertionError("the node tables were used past the transient")


@settings(max_examples=examples(8), deadline=None)
@given(rho=st.integers(30, 95), mu=st.integers(0, 90), eps=st.integers(5, 100),
       point=st.tuples(st.integers(-20, 20), st.integers(-20, 20)),
       dps=st.sampled_from([15, 30]))
def test_tables_at_the_switch_equal_the_stationary_field(flow, rho, mu, eps, point, dps):
    """mpmath: at the first stationary step, the node tables (every past step) and the
    stationary field agree to a few units of the working precision (at points where no
    gradient component vanishes: the flow's square roots are smooth only there)."""
    gradient = [float(sp.diff(E, v).subs({x: point[0] / 10, y: point[1] / 10})) for v in (x, y)]
    assume(min(abs(g) for g in gradient) > 0.05)
    vals = dict(rho=sp.Rational(rho, 100), mu=sp.Rational(mu, 100), eps=sp.Rational(eps, 100),
                h=sp.Rational(1, 64))
    field = flow.lambdify(E, [x, y], **vals)
    assert field.sums.nested and field.limit is not None
    with mpmath.workdps(dps):
        N0 = field.limit_start()
        theta = [mpmath.mpf(point[0]) / 10, mpmath.mpf(point[1]) / 10]
        tables = tables_only(field)(N0, theta)
        limit = field(N0, theta)
        stationary = flow.lambdify(E, [x, y], stationary=True, **vals)(None, theta)
        scale = max(abs(v) for v in stationary)
        for a, b, c in zip(tables, limit, stationary):
            assert b == c
            assert abs(a - c) <= 2 ** (8 - mpmath.mp.prec) * scale


def test_past_the_transient_no_table_is_filled(flow, monkeypatch):
    """From the first stationary step on, a call (at n = 10**9 too) evaluates the stationary
    field; before it, the node tables."""
    field = flow.lambdify(E, [x, y], rho="99/100", mu="3/10", eps="1/10", h="1/64")
    theta = [mpmath.mpf(1), mpmath.mpf("0.3")]
    monkeypatch.setattr(PastSums, "__call__", refuse)
    with mpmath.workdps(30):
        N0 = field.limit_start()
        for N in (N0, N0 + 1, 10 ** 9):
            field(N, theta)
        with pytest.raises(AssertionError, match="node tables"):
            field(N0 - 1, theta)


def test_late_bound_step_size_and_float_backends(flow):
    """A field with ``h`` bound late (as an order study builds it) hands over to the
    stationary field bound to the same ``h``; NumPy in float64 switches at its own (earlier)
    step and agrees with its tables there to rounding."""
    vals = dict(rho="3/5", mu="3/10", eps="1/10")
    late = flow.lambdify(E, [x, y], late=("h",), **vals).bind(h="1/32")
    bound = flow.lambdify(E, [x, y], h="1/32", **vals)
    theta = [mpmath.mpf("0.7"), mpmath.mpf("-0.4")]
    with mpmath.workdps(30):
        N0 = late.limit_start()
        assert N0 == bound.limit_start()
        assert late(N0, theta) == bound(N0, theta)
        assert late(N0, theta) != flow.lambdify(E, [x, y], h="1/64", **vals)(N0, theta)
    fast = flow.lambdify(E, [x, y], backend="numpy", h="1/32", **vals)
    N0 = fast.limit_start()
    with mpmath.workdps(30):
        assert N0 < bound.limit_start()        # at 53 bits, not at mpmath's current precision
    point = np.array([0.7, -0.4])
    np.testing.assert_allclose(fast(N0, point), tables_only(fast)(N0, point), rtol=1e-13)


LOSSES = [E, (x - 1) ** 2 / 2 + sp.log(sp.cosh(y)), x * y / 3 + (y + 1) ** 2 / 2]


@settings(max_examples=examples(6), deadline=None)
@given(rho=st.integers(30, 90), mu=st.integers(0, 90), eps=st.integers(5, 100),
       point=st.tuples(st.integers(-20, 20), st.integers(-20, 20)),
       residue=st.integers(0, 2), periods=st.integers(1, 8), dps=st.sampled_from([15, 30]))
def test_mini_batch_is_periodic_past_the_transient(flow, rho, mu, eps, point, residue,
                                                    periods, dps):
    """Mini batch, cyclic schedule of 3 batches, outside the batch grouping (step-indexed):
    from the periodic start on, the node tables over every past step give the same field
    ``periods`` whole periods later, to a few units of the working precision; a call at any
    later step is the call at its representative (its tables started at the periodic start
    by their closed form, test_periodic_tables.py)."""
    for loss in LOSSES:
        gradient = [float(sp.diff(loss, v).subs({x: point[0] / 10, y: point[1] / 10}))
                    for v in (x, y)]
        assume(min(abs(g) for g in gradient) > 0.05)
    vals = dict(rho=sp.Rational(rho, 100), mu=sp.Rational(mu, 100), eps=sp.Rational(eps, 100),
                h=sp.Rational(1, 64))
    field = flow.lambdify(LOSSES, [x, y], **vals)
    assert isinstance(field, StepIndexedField) and field.limit is not None
    every = tables_only(field)
    with mpmath.workdps(dps):
        theta = [mpmath.mpf(point[0]) / 10, mpmath.mpf(point[1]) / 10]
        N = field.periodic_start() + residue
        first, later = every(N, theta), every(N + 3 * periods, theta)
        scale = max(abs(v) for v in first)
        for a, b in zip(first, later):
            assert abs(a - b) <= 2 ** (8 - mpmath.mp.prec) * scale
        for a, b in zip(field(N + 3 * 10 ** 9, theta), first):   # tables from N: node_tables
            assert abs(a - b) <= 2 ** (8 - mpmath.mp.prec) * scale


def test_no_stationary_limit_no_hand_over(monkeypatch):
    """Centered RMSprop (with momentum: nested sums) has no stationary flow (``v - a^2 -> 0``
    under the root; its derivation is refused): full batch keeps the node tables at every
    step, and its mini-batch field is not taken as periodic."""
    centered = derive(O.torch_rmsprop(centered=True, momentum=True), 1)
    vals = dict(rho="3/5", mu="3/10", eps="1/10", h="1/64")
    field = centered.lambdify(E, [x, y], **vals)
    assert field.limit is not None and field.limit.field is None
    monkeypatch.setattr(PastSums, "__call__", refuse)
    with pytest.raises(AssertionError, match="node tables"):
        field(10 * field.limit_start(), [mpmath.mpf(1), mpmath.mpf("0.3")])
    assert centered.lambdify(LOSSES, [x, y], **vals).periodic_start() is None


def test_below_the_start_the_stationary_flow_is_not_derived(flow):
    """Full and mini batch: the stationary counterpart (a derivation) is built only once a call
    reaches the start."""
    vals = dict(rho="3/5", mu="3/10", eps="1/10", h="1/64")
    theta = [mpmath.mpf(1), mpmath.mpf("0.3")]
    for field in (flow.lambdify(E, [x, y], **vals), flow.lambdify(LOSSES, [x, y], **vals)):
        field(5, theta)
        assert not field.limit._built
        field(10 ** 6, theta)
        assert field.limit._built


def test_a_schedule_given_as_a_list_is_not_assumed_periodic(flow):
    field = flow.lambdify(LOSSES, [x, y], schedule=[0, 1, 2] * 4, rho="3/5", mu="3/10",
                          eps="1/10", h="1/64")
    assert isinstance(field, StepIndexedField) and field.periodic_start() is None


@settings(max_examples=examples(30), deadline=None)
@given(d=st.integers(1, 999), prec=st.integers(20, 400), depth=st.integers(0, 6))
def test_the_start_is_the_least_step_past_every_transient(d, prec, depth):
    """``limit_start`` against its definition (module docstring), in high precision: at ``N``
    every step's share of the deviation is below the tolerance, at ``N - 1`` it is not."""
    N = limit_start([sp.Rational(d, 1000)], prec, depth)
    with mpmath.workprec(prec + 100):
        D = mpmath.mpf(d) / 1000
        tol = mpmath.mpf(2) ** -(prec + 10) * (1 - D) ** 3

        def below(m):
            return 3 * (m + 1) ** (depth + 1) * D ** (m + 1) <= tol
        assert below(N) and (N == 0 or not below(N - 1))


def test_sum_depth_counts_the_growth_of_products_of_sums():
    n, k, l = sp.symbols("n k l", integer=True)
    inner = sp.Sum(sp.Rational(1, 2) ** (k - l), (l, 0, k))
    assert sum_depth(sp.Sum(inner, (k, 0, n))) == 2
    assert sum_depth(sp.Sum(k, (k, 0, n)) ** 2 * inner + 1) == 3
    assert sum_depth(sp.sqrt(sp.Sum(k, (k, 0, n)))) == 1

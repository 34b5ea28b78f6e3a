"""A step that reads the step index with geometric transients (NAdam) past them
(symbolic/coefficients.py ``transient_rates``, symbolic/emit/stationary_limit.py).

NAdam's coefficients reach their limits like ``0.96^(t psi)`` and ``beta^t`` (the products
``mu_1 ... mu_t``); those rates join the decays that set the step from which the field is its
stationary one (full batch) or periodic (mini batch, cyclic schedule).  The oracle is the exact
field's own node tables over every past step (checked against the sums added term by term in
test_nested_sums.py and against the recursion in the series oracle), evaluated without the
switch.  A start set by the decays alone (a few dozen steps here) would leave the transients
``0.96^(N psi)`` far above the working precision and fail these comparisons.
"""
import mpmath
import pytest
import sympy as sp
from hypothesis import assume, given, settings, strategies as st

from conftest import examples
from every_step import tables_only
from modeq.symbolic import derive, optimizers as O
from modeq.symbolic.coefficients import transient_rates
from modeq.symbolic.emit.step_indexed import StepIndexedField
from modeq.symbolic.family import beta, n, step_product
from modeq.symbolic.optimizers import psi

x, y = sp.symbols("x y")
E = sp.log(sp.cosh(x)) + (y - x / 2) ** 2 / 2 + x ** 2 / 4
LOSSES = [E + (x + y) / 4, E - x / 4 + y ** 2 / 8, E - y / 4 + x * y / 8]


def close(a, b, scale):
    return all(abs(u - v) <= 2 ** (8 - mpmath.mp.prec) * scale for u, v in zip(a, b))


@pytest.fixture(scope="module")
def nadam():
    return derive(O.torch_nadam(), 1)


def _gradients_away_from_zero(losses, point):
    """eps outside the root: the flow is smooth only where no gradient component vanishes."""
    return all(abs(float(sp.diff(loss, v).subs({x: point[0], y: point[1]}))) > 0.05
               for loss in losses for v in (x, y))


@settings(max_examples=examples(6), deadline=None)
@given(psi_=st.integers(2, 8), beta_=st.integers(10, 60), rho=st.integers(30, 80),
       point=st.tuples(st.integers(-15, 15), st.integers(-15, 15)),
       residue=st.integers(0, 2), periods=st.integers(1, 4))
def test_nadam_mini_batch_is_periodic_past_its_transients(nadam, psi_, beta_, rho, point,
                                                         residue, periods):
    """Mini batch, cyclic schedule of 3 batches: from the periodic start on, the node tables
    over every past step give the same field whole periods later, to a few units of the
    working precision, and a call at any later step is the call at its representative."""
    theta = [sp.Rational(point[0], 10), sp.Rational(point[1], 10)]
    assume(_gradients_away_from_zero(LOSSES, theta))
    vals = dict(beta=sp.Rational(beta_, 100), rho=sp.Rational(rho, 100), eps="1/10",
                psi=psi_, h="1/64")
    field = nadam.lambdify(LOSSES, [x, y], **vals)
    assert isinstance(field, StepIndexedField) and field.limit is not None
    every = tables_only(field)
    with mpmath.workdps(30):
        th = [mpmath.mpf(t.p) / t.q for t in theta]
        N = field.periodic_start() + residue
        first, later = every(N, th), every(N + 3 * periods, th)
        scale = max(abs(v) for v in first)
        assert close(first, later, scale)
        assert close(field(N + 3 * 10 ** 9, th), first, scale)


@settings(max_examples=examples(6), deadline=None)
@given(psi_=st.integers(2, 8), beta_=st.integers(10, 60), rho=st.integers(30, 80),
       point=st.tuples(st.integers(-15, 15), st.integers(-15, 15)))
def test_nadam_full_batch_hands_over_to_its_stationary_field(nadam, psi_, beta_, rho, point):
    """Full batch: at the first stationary step the exact field's tables equal the stationary
    field (the ``n -> oo`` derivation, its coefficients at their limits), and from there on no
    table is filled (before, order 1 cost O(n): 96 s at n = 10^5)."""
    theta = [sp.Rational(point[0], 10), sp.Rational(point[1], 10)]
    assume(_gradients_away_from_zero([E], theta))
    vals = dict(beta=sp.Rational(beta_, 100), rho=sp.Rational(rho, 100), eps="1/10",
                psi=psi_, h="1/64")
    field = nadam.lambdify(E, [x, y], **vals)
    with mpmath.workdps(30):
        th = [mpmath.mpf(t.p) / t.q for t in theta]
        N = field.limit_start()
        assert N is not None
        tables, limit = tables_only(field)(N, th), field(N, th)
        assert close(tables, limit, max(abs(v) for v in limit))
        stationary = nadam.lambdify(E, [x, y], stationary=True, **vals)(None, th)
        assert list(limit) == list(stationary)


def test_nadam_order_two_mini_batch_is_periodic_past_its_transients(monkeypatch):
    """Order 2 (sums over pairs of past steps): the same periodicity from its start, and a call
    at n = 10^9 is the periodic closed form of the tables lowered for it (every weight
    ``beta^(n-k)`` shifted; the tables for the first steps, where such weights stay inside sums
    of terms, have summands growing like ``beta^(-k)`` and refuse it), equal to the tables
    filled over every step (measured at psi = 1: 0.02 s per call past the start, 3.4 s when
    the tables were filled up to the start, 57 s over every step)."""
    from modeq.symbolic.emit import past_sums
    answered, run = [], past_sums._in_mpmath
    monkeypatch.setattr(past_sums, "_in_mpmath", lambda tables, head, data, period, prec: (
        answered.append((tables.periodic, period is not None))
        or run(tables, head, data, period, prec)))
    flow = derive(O.torch_nadam(), 2)
    field = flow.lambdify(LOSSES, [x, y], beta="1/4", rho="3/5", eps="1/10", psi=4, h="1/64")
    every = tables_only(field)
    with mpmath.workdps(30):
        th = [mpmath.mpf("0.7"), mpmath.mpf("-0.3")]
        N = field.periodic_start()
        first, later = every(N + 1, th), every(N + 7, th)
        scale = max(abs(v) for v in first)
        assert close(first, later, scale)
        answered.clear()
        far = field(10 ** 9 + 1, th)
        # the last tables tried answered, by the closed form: those lowered for it
        assert answered and answered[-1] == (True, True), answered
        assert close(far, every(N + (10 ** 9 + 1 - N) % 3, th), scale)


def test_transient_rates_of_geometric_coefficients():
    """The rates, read off the declaration: ``b^(a n + c)`` -> ``b^a``; a product of factors
    ``f(i)`` up to ``n + c`` -> ``|f(oo)|`` with ``f``'s own rates."""
    i = sp.Symbol("i", integer=True, positive=True)
    q = sp.Rational(2, 3)
    assert transient_rates(q ** (2 * n + 1) * beta) == [q ** 2]
    assert transient_rates(sp.Integer(5)) == []
    P = step_product(beta * (1 - q ** (i * psi) / 2), i, 1, n + 1)
    assert set(transient_rates((1 - beta) / (1 - P))) == {q ** psi, beta}
    for step in (n / (n + 1), sp.sqrt(n + 1), q ** (n ** 2), step_product(i, i, 1, 2 * n)):
        assert transient_rates(step) is None


def test_a_coefficient_without_a_geometric_transient_gets_no_start():
    """A step reading ``1/(n + 1)`` approaches its limit like ``1/n``: no start, every step is
    evaluated by the tables (here: a call at a large step does fill them)."""
    from modeq.symbolic.family import EMA, Optimizer, eps, g, rho
    v = EMA("v", decay=rho, of=g ** 2, normalized=True)
    opt = Optimizer("slow_schedule", [v], (1 + 1 / (n + 1)) * g / (sp.sqrt(v) + eps))
    field = derive(opt, 1).lambdify(E, [x, y], rho="3/5", eps="1/10", h="1/64")
    assert field.limit is None and field.limit_start() is None

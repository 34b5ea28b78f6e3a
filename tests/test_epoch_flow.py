"""Epoch flows under random reshuffling (issue 12, item 3): ``ModifiedFlow.epoch_flow``.

Time convention: ``h`` per step, one epoch of ``m`` batches is time ``m h``; the flow is
``d theta/dt = -F`` with ``F = F0 + h F1 (+ h^2 F2)`` autonomous.  References are independent of
the derivation: Smith, Dherin, Barrett & De (ICLR 2021) for SGD (the mean iterate follows the
gradient flow of ``C + h/(4m) sum_k |grad C_k|^2``, ``C`` the mean of the batch losses), explicit
Euler's ``h^2`` term and the full-batch heavy-ball flow (docs/conventions.md §4) for equal
batches, a brute-force series composition of the steps in SymPy, and mpmath iterates averaged
over all ``m!`` orders of every epoch.
"""
import itertools
import math

import pytest
import sympy as sp

from modeq.symbolic import beta, derive, h, optimizers
from modeq.symbolic.components import lower_vector
from modeq.symbolic.family import Refused
from modeq.numeric.epoch_check import flow_path, loglog_slope, mean_epoch_path

x, y = sp.symbols("x y")


class BatchSymbols:
    """Generic components per batch: ``g_{b,j}``, symmetric ``H_{b,ij}``, ``T_{b,ijk}``."""

    def __init__(self, p):
        self.p = p

    def grad(self, b, j):
        return sp.Symbol(f"g{int(b)}_{j}")

    def hess(self, b, j, i):
        i, j = sorted((i, j))
        return sp.Symbol(f"H{int(b)}_{i}{j}")

    def d3(self, b, j, i, k):
        return sp.Symbol("T%d_%d%d%d" % ((int(b),) + tuple(sorted((i, j, k)))))

    def theta(self, j):
        return sp.Symbol(f"theta_{j}")


def _losses(m):
    pool = [(x - 1) ** 2 / 2 + x ** 4 / 12 + x * y / 4,
            (y + 1) ** 2 / 2 + sp.sin(x) / 2 + y ** 2 * x / 8,
            (x + y) ** 2 / 4 + sp.cos(y) / 3,
            sp.exp(x / 3) + (x - 2 * y) ** 2 / 5]
    return pool[:m]


def _grad(E, params):
    return sp.Matrix([sp.diff(E, p) for p in params])


# --- SGD: Smith, Dherin, Barrett & De (ICLR 2021) ------------------------------------------------

@pytest.mark.parametrize("m", [2, 3, 4])
def test_sgd_reshuffled_epoch_flow_is_smith_et_al_for_concrete_losses(m):
    L, P = _losses(m), [x, y]
    ef = derive(optimizers.sgd(), order=1).epoch_flow(L, P, reshuffle=True)
    C = sp.Add(*L) / m
    modified = C + h / (4 * m) * sp.Add(*[(_grad(E, P).T * _grad(E, P))[0] for E in L])
    diff = ef.field() + _grad(modified, P)            # field is -F
    assert sp.simplify(diff) == sp.zeros(2, 1)
    assert ef.epoch_time == m * h and ef.m == m and ef.reshuffle


@pytest.mark.parametrize("m", [2, 3, 4])
def test_sgd_reshuffled_epoch_flow_is_smith_et_al_for_generic_components(m):
    ef = derive(optimizers.sgd(), order=1).epoch_flow(_losses(m), [x, y])
    P = BatchSymbols(3)
    F = lower_vector(ef.F(), P)
    g = [sp.Matrix([P.grad(b, j) for j in range(3)]) for b in range(m)]
    H = [sp.Matrix(3, 3, lambda i, j: P.hess(b, i, j)) for b in range(m)]
    smith = sum(g, sp.zeros(3, 1)) / m + h / (2 * m) * sum((H[b] * g[b] for b in range(m)),
                                                          sp.zeros(3, 1))
    assert sp.expand(F - smith) == sp.zeros(3, 1)


def test_equal_batches_give_explicit_eulers_h2_term():
    """All batches equal: the epoch is m GD steps, so F2 = T[g,g]/12 + H.(H.g)/3 (HLW, ch. IX)."""
    E = (x - 1) ** 2 / 2 + x ** 4 / 12 + x * y / 4 + sp.sin(y)
    P = [x, y]
    g, Hm = _grad(E, P), sp.hessian(E, P)
    T = sp.Matrix([(g.T * sp.hessian(sp.diff(E, p), P) * g)[0] for p in P])
    ref = -(g + h / 2 * Hm * g + h ** 2 * (T / 12 + Hm * Hm * g / 3))
    for m, reshuffle in [(1, False), (3, True)]:
        ef = derive(optimizers.sgd(), order=2).epoch_flow([E] * m, P, reshuffle=reshuffle)
        assert sp.simplify(ef.field() - ref) == sp.zeros(2, 1)


def _series_oracle(L, orders, top):
    """Brute force in SymPy: the mean over ``orders`` of the composed SGD steps from the
    symbolic point ``x`` (1-D), as a polynomial in ``h`` through ``h^top``."""
    acc = 0
    for o in orders:
        t = x
        for b in o:
            t = sp.expand(t - h * sp.diff(L[b], x).subs(x, t))
            t = sp.series(t, h, 0, top + 1).removeO()
        acc += t
    return sp.expand(acc / len(orders))


def _lie_oracle(F, m, top):
    """``exp(m h L_{-F}) x`` for a 1-D field ``F(x)`` through ``h^top`` (direct differentiation)."""
    out, term = x, x
    for k in range(1, top + 1):
        term = sp.expand(-F * sp.diff(term, x))
        out += (m * h) ** k / math.factorial(k) * term
    return sp.expand(sp.series(sp.expand(out), h, 0, top + 1).removeO())


@pytest.mark.parametrize("reshuffle", [True, False])
def test_order2_epoch_flow_against_brute_force_series_of_the_steps(reshuffle):
    """The averaged composition of the steps and the flow over time 3h agree through h^3 (and
    differ at h^3 for the order-1 flow): a series oracle independent of the derivation."""
    L = [(x - 1) ** 2 / 2 + x ** 4 / 12, x ** 3 / 6 + 2 * x, (x + 2) ** 2 / 4 - x ** 4 / 24]
    m = 3
    orders = list(itertools.permutations(range(m))) if reshuffle else [(0, 1, 2)]
    steps = _series_oracle(L, orders, 3)
    for order, agree in [(2, 3), (1, 2)]:
        ef = derive(optimizers.sgd(), order=order).epoch_flow(L, [x], reshuffle=reshuffle)
        F = -ef.field()[0]
        flow = _lie_oracle(F, m, 3)
        diff = sp.expand(flow - steps)
        assert all(sp.simplify(diff.coeff(h, p)) == 0 for p in range(agree + 1))
        if agree < 3:
            assert sp.simplify(diff.coeff(h, agree + 1)) != 0


# --- heavy-ball: stationary, averaged over the orders of this and all past epochs ----------------

@pytest.mark.parametrize("m", [2, 3])
def test_heavy_ball_equal_batches_give_the_full_batch_flow(m):
    E = (x - 1) ** 2 / 2 + x ** 4 / 12 + x * y / 4
    P = [x, y]
    ef = derive(optimizers.heavy_ball(), order=1).epoch_flow([E] * m, P)
    g, Hm = _grad(E, P), sp.hessian(E, P)
    ref = g / (1 - beta) + h * (1 + beta) / (2 * (1 - beta) ** 3) * Hm * g   # conventions §4
    assert sp.simplify(ef.field() + ref) == sp.zeros(2, 1)


def test_heavy_ball_at_beta_zero_is_smith_et_al():
    L, P = _losses(3), [x, y]
    ef = derive(optimizers.heavy_ball(), order=1).epoch_flow(L, P)
    C = sp.Add(*L) / 3
    modified = C + h / 12 * sp.Add(*[(_grad(E, P).T * _grad(E, P))[0] for E in L])
    assert sp.simplify(ef.field().subs(beta, 0) + _grad(modified, P)) == sp.zeros(2, 1)


def test_heavy_ball_epoch_flow_is_a_gradient_field_and_reduces_batch_noise_like_sgd():
    """F1 = (1+b)/(2(1-b)^3) H_bar g_bar + c_m(b) (A - B) with A = mean H_k g_k, B = H_bar g_bar
    (the gradient of c_m/2 * mean |grad C_k - grad C|^2): c_m(0) = 1/2 (SGD), c_m > 0."""
    P = BatchSymbols(2)
    for m in (2, 3):
        ef = derive(optimizers.heavy_ball(), order=1).epoch_flow(_losses(m), [x, y])
        F1 = lower_vector(ef.terms[1], P)
        g = [sp.Matrix([P.grad(b, j) for j in range(2)]) for b in range(m)]
        H = [sp.Matrix(2, 2, lambda i, j: P.hess(b, i, j)) for b in range(m)]
        A = sum((H[b] * g[b] for b in range(m)), sp.zeros(2, 1)) / m
        B = sum(H, sp.zeros(2, 2)) * sum(g, sp.zeros(2, 1)) / m ** 2
        rest = sp.expand(F1 - (1 + beta) / (2 * (1 - beta) ** 3) * B)
        c = sp.Symbol("c")
        sol = sp.solve(list(sp.expand(rest - c * (A - B))), c, dict=True)
        assert len(sol) == 1
        cm = sp.factor(sol[0][c])
        assert cm.subs(beta, 0) == sp.Rational(1, 2)
        assert all(cm.subs(beta, sp.Rational(k, 10)) > 0 for k in range(10))


# --- numeric: mean iterates over all m! orders (mpmath) ------------------------------------------

HS = [sp.Rational(1, 25), sp.Rational(1, 50), sp.Rational(1, 100), sp.Rational(1, 200)]


def _errors(opt, L, P, order, hs, T, values=None, burn_in=0, dps=30):
    ef = derive(opt, order=order).epoch_flow(L, P)
    m = len(L)
    glob, loc = [], []
    for hh in hs:
        K = int(T / (m * hh))
        it = mean_epoch_path(opt, L, P, ["1/2", "-1/4"], hh, K, values=values,
                             burn_in=burn_in, dps=dps)
        fp, est = flow_path(ef, hh, K, it[0], values=values, substeps=2, dps=dps)
        glob.append(max(abs(a - b) for a, b in zip(it[-1], fp[-1])))
        loc.append(max(abs(a - b) for a, b in zip(it[1], fp[1])))
        assert est < glob[-1] / 1000          # the integrator's error is far below
    return glob, loc


@pytest.mark.parametrize("order", [0, 1, 2])
def test_sgd_mean_iterate_over_all_orders_follows_the_epoch_flow(order):
    """m = 3, every epoch averaged over its 6 orders exactly; horizon T = 3/5.  Expected:
    global error O(h^(r+1)) (slopes 1, 2, 3), one epoch O(h^(r+2)) (slopes 2, 3, 4)."""
    glob, loc = _errors(optimizers.sgd(), _losses(3), [x, y], order, HS, sp.Rational(3, 5))
    assert abs(loglog_slope(HS, glob) - (order + 1)) < 0.15
    assert abs(loglog_slope(HS, loc) - (order + 2)) < 0.15


@pytest.mark.parametrize("order", [0, 1])
def test_heavy_ball_mean_iterate_over_all_orders_follows_the_epoch_flow(order):
    """Quadratic batch losses (affine epoch maps: averaging every epoch over its m! orders is
    the exact mean over all order sequences), beta = 1/10, 4 epochs of burn-in (the start from
    zero momentum decays like beta^n), then the flow from the mean iterate.  Expected global
    slopes 1 and 2."""
    L = [(x - 1) ** 2 / 2 + x * y / 4, 3 * (y + 1) ** 2 / 4 + x ** 2 / 8,
         (x + 2 * y) ** 2 / 4 + y / 3]
    hs = [sp.Rational(1, 100), sp.Rational(1, 200), sp.Rational(1, 400), sp.Rational(1, 800)]
    glob, _ = _errors(optimizers.heavy_ball(), L, [x, y], order, hs, sp.Rational(3, 5),
                      values={"beta": "1/10"}, burn_in=4)
    assert abs(loglog_slope(hs, glob) - (order + 1)) < 0.15


# --- what is not derived, and bad input ---------------------------------------------------------

def test_parameter_terms_and_order2_memory_say_what_is_missing():
    L = _losses(2)
    with pytest.raises(NotImplementedError, match="depends on theta"):
        derive(optimizers.torch_adam(weight_decay="decoupled"), order=1).epoch_flow(L, [x, y])
    with pytest.raises(NotImplementedError, match="order 1"):
        derive(optimizers.heavy_ball(), order=2).epoch_flow(L, [x, y])
    with pytest.raises(NotImplementedError, match="cyclic"):
        derive(optimizers.heavy_ball(), order=1).epoch_flow(L, [x, y], reshuffle=False)


def test_bad_input_names_the_parameter():
    flow = derive(optimizers.sgd(), order=1)
    with pytest.raises(ValueError, match="reshuffle=True needs at least 2 batches in losses"):
        flow.epoch_flow([x ** 2], [x], reshuffle=True)
    with pytest.raises(ValueError, match="losses is empty"):
        flow.epoch_flow([], [x])
    with pytest.raises(Refused, match=r"losses\[1\].*Abs"):
        flow.epoch_flow([x ** 2, sp.Abs(x)], [x])
    with pytest.raises(TypeError, match="reshuffle"):
        flow.epoch_flow([x ** 2, x], [x], reshuffle="yes")
    with pytest.raises(TypeError, match="losses must be a list"):
        flow.epoch_flow(x ** 2, [x])
    # one batch, not reshuffled: the epoch is one GD step, F = g + (h/2) H g
    ef = flow.epoch_flow([x ** 3], [x], reshuffle=False)
    assert sp.expand(ef.field()[0] + 3 * x ** 2 + 9 * h * x ** 3) == 0

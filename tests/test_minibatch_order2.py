"""Mini-batch flows of order 2 for optimizers with memory (docs/conventions.md §3, §4).

Oracles independent of the derivation: the series oracle of ``test_properties_series`` (the
recursion's iterates and the piecewise flow's solution as power series in ``h``, run per step on
a 3-batch schedule), the full-batch derivation (equal batches), explicit Euler's modified
equation written out for SGD, and order studies in mpmath (slope 3).
"""
import mpmath
import numpy as np
import pytest
import sympy as sp
import torch

from modeq.numeric import order_study
from modeq.symbolic import EMA, Optimizer, derive, g, h, optimizers, theta
from modeq.symbolic.components import lower
from modeq.symbolic.operators import Vec

from test_properties_series import DPS, first_difference, flow_series, iterate_series

x, y = sp.symbols("x y")
BATCHES = [(x - 1) ** 2 / 2 + y ** 2 / 4, (x + y) ** 2 / 2 + x ** 4 / 12,
           (y - 2) ** 2 / 2 + x * y / 3]
LOSSES_1D = [(x - 1) ** 2 / 2, x ** 4 / 12 + x, (x + 2) ** 2 / 2]
BETA, RHO, EPS = sp.Rational(1, 4), sp.Rational(1, 3), sp.Rational(1, 100)
b_, r_, e_, lam_ = sp.symbols("beta rho eps lam", positive=True)


def adamw_like():
    """A user declaration with a parameter term in the step (decoupled decay)."""
    m = EMA("m", decay=b_, of=g, normalized=True, bias_correction=True)
    v = EMA("v", decay=r_, of=g ** 2, normalized=True, bias_correction=True)
    return Optimizer("adamw_like", states=[m, v], step=m / sp.sqrt(v + e_) + lam_ * theta)


def l2_momentum():
    """A user declaration whose state reads the parameter (coupled L2 decay)."""
    u = EMA("u", decay=b_, of=g + lam_ * theta, normalized=True, bias_correction=True)
    return Optimizer("l2_momentum", states=[u], step=u)


OPTIMIZERS = {
    "heavy_ball": optimizers.heavy_ball,
    "rmsprop": optimizers.rmsprop,
    "adam": optimizers.adam,
    "adam_eps_outside": lambda: optimizers.adam(eps_placement="outside"),
    "adam_no_bias_correction": lambda: optimizers.adam(bias_correction=False),
    "adamw_like": adamw_like,
    "l2_momentum": l2_momentum,
}


def values(opt, **extra):
    table = {"beta": BETA, "rho": RHO, "eps": EPS, "lam": sp.Rational(1, 5), **extra}
    return {s: table[str(s)] for s in opt.hyperparameters}


# ------------------------------------------------------------------ series oracle
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_series_oracle_order_2_on_three_batches(name):
    """Iterates and flow agree through h^3 and differ at h^4, per step of the schedule
    [2, 0, 1] (step k on loss schedule[k])."""
    opt = OPTIMIZERS[name]()
    point = [sp.Rational(3, 2)] if name == "adam_eps_outside" else [sp.Rational(1, 2)]
    with mpmath.workdps(DPS):
        vals = values(opt)
        it = iterate_series(opt, LOSSES_1D, [x], point, [2, 0, 1], vals, 4)
        fs = flow_series(derive(opt, 2), LOSSES_1D, [x], point, [2, 0, 1], vals, 4)
        assert first_difference(it, fs) == 4


def test_a_constant_direction_times_a_scalar_is_lowered():
    """Regression (found by the series oracle above for ``adamw_like``): ``lam * Vec(e)`` has
    no gradient, operator or parameter in it, and the lowering returned it unchanged instead of
    ``lam * e_j``; the Jacobian of the step's ``lam * theta`` was then dropped from the
    mini-batch ``h^2`` memory sums (``F2`` off by ``w lam H F0``)."""
    class P:
        p = 1

        @staticmethod
        def vec(name, j):
            return sp.Symbol(f"{name}_{j}")

    assert lower(lam_ * Vec(sp.Symbol("e")), 0, P) == lam_ * sp.Symbol("e_0")


# ------------------------------------------------------------------ equal batches
@pytest.mark.parametrize("name", ["heavy_ball", "adamw_like"])
def test_equal_batches_give_the_full_batch_order_2_field(name):
    """With every batch the same loss, the mini-batch field of order 2 is the full-batch one
    (exact in n, its memory sums in closed form) at every step."""
    opt = OPTIMIZERS[name]()
    flow = derive(opt, 2)
    E = BATCHES[1]
    point = {x: sp.Rational(1, 2), y: sp.Rational(-1, 3), **values(opt)}
    named = {str(k): v for k, v in values(opt).items()}
    for n in range(3):
        full = flow.field(E, [x, y], n=n, **named)
        mini = flow.field([E, E, E], [x, y], n=n, schedule=[2, 0, 1], **named)
        for a, b in zip(full, mini):
            assert sp.expand(sp.nsimplify((a - b).xreplace(point))) == 0


def test_sgd_order_2_is_explicit_euler_with_the_steps_own_loss():
    """SGD: ``F2 = (1/12) T[g, g] + (1/3) H^2 g`` of the loss the step uses (HLW IX)."""
    flow = derive(optimizers.sgd(), 2)
    schedule = [1, 2, 0, 2]
    for n, k in enumerate(schedule):
        E = BATCHES[k]
        G = sp.Matrix([sp.diff(E, v) for v in (x, y)])
        H = sp.hessian(E, (x, y))
        T = [[[sp.diff(E, a, b, c) for c in (x, y)] for b in (x, y)] for a in (x, y)]
        TGG = sp.Matrix([sum(T[j][i][l] * G[i] * G[l] for i in range(2) for l in range(2))
                         for j in range(2)])
        F = G + h * H * G / 2 + h ** 2 * (TGG / 12 + H * H * G / 3)
        field = flow.field(BATCHES, [x, y], n=n, schedule=schedule)
        assert sp.simplify(field + F) == sp.zeros(2, 1)


# ------------------------------------------------------------------ emitted forms
@pytest.mark.parametrize("name", ["adam", "adamw_like"])
def test_every_backend_equals_the_exact_field_at_every_step(name):
    """mpmath (50 digits), NumPy and torch (float64) against ``flow.field`` (exact), on a
    non-cyclic schedule with repeats."""
    opt = OPTIMIZERS[name]()
    flow = derive(opt, 2)
    schedule = [2, 2, 0, 1]
    vals = {str(k): v for k, v in values(opt).items()}
    hv = sp.Rational(1, 10)
    th = [sp.Rational(1, 2), sp.Rational(-1, 3)]
    fm = flow.lambdify(BATCHES, [x, y], backend="mpmath", schedule=schedule, h=hv, **vals)
    fn = flow.lambdify(BATCHES, [x, y], backend="numpy", schedule=schedule, h=hv, **vals)
    ft = flow.lambdify(BATCHES, [x, y], backend="torch", schedule=schedule, h=hv, **vals)
    for n in range(len(schedule)):
        exact = flow.field(BATCHES, [x, y], n=n, schedule=schedule, at=th, h=hv, **vals)
        with mpmath.workdps(50):
            got = fm(n, [mpmath.mpf(t.p) / t.q for t in th])
            for a, b in zip(got, exact):
                assert abs(a - sp.N(b, 60)) < mpmath.mpf(10) ** -45
        ref = np.array([float(b) for b in exact])
        assert np.allclose(fn(n, np.array([float(t) for t in th])), ref, rtol=1e-12, atol=1e-14)
        got_t = ft(n, torch.tensor([float(t) for t in th], dtype=torch.float64))
        assert np.allclose(got_t.numpy(), ref, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ order studies (slope 3)
C = (x - 1) ** 2 / 2 + y ** 2 / 4 + x * y / 5 + x ** 4 / 24
STUDY_BATCHES = [C + (x + y) / 4, C - x / 4 + y ** 2 / 8, C - y / 4 + x * y / 8]
NON_CYCLIC = [2, 0, 1, 1, 0, 2, 0, 2, 1] * 8           # 72 steps >= T / h for h = 1/128
STUDY_VALUES = {"beta": sp.Rational(1, 4), "rho": sp.Rational(1, 3), "eps": sp.Rational(1, 10),
                "lam": sp.Rational(1, 5)}


H32 = ["1/32", "1/64", "1/128"]
# Adam eps outside, non-cyclic: rates 3.59 / 2.84 / 2.95 from h = 1/32 (pre-asymptotic there)
H64 = ["1/64", "1/128", "1/256"]


@pytest.mark.slow
@pytest.mark.parametrize("name, schedule, hs", [
    ("adam", NON_CYCLIC, H32), ("adam", None, H32), ("adam_eps_outside", None, H32),
    ("adam_eps_outside", NON_CYCLIC * 2, H64), ("heavy_ball", None, H32),
    ("heavy_ball", NON_CYCLIC, H32), ("adamw_like", NON_CYCLIC, H32), ("l2_momentum", None, H32)])
def test_order_2_studies_have_slope_3(name, schedule, hs):
    """Iterates against the order-2 mini-batch flow in mpmath (20 digits: the rounding floor
    ~1e-20 and the integrator's estimate sit far below the errors 1e-4..1e-7, which the verdict
    checks), 3 batches, cyclic (``None``) and non-cyclic schedules, h = 1/32 .. 1/128: slope 3
    within 0.2 (the mini-batch switching leaves an h^4 term of comparable size at h = 1/16,
    so the fit starts at 1/32; at 1/64 where the rates settle later)."""
    opt = OPTIMIZERS[name]()
    vals = {k: v for k, v in STUDY_VALUES.items() if k in {str(s) for s in opt.hyperparameters}}
    res = order_study(opt, STUDY_BATCHES, [x, y], [1, sp.Rational(1, 2)], T=sp.Rational(1, 2),
                      hs=hs, orders=(2,), dps=20, schedule=schedule, tol=0.2, **vals)
    o = res.orders[2]
    assert o.verdict == "pass", (o.slope, o.reason)
    assert all(p.resolved for p in o.points)


def test_the_step_indexed_form_at_order_2_points_to_the_grouped_form():
    with pytest.raises(NotImplementedError, match=r"grouped_terms\(m\)"):
        derive(optimizers.adam(), 2).terms("mini")

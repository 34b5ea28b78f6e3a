"""Series check, independent of the derivation (tests/series_oracle.py).

On a concrete non-quadratic loss and a rational start, the first iterates theta^(1..3) of the
recursion and the flow's solution at t = h, 2h, 3h (Taylor method through the piecewise
fields) agree through h^(r+1) and differ at h^(r+2) for a flow of order r.
"""
import mpmath
import pytest
import sympy as sp

from series_oracle import compare, flow_series, iterate_series
from modeq.symbolic import EMA, Optimizer, beta, derive, eps, g, h, optimizers, rho, theta

x, y = sp.symbols("x y")
# grad E(0, 0) = (3/4, 4/3), so g_j^2 + eps is a perfect square for eps = 1 (exact roots)
E = (sp.Rational(3, 4) * x + sp.Rational(4, 3) * y + x**2 / 2 + x * y / 3 + y**2
     + x**3 / 5 + x * y**2 / 7 + y**4 / 4)
lam = sp.Symbol("lam", positive=True)
VALUES = {beta: sp.Rational(1, 2), rho: sp.Rational(3, 4), eps: sp.Integer(1),
          lam: sp.Rational(1, 10)}


def adamw_like():
    m = EMA("m", decay=beta, of=g, normalized=True, bias_correction=True)
    v = EMA("v", decay=rho, of=g**2, normalized=True, bias_correction=True)
    return Optimizer("adamw_like", [m, v], m / sp.sqrt(v + eps) + lam * theta)


def first_difference(opt, order, exact=True, stationary=False):
    vals = {k: v for k, v in VALUES.items() if k in opt.hyperparameters}
    D = order + 2
    it = iterate_series(opt, E, [x, y], [0, 0], 3, D, vals, h, exact=exact)
    fs = flow_series(derive(opt, order), E, [x, y], [0, 0], 3, D, vals, h,
                     stationary=stationary, exact=exact)
    return compare(it, fs, tol=0 if exact else mpmath.mpf(10) ** -45)


CASES = [  # (optimizer factory, order, exact rational arithmetic?)
    (optimizers.gd, 0, True),
    (optimizers.gd, 1, True),
    (optimizers.heavy_ball, 1, True),
    (optimizers.rmsprop, 1, True),
    (optimizers.adam, 1, True),
    (lambda: optimizers.adam("outside"), 1, True),
    (lambda: optimizers.adam(bias_correction=False), 1, False),
    (adamw_like, 1, True),
    (optimizers.gd, 2, True),
    (optimizers.heavy_ball, 2, True),
    (optimizers.rmsprop, 2, True),
    (optimizers.adam, 2, True),
    (lambda: optimizers.adam("outside"), 2, True),
]


@pytest.mark.parametrize("make, order, exact", CASES,
                         ids=[f"{m().name}-order{o}" for m, o, _ in CASES])
def test_iterates_and_flow_agree_through_h_to_order_plus_one(make, order, exact):
    mpmath.mp.dps = 60
    assert first_difference(make(), order, exact) == order + 2


def test_a_wrong_flow_fails_the_series_check():
    """Flip the sign of Adam's first correction: the check must see it at h^2."""
    flow = derive(optimizers.adam(), 1)

    class Flipped:
        optimizer = flow.optimizer
        order = 1

        def field(self, E_, params, n=None, stationary=False, **values):
            F0 = derive(optimizers.adam(), 0).field(E_, params, n=n, stationary=stationary,
                                                    **values)
            F1 = flow.field(E_, params, n=n, stationary=stationary, **values)
            return 2 * F0 - F1          # -(F0 - h F1)

    vals = {k: v for k, v in VALUES.items() if k in flow.optimizer.hyperparameters}
    it = iterate_series(flow.optimizer, E, [x, y], [0, 0], 3, 3, vals, h)
    fs = flow_series(Flipped(), E, [x, y], [0, 0], 3, 3, vals, h)
    assert compare(it, fs) == 2

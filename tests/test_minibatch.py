"""Mini batch: reduction to full batch, SGD per step, and the numeric lowering."""
import mpmath
import pytest
import sympy as sp

from counting import Counted
from modeq.symbolic import beta, derive, eps, h, optimizers, rho

x, y = sp.symbols("x y")
E0 = (x - 1)**2 / 2 + sp.sin(y) * x / 3 + y**2
E1 = (x + y)**2 / 4 + sp.cos(x) / 5 + (y - 1)**2 / 2
E2 = x**2 / 3 + (y + x / 2)**4 / 8 + y / 3
VALS = {h: sp.Rational(1, 16), beta: sp.Rational(9, 10), rho: sp.Rational(99, 100),
        eps: sp.Rational(1, 100)}
POINT = {x: sp.Rational(1, 2), y: sp.Rational(-1, 3)}


@pytest.mark.parametrize("make", [optimizers.heavy_ball, optimizers.adam,
                                  lambda: optimizers.adam(bias_correction=False)])
@pytest.mark.parametrize("N", [0, 3])
def test_equal_losses_give_the_full_batch_field(make, N):
    flow = derive(make(), 1)
    mini = flow.field([E1, E1, E1], [x, y], n=N)
    full = flow.field(E1, [x, y], n=N)
    for a, b in zip(mini, full):
        d = (a - b).xreplace(VALS).xreplace(POINT)
        assert abs(sp.N(d, 40)) < 1e-35


@pytest.mark.parametrize("N", [0, 1, 2, 5])
def test_sgd_is_grad_plus_half_hessian_grad_of_the_current_batch(N):
    losses = [E0, E1, E2]
    E = losses[N % 3]
    g = sp.Matrix([sp.diff(E, v) for v in (x, y)])
    H = sp.hessian(E, (x, y))
    expected = -(g + h / 2 * H * g)
    got = derive(optimizers.sgd(), 1).field(losses, [x, y], n=N)
    assert sp.simplify(got - expected) == sp.zeros(2, 1)


def test_schedule_selects_the_losses():
    losses = [E0, E1, E2]
    got = derive(optimizers.sgd(), 0).field(losses, [x, y], n=2, schedule=[0, 0, 1])
    assert sp.simplify(got + sp.Matrix([sp.diff(E1, v) for v in (x, y)])) == sp.zeros(2, 1)


@pytest.mark.parametrize("make", [optimizers.heavy_ball, optimizers.adam,
                                  lambda: optimizers.adam(bias_correction=False)])
def test_numeric_mini_batch_matches_the_exact_field(make):
    """The batch-grouped numeric evaluator against the exact symbolic field (unrolled sums)."""
    flow = derive(make(), 1)
    values = {str(k): v for k, v in VALS.items() if k == h or k in flow.optimizer.hyperparameters}
    f = flow.lambdify([E0, E1, E2], [x, y], **values)
    mpmath.mp.dps = 40
    for N in (0, 1, 4, 7):
        exact = flow.field([E0, E1, E2], [x, y], n=N, at=[POINT[x], POINT[y]], **values)
        num = f(N, [mpmath.mpf(1) / 2, mpmath.mpf(-1) / 3])
        for a, b in zip(exact, num):
            assert abs(sp.N(a, 45) - sp.Float(b, 45)) < 1e-35


def test_mini_batch_cost_per_call_does_not_grow_with_n():
    """One gradient and one Hessian evaluation per distinct batch, whatever n."""
    flow = derive(optimizers.adam(), 1)
    f = flow.lambdify([E0, E1, E2], [x, y], h=0.0625, beta=0.9, rho=0.99, eps=0.01)
    calls = {"grad": 0, "hess": 0}

    def counting(fns, key):
        return [Counted(fn, calls, key) for fn in fns]

    f._grad = counting(f._grad, "grad")
    f._hess = counting(f._hess, "hess")
    mpmath.mp.dps = 30
    for N in (2, 40):
        calls.update(grad=0, hess=0)
        f(N, [mpmath.mpf(1) / 2, mpmath.mpf(-1) / 3])
        assert calls == {"grad": 3, "hess": 3}


def test_memory_window_drops_only_weights_below_precision():
    flow = derive(optimizers.heavy_ball(), 1)
    f = flow.lambdify([E0, E1, E2], [x, y], h=0.0625, beta=0.25)
    mpmath.mp.dps = 30
    th = [mpmath.mpf(1) / 2, mpmath.mpf(-1) / 3]
    N = 120
    assert f._window(f._u_table(N), N) > 0            # the window is really cut here
    cut = f(N, th)
    f._window = lambda tab, n: 0                       # keep every past step,
    f._u_table(0).tail = None                         # one by one (no closed-form tail)
    full = f(N, th)
    assert max(abs(a - b) for a, b in zip(cut, full)) < mpmath.mpf(10) ** -29

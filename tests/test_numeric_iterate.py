"""Iterates generated from declarations against independent hand-written recursions.

The references below are written from docs/conventions.md §2 directly (gradients coded by
hand, no SymPy, no modeq code): exact rational arithmetic (``fractions.Fraction``) where the recursion is
rational (GD, heavy-ball, Adam without the square root), high-precision mpmath otherwise.
"""
from fractions import Fraction as Fr

import mpmath
import pytest
import sympy as sp

from modeq.numeric.iterate import Iterator, iterates
from modeq.symbolic import EMA, Optimizer, g, optimizers, theta

x, y = sp.symbols("x y", real=True)
E = x ** 4 / 4 + x * y + y ** 2                      # grad = (x^3 + y, x + 2 y)
BATCHES = [x ** 4 / 4 + x * y + y ** 2, (x - 1) ** 2 + y ** 4 / 4, x * y + (y + 2) ** 2]


def grad_E(t):
    return [t[0] ** 3 + t[1], t[0] + 2 * t[1]]


def grad_batch(k, t):
    a, b = t
    return [[a ** 3 + b, a + 2 * b], [2 * (a - 1), b ** 3], [b, a + 2 * (b + 2)]][k]


def hand_gd(t, h, steps, grad=lambda k, t: grad_E(t)):
    out = [list(t)]
    for k in range(steps):
        gk = grad(k, t)
        t = [t[j] - h * gk[j] for j in range(2)]
        out.append(t)
    return out


def hand_heavy_ball(t, h, beta, steps, grad=lambda k, t: grad_E(t)):
    u = [0, 0]
    out = [list(t)]
    for k in range(steps):
        gk = grad(k, t)
        u = [beta * u[j] + gk[j] for j in range(2)]
        t = [t[j] - h * u[j] for j in range(2)]
        out.append(t)
    return out


def hand_adam(t, h, beta, rho, eps, steps, outside=False, bias_correction=True,
              grad=lambda k, t: grad_E(t), sqrt=mpmath.sqrt, lam=0):
    m, v = [0, 0], [0, 0]
    out = [list(t)]
    for k in range(steps):
        gk = grad(k, t)
        m = [beta * m[j] + (1 - beta) * gk[j] for j in range(2)]
        v = [rho * v[j] + (1 - rho) * gk[j] ** 2 for j in range(2)]
        cm = 1 - beta ** (k + 1) if bias_correction else 1
        cv = 1 - rho ** (k + 1) if bias_correction else 1
        mh = [mj / cm for mj in m]
        vh = [vj / cv for vj in v]
        if outside:
            step = [mh[j] / (sqrt(vh[j]) + eps) for j in range(2)]
        else:
            step = [mh[j] / sqrt(vh[j] + eps) + lam * t[j] for j in range(2)]
        t = [t[j] - h * step[j] for j in range(2)]
        out.append(t)
    return out


def as_fr(run):
    return [[Fr(int(c.p), int(c.q)) for c in th] for th in run]


def test_gd_exact_rational():
    h = Fr(1, 8)
    ref = hand_gd([Fr(1), Fr(1, 2)], h, 6)
    got = iterates(optimizers.gd(), E, [x, y], [1, sp.Rational(1, 2)], sp.Rational(1, 8), 6,
                   arithmetic="exact")
    assert as_fr(got) == ref


def test_heavy_ball_exact_rational():
    h, beta = Fr(1, 16), Fr(3, 5)
    ref = hand_heavy_ball([Fr(1), Fr(1, 2)], h, beta, 7)
    got = iterates(optimizers.heavy_ball(), E, [x, y], [1, "1/2"], sp.Rational(1, 16), 7,
                   arithmetic="exact", beta=sp.Rational(3, 5))
    assert as_fr(got) == ref


def test_heavy_ball_mini_batch_exact_rational_cyclic_and_explicit_schedule():
    h, beta = Fr(1, 16), Fr(1, 2)
    ref = hand_heavy_ball([Fr(1), Fr(1, 2)], h, beta, 7, grad=lambda k, t: grad_batch(k % 3, t))
    got = iterates(optimizers.heavy_ball(), BATCHES, [x, y], [1, "1/2"], sp.Rational(1, 16), 7,
                   arithmetic="exact", beta="1/2")
    assert as_fr(got) == ref
    sched = [2, 2, 0, 1, 0, 2, 1]
    ref = hand_heavy_ball([Fr(1), Fr(1, 2)], h, beta, 7,
                          grad=lambda k, t: grad_batch(sched[k], t))
    got = iterates(optimizers.heavy_ball(), BATCHES, [x, y], [1, "1/2"], sp.Rational(1, 16), 7,
                   arithmetic="exact", schedule=sched, beta="1/2")
    assert as_fr(got) == ref


@pytest.mark.parametrize("outside,bc", [(False, True), (True, True), (False, False),
                                        (True, False)])
def test_adam_high_precision(outside, bc):
    opt = optimizers.adam("outside" if outside else "inside", bias_correction=bc)
    with mpmath.workdps(70):
        ref = hand_adam([mpmath.mpf(1), mpmath.mpf(1) / 2], mpmath.mpf(1) / 16,
                        mpmath.mpf(9) / 10, mpmath.mpf(999) / 1000, mpmath.mpf(1) / 1000, 12,
                        outside=outside, bias_correction=bc)
    got = iterates(opt, E, [x, y], [1, "1/2"], sp.Rational(1, 16), 12, dps=50,
                   beta="9/10", rho="999/1000", eps="1/1000")
    err = max(abs(a - b) for p, q in zip(got, ref) for a, b in zip(p, q))
    assert err < mpmath.mpf(10) ** -47
    assert max(abs(a - b) for a, b in zip(got[1], got[0])) > 0.01  # the run moves


def test_adam_mini_batch_and_user_declared_adamw():
    lam = sp.Symbol("lam", positive=True)
    beta, rho, eps = sp.symbols("beta rho eps", positive=True)
    m = EMA("m", decay=beta, of=g, normalized=True, bias_correction=True)
    v = EMA("v", decay=rho, of=g ** 2, normalized=True, bias_correction=True)
    adamw = Optimizer("adamw_like", [m, v], m / sp.sqrt(v + eps) + lam * theta)
    with mpmath.workdps(70):
        ref = hand_adam([mpmath.mpf(1), mpmath.mpf(1) / 2], mpmath.mpf(1) / 32,
                        mpmath.mpf(1) / 2, mpmath.mpf(2) / 3, mpmath.mpf(1) / 100, 10,
                        grad=lambda k, t: grad_batch(k % 3, t), lam=mpmath.mpf(1) / 10)
    got = iterates(adamw, BATCHES, [x, y], [1, "1/2"], sp.Rational(1, 32), 10, dps=50,
                   beta="1/2", rho="2/3", eps="1/100", lam="1/10")
    err = max(abs(a - b) for p, q in zip(got, ref) for a, b in zip(p, q))
    assert err < mpmath.mpf(10) ** -47


def test_adam_rational_parts_exact():
    # With eps outside and v-hat a perfect square at step 0 (sqrt(g^2) = |g|), Adam's first
    # step is rational: theta1 = theta0 - h g/(|g| + eps).
    got = iterates(optimizers.adam("outside"), E, [x, y], [1, "1/2"], sp.Rational(1, 16), 1,
                   arithmetic="exact", beta="9/10", rho="999/1000", eps="1/1000")
    g0 = [Fr(3, 2), Fr(2)]
    ref = [Fr(1) - Fr(1, 16) * g0[0] / (g0[0] + Fr(1, 1000)),
           Fr(1, 2) - Fr(1, 16) * g0[1] / (g0[1] + Fr(1, 1000))]
    assert as_fr(got)[1] == ref


def test_precision_follows_dps():
    a = iterates(optimizers.adam(), E, [x, y], [1, "1/2"], sp.Rational(1, 16), 5, dps=20,
                 beta="9/10", rho="999/1000", eps="1/1000")
    b = iterates(optimizers.adam(), E, [x, y], [1, "1/2"], sp.Rational(1, 16), 5, dps=60,
                 beta="9/10", rho="999/1000", eps="1/1000")
    d = max(abs(p - q) for p, q in zip(a[-1], b[-1]))
    assert 0 < d < 1e-17


def test_bad_input():
    opt = optimizers.adam()
    vals = dict(beta="9/10", rho="999/1000", eps="1/1000")
    with pytest.raises(ValueError, match="theta0 has 3"):
        iterates(opt, E, [x, y], [1, 2, 3], sp.Rational(1, 16), 3, **vals)
    with pytest.raises(ValueError, match="not in params"):
        iterates(opt, E, [x], [1], sp.Rational(1, 16), 3, **vals)
    with pytest.raises(ValueError, match="no value"):
        iterates(opt, E, [x, y], [1, 2], sp.Rational(1, 16), 3, beta="9/10")
    with pytest.raises(ValueError, match="rho"):
        iterates(opt, E, [x, y], [1, 2], sp.Rational(1, 16), 3, beta="9/10", rho=1,
                 eps="1/1000")
    with pytest.raises(ValueError, match="schedule has 2 entries"):
        iterates(opt, BATCHES, [x, y], [1, 2], sp.Rational(1, 16), 3, schedule=[0, 1], **vals)
    with pytest.raises(ValueError, match="schedule entry 5"):
        iterates(opt, BATCHES, [x, y], [1, 2], sp.Rational(1, 16), 3, schedule=[5, 1, 0],
                 **vals)
    with pytest.raises(TypeError):
        Iterator("adam", E, [x, y])


def test_divergent_run_is_a_clear_error():
    with pytest.raises(ValueError, match="diverges"):
        iterates(optimizers.gd(), E, [x, y], [3, 0], sp.Rational(1, 2), 40, dps=20)

"""Mini batch under any data order: every numeric backend equals the exact symbolic field.

Regression for a schedule applied twice (step ``n`` evaluated the loss ``S[S[n]]``): the oracle
is ``flow.field(..., schedule=S)``, the exact SymPy field with the memory sums unrolled, which
shares no numeric code with ``lambdify``.  Hypothesis draws the schedules (non-cyclic, with
repeats, permutations) and the step index.
"""
import mpmath
import numpy as np
import sympy as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeq.numeric import problems
from modeq.numeric.study import order_study
from modeq.symbolic import derive, optimizers

x, y = sp.symbols("x y")
LOSSES = [x**2 / 2 + y**2 / 4, (x - 1)**2 / 2 + x * y / 3, (x + 2)**2 / 2 + (y - 1)**4 / 8]
POINT = (sp.Rational(1, 3), sp.Rational(-1, 2))
CASES = {
    "sgd-0": (optimizers.sgd, 0, dict()),
    "sgd-1": (optimizers.sgd, 1, dict(h=sp.Rational(1, 8))),
    "heavy_ball-1": (optimizers.heavy_ball, 1, dict(h=sp.Rational(1, 8), beta=sp.Rational(1, 2))),
    "adam-1": (optimizers.adam, 1, dict(h=sp.Rational(1, 8), beta=sp.Rational(1, 2),
                                        rho=sp.Rational(3, 4), eps=sp.Rational(1, 10))),
}
_FLOWS = {}


def flow_of(case):
    if case not in _FLOWS:
        make, order, _ = CASES[case]
        _FLOWS[case] = derive(make(), order)
    return _FLOWS[case]


def exact(case, schedule, n):
    values = CASES[case][2]
    F = flow_of(case).field(LOSSES, [x, y], n=n, schedule=schedule)
    subs = {s: values[str(s)] for s in F.free_symbols if str(s) in values}
    return [sp.N(e.xreplace(subs).xreplace({x: POINT[0], y: POINT[1]}), 40) for e in F]


schedules = st.lists(st.integers(0, 2), min_size=2, max_size=7)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(sorted(CASES)), schedule=schedules, data=st.data())
def test_every_backend_equals_the_exact_field_at_every_step(case, schedule, data):
    n = data.draw(st.integers(0, len(schedule) - 1), label="n")
    flow = flow_of(case)
    values = CASES[case][2]
    ref = exact(case, schedule, n)
    with mpmath.workdps(40):
        fm = flow.lambdify(LOSSES, [x, y], backend="mpmath", schedule=schedule, **values)
        got = fm(n, list(POINT))
        assert max(abs(sp.Float(a, 40) - b) for a, b in zip(got, ref)) < 1e-30
    point = np.array([float(c) for c in POINT])
    fn = flow.lambdify(LOSSES, [x, y], backend="numpy", schedule=schedule, **values)
    ft = flow.lambdify(LOSSES, [x, y], backend="torch", schedule=schedule, **values)
    for out in (fn(n, point), ft(n, torch.tensor(point)).numpy()):
        assert isinstance(out, np.ndarray) and out.shape == (2,)
        assert np.max(np.abs(out - np.array([float(r) for r in ref]))) < 1e-12


def test_mini_batch_arrays_have_the_documented_shape():
    flow = flow_of("adam-1")
    f = flow.lambdify(LOSSES, [x, y], backend="numpy", schedule=[2, 0, 1, 1], **CASES["adam-1"][2])
    pts = np.array([[0.1, 0.3, -0.2], [0.2, 0.4, 0.0]])
    out = f(3, pts)
    assert out.shape == (2, 3) and out.dtype == np.float64
    for k in range(3):
        np.testing.assert_allclose(out[:, k], f(3, pts[:, k]), rtol=1e-14, atol=0)


def test_order_study_under_a_permuted_schedule_passes():
    """A correct order-1 flow studied under a non-identity schedule has slope 2 (the bug gave 1)."""
    prob = problems.get("leastsquares3")
    hs = [sp.Rational(1, 2 ** k) for k in range(5, 8)]
    steps = int(prob.T / hs[-1]) + 1
    perm = [2, 0, 1]
    schedule = [perm[k % 3] for k in range(steps)]
    opt = optimizers.sgd()
    res = order_study(opt, prob.loss_or_losses, prob.params, prob.theta0, T=prob.T, hs=hs,
                      orders=(0, 1), dps=20, schedule=schedule, **prob.values_for(opt))
    for r in (0, 1):
        assert res.orders[r].verdict == "pass", res.table()
        assert abs(res.orders[r].slope - (r + 1)) <= 0.1, res.table()

"""lambdify backends (numpy, torch, mpmath) against independent values: the symbolic field
evaluated exactly (rational point, rational hyperparameters, 40-digit evalf), hand-written
formulas of docs/conventions.md §4 evaluated with NumPy, and each other at random points."""
import re

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import example, given, settings, strategies as st

from conftest import examples
from modeq.symbolic import derive, optimizers
from modeq.symbolic.emit.kernel import Kernel
from modeq.symbolic.emit.prepare import prepare_expressions
from modeq.symbolic.family import h as h_sym

import torch

x, y, z = sp.symbols("x y z")
PARAMS = [x, y, z]
E = x**4 / 4 + x * y + sp.cos(y) + z**2 * y / 3 + sp.exp(z / 2)

ADAM = dict(h="1/50", beta="4/5", rho="9/10", eps="1/1000")
CASES = [
    # (optimizer factory, order, stationary, n, hyperparameters)
    (lambda: optimizers.adam(), 1, True, None, ADAM),
    (lambda: optimizers.adam(), 1, False, 7, ADAM),
    (lambda: optimizers.adam(eps_placement="outside"), 1, True, None, ADAM),
    (lambda: optimizers.adam(eps_placement="outside"), 1, False, 3, ADAM),
    (lambda: optimizers.heavy_ball(), 1, False, 5, dict(h="1/50", beta="4/5")),
    (lambda: optimizers.heavy_ball(), 2, True, None, dict(h="1/50", beta="4/5")),
    (lambda: optimizers.gd(), 2, False, 4, dict(h="1/10")),
    (lambda: optimizers.rmsprop(), 1, False, 2, dict(h="1/50", rho="9/10", eps="1/1000")),
]
IDS = ["adam-stationary", "adam-n", "adam-outside-stationary", "adam-outside-n",
       "heavy-ball-n", "heavy-ball-2-stationary", "gd-2", "rmsprop-n"]

_FLOWS = {}


def _flow(case):
    key = IDS[CASES.index(case)]
    if key not in _FLOWS:
        make, order, *_ = case
        _FLOWS[key] = derive(make(), order)
    return _FLOWS[key]


def _exact(flow, stationary, n, vals, point, digits=40):
    """The symbolic field evaluated exactly at a rational point (``digits`` digits)."""
    F = flow.field(E, PARAMS, n=n, stationary=stationary)
    subs = {s: sp.Rational(vals[str(s)]) for s in flow.optimizer.hyperparameters}
    subs[h_sym] = sp.Rational(vals["h"])
    subs.update(dict(zip(PARAMS, point)))
    return [sp.N(e.xreplace(subs).doit(), digits) for e in F]


def _points(k, seed):
    rng = np.random.default_rng(seed)
    # rationals with small denominators: exactly representable as floats
    return [[sp.Rational(int(a), 64) for a in rng.integers(-60, 60, size=3)] for _ in range(k)]


def _rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backends_agree_with_the_exact_field(case):
    _, order, stationary, n, vals = case
    flow = _flow(case)
    fn = {b: flow.lambdify(E, PARAMS, backend=b, stationary=stationary, **vals)
          for b in ("numpy", "torch", "mpmath")}
    pts = _points(4, seed=order + (n or 0))
    exact = np.array([[float(v) for v in _exact(flow, stationary, n, vals, p)] for p in pts]).T
    theta = np.array([[float(c) for c in p] for p in pts]).T          # (p, N): component first
    out_np = fn["numpy"](n, theta)
    out_t = fn["torch"](n, torch.tensor(theta))
    assert out_np.shape == (3, 4) and out_np.dtype == np.float64
    assert tuple(out_t.shape) == (3, 4) and out_t.dtype == torch.float64
    out_mp = np.array([[float(v) for v in fn["mpmath"](n, list(theta[:, k]))]
                       for k in range(4)]).T
    assert _rel(out_np, exact) < 1e-12
    assert _rel(out_t.numpy(), exact) < 1e-12
    assert _rel(out_mp, exact) < 1e-12
    assert _rel(out_np, out_t.numpy()) < 1e-12
    # one point, shape (p,)
    one = fn["numpy"](n, theta[:, 0])
    assert one.shape == (3,) and _rel(one, exact[:, 0]) < 1e-12


def _grad_hess_t3(point):
    """Gradient, Hessian, third derivative of E at a point, from SymPy's diff (floats)."""
    at = dict(zip(PARAMS, point))
    g = np.array([float(sp.diff(E, v).subs(at)) for v in PARAMS])
    H = np.array([[float(sp.diff(E, a, b).subs(at)) for b in PARAMS] for a in PARAMS])
    T = np.array([[[float(sp.diff(E, a, b, c).subs(at)) for c in PARAMS] for b in PARAMS]
                  for a in PARAMS])
    return g, H, T


def test_adam_against_the_papers_formula_written_with_numpy():
    b, r, e, h = 0.8, 0.9, 1e-3, 0.02
    flow = derive(optimizers.adam(), 1)
    f = flow.lambdify(E, PARAMS, backend="numpy", stationary=True, h=h, beta=b, rho=r, eps=e)
    for p in _points(3, seed=11):
        g, H, _ = _grad_hess_t3(p)
        s = np.sqrt(g**2 + e)
        dnorm = H @ (g / s)                                # d_j ||grad E||_{1,eps}
        corr = h / 2 * ((1 + b) / (1 - b) - (1 + r) / (1 - r) + (1 + r) / (1 - r) * e / s**2) \
            * dnorm
        expected = -(g + corr) / s
        assert _rel(f(None, [float(c) for c in p]), expected) < 1e-12


def test_heavy_ball_and_gd_order_two_against_published_formulas():
    b, h = 0.8, 0.02
    hb = derive(optimizers.heavy_ball(), 1).lambdify(E, PARAMS, backend="torch",
                                                      stationary=True, h=h, beta=b)
    gd2 = derive(optimizers.gd(), 2).lambdify(E, PARAMS, backend="numpy", h=h)
    for p in _points(3, seed=5):
        g, H, T = _grad_hess_t3(p)
        th = [float(c) for c in p]
        ref_hb = -(g / (1 - b) + h * (1 + b) / (2 * (1 - b) ** 3) * H @ g)
        assert _rel(hb(None, th).numpy(), ref_hb) < 1e-12
        ref_gd = -(g + h / 2 * H @ g + h**2 * (np.einsum("ijk,j,k->i", T, g, g) / 12
                                               + H @ H @ g / 3))
        assert _rel(gd2(0, th), ref_gd) < 1e-12


def test_batches_are_component_first_and_match_pointwise_calls():
    f = derive(optimizers.adam(), 1).lambdify(E, PARAMS, backend="numpy", **ADAM)
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, size=(3, 5, 2))                     # (p, *batch)
    out = f(3, theta)
    assert out.shape == theta.shape
    for i in range(5):
        for j in range(2):
            np.testing.assert_array_equal(out[:, i, j], f(3, theta[:, i, j]))
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(3, N\).*got shape \(4, 3\).*theta\.T"):
        f(3, rng.uniform(size=(4, 3)))
    with pytest.raises(ValueError, match="got shape"):
        f(3, 0.5)


def test_dtype_float32_and_integer_dtypes():
    vals = dict(ADAM)
    flow = derive(optimizers.adam(), 1)
    f64 = flow.lambdify(E, PARAMS, backend="numpy", stationary=True, **vals)
    theta = np.random.default_rng(1).uniform(-1, 1, size=(3, 50))
    for backend, dt, expect in [("numpy", "float32", np.float32),
                                ("numpy", np.float32, np.float32),
                                ("torch", torch.float32, torch.float32),
                                ("torch", "float32", torch.float32)]:
        f = flow.lambdify(E, PARAMS, backend=backend, stationary=True, dtype=dt, **vals)
        out = f(None, theta if backend == "numpy" else torch.tensor(theta))
        assert out.dtype == expect
        ref = f64(None, theta)
        got = out if backend == "numpy" else out.numpy()
        assert np.max(np.abs(got - ref)) <= 1e-4 * np.max(np.abs(ref))
    for backend, dt in [("numpy", "int64"), ("numpy", np.int32), ("torch", torch.int64),
                        ("numpy", "complex128"), ("torch", torch.complex64)]:
        with pytest.raises(TypeError, match="dtype must be a real floating-point type"):
            flow.lambdify(E, PARAMS, backend=backend, dtype=dt, **vals)
    with pytest.raises(ValueError, match="dtype is for the numpy and torch backends"):
        flow.lambdify(E, PARAMS, backend="mpmath", dtype="float64", **vals)
    # integer points are converted to the working dtype
    assert f64(None, np.array([1, 0, -1])).dtype == np.float64


def test_bad_backend_missing_hyperparameter_and_step_index():
    flow = derive(optimizers.adam(), 1)
    with pytest.raises(ValueError, match=r"backend must be one of .*got 'jax'"):
        flow.lambdify(E, PARAMS, backend="jax", **ADAM)
    vals = dict(ADAM)
    del vals["rho"]
    with pytest.raises(ValueError, match="rho"):
        flow.lambdify(E, PARAMS, backend="numpy", **vals)
    f = flow.lambdify(E, PARAMS, backend="numpy", **ADAM)
    with pytest.raises(ValueError, match="depends on the step index n"):
        f(None, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="integer >= 0"):
        f(-1, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="integer >= 0"):
        f(1.5, [0.1, 0.2, 0.3])
    with pytest.raises(TypeError, match="real numbers"):
        f(1, np.array(["a", "b", "c"]))
    fm = flow.lambdify(E, PARAMS, backend="mpmath", **ADAM)
    with pytest.raises(ValueError, match="mpmath backend evaluates one point"):
        fm(1, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="2 components, the loss has 3"):
        fm(1, [0.1, 0.2])


def test_mpmath_source_has_no_float_literal_and_uses_call_time_precision():
    flow = derive(optimizers.adam(), 1)
    vals = dict(h=0.01, beta=0.9, rho=0.999, eps=1e-8)          # floats: taken exactly
    with mpmath.workdps(15):
        f = flow.lambdify(E, PARAMS, backend="mpmath", **vals)
    src = f.source
    assert not re.search(r"\d\.\d|\d[eE]-?\d", src), src
    point = [sp.Rational(1, 4), sp.Rational(-1, 2), sp.Rational(3, 8)]
    exact = _exact(flow, False, 9, {k: sp.Rational(v) for k, v in vals.items()}, point, 90)
    for dps in (15, 60, 30):           # constants re-evaluated whenever the precision changes
        with mpmath.workdps(dps):
            out = f(9, [mpmath.mpf(1) / 4, mpmath.mpf(-1) / 2, mpmath.mpf(3) / 8])
            err = max(abs(o - mpmath.mpf(sp.N(e, dps + 20))) / abs(mpmath.mpf(sp.N(e, dps + 20)))
                      for o, e in zip(out, exact))
            assert err < mpmath.mpf(10) ** (-dps + 4), (dps, err)


def test_constants_are_lifted_and_integer_powers_kept():
    n = sp.Symbol("n", integer=True)
    e = sp.Rational(1, 3) * x**3 + sp.sqrt(2) * x + 2**(-n) * x + x**sp.Rational(3, 2)
    prepared, consts = prepare_expressions([e])
    values = {c for _, c in consts}
    assert sp.Rational(1, 3) in values and sp.sqrt(2) in values and 2 in values
    assert not any(a.is_Float for a in sp.preorder_traversal(prepared[0]))


@pytest.mark.parametrize("backend", ["numpy", "torch", "mpmath"])
def test_printer_gaps_max_min_scalar_functions_constants(backend):
    """SymPy 1.14's torch printer prints Max(x, 0) as torch.max(0, x) (a TypeError), sqrt(2)
    as torch.sqrt(2) (a TypeError), and a constant result as a Python number."""
    n = sp.Symbol("n", integer=True)
    l = sp.Dummy("l", integer=True)
    exprs = [sp.Max(x, 0) + sp.Min(x, y, 1), sp.sqrt(2) * x + sp.log(3), sp.Integer(3),
             sp.Rational(1, 3), 2**(-n) * x, x**sp.Rational(3, 2) - x**sp.Rational(1, 3),
             sp.Sum(sp.sqrt(1 + x**2)**l / (l + 1), (l, 0, n - 1)) * sp.sqrt(1 + x**2),
             sp.pi / x**3]
    X = [sp.Rational(1, 2), 2, 3]
    Y = [2, -1, sp.Rational(1, 2)]
    exact = np.array([[float(sp.N(ex.subs({x: a, y: b, n: 4}).doit(), 30)) for a, b in zip(X, Y)]
                      for ex in exprs])
    k = Kernel(exprs, [n, x, y], backend)
    if backend == "mpmath":
        got = np.array([[float(v) for v in k(4, mpmath.mpf(sp.N(a, 30)), mpmath.mpf(sp.N(b, 30)))]
                        for a, b in zip(X, Y)]).T
    else:
        xs = np.array([float(a) for a in X])
        ys = np.array([float(b) for b in Y])
        if backend == "torch":
            xs, ys = torch.tensor(xs), torch.tensor(ys)
        got = k.broadcast(k(4, xs, ys), (3,))
        got = got.numpy() if backend == "torch" else got
    assert _rel(got, exact) < 1e-14


def test_torch_field_keeps_device_and_is_differentiable():
    f = derive(optimizers.gd(), 1).lambdify(E, PARAMS, backend="torch", h=0.1)
    th = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64, requires_grad=True)
    out = f(0, th)
    assert out.device == th.device and out.requires_grad
    out.sum().backward()
    assert th.grad is not None and torch.isfinite(th.grad).all()


def test_mini_batch_numpy_and_torch_match_mpmath():
    """The mini-batch evaluator goes through the same printers (SymPy's torch printer alone
    fails on it: torch.pow of two Python numbers)."""
    losses = [x**2 + y**2 / 2 + z**2, (x - 1)**2 + x * y + z**4 / 4]
    flow = derive(optimizers.adam(), 1)
    vals = dict(h=0.01, beta=0.9, rho=0.999, eps=1e-8)
    th = [0.5, 0.2, -0.3]
    with mpmath.workdps(40):
        ref = [float(v) for v in flow.lambdify(losses, PARAMS, backend="mpmath", **vals)(4, th)]
    fn = flow.lambdify(losses, PARAMS, backend="numpy", **vals)
    ft = flow.lambdify(losses, PARAMS, backend="torch", **vals)
    assert _rel([float(v) for v in fn(4, th)], ref) < 1e-12
    assert _rel([float(v) for v in ft(4, torch.tensor(th, dtype=torch.float64))], ref) < 1e-12
    with pytest.raises(ValueError, match="dtype= is supported for full-batch"):
        flow.lambdify(losses, PARAMS, backend="numpy", dtype="float32", **vals)


def test_float64_exact_n_memory_coefficients_are_well_conditioned():
    """rho = 0.999 at small n: the closed-form moments cancel badly in float64 unless they are
    evaluated in extended precision; the NumPy field must still agree with mpmath to ~1e-14."""
    import mpmath
    import numpy as np
    import sympy as sp
    from modeq.symbolic import derive, optimizers
    x, y = sp.symbols("x y")
    E = (x - 1)**2 / 2 + x * y / 3 + y**4 / 4
    vals = dict(h=0.01, beta=0.9, rho=0.999, eps=1e-3)
    flow = derive(optimizers.adam(), 1)
    fn = flow.lambdify(E, [x, y], backend="numpy", **vals)
    fm = flow.lambdify(E, [x, y], backend="mpmath", **vals)
    with mpmath.workdps(40):
        for n in (1, 3, 10):
            a = fn(n, np.array([0.3, -0.2]))
            b = fm(n, [mpmath.mpf(0.3), mpmath.mpf(-0.2)])
            assert max(abs(float(u - v)) / abs(float(v)) for u, v in zip(a, b)) < 1e-14


_NADAM = {}


@settings(max_examples=examples(3), deadline=None)
@given(psi=st.sampled_from(["1/10", "1"]), N=st.integers(0, 1500),
       backend=st.sampled_from(["numpy", "torch"]))
@example(psi="1", N=1500, backend="numpy").via("600^(n psi) = 10^4167")
def test_step_coefficients_past_the_float_range_of_their_parts(psi, N, backend):
    """NAdam exact in ``n``: the derivation writes its coefficients with powers such as
    ``600^(n psi)`` and ``24^(3 n psi)`` against the products ``mu_1 ... mu_t``, which leave
    the float64 range after some ``10^2 / psi`` steps (at torch's ``momentum_decay=4e-3``,
    ``psi = 1/250``: from about 18,500; they raised an overflow error before).  Their growth is
    balanced before the field meets floats (:mod:`modeq.symbolic.emit.growth`): float64
    equals mpmath at any step (here up to 1,500: a call costs O(n), its memory sums over
    coefficients with products have no closed form; measured at psi = 1/250, n = 50,000)."""
    key = (psi, backend)
    if key not in _NADAM:
        loss = (x - 1) ** 2 / 2 + y ** 2 / 4 + x * y / 5 + x ** 4 / 24
        flow = derive(optimizers.torch_nadam(), 1)
        vals = dict(beta="9/10", rho="999/1000", eps="1/10", psi=psi, h="1/100")
        _NADAM[key] = (flow.lambdify(loss, [x, y], backend=backend, **vals),
                       flow.lambdify(loss, [x, y], **vals))
    fast, exact = _NADAM[key]
    point = [0.5, -0.5]
    arg = np.array(point) if backend == "numpy" else torch.tensor(point, dtype=torch.float64)
    got = np.asarray(fast(N, arg), dtype=float)
    with mpmath.workdps(30):
        want = [float(v) for v in exact(N, [mpmath.mpf(p) for p in point])]
    assert np.allclose(got, want, rtol=0, atol=1e-12 * max(map(abs, want))), (got, want)

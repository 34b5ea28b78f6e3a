"""Property: every emitted form equals the exact field at random rational points.

Oracle: ``flow.field(...)``, the exact SymPy field lowered for the concrete loss, with the
hyperparameters and the point substituted as exact rationals and evaluated by ``sympy.N`` at
60 digits (no code of the emit layer runs).  Emitted forms compared with it:

* ``flow.lambdify(..., backend="mpmath")`` at 50 digits: relative error <= 1e-45;
* ``backend="numpy"`` / ``"torch"`` in float64, the generated source modules
  (``generate_module``, NumPy and torch, fed with the exact ``g``, ``H``, ``T`` rounded to
  float64) and the matrix-free torch form (``numeric.torch_flow.flow_field``, autograd on the
  loss written in torch): error <= ``TOL64 * max(1, |field|)`` per component;
* mini batch: ``lambdify`` (mpmath and NumPy) at *every* step of a random schedule.

``TOL64 = 1e-9``: float64 carries 16 digits; the fields lose up to about 6 of them to
cancellation for decays near 1 (``rho = 999/1000``) and ``eps = 1e-8``.
"""
import inspect

import mpmath
import numpy as np
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from strategies import X, batches, by_name, declarations, losses, points, values_for
from modeq.numeric.torch_flow import flow_field
from modeq.symbolic import derive, generate_module, h as H_SYM

TOL64 = 1e-9
STEP_INDICES = st.integers(0, 6)


def exact_field(flow, E, params, point, values, n=None, stationary=False, schedule=None):
    if isinstance(E, list):
        F = flow.field(E, params, n=n, schedule=schedule)
    else:
        F = flow.field(E, params, n=n, stationary=stationary)
    subs = dict(values)
    subs.update(zip(params, point))
    return [sp.N(e.xreplace(subs).doit(), 60) for e in F]


def needed(flow, values):
    """The values the flow takes (``h`` only from order 1)."""
    return {k: v for k, v in values.items() if k != H_SYM or flow.order >= 1}


def assert_close64(got, exact):
    ref = np.array([float(v) for v in exact])
    got = np.asarray(got, dtype=float).reshape(-1)
    scale = max(1.0, float(np.max(np.abs(ref))))
    err = float(np.max(np.abs(got - ref)))
    assert err <= TOL64 * scale, f"float64 form off by {err:.3e} (scale {scale:.3e})"


@st.composite
def full_batch_case(draw, orders=(0, 1)):
    order = draw(st.sampled_from(orders))
    p = draw(st.integers(1, 3))
    opt = draw(declarations(max_states=2 if order < 2 else 1, simple=order == 2))
    stationary = draw(st.booleans()) or order == 2
    return dict(flow=derive(opt, order), E=draw(losses(p)), params=list(X[:p]),
                point=draw(points(p)), values=draw(values_for(opt)),
                n=None if stationary else draw(STEP_INDICES), stationary=stationary)


# ------------------------------------------------------------------ properties
@settings(max_examples=examples(10))
@given(case=full_batch_case(orders=(0, 1, 2)))
def test_mpmath_lambdify_equals_the_exact_field(case):
    flow, values = case["flow"], needed(case["flow"], case["values"])
    exact = exact_field(flow, case["E"], case["params"], case["point"], values, case["n"],
                        case["stationary"])
    f = flow.lambdify(case["E"], case["params"], backend="mpmath",
                      stationary=case["stationary"], **by_name(values))
    with mpmath.workdps(50):
        got = f(case["n"], [mpmath.mpf(q.p) / q.q for q in case["point"]])
        for a, b in zip(got, exact):
            b = mpmath.mpf(str(b))
            assert abs(a - b) <= mpmath.mpf(10) ** -45 * max(1, abs(b))


@settings(max_examples=examples(8))
@given(case=full_batch_case(), backend=st.sampled_from(["numpy", "torch"]))
def test_numpy_and_torch_lambdify_equal_the_exact_field(case, backend):
    flow, values = case["flow"], needed(case["flow"], case["values"])
    exact = exact_field(flow, case["E"], case["params"], case["point"], values, case["n"],
                        case["stationary"])
    f = flow.lambdify(case["E"], case["params"], backend=backend,
                      stationary=case["stationary"], **by_name(values))
    got = f(case["n"], [float(q) for q in case["point"]])
    if backend == "torch":
        assert got.dtype == torch.float64
        got = got.numpy()
    assert_close64(got, exact)


def _derivatives(E, params, point):
    at = dict(zip(params, point))
    p = len(params)
    g = np.array([float(sp.N(sp.diff(E, a).xreplace(at), 30)) for a in params])
    Hm = np.array([[float(sp.N(sp.diff(E, a, b).xreplace(at), 30)) for b in params]
                   for a in params])
    T = np.array([[[float(sp.N(sp.diff(E, a, b, c).xreplace(at), 30)) for c in params]
                   for b in params] for a in params]).reshape(p, p, p)
    return g, Hm, T


@settings(max_examples=examples(6))
@given(case=full_batch_case(orders=(0, 1, 2)), backend=st.sampled_from(["numpy", "torch"]))
def test_generated_modules_equal_the_exact_field(case, backend):
    flow, values = case["flow"], needed(case["flow"], case["values"])
    stationary = True                   # exact-in-n memory sums need not close for a module
    exact = exact_field(flow, case["E"], case["params"], case["point"], values, None, True)
    src = generate_module(flow.optimizer, flow.order, backend, stationary=stationary)
    namespace = {}
    exec(compile(src, "<generated>", "exec"), namespace)
    g, Hm, T = _derivatives(case["E"], case["params"], case["point"])
    kw = {k: float(v) for k, v in by_name(values).items()}
    theta = np.array([float(q) for q in case["point"]])
    if backend == "numpy":
        given_ = dict(g=g, hvp=lambda v: Hm @ v, d3=lambda u, w: np.einsum("ijk,j,k->i", T, u, w),
                      theta=theta)
    else:
        Ht, Tt = torch.tensor(Hm), torch.tensor(T)
        given_ = dict(g=torch.tensor(g), hvp=lambda v: Ht @ v,
                      d3=lambda u, w: torch.einsum("ijk,j,k->i", Tt, u, w),
                      theta=torch.tensor(theta))
    wanted = inspect.signature(namespace["flow"]).parameters
    # the module takes what its stationary terms use (a normalised decay may drop out)
    got = namespace["flow"](**{k: v for k, v in {**given_, **kw}.items() if k in wanted})
    if backend == "torch":
        got = got.detach().numpy()
    assert_close64(got, exact)


def torch_loss(E, params):
    fn = sp.lambdify(params, E, modules=[{"exp": torch.exp, "log": torch.log,
                                          "cosh": torch.cosh, "sqrt": torch.sqrt}])
    return lambda t: fn(*[t[i] for i in range(len(params))])


@settings(max_examples=examples(6))
@given(case=full_batch_case(orders=(0, 1, 2)))
def test_matrix_free_torch_form_equals_the_exact_field(case):
    flow, values = case["flow"], needed(case["flow"], case["values"])
    exact = exact_field(flow, case["E"], case["params"], case["point"], values, None, True)
    t = torch.tensor([float(q) for q in case["point"]], dtype=torch.float64,
                     requires_grad=True)
    loss = torch_loss(case["E"], case["params"])(t)
    (got,) = flow_field(flow, loss, [t], stationary=True, **by_name(values))
    assert_close64(got.numpy(), exact)


@settings(max_examples=examples(6))
@given(data=st.data(), order=st.sampled_from([0, 1]), p=st.integers(1, 2),
       backend=st.sampled_from(["mpmath", "numpy"]))
def test_mini_batch_lambdify_equals_the_exact_field_at_every_step(data, order, p, backend):
    opt = data.draw(declarations(max_states=2), label="optimizer")
    flow = derive(opt, order)
    length = data.draw(st.integers(1, 6), label="steps")
    Es, schedule = data.draw(batches(p, length), label="batches")
    point = data.draw(points(p), label="point")
    values = needed(flow, data.draw(values_for(opt), label="values"))
    params = list(X[:p])
    f = flow.lambdify(Es, params, backend=backend, schedule=schedule, **by_name(values))
    for n in range(length):
        exact = exact_field(flow, Es, params, point, values, n=n, schedule=schedule)
        if backend == "mpmath":
            with mpmath.workdps(50):
                got = f(n, [mpmath.mpf(q.p) / q.q for q in point])
                for a, b in zip(got, exact):
                    b = mpmath.mpf(str(b))
                    assert abs(a - b) <= mpmath.mpf(10) ** -45 * max(1, abs(b)), f"step {n}"
        else:
            assert_close64(f(n, [float(q) for q in point]), exact)

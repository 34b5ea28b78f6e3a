"""modeq.numeric.torch against independent values: an exact SymPy network, hand-written gradients,
dense Hessians on tiny problems, finite differences and gradcheck."""
import functools

import numpy as np
import pytest
import sympy as sp

import torch

from modeq.numeric import torch as mt  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one intra-op thread is fastest and steadiest on a shared machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------------------------------------
# A 2-layer tanh network with 11 parameters, written twice: in SymPy (exact) and in torch.
# f(x) = w2 · tanh(W1 x + b1) + b2,  x ∈ R^3, W1 ∈ R^{2×3}, b1, w2 ∈ R^2, b2 ∈ R
# E = mean over 4 fixed points of (f(x) - y)^2
# ---------------------------------------------------------------------------------------------
X = [[sp.Rational(1, 2), -1, sp.Rational(1, 3)],
     [sp.Rational(-3, 4), sp.Rational(1, 5), 1],
     [0, sp.Rational(2, 3), sp.Rational(-1, 2)],
     [1, 1, sp.Rational(-1, 4)]]
Y = [sp.Rational(1, 3), -1, sp.Rational(1, 2), sp.Rational(3, 2)]
W1_VAL = [[sp.Rational(3, 10), sp.Rational(-1, 2), sp.Rational(7, 10)],
          [sp.Rational(-4, 5), sp.Rational(1, 10), sp.Rational(2, 5)]]
B1_VAL = [sp.Rational(1, 10), sp.Rational(-1, 5)]
W2_VAL = [sp.Rational(9, 10), sp.Rational(-6, 5)]
B2_VAL = [sp.Rational(1, 20)]


def _sympy_loss():
    W1 = sp.Matrix(2, 3, lambda i, j: sp.Symbol(f"W1_{i}{j}"))
    b1 = sp.Matrix(2, 1, lambda i, _: sp.Symbol(f"b1_{i}"))
    w2 = sp.Matrix(1, 2, lambda _, j: sp.Symbol(f"w2_{j}"))
    b2 = sp.Symbol("b2")
    total = 0
    for x, y in zip(X, Y):
        hidden = (W1 * sp.Matrix(x)) + b1
        out = (w2 * hidden.applyfunc(sp.tanh))[0, 0] + b2
        total += (out - y) ** 2
    E = total / len(X)
    # the order of torch's parameter list: W1 (row-major), b1, w2, b2
    syms = list(W1) + list(b1) + list(w2) + [b2]
    vals = [v for row in W1_VAL for v in row] + B1_VAL + W2_VAL + B2_VAL
    return E, syms, dict(zip(syms, vals))


@functools.lru_cache(maxsize=None)
def _exact_gradient_and_hessian():
    """The explicit symbolic gradient and Hessian of E, evaluated to 40 digits at the fixed
    parameter values (the Hessian is computed as the Jacobian of the symbolic gradient)."""
    E, syms, at = _sympy_loss()
    g = [sp.diff(E, s) for s in syms]
    H = [[sp.diff(gi, s) for s in syms] for gi in g]
    gv = [sp.N(gi.subs(at), 40) for gi in g]
    Hv = [[sp.N(hij.subs(at), 40) for hij in row] for row in H]
    return gv, Hv, syms


def _sympy_correction(beta, rho, eps, h):
    """The paper's correction from the exact gradient and Hessian (40 digits)."""
    gv, Hv, syms = _exact_gradient_and_hessian()
    s = [sp.sqrt(gi ** 2 + eps) for gi in gv]
    dnorm = [sum(Hv[j][i] * gv[i] / s[i] for i in range(len(syms))) for j in range(len(syms))]
    A = (1 + beta) / (1 - beta) - (1 + rho) / (1 - rho)
    B = (1 + rho) / (1 - rho)
    corr = [h / 2 * (A + B * eps / (gv[j] ** 2 + eps)) * dnorm[j] for j in range(len(syms))]
    norm = sum(s)
    return [float(c) for c in corr], float(norm), [float(x) for x in gv]


def _torch_net(dtype=torch.float64, device="cpu"):
    def t(v):
        return torch.tensor([[float(a) for a in r] for r in v] if isinstance(v[0], list)
                            else [float(a) for a in v], dtype=dtype, device=device)
    W1 = t(W1_VAL).requires_grad_()
    b1 = t(B1_VAL).requires_grad_()
    w2 = t([W2_VAL]).requires_grad_()     # shape (1, 2), like nn.Linear(2, 1).weight
    b2 = t(B2_VAL).requires_grad_()
    Xt = t(X)
    Yt = t(Y)

    def loss_fn(W1, b1, w2, b2):
        out = torch.tanh(Xt @ W1.T + b1) @ w2.T + b2
        return ((out.squeeze(1) - Yt) ** 2).mean()

    return [W1, b1, w2, b2], loss_fn


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors]).detach().cpu().double().numpy()


@pytest.mark.parametrize("beta,rho,eps,h", [
    (sp.Rational(9, 10), sp.Rational(999, 1000), sp.Rational(1, 10**8), sp.Rational(1, 100)),
    (sp.Rational(99, 100), sp.Rational(9, 10), sp.Rational(1, 50), sp.Rational(1, 10)),
    (sp.Integer(0), sp.Rational(1, 2), sp.Rational(1, 10**3), sp.Rational(1, 20)),   # RMSProp
])
def test_adam_correction_equals_exact_sympy_network(beta, rho, eps, h):
    expected, expected_norm, expected_g = _sympy_correction(beta, rho, eps, h)
    params, loss_fn = _torch_net()
    loss = loss_fn(*params)
    corr = mt.adam_correction(loss, params, float(beta), float(rho), float(eps), float(h))
    assert [c.shape for c in corr] == [p.shape for p in params]
    got = _flat(corr)
    assert max(abs(e) for e in expected) > 1e-3          # the check is not vacuous
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    assert abs(float(mt.perturbed_one_norm(loss, params, float(eps))) - expected_norm) < 1e-12
    # the flow field is d theta/dt = -(g + correction)/sqrt(g^2+eps), componentwise
    field = _flat(mt.adam_flow_field(loss, params, float(beta), float(rho), float(eps), float(h)))
    g = np.array(expected_g)
    np.testing.assert_allclose(field, -(g + np.array(expected)) / np.sqrt(g ** 2 + float(eps)),
                               rtol=0, atol=1e-10)


def test_correction_keeps_graph_and_does_not_touch_grad():
    params, loss_fn = _torch_net()
    loss = loss_fn(*params)
    mt.adam_correction(loss, params, 0.9, 0.999, 1e-8, 1e-3)
    assert all(p.grad is None for p in params)
    loss.backward()                                         # graph still alive
    _, _, g = _sympy_correction(sp.Rational(9, 10), sp.Rational(999, 1000), sp.Rational(1, 10**8),
                                sp.Rational(1, 1000))
    np.testing.assert_allclose(_flat([p.grad for p in params]), g, rtol=0, atol=1e-12)


def test_add_correction_to_grad_exact_path():
    beta, rho, eps, h = sp.Rational(9, 10), sp.Rational(999, 1000), sp.Rational(1, 100), sp.Rational(1, 100)
    corr, _, g = _sympy_correction(beta, rho, eps, h)
    for sign, weight in [(+1, 1.0), (-1, 0.5)]:
        params, loss_fn = _torch_net()
        loss = loss_fn(*params)
        loss.backward(retain_graph=True)
        mt.add_correction_to_grad(loss, params, 0.9, 0.999, 0.01, 0.01, sign=sign, weight=weight)
        np.testing.assert_allclose(_flat([p.grad for p in params]),
                                   np.array(g) + sign * weight * np.array(corr), rtol=0, atol=1e-10)
    # grads that were None are created
    params, loss_fn = _torch_net()
    mt.add_correction_to_grad(loss_fn(*params), params, 0.9, 0.999, 0.01, 0.01, sign=-1)
    np.testing.assert_allclose(_flat([p.grad for p in params]), -np.array(corr), rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Perturbed one-norm: hand-written gradient of a linear least-squares loss
# ---------------------------------------------------------------------------------------------

def _least_squares(seed=0, n=20, d=5, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    Xn = rng.normal(size=(n, d))
    yn = rng.normal(size=n)
    w0 = rng.normal(size=d)
    b0 = 0.3
    w = torch.tensor(w0, dtype=dtype, requires_grad=True)
    b = torch.tensor([b0], dtype=dtype, requires_grad=True)
    Xt, yt = torch.tensor(Xn, dtype=dtype), torch.tensor(yn, dtype=dtype)

    def loss_fn():
        return ((Xt @ w + b - yt) ** 2).mean()

    def hand_grad(w_np, b_np):
        r = Xn @ w_np + b_np - yn
        return np.concatenate([2 / n * Xn.T @ r, [2 / n * r.sum()]])

    Xa = np.hstack([Xn, np.ones((n, 1))])
    hess = 2 / n * Xa.T @ Xa
    return (w, b), loss_fn, hand_grad, hess, (w0, b0)


@pytest.mark.parametrize("eps", [1e-8, 1e-2, 3.0])
def test_perturbed_one_norm_matches_hand_gradient(eps):
    (w, b), loss_fn, hand_grad, hess, (w0, b0) = _least_squares()
    g = hand_grad(w0, b0)
    expected = np.sqrt(g ** 2 + eps).sum()
    assert float(mt.perturbed_one_norm(loss_fn(), [w, b], eps)) == pytest.approx(expected, rel=1e-13)
    # from a gradient list instead of the loss
    grads = [torch.tensor(g[:-1]), torch.tensor(g[-1:])]
    assert float(mt.perturbed_one_norm(grads, [w, b], eps)) == pytest.approx(expected, rel=1e-13)
    # differentiable: its gradient is H (g/s), with the dense Hessian known in closed form
    norm = mt.perturbed_one_norm(loss_fn(), [w, b], eps, create_graph=True)
    dw, db = torch.autograd.grad(norm, [w, b])
    expected_grad = hess @ (g / np.sqrt(g ** 2 + eps))
    np.testing.assert_allclose(np.concatenate([dw.numpy(), db.numpy()]), expected_grad,
                               rtol=1e-12, atol=1e-13)


def test_perturbed_one_norm_on_mlp_matches_finite_differences():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)).double()
    x = torch.randn(8, 4, dtype=torch.float64)
    y = torch.randn(8, 2, dtype=torch.float64)
    params = list(net.parameters())
    eps = 1e-4
    with torch.no_grad():
        flat = torch.cat([p.reshape(-1) for p in params]).clone()

        def loss_at(vec):
            torch.nn.utils.vector_to_parameters(vec, params)
            return float(((net(x) - y) ** 2).mean())
        step = 1e-6
        fd = []
        for k in range(flat.numel()):
            e = torch.zeros_like(flat)
            e[k] = step
            fd.append((loss_at(flat + e) - loss_at(flat - e)) / (2 * step))
        torch.nn.utils.vector_to_parameters(flat, params)
    expected = np.sqrt(np.array(fd) ** 2 + eps).sum()
    got = float(mt.perturbed_one_norm(((net(x) - y) ** 2).mean(), net.parameters(), eps))
    assert got == pytest.approx(expected, rel=1e-8)


def test_one_norm_logger_logs_each_step_of_training():
    (w, b), loss_fn, hand_grad, _, (w0, b0) = _least_squares(seed=1)
    lr, eps = 0.05, 1e-6
    opt = torch.optim.SGD([w, b], lr=lr)
    logger = mt.OneNormLogger([w, b], eps=eps).attach(opt)
    for _ in range(5):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    logger.detach()
    opt.zero_grad()
    loss_fn().backward()
    opt.step()                                                # not logged any more
    # independent: gradient descent by hand in NumPy
    wn, bn = np.array(w0), b0
    expected = []
    for _ in range(5):
        g = hand_grad(wn, bn)
        expected.append(np.sqrt(g ** 2 + eps).sum())
        wn, bn = wn - lr * g[:-1], bn - lr * g[-1]
    assert logger.steps == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(logger.values, expected, rtol=1e-12)
    # by hand, from the loss itself
    manual = mt.OneNormLogger([w, b], eps=eps)
    g = hand_grad(w.detach().numpy(), float(b.detach()))
    assert manual.record(loss_fn()) == pytest.approx(np.sqrt(g ** 2 + eps).sum(), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# The penalty
# ---------------------------------------------------------------------------------------------

def test_penalty_passes_gradcheck():
    params, loss_fn = _torch_net()
    for sign in (+1, -1):
        pen = mt.ImplicitBiasPenalty(params, beta=0.9, rho=0.99, eps=1e-3, h=0.1, sign=sign,
                                     weight=2.0)
        out = pen(loss_fn(*params))
        assert out.dim() == 0 and out.requires_grad
        assert torch.autograd.gradcheck(lambda *ps: pen(loss_fn(*ps)), params, eps=1e-6,
                                        atol=1e-6, rtol=1e-5)


def test_penalty_value_matches_its_formula_on_hand_gradient():
    (w, b), loss_fn, hand_grad, _, (w0, b0) = _least_squares(seed=2)
    beta, rho, eps, h, weight = 0.95, 0.9, 1e-2, 0.03, 1.7
    g = hand_grad(w0, b0)
    A = (1 + beta) / (1 - beta) - (1 + rho) / (1 - rho)
    B = (1 + rho) / (1 - rho)
    s = np.sqrt(g ** 2 + eps)
    expected = -weight * h / 2 * (A * s - B * eps / s).sum()
    pen = mt.ImplicitBiasPenalty([w, b], beta, rho, eps, h, sign=-1, weight=weight)
    assert float(pen(loss_fn()).detach()) == pytest.approx(expected, rel=1e-12)


def test_penalty_gradient_is_the_correction_when_hessian_is_diagonal():
    # E = sum_j a_j cosh(t_j) + c_j t_j^3/3 + d_j t_j: separable, so H is diagonal
    rng = np.random.default_rng(5)
    a, c, d = (torch.tensor(rng.uniform(0.5, 1.5, size=7)) for _ in range(3))
    theta0 = rng.normal(size=7)
    t1 = torch.tensor(theta0[:3], requires_grad=True)
    t2 = torch.tensor(theta0[3:].reshape(2, 2), requires_grad=True)

    def loss_fn():
        t = torch.cat([t1, t2.reshape(-1)])
        return (a * torch.cosh(t) + c * t ** 3 / 3 + d * t).sum()

    for beta, rho, eps in [(0.9, 0.999, 1e-8), (0.99, 0.5, 0.3), (0.0, 0.9, 1.0)]:
        pen = mt.ImplicitBiasPenalty([t1, t2], beta, rho, eps, h=0.01, sign=+1)
        grad_pen = torch.autograd.grad(pen(loss_fn()), [t1, t2])
        corr = mt.adam_correction(loss_fn(), [t1, t2], beta, rho, eps, 0.01)
        # independent: the paper's formula with the hand-written gradient and diagonal Hessian
        th = theta0
        g = a.numpy() * np.sinh(th) + c.numpy() * th ** 2 + d.numpy()
        hd = a.numpy() * np.cosh(th) + 2 * c.numpy() * th
        A = (1 + beta) / (1 - beta) - (1 + rho) / (1 - rho)
        B = (1 + rho) / (1 - rho)
        expected = 0.01 / 2 * (A + B * eps / (g ** 2 + eps)) * hd * g / np.sqrt(g ** 2 + eps)
        np.testing.assert_allclose(_flat(corr), expected, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(_flat(grad_pen), expected, rtol=1e-12, atol=1e-14)


def test_penalty_gradient_off_diagonal_formula_dense_hessian():
    params, loss_fn = _torch_net()
    beta, rho, eps, h = 0.9, 0.999, 0.05, 0.01
    pen = mt.ImplicitBiasPenalty(params, beta, rho, eps, h, sign=-1, weight=3.0)
    grad_pen = _flat(torch.autograd.grad(pen(loss_fn(*params)), params))
    # independent: exact SymPy gradient and Hessian
    gv, Hv, _ = _exact_gradient_and_hessian()
    g = np.array([float(x) for x in gv])
    H = np.array([[float(x) for x in row] for row in Hv])
    A = (1 + beta) / (1 - beta) - (1 + rho) / (1 - rho)
    B = (1 + rho) / (1 - rho)
    s = np.sqrt(g ** 2 + eps)
    expected = -3.0 * h / 2 * H @ ((A + B * eps / s ** 2) * g / s)
    np.testing.assert_allclose(grad_pen, expected, rtol=0, atol=1e-10)
    # and this is not the correction (the Hessian is not diagonal): the docstring's caveat
    corr = -3.0 * _flat(mt.adam_correction(loss_fn(*params), params, beta, rho, eps, h))
    assert np.abs(corr - grad_pen).max() > 1e-4


def test_penalty_plus_one_lowers_one_norm_after_training():
    """With beta > rho the coefficient A = (1+β)/(1-β) - (1+ρ)/(1-ρ) is positive, so the
    implicit-bias term penalises ‖∇E‖_{1,ε} (the paper's table, β ≥ ρ, small ε); adding it
    explicitly (sign=+1) must leave a smaller norm than training without it."""
    beta, rho, eps, lr, steps = 0.9, 0.5, 1e-8, 0.01, 150
    for seed in (0, 1, 2):
        torch.manual_seed(100 + seed)
        x = torch.randn(64, 5, dtype=torch.float64)
        y = torch.sin(x @ torch.randn(5, 1, dtype=torch.float64))
        results = {}
        for use_penalty in (False, True):
            torch.manual_seed(seed)
            net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(),
                                      torch.nn.Linear(16, 1)).double()
            params = list(net.parameters())
            opt = torch.optim.Adam(params, lr=lr, betas=(beta, rho), eps=eps)
            pen = mt.ImplicitBiasPenalty(params, beta, rho, eps, h=lr, sign=+1, weight=5.0)
            for _ in range(steps):
                opt.zero_grad()
                loss = ((net(x) - y) ** 2).mean()
                total = loss + pen(loss) if use_penalty else loss
                total.backward()
                opt.step()
            loss = ((net(x) - y) ** 2).mean()
            grads = torch.autograd.grad(loss, params)
            # independent evaluation of the norm
            results[use_penalty] = sum(float(torch.sqrt(g ** 2 + eps).sum()) for g in grads)
        assert results[True] < 0.9 * results[False], (seed, results)


# ---------------------------------------------------------------------------------------------
# dtypes, devices
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_params(device, dtype):
    params, loss_fn = _torch_net(dtype=dtype, device=device)
    loss = loss_fn(*params)
    corr = mt.adam_correction(loss, params, 0.9, 0.999, 1e-2, 1e-2)
    assert all(c.dtype == dtype and c.device.type == device for c in corr)
    norm = mt.perturbed_one_norm(loss, params, 1e-2)
    assert norm.dtype == dtype and norm.device.type == device
    expected, expected_norm, _ = _sympy_correction(sp.Rational(9, 10), sp.Rational(999, 1000),
                                                   sp.Rational(1, 100), sp.Rational(1, 100))
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(_flat(corr), expected, rtol=tol, atol=tol)
    assert float(norm) == pytest.approx(expected_norm, rel=tol)


def test_accepts_module_and_generator():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x = torch.randn(5, 3)
    loss = net(x).pow(2).mean()
    a = mt.adam_correction(loss, net, 0.9, 0.99, 1e-8, 1e-3)
    b = mt.adam_correction(loss, net.parameters(), 0.9, 0.99, 1e-8, 1e-3)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert len(a) == 4


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

def _setup():
    params, loss_fn = _torch_net()
    return params, loss_fn(*params)


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(eps=0.0), ValueError, "eps"),
    (dict(eps=-1e-8), ValueError, "eps"),
    (dict(eps=float("nan")), ValueError, "eps"),
    (dict(h=0.0), ValueError, "h "),
    (dict(h=-0.1), ValueError, "h "),
    (dict(beta=1.0), ValueError, "beta"),
    (dict(beta=-0.1), ValueError, "beta"),
    (dict(rho=0.0), ValueError, "rho"),
    (dict(rho=1.0), ValueError, "rho"),
    (dict(beta="0.9"), TypeError, "beta"),
])
def test_bad_hyperparameters(kwargs, exc, pattern):
    params, loss = _setup()
    args = dict(beta=0.9, rho=0.999, eps=1e-8, h=1e-3)
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        mt.adam_correction(loss, params, **args)
    with pytest.raises(exc, match=pattern):
        mt.ImplicitBiasPenalty(params, **args)


def test_bad_eps_for_norm():
    params, loss = _setup()
    with pytest.raises(ValueError, match="eps"):
        mt.perturbed_one_norm(loss, params, 0.0)
    with pytest.raises(ValueError, match="eps"):
        mt.OneNormLogger(params, eps=-1.0)


def test_integer_tensor_rejected():
    params, loss = _setup()
    bad = params[:2] + [torch.zeros(3, dtype=torch.int64)] + params[2:]
    with pytest.raises(TypeError, match=r"params\[2\].*int64"):
        mt.perturbed_one_norm(loss, bad, 1e-8)
    with pytest.raises(TypeError, match=r"params\[2\]"):
        mt.ImplicitBiasPenalty(bad, 0.9, 0.999, 1e-8, 1e-3)


def test_params_not_requiring_grad_rejected():
    params, loss = _setup()
    frozen = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"params\[4\].*does not require grad"):
        mt.adam_correction(loss, params + [frozen], 0.9, 0.999, 1e-8, 1e-3)
    with pytest.raises(ValueError, match="empty"):
        mt.perturbed_one_norm(loss, [], 1e-8)


def test_mismatched_grads_rejected():
    params, loss = _setup()
    grads = [torch.zeros_like(p) for p in params]
    with pytest.raises(ValueError, match="grads has 3 tensors but params has 4"):
        mt.perturbed_one_norm(grads[:3], params, 1e-8)
    grads[1] = torch.zeros(5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"grads\[1\] has shape \(5,\) but params\[1\] has shape \(2,\)"):
        mt.perturbed_one_norm(grads, params, 1e-8)
    pen = mt.ImplicitBiasPenalty(params, 0.9, 0.999, 1e-8, 1e-3)
    with pytest.raises(ValueError, match=r"grads\[1\]"):
        pen.from_grads(grads)


def test_bad_loss_and_sign_rejected():
    params, loss = _setup()
    with pytest.raises(ValueError, match="scalar"):
        mt.adam_correction(torch.stack([loss, loss]), params, 0.9, 0.999, 1e-8, 1e-3)
    with pytest.raises(ValueError, match="does not require grad"):
        mt.adam_correction(loss.detach(), params, 0.9, 0.999, 1e-8, 1e-3)
    with pytest.raises(TypeError, match="loss"):
        mt.ImplicitBiasPenalty(params, 0.9, 0.999, 1e-8, 1e-3)(1.0)
    with pytest.raises(ValueError, match="sign"):
        mt.ImplicitBiasPenalty(params, 0.9, 0.999, 1e-8, 1e-3, sign=0)
    with pytest.raises(ValueError, match="weight"):
        mt.ImplicitBiasPenalty(params, 0.9, 0.999, 1e-8, 1e-3, weight=-1.0)
    with pytest.raises(ValueError, match="grad is None"):
        mt.OneNormLogger(params, 1e-8).record()


def test_adam_eps_inside_follows_the_recursion_of_math_md():
    # E = 0.5 θᵀQθ - bᵀθ with a hand-written gradient; the Adam of docs/conventions.md §2 in
    # NumPy float64
    rng = np.random.default_rng(11)
    M = rng.normal(size=(4, 4))
    Q, bvec, theta0 = M @ M.T + np.eye(4), rng.normal(size=4), rng.normal(size=4)
    beta, rho, eps, lr = 0.8, 0.95, 1e-2, 0.1
    t = torch.tensor(theta0, requires_grad=True)
    opt = mt.AdamEpsInside([t], lr=lr, beta=beta, rho=rho, eps=eps)
    th, m, v = theta0.copy(), np.zeros(4), np.zeros(4)
    for n in range(6):
        g = Q @ th - bvec
        t.grad = torch.tensor(Q @ t.detach().numpy() - bvec)
        opt.step()
        m = beta * m + (1 - beta) * g
        v = rho * v + (1 - rho) * g ** 2
        th = th - lr * (m / (1 - beta ** (n + 1))) / np.sqrt(v / (1 - rho ** (n + 1)) + eps)
        np.testing.assert_allclose(t.detach().numpy(), th, rtol=0, atol=1e-13)
    for bad, pattern in [(dict(lr=0.0), "lr"), (dict(beta=1.0), "beta"), (dict(rho=0.0), "rho"),
                         (dict(eps=0.0), "eps")]:
        with pytest.raises(ValueError, match=pattern):
            mt.AdamEpsInside([t], **bad)


def test_one_flow_field_convention_everywhere():
    """Both torch flow fields return d theta/dt = -F as a list shaped like params (one of them
    used to return +F as a list, the other -F flat)."""
    from modeq.numeric.torch_flow import flow_field
    from modeq.symbolic import derive, optimizers
    params, loss_fn = _torch_net()
    vals = dict(beta=0.9, rho=0.99, eps=1e-3, h=0.01)
    a = mt.adam_flow_field(loss_fn(*params), params, **vals)
    b = flow_field(derive(optimizers.adam(), 1), loss_fn(*params), params, stationary=True, **vals)
    assert [t.shape for t in a] == [t.shape for t in b] == [p.shape for p in params]
    np.testing.assert_allclose(_flat(a), _flat(b), rtol=1e-12, atol=1e-14)
    g = _flat(mt.gradients(loss_fn(*params), params))
    small = _flat(mt.adam_flow_field(loss_fn(*params), params, **dict(vals, h=1e-9)))
    np.testing.assert_allclose(small, -g / np.sqrt(g ** 2 + 1e-3), rtol=1e-6, atol=1e-6)  # -g/s

"""The order-1 correction of configured torch.optim optimizers on a small network, against a
reference built from the dense Hessian and the derived term lowered component by component
(SymPy's lowering of the operator algebra with numbers, no emit layer, no HVP)."""
import numpy as np
import pytest
import sympy as sp
import torch
from conftest import examples
from hypothesis import given, settings, strategies as st

from modeq.numeric.implicit_bias import ImplicitCorrectionLogger
from modeq.numeric.torch import implicit_correction
from modeq.numeric.torch_optim import from_torch
from modeq.symbolic import derive
from modeq.symbolic.components import lower
from modeq.symbolic.family import n as n_step

torch.manual_seed(0)
X = torch.randn(6, 2, dtype=torch.float64)
Y = torch.randn(6, dtype=torch.float64)


def model_params():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(3, 2, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_()
    v = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_()
    return [W, b, v]


def loss_of(params):
    W, b, v = params
    return ((torch.tanh(X @ W.T + b) @ v - Y) ** 2).mean()


class Numbers:
    """A provider of the operator algebra's lowering: numeric gradient, dense Hessian, theta."""

    def __init__(self, g, H, theta):
        self.gv, self.Hv, self.tv = g, H, theta
        self.p = len(g)

    def grad(self, b, j):
        return sp.Float(self.gv[j], 30)

    def hess(self, b, j, i):
        return sp.Float(self.Hv[j, i], 30)

    def theta(self, j):
        return sp.Float(self.tv[j], 30)


def dense_reference(optimizer, params, stationary=True, n=None, loss=None):
    """h F1 of the stationary flow, or with ``stationary=False`` of the flow exact in the step
    index at step ``n`` (its memory sums unrolled by SymPy once ``n`` is a number); ``loss``
    a function of the parameters (default :func:`loss_of`)."""
    loss = loss_of if loss is None else loss
    decl, values = from_torch(optimizer)
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    sizes = [p.numel() for p in params]

    def f(x):
        parts, k = [], 0
        for p, s in zip(params, sizes):
            parts.append(x[k:k + s].view_as(p))
            k += s
        return loss(parts)

    g = torch.autograd.functional.jacobian(f, flat).numpy()
    H = torch.autograd.functional.hessian(f, flat).numpy()
    F1 = derive(decl, 1).terms("full", stationary=stationary)[1]
    subs = {s: sp.Rational(values[str(s)]) if isinstance(values[str(s)], str)
            else sp.nsimplify(values[str(s)], rational=True)
            for s in F1.free_symbols if str(s) in values}
    if not stationary:
        assert F1.has(n_step)                            # the n-flow really depends on n
        subs[n_step] = sp.Integer(n)
    F1 = F1.xreplace(subs).doit()
    h = sp.nsimplify(values["h"], rational=True)
    P = Numbers(g, H, flat.numpy())
    cache = {}
    hF1 = [float((h * lower(F1, j, P, cache)).evalf(20)) for j in range(len(g))]
    return np.array(hF1), g


CONFIGS = {
    "AdamW": lambda ps: torch.optim.AdamW(ps, lr=0.05, betas=(0.4, 0.6), eps=0.1, weight_decay=0.2),
    "Adam": lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.9, 0.99), eps=0.1),
    "RMSprop": lambda ps: torch.optim.RMSprop(ps, lr=0.05, alpha=0.9, eps=0.1),
    "SGD-nesterov": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.3, nesterov=True,
                                               weight_decay=0.2),
    # NAdam: momentum_decay drops out of the stationary flow (mu_t -> beta1); its n-flow takes
    # ~280 s to derive, too slow here
    "NAdam": lambda ps: torch.optim.NAdam(ps, lr=0.05, betas=(0.4, 0.6), eps=0.1,
                                          weight_decay=0.2, momentum_decay=4.0),
    "SGD-dampened": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.3, dampening=0.2,
                                               weight_decay=0.2),
    "RMSprop-momentum": lambda ps: torch.optim.RMSprop(ps, lr=0.05, alpha=0.6, eps=0.1,
                                                       momentum=0.3, weight_decay=0.2),
    # centered: refused in the stationary flow, so the flow exact in the step index, at n = 5.
    # Not with momentum=0.3: refused there too ("F1: a contraction enters non-polynomially").
    "RMSprop-centered": lambda ps: torch.optim.RMSprop(ps, lr=0.05, alpha=0.6, eps=0.1,
                                                       centered=True, weight_decay=0.2),
}
FLOW = {"RMSprop-centered": dict(stationary=False, n=5)}     # default: the stationary flow


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_network_correction_equals_the_dense_hessian_reference(name):
    params = model_params()
    opt = CONFIGS[name](params)
    flow = FLOW.get(name, {})
    got = torch.cat([c.reshape(-1)
                     for c in implicit_correction(opt, loss_of(params), **flow)]).numpy()
    ref, g = dense_reference(opt, params, **flow)
    assert np.max(np.abs(ref)) > 1e-4                    # not vacuous
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


# -- a parameter whose gradient is identically 0 (an input feature that is always 0) ------------
DEAD = {   # torch's update of such a parameter, and h F1 of the flow of that update
    # AdamW: theta <- theta (1 - h lam), whose flow is -log(1 - h lam)/h theta = (lam + h lam^2/2
    # + ...) theta; the others leave it where it is
    "AdamW": (lambda ps, h, b1, b2, eps, lam: torch.optim.AdamW(
        ps, lr=h, betas=(b1, b2), eps=eps, weight_decay=lam),
        lambda h, lam, th: h * lam ** 2 * th / 2),
    "Adam": (lambda ps, h, b1, b2, eps, lam: torch.optim.Adam(ps, lr=h, betas=(b1, b2), eps=eps),
             lambda h, lam, th: 0 * th),
    "RMSprop": (lambda ps, h, b1, b2, eps, lam: torch.optim.RMSprop(ps, lr=h, alpha=b2, eps=eps),
                lambda h, lam, th: 0 * th),
    "NAdam": (lambda ps, h, b1, b2, eps, lam: torch.optim.NAdam(ps, lr=h, betas=(b1, b2), eps=eps),
              lambda h, lam, th: 0 * th),
    # centered: its flow exact in the step index (step 5), sqrt(v - a^2) = |g| sqrt(...)
    "RMSprop-centered": (lambda ps, h, b1, b2, eps, lam: torch.optim.RMSprop(
        ps, lr=h, alpha=b2, eps=eps, centered=True), lambda h, lam, th: 0 * th),
}
DEAD_FLOW = {"RMSprop-centered": dict(stationary=False, n=5)}


def _with_dead_input(delta):
    """The network's parameters and its loss as a function of them, on inputs whose feature 1
    is ``delta`` for every sample: at 0 the first layer's weights from it have a gradient (and
    Hessian rows) identically 0."""
    Xd = X.clone()
    Xd[:, 1] = delta

    def loss(params):
        W, b, v = params
        return ((torch.tanh(Xd @ W.T + b) @ v - Y) ** 2).mean()
    return model_params(), loss


@settings(max_examples=examples(6), deadline=None)
@given(name=st.sampled_from(sorted(DEAD)), h=st.sampled_from([1e-3, 0.05]),
       b1=st.sampled_from([0.4, 0.9]), b2=st.sampled_from([0.6, 0.999]),
       eps=st.sampled_from([1e-8, 0.1]), lam=st.sampled_from([0.01, 0.2]))
def test_a_gradient_component_identically_zero_gives_a_finite_correction(name, h, b1, b2, eps,
                                                                           lam):
    """With eps outside the root (torch's adaptive optimizers) ``F1`` holds ``g^2/sqrt(g^2)``
    (``|g|``; centered: ``sqrt(g^2 c)``), which at a gradient component 0 read 0/0: NaN on
    every dead unit of a network.
    Now finite, and on the dead weights equal to what torch's own update of them gives; on
    the others continuous: against the dense-Hessian reference with the feature at 1e-9."""
    make, oracle = DEAD[name]
    params, loss = _with_dead_input(0.0)
    flow = DEAD_FLOW.get(name, {})
    got = implicit_correction(make(params, h, b1, b2, eps, lam), loss(params), **flow)
    assert all(bool(torch.isfinite(c).all()) for c in got)
    W = params[0].detach()
    np.testing.assert_allclose(got[0][:, 1].numpy(), oracle(h, lam, W[:, 1]).numpy(),
                               rtol=1e-12, atol=1e-300)
    near, near_loss = _with_dead_input(1e-9)
    ref, _ = dense_reference(make(near, h, b1, b2, eps, lam), near, loss=near_loss, **flow)
    live = torch.cat([c.reshape(-1) for c in got]).numpy()
    keep = np.ones(live.size, bool)
    keep[1:6:2] = False                  # W[:, 1] in the flattened (3, 2) weight
    np.testing.assert_allclose(live[keep], ref[keep], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", ["AdamW", "SGD-nesterov"])
def test_a_frozen_parameter_has_no_correction_and_is_a_constant_of_the_others(name):
    """A parameter with ``requires_grad=False`` in the optimizer (a frozen layer): torch never
    moves it, so its correction is 0, and the others' is that of the optimizer on them alone
    with it held constant (dense-Hessian reference over the others)."""
    W, b, v = model_params()
    b.requires_grad_(False)
    got = implicit_correction(CONFIGS[name]([W, b, v]), loss_of([W, b, v]))
    assert torch.equal(got[1], torch.zeros_like(b))
    ref, _ = dense_reference(CONFIGS[name]([W, v]), [W, v],
                             loss=lambda ps: loss_of([ps[0], b, ps[1]]))
    np.testing.assert_allclose(torch.cat([got[0].reshape(-1), got[2]]).numpy(), ref,
                               rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="no parameter requires grad"):
        implicit_correction(CONFIGS[name]([b]), loss_of([W, b, v]))


def test_adamw_correction_needs_one_hessian_vector_product():
    """c (H.u) + c lam (H.theta) is evaluated as c H.(u + lam theta): one HVP, still proved
    equal to the derived term."""
    from modeq.symbolic.emit import flow_forms, verify
    w = torch.zeros(2, requires_grad=True)
    decl, _ = from_torch(torch.optim.AdamW([w], lr=1e-3, weight_decay=0.01))
    form = flow_forms(derive(decl, 1), True)[1]
    assert form.n_hvp == 1
    assert all(ok for _, ok in verify(form, (1, 2)))


def _norm(tensors):
    return float(np.linalg.norm(np.concatenate([t.detach().numpy().ravel() for t in tensors])))


def test_logger_records_each_training_step():
    """ImplicitCorrectionLogger called with the loss of each of 5 AdamW steps on the network
    (before the step, as its docstring says): one record per call, each the norms of h F1 and
    of the gradient recomputed from a fresh forward pass at that step's parameters."""
    params = model_params()
    opt = CONFIGS["AdamW"](params)
    log = ImplicitCorrectionLogger(opt)
    expected, returned = [], []
    for step in range(5):
        corr = implicit_correction(opt, loss_of(params))
        grads = torch.autograd.grad(loss_of(params), params)
        expected.append((_norm(corr), _norm(grads)))
        opt.zero_grad()
        loss = loss_of(params)
        returned.append(log(loss))
        assert len(log.history) == step + 1
        loss.backward()                                  # the logger leaves the graph usable
        opt.step()
    assert log.history == returned
    for rec, (c, g) in zip(log.history, expected):
        assert set(rec) == {"correction_norm", "grad_norm"}
        assert rec["correction_norm"] == pytest.approx(c, rel=1e-12, abs=0)
        assert rec["grad_norm"] == pytest.approx(g, rel=1e-12, abs=0)
    for a, b in zip(expected, expected[1:]):             # training moved the parameters:
        assert abs(a[0] - b[0]) > 1e-6 * a[0] and abs(a[1] - b[1]) > 1e-6 * a[1]  # no stale rec


# -- the penalty term, where F1 is a gradient ---------------------------------------------------

from modeq.numeric.implicit_bias import implicit_penalty  # noqa: E402


def sgd_penalty_by_hand(lr, momentum=0.0, dampening=0.0, nesterov=False, wd=0.0,
                        maximize=False, params=None):
    """The stationary penalty h Phi, grad Phi = F1, derived by hand (Lie series of one step,
    past gradients d_(n-j) = d + j h H F0 + O(h^2)), with d = -/+g + wd theta:
    plain SGD / heavy ball with dampening tau: (1-tau)^2 (1+mu) / (4 (1-mu)^3) |d|^2 (tau = 0,
    mu = 0: Barrett & Dherin's (h/4)|g|^2); Nesterov: (1 - mu + 2 mu^2) / (4 (1-mu)^3) |d|^2."""
    loss = loss_of(params)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    d2 = sum((((-g if maximize else g) + wd * p) ** 2).sum() for g, p in zip(grads, params))
    mu, tau = momentum, dampening
    if nesterov:
        c = (1 - mu + 2 * mu ** 2) / (4 * (1 - mu) ** 3)
    else:
        c = (1 - tau) ** 2 * (1 + mu) / (4 * (1 - mu) ** 3)
    return lr * c * d2


@settings(max_examples=10, deadline=None)
@given(lr=st.floats(1e-3, 0.5), mu=st.floats(0.0, 0.9), tau=st.floats(0.0, 0.9),
       wd=st.floats(0.0, 0.5), kind=st.sampled_from(["plain", "momentum", "nesterov"]),
       maximize=st.booleans())
def test_sgd_penalty_equals_the_hand_formula(lr, mu, tau, wd, kind, maximize):
    params = model_params()
    cfg = dict(lr=lr, weight_decay=wd, maximize=maximize)
    if kind != "plain":
        cfg.update(momentum=mu, nesterov=kind == "nesterov",
                   dampening=tau if kind == "momentum" else 0.0)
    if kind == "plain" or mu == 0:
        cfg.pop("nesterov", None)
        cfg.update(momentum=0.0, dampening=0.0)
    opt = torch.optim.SGD(params, **cfg)
    got = float(implicit_penalty(opt, loss_of(params)).detach())
    ref = float(sgd_penalty_by_hand(lr, cfg["momentum"], cfg["dampening"],
                                    cfg.get("nesterov", False), wd, maximize, params).detach())
    assert ref > 0
    assert abs(got - ref) <= 1e-12 * ref


@pytest.mark.parametrize("name", ["SGD-nesterov"])
def test_penalty_gradient_is_the_dense_reference_correction(name):
    """Double backprop through the penalty gives h F1 of the dense-Hessian reference."""
    params = model_params()
    opt = CONFIGS[name](params)
    P = implicit_penalty(opt, loss_of(params))
    got = torch.cat([d.reshape(-1) for d in torch.autograd.grad(P, params)]).numpy()
    ref, _ = dense_reference(opt, params)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-13)


def _jacobian_asymmetry_by_differences(opt_of, step=1e-5):
    """max |J - J^T| / max |J| of h F1 on a 2-parameter loss, J by central differences of the
    (matrix-free) correction: an independent measurement of whether F1 is a gradient."""
    base = torch.tensor([0.7, -0.4], dtype=torch.float64)

    def hF1(t):
        w = t.clone().requires_grad_()
        loss = torch.cosh(w[0] - 2 * w[1]) + w[0] ** 4 / 4 + w[0] * w[1] ** 2 + w[1]
        return implicit_correction(opt_of([w]), loss)[0]

    J = torch.stack([(hF1(base + step * e) - hF1(base - step * e)) / (2 * step)
                     for e in torch.eye(2, dtype=torch.float64)], dim=1)
    return float((J - J.T).abs().max() / J.abs().max())


def test_penalty_is_refused_where_f1_is_not_a_gradient():
    adam = lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.4, 0.6), eps=0.1)  # noqa: E731
    sgd = lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.3)                # noqa: E731
    assert _jacobian_asymmetry_by_differences(adam) > 1e-2        # measured: not a gradient
    assert _jacobian_asymmetry_by_differences(sgd) < 1e-7         # a gradient
    for make in (adam, lambda ps: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.2),
                 lambda ps: torch.optim.RMSprop(ps, lr=0.05, alpha=0.9, eps=0.1),
                 lambda ps: torch.optim.NAdam(ps, lr=0.05)):
        params = model_params()
        with pytest.raises(ValueError, match="not a gradient field.*not symmetric"):
            implicit_penalty(make(params), loss_of(params))

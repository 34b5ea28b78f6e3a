"""The order-1 correction of configured torch.optim optimizers on a small network, against a
reference built from the dense Hessian and the derived term lowered component by component
(SymPy's lowering of the operator algebra with numbers, no emit layer, no HVP)."""
import numpy as np
import pytest
import sympy as sp
import torch

from modeq.numeric.torch import implicit_correction
from modeq.numeric.torch_optim import from_torch
from modeq.symbolic import derive
from modeq.symbolic.components import lower

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


def dense_reference(optimizer, params):
    decl, values = from_torch(optimizer)
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    sizes = [p.numel() for p in params]

    def f(x):
        parts, k = [], 0
        for p, s in zip(params, sizes):
            parts.append(x[k:k + s].view_as(p))
            k += s
        return loss_of(parts)

    g = torch.autograd.functional.jacobian(f, flat).numpy()
    H = torch.autograd.functional.hessian(f, flat).numpy()
    F1 = derive(decl, 1).terms("full", stationary=True)[1]
    subs = {s: sp.Rational(values[str(s)]) if isinstance(values[str(s)], str)
            else sp.nsimplify(values[str(s)], rational=True)
            for s in F1.free_symbols if str(s) in values}
    subs[sp.Symbol("h", positive=True)] = sp.nsimplify(values["h"], rational=True)
    P = Numbers(g, H, flat.numpy())
    hF1 = [float((sp.Symbol("h", positive=True) * lower(F1, j, P)).xreplace(subs)
                 .xreplace({s: v for s, v in subs.items()}).evalf(20)) for j in range(len(g))]
    return np.array(hF1), g


CONFIGS = {
    "AdamW": lambda ps: torch.optim.AdamW(ps, lr=0.05, betas=(0.4, 0.6), eps=0.1, weight_decay=0.2),
    "Adam": lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.9, 0.99), eps=0.1),
    "RMSprop": lambda ps: torch.optim.RMSprop(ps, lr=0.05, alpha=0.9, eps=0.1),
    "SGD-nesterov": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.3, nesterov=True,
                                               weight_decay=0.2),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_network_correction_equals_the_dense_hessian_reference(name):
    params = model_params()
    opt = CONFIGS[name](params)
    got = torch.cat([c.reshape(-1) for c in implicit_correction(opt, loss_of(params))]).numpy()
    ref, g = dense_reference(opt, params)
    assert np.max(np.abs(ref)) > 1e-4                    # not vacuous
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_param_groups_with_different_settings_are_refused():
    W, b, v = model_params()
    opt = torch.optim.Adam([{"params": [W, b]}, {"params": [v], "lr": 0.5}], lr=0.05)
    with pytest.raises(ValueError, match="param groups"):
        implicit_correction(opt, loss_of([W, b, v]))


def test_adamw_correction_needs_one_hessian_vector_product():
    """c (H.u) + c lam (H.theta) is evaluated as c H.(u + lam theta): one HVP, still proved
    equal to the derived term."""
    from modeq.symbolic.emit import flow_forms, verify
    w = torch.zeros(2, requires_grad=True)
    decl, _ = from_torch(torch.optim.AdamW([w], lr=1e-3, weight_decay=0.01))
    form = flow_forms(derive(decl, 1), True)[1]
    assert form.n_hvp == 1
    assert all(ok for _, ok in verify(form, (1, 2)))


# -- the penalty term, where F1 is a gradient ---------------------------------------------------
from hypothesis import given, settings, strategies as st  # noqa: E402

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

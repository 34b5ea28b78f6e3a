"""Adam's implicit bias on real networks: the perturbed one-norm, the paper's correction by one
Hessian-vector product, and an explicit penalty that adds or cancels the bias.

Conventions (``docs/conventions.md`` §1, §2.1).  Parameters ``θ`` are the concatenation of all
parameter tensors, ``E`` is the (full-batch) loss, ``g = ∇E(θ)``, ``H = ∇²E(θ)``; squares, square
roots and divisions are componentwise and ``(Hu)_j = Σ_i H_ji u_i``.  Adam is the paper's
(Cattaneo, Klusowski, Shigida, ICML 2024) with ``ε`` **inside** the square root and bias
correction:

    θ⁽ⁿ⁺¹⁾ = θ⁽ⁿ⁾ − h · m̂⁽ⁿ⁺¹⁾ / sqrt(v̂⁽ⁿ⁺¹⁾ + ε).

With ``s = sqrt(g² + ε)`` the perturbed one-norm is ``‖∇E‖_{1,ε} = Σ_i s_i`` and its gradient is
``∂_j ‖∇E‖_{1,ε} = (H · (g/s))_j``.  Adam follows, to ``O(h²)`` on a fixed horizon, the modified
flow

    dθ/dt = −(∇E + correction) / s,
    correction_j = (h/2) {(1+β)/(1-β) − (1+ρ)/(1-ρ) + (1+ρ)/(1-ρ) · ε/(g_j²+ε)} ∂_j‖∇E‖_{1,ε}.

Everything here is matrix-free: the correction costs one gradient with ``create_graph=True`` and
one Hessian-vector product (double backward); no dense Hessian is ever formed.  Works for any list
of floating-point tensors (``nn.Module.parameters()``) on any device (CPU, CUDA), float32 or
float64; results live on the parameters' device and in their dtype.

Public API: :func:`perturbed_one_norm`, :class:`OneNormLogger`, :func:`hessian_vector_product`,
:func:`adam_correction`, :func:`adam_flow_field`, :class:`ImplicitBiasPenalty`,
:func:`add_correction_to_grad`, and :class:`AdamEpsInside` (the optimizer in this convention).
"""
from __future__ import annotations

import math
import numbers
from typing import List

import torch

from modeq.symbolic.family import check_hyperparameter
from .torch_optim import from_torch, from_torch_groups  # noqa: F401  (the torch.optim bridge)
from .implicit_bias import ImplicitCorrectionLogger, implicit_correction  # noqa: F401,E402

__all__ = [
    "perturbed_one_norm", "OneNormLogger", "hessian_vector_product", "gradients",
    "adam_correction", "adam_flow_field", "ImplicitBiasPenalty", "add_correction_to_grad",
    "adam_coefficients", "check_params", "AdamEpsInside", "check_eps", "check_beta", "check_rho",
    "check_weight", "one_norm_from", "from_torch", "from_torch_groups", "implicit_correction",
    "ImplicitCorrectionLogger",
]


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

def _real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _check_named(name, value):
    """A real, finite hyperparameter in its allowed range (``modeq.symbolic.family.RANGES``)."""
    return check_hyperparameter(name, _real(name, value))


def check_eps(eps):
    return _check_named("eps", eps)


def _check_h(h):
    return _check_named("h", h)


def check_beta(beta):
    return _check_named("beta", beta)


def check_rho(rho):
    return _check_named("rho", rho)


def check_params(params, name="params") -> List[torch.Tensor]:
    """The parameters as a list of tensors, validated.

    ``params`` is an iterable of tensors (e.g. ``model.parameters()``) or an ``nn.Module`` (then
    its parameters that require grad are used).  Every tensor must be floating point, require
    grad, and live on the same device; otherwise ``TypeError``/``ValueError`` naming
    ``params[i]``.
    """
    if isinstance(params, torch.nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{name}: the module has no parameter that requires grad")
    elif isinstance(params, torch.Tensor):
        params = [params]
    else:
        try:
            params = list(params)
        except TypeError:
            raise TypeError(f"{name} must be an iterable of tensors or an nn.Module, "
                            f"got {type(params).__name__}") from None
    if not params:
        raise ValueError(f"{name} is empty")
    device = None
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(p).__name__}")
        if not p.dtype.is_floating_point:
            raise TypeError(f"{name}[{i}] has dtype {p.dtype}; parameters must be floating point "
                            f"(float32 or float64)")
        if not p.requires_grad:
            raise ValueError(f"{name}[{i}] (shape {tuple(p.shape)}) does not require grad")
        if device is None:
            device = p.device
        elif p.device != device:
            raise ValueError(f"{name}[{i}] is on {p.device} but {name}[0] is on {device}")
    return params


def _check_loss(loss):
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss must be a scalar torch.Tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"loss must be a scalar tensor, got shape {tuple(loss.shape)}")
    if not loss.dtype.is_floating_point:
        raise TypeError(f"loss has dtype {loss.dtype}; it must be floating point")
    if not loss.requires_grad:
        raise ValueError("loss does not require grad: it was computed without a graph to params "
                         "(inside torch.no_grad(), or detached)")
    return loss.reshape(())


def _check_grads(grads, params):
    try:
        grads = list(grads)
    except TypeError:
        raise TypeError(f"grads must be a sequence of tensors, got "
                        f"{type(grads).__name__}") from None
    if len(grads) != len(params):
        raise ValueError(f"grads has {len(grads)} tensors but params has {len(params)}")
    for i, (g, p) in enumerate(zip(grads, params)):
        if not isinstance(g, torch.Tensor):
            raise TypeError(f"grads[{i}] must be a torch.Tensor, got {type(g).__name__}")
        if not g.dtype.is_floating_point:
            raise TypeError(f"grads[{i}] has dtype {g.dtype}; it must be floating point")
        if g.shape != p.shape:
            raise ValueError(f"grads[{i}] has shape {tuple(g.shape)} but params[{i}] has shape "
                             f"{tuple(p.shape)}")
        if g.device != p.device:
            raise ValueError(f"grads[{i}] is on {g.device} but params[{i}] is on {p.device}")
    return grads


def adam_coefficients(beta, rho):
    """``(A, B)`` with ``A = (1+β)/(1-β) − (1+ρ)/(1-ρ)`` and ``B = (1+ρ)/(1-ρ)``.

    The correction's coefficient on component ``j`` is ``(h/2)(A + B ε/(g_j²+ε))``; ``A > 0``
    (``β > ρ``) penalises the one-norm, ``A < 0`` (``ρ > β``) anti-penalises it.
    """
    beta, rho = check_beta(beta), check_rho(rho)
    B = (1 + rho) / (1 - rho)
    return (1 + beta) / (1 - beta) - B, B


# --------------------------------------------------------------------------------------------
# Gradients, norm, HVP
# --------------------------------------------------------------------------------------------

def gradients(loss, params, create_graph=False) -> List[torch.Tensor]:
    """``∇E`` as a list shaped like ``params`` (zeros for parameters the loss does not use).

    The graph of ``loss`` is retained, so ``loss.backward()`` still works afterwards.
    """
    params = check_params(params)
    loss = _check_loss(loss)
    grads = torch.autograd.grad(loss, params, create_graph=create_graph, retain_graph=True,
                                allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def one_norm_from(grads, eps):
    total = None
    for g in grads:
        term = torch.sqrt(g * g + eps).sum()
        total = term if total is None else total + term
    return total


def perturbed_one_norm(loss_or_grads, params, eps=1e-8, create_graph=False) -> torch.Tensor:
    """``‖∇E‖_{1,ε} = Σ_i sqrt(g_i² + ε)`` summed over every component of every parameter tensor.

    ``loss_or_grads`` is the scalar loss ``E`` (its gradient is taken with autograd, graph kept)
    or the gradient itself as a list of tensors shaped like ``params`` (e.g.
    ``[p.grad for p in params]``).  Returns a 0-dim tensor on the parameters' device, detached
    unless ``create_graph=True`` (then it is differentiable in ``params``).
    """
    eps = check_eps(eps)
    params = check_params(params)
    x = loss_or_grads
    if isinstance(x, torch.Tensor):
        # A lone tensor is a gradient only when it has the single parameter's shape and is not
        # the output of a graph (a scalar with a graph is the loss).
        as_grad = (len(params) == 1 and x.shape == params[0].shape
                   and (x.grad_fn is None or x.numel() > 1))
        x = [x] if as_grad else x
    if isinstance(x, torch.Tensor):
        grads = gradients(x, params, create_graph=create_graph)
    else:
        grads = _check_grads(x, params)
    norm = one_norm_from(grads, eps)
    return norm if create_graph else norm.detach()


def hessian_vector_product(loss, params, vectors, grads=None) -> List[torch.Tensor]:
    """``H·u`` (a list shaped like ``params``) by one double-backward pass, never a dense Hessian.

    ``grads`` may be passed when ``∇E`` was already computed with ``create_graph=True``.
    """
    params = check_params(params)
    if grads is None:
        grads = gradients(loss, params, create_graph=True)
    vectors = _check_grads(vectors, params)
    pairs = [(g, v) for g, v in zip(grads, vectors) if g.requires_grad]
    if not pairs:
        return [torch.zeros_like(p) for p in params]
    hv = torch.autograd.grad([g for g, _ in pairs], params, grad_outputs=[v for _, v in pairs],
                             retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if x is None else x for x, p in zip(hv, params)]


# --------------------------------------------------------------------------------------------
# The paper's correction
# --------------------------------------------------------------------------------------------

_ADAM = []


def _adam_flow():
    """Adam's order-1 flow (ε inside, bias correction), derived once per process."""
    if not _ADAM:
        from modeq.symbolic import derive, optimizers
        _ADAM.append(derive(optimizers.adam(), 1))
    return _ADAM[0]


def _correction(loss, params, beta, rho, eps, h):
    """``(g, s, correction)`` as lists shaped like ``params``.  The paper writes the flow as
    ``-(g + correction)/s``, so ``correction = s * h F1`` with ``h F1`` the derived stationary
    term, evaluated matrix-free by :func:`modeq.numeric.torch_flow.flow_correction`."""
    from .torch_flow import AutogradCallbacks, correction_function
    eps, h = check_eps(eps), _check_h(h)
    beta, rho = check_beta(beta), check_rho(rho)
    params = check_params(params)
    cb = AutogradCallbacks(_check_loss(loss), params)
    function = correction_function(_adam_flow(), True, cb.g.dtype,
                                   beta=beta, rho=rho, eps=eps, h=h)
    gd = cb.split(cb.g)
    s = [torch.sqrt(g * g + eps) for g in gd]
    return gd, s, [si * c for si, c in zip(s, cb.split(cb.evaluate(function)))]


def adam_correction(loss, params, beta, rho, eps, h) -> List[torch.Tensor]:
    """The paper's first-order correction, a list of tensors shaped like ``params``:

        correction_j = (h/2) {(1+β)/(1-β) − (1+ρ)/(1-ρ) + (1+ρ)/(1-ρ) · ε/(g_j²+ε)} ∂_j‖∇E‖_{1,ε},
        ∂_j‖∇E‖_{1,ε} = (H · (g/sqrt(g²+ε)))_j,

    computed with one gradient (``create_graph=True``) and one Hessian-vector product.  ``beta``
    in [0, 1), ``rho`` in (0, 1), ``eps > 0`` (inside the square root), ``h > 0`` the learning rate.
    The graph of ``loss`` is kept, so ``loss.backward()`` works afterwards.  The result is detached.
    """
    _, _, corr = _correction(loss, params, beta, rho, eps, h)
    return [c.detach() for c in corr]


def adam_flow_field(loss, params, beta, rho, eps, h) -> List[torch.Tensor]:
    """Adam's modified flow ``dθ/dt = −F = −(∇E + correction)/sqrt(g²+ε)`` at the current
    parameters, a list shaped like ``params`` (the package's convention for every flow field:
    the right-hand side ``dθ/dt``, one tensor per parameter)."""
    gd, s, corr = _correction(loss, params, beta, rho, eps, h)
    return [(-(g + c) / si).detach() for g, c, si in zip(gd, corr, s)]


def add_correction_to_grad(loss, params, beta, rho, eps, h, sign=+1, weight=1.0):
    """The exact path: ``p.grad += sign · weight · correction`` for every parameter.

    Call it before or after ``loss.backward()`` (it never touches ``.grad`` except to add; if
    ``loss.backward()`` comes first, pass ``retain_graph=True`` to it so the graph still exists).
    ``sign=+1`` adds Adam's implicit-bias term, ``sign=-1`` removes it.  A ``p.grad`` that is
    ``None`` is created.  Returns the (unweighted) correction.
    """
    factor = _check_sign(sign) * check_weight(weight)
    params = check_params(params)
    corr = adam_correction(loss, params, beta, rho, eps, h)
    with torch.no_grad():
        for i, (p, c) in enumerate(zip(params, corr)):
            if p.grad is None:
                p.grad = (factor * c).to(p.dtype)
            else:
                if p.grad.shape != p.shape:
                    raise ValueError(f"params[{i}].grad has shape {tuple(p.grad.shape)}, "
                                     f"expected {tuple(p.shape)}")
                p.grad.add_(c, alpha=factor)
    return corr


def _check_sign(sign):
    if isinstance(sign, bool) or sign not in (1, -1):
        raise ValueError(f"sign must be +1 (add Adam's implicit bias) or -1 (cancel it), "
                         f"got {sign!r}")
    return int(sign)


def check_weight(weight):
    weight = _real("weight", weight)
    if weight < 0:
        raise ValueError(f"weight must be >= 0 (use sign for the direction), got {weight}")
    return weight


class ImplicitBiasPenalty:
    """An explicit loss term whose gradient is Adam's first-order implicit-bias term.

    ``penalty(loss)`` returns the scalar

        P = sign · weight · (h/2) · Σ_i [ A · sqrt(g_i²+ε) − B · ε / sqrt(g_i²+ε) ],
        A = (1+β)/(1-β) − (1+ρ)/(1-ρ),  B = (1+ρ)/(1-ρ),  g = ∇loss,

    differentiable in ``params`` (built with ``create_graph=True``), so ``(loss + penalty(loss))``
    can be minimised by any ``torch.optim`` optimizer.  ``sign=+1`` adds Adam's implicit bias
    (e.g. to amplify it under SGD), ``sign=-1`` cancels it when training with Adam.

    Why not the correction itself: the paper's correction is not a gradient field (its
    coefficient depends on ``g_j``).  The gradient of ``P`` is

        ∂_j P = sign · weight · (h/2) Σ_i H_ji [A + B ε/(g_i²+ε)] g_i / s_i,   s = sqrt(g²+ε),

    while ``correction_j = (h/2)[A + B ε/(g_j²+ε)] Σ_i H_ji g_i/s_i``: the two agree exactly when
    the Hessian is diagonal, and in general differ only in the ``B ε/(g²+ε)`` factor, which is
    ``O(ε)`` wherever ``g_i² ≫ ε`` (the small-ε regime of the paper).  For the exact term use
    :func:`add_correction_to_grad`.
    """

    def __init__(self, params, beta, rho, eps, h, sign=+1, weight=1.0):
        self.params = check_params(params)
        self.beta, self.rho = check_beta(beta), check_rho(rho)
        self.eps, self.h = check_eps(eps), _check_h(h)
        self.sign, self.weight = _check_sign(sign), check_weight(weight)
        self.A, self.B = adam_coefficients(self.beta, self.rho)

    @property
    def factor(self):
        """``sign · weight · h/2``."""
        return self.sign * self.weight * self.h / 2

    def __call__(self, loss) -> torch.Tensor:
        grads = gradients(loss, self.params, create_graph=True)
        return self.from_grads(grads)

    def from_grads(self, grads) -> torch.Tensor:
        """The penalty from a gradient already computed with ``create_graph=True`` (saves one
        backward pass when the same gradient is also used for logging)."""
        grads = _check_grads(grads, self.params)
        total = None
        for g in grads:
            s = torch.sqrt(g * g + self.eps)
            term = (self.A * s - (self.B * self.eps) / s).sum()
            total = term if total is None else total + term
        return self.factor * total

    def __repr__(self):
        return (f"ImplicitBiasPenalty(beta={self.beta}, rho={self.rho}, eps={self.eps}, "
                f"h={self.h}, sign={self.sign:+d}, weight={self.weight}, "
                f"{len(self.params)} tensors)")


class OneNormLogger:
    """Logs ``‖∇E‖_{1,ε}`` once per training step.

    Three ways to use it:

    * ``logger.attach(optimizer)``: a step pre-hook reads ``p.grad`` just before every
      ``optimizer.step()`` (no extra backward pass); ``logger.detach()`` removes it.  Note that
      ``p.grad`` is the gradient of whatever was back-propagated (loss plus any penalty).
    * ``logger.record()`` after ``loss.backward()``: the same, by hand.
    * ``logger.record(loss)``: the gradient of ``loss`` itself (one extra backward pass, graph
      kept).

    Values are Python floats in ``logger.values``, with the step counter in ``logger.steps``.
    """

    def __init__(self, params, eps=1e-8):
        self.params = check_params(params)
        self.eps = check_eps(eps)
        self.values: List[float] = []
        self.steps: List[int] = []
        self._handle = None
        self._step = 0

    def record(self, loss=None) -> float:
        if loss is None:
            grads = []
            for i, p in enumerate(self.params):
                if p.grad is None:
                    raise ValueError(f"params[{i}].grad is None: call loss.backward() first, "
                                     f"or pass the loss to record(loss)")
                grads.append(p.grad)
            value = perturbed_one_norm(grads, self.params, self.eps)
        else:
            value = perturbed_one_norm(loss, self.params, self.eps)
        value = float(value)
        self.values.append(value)
        self.steps.append(self._step)
        self._step += 1
        return value

    def attach(self, optimizer):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"attach() needs a torch.optim.Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.detach()

        def hook(opt, args, kwargs):
            self.record()          # a step pre-hook must return None

        self._handle = optimizer.register_step_pre_hook(hook)
        return self

    def detach(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __len__(self):
        return len(self.values)


class AdamEpsInside(torch.optim.Optimizer):
    """Adam exactly as in ``docs/conventions.md`` §2.1 (the paper's convention): ``ε`` **inside**
    the square root, bias correction on, ``m⁽⁰⁾ = v⁽⁰⁾ = 0``::

        m ← β m + (1-β) g,   v ← ρ v + (1-ρ) g²,
        θ ← θ − lr · (m/(1-β^{n+1})) / sqrt(v/(1-ρ^{n+1}) + ε).

    ``torch.optim.Adam`` instead divides by ``sqrt(v̂) + ε``; the two agree when ``ε`` is negligible
    against ``v̂`` but their modified flows differ.
    """

    def modeq_declaration(self, group):
        """``(declaration, values)`` of this update for :func:`from_torch`: the paper's Adam
        (``modeq.symbolic.optimizers.adam()``, ``eps`` inside the root, bias-corrected)."""
        from modeq.symbolic import optimizers
        return optimizers.adam(), {k: group[k] for k in ("beta", "rho", "eps")}

    def __init__(self, params, lr=1e-3, beta=0.9, rho=0.999, eps=1e-8):
        lr = _real("lr", lr)
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        defaults = dict(lr=lr, beta=check_beta(beta), rho=check_rho(rho), eps=check_eps(eps))
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, beta, rho, eps = group["lr"], group["beta"], group["rho"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                g = p.grad
                m, v = state["m"], state["v"]
                state["step"] += 1
                k = state["step"]
                m.mul_(beta).add_(g, alpha=1 - beta)
                v.mul_(rho).addcmul_(g, g, value=1 - rho)
                denom = (v / (1 - rho ** k)).add_(eps).sqrt_()
                p.addcdiv_(m, denom, value=-lr / (1 - beta ** k))
        return loss

"""One training run of full-batch Adam, logged at every step.

Conventions (:mod:`modeq.numeric.torch`): Adam with ``ε`` inside the square root and bias
correction (:class:`~modeq.numeric.torch.AdamEpsInside`), or ``torch.optim.Adam`` (``ε``
outside) on request.  The log holds, for ``n = 0 … steps``, the values at the iterate ``θ⁽ⁿ⁾``
before update ``n``: train loss ``E``, ``‖∇E‖_{1,ε}`` of ``E`` alone (never of a penalty), train
and test accuracy (``argmax(output) == target`` for integer targets, ``nan`` otherwise).
"""
import math
from dataclasses import dataclass, field
from typing import Callable

from .data import DEFAULTS, Data, check_lr, check_positive_int, load_digits_data, model_factory


@dataclass
class RunResult:
    """One training run: its settings and the per-step log (lists indexed by step)."""
    seed: int
    beta: float
    rho: float
    eps: float
    lr: float
    penalty: str                                   # "none" or "cancel"
    log: dict[str, list[float]]
    checkpoints: dict[int, dict[str, object]] = field(default_factory=dict)
    n_params: int = 0

    def final(self, metric):
        return self.log[metric][-1]


def _accuracy(output, target):
    if target.dtype.is_floating_point or output.dim() != 2:
        return float("nan")
    return float((output.argmax(dim=1) == target).double().mean())


def train_run(model="mlp", data=None, *, beta, rho, eps=DEFAULTS["eps"], lr=DEFAULTS["lr"],
              steps=DEFAULTS["steps"], seed=0, penalty="none", counter_weight=1.0,
              loss_fn=None, checkpoints=(), eps_placement="inside",
              on_step: Callable[[], None] | None = None) -> RunResult:
    """Full-batch Adam for ``steps`` updates from the initialisation drawn with ``seed``.

    ``penalty="cancel"`` trains on ``E + ImplicitBiasPenalty(β, ρ, ε, h=lr, sign=-1,
    weight=counter_weight)``; the logged norm is always ``‖∇E‖_{1,ε}`` of ``E`` itself.
    ``checkpoints``: steps whose parameters (``state_dict`` copies) are kept in the result.
    ``eps_placement="outside"`` uses ``torch.optim.Adam`` (``ε`` outside the square root) instead;
    the penalty and the paper's correction are derived for ``ε`` inside, so the counter-experiment
    is then only approximate.  Data follow the model's device and floating dtype.

    >>> run = train_run("mlp", beta=0.9, rho=0.999, lr=1e-2, steps=2)
    >>> len(run.log["train_loss"]), run.n_params
    (3, 2410)
    """
    import torch
    import torch.nn.functional as F
    from .. import torch as mt

    beta, rho = mt.check_beta(beta), mt.check_rho(rho)
    eps, lr = mt.check_eps(eps), check_lr(lr)
    steps = check_positive_int("steps", steps)
    if penalty not in ("none", "cancel"):
        raise ValueError(f"penalty must be 'none' or 'cancel', got {penalty!r}")
    if eps_placement not in ("inside", "outside"):
        raise ValueError(f"eps_placement must be 'inside' or 'outside', got {eps_placement!r}")
    checkpoints = {int(c) for c in checkpoints}
    for c in checkpoints:
        if not 0 <= c <= steps:
            raise ValueError(f"checkpoint step {c} is not in [0, {steps}]")
    data = load_digits_data() if data is None else data
    if not isinstance(data, Data):
        try:
            data = Data(*data)
        except TypeError:
            raise ValueError("data must be a Data or a tuple (X_train, y_train, X_test, y_test)") \
                from None
    factory, _ = model_factory(model)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn

    torch.manual_seed(seed)
    net = factory()
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"the model factory returned {type(net).__name__}, not an nn.Module")
    params = mt.check_params([p for p in net.parameters() if p.requires_grad], "model parameters")
    dtype, device = params[0].dtype, params[0].device
    Xtr, Xte = data.X_train.to(device, dtype), data.X_test.to(device, dtype)
    ytr, yte = data.y_train.to(device), data.y_test.to(device)
    if ytr.dtype.is_floating_point:
        ytr, yte = ytr.to(dtype), yte.to(dtype)
    if eps_placement == "inside":
        opt = mt.AdamEpsInside(params, lr=lr, beta=beta, rho=rho, eps=eps)
    else:
        opt = torch.optim.Adam(params, lr=lr, betas=(beta, rho), eps=eps)
    pen = (mt.ImplicitBiasPenalty(params, beta, rho, eps, lr, sign=-1, weight=counter_weight)
           if penalty == "cancel" else None)

    log = {k: [] for k in ("step", "train_loss", "one_norm", "train_acc", "test_acc")}
    kept = {}
    net.train()
    for n in range(steps + 1):
        out = net(Xtr)
        loss = loss_fn(out, ytr)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn must return a scalar tensor")
        grads = mt.gradients(loss, params, create_graph=pen is not None)
        with torch.no_grad():
            norm = mt.one_norm_from([g.detach() for g in grads], eps)
            net.eval()
            test_out = net(Xte)
            net.train()
        log["step"].append(n)
        log["train_loss"].append(float(loss.detach()))
        log["one_norm"].append(float(norm))
        log["train_acc"].append(_accuracy(out.detach(), ytr))
        log["test_acc"].append(_accuracy(test_out, yte))
        if n in checkpoints:
            kept[n] = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if on_step is not None and n < steps:
            on_step()
        if n == steps:
            break
        if not math.isfinite(log["train_loss"][-1]):
            raise ValueError(f"training diverged at step {n} (beta={beta}, rho={rho}, lr={lr}, "
                             f"seed={seed}); lower the learning rate")
        if pen is not None:
            extra = torch.autograd.grad(pen.from_grads(grads), params, allow_unused=True)
            grads = [g.detach() + (0 if e is None else e) for g, e in zip(grads, extra)]
        for p, g in zip(params, grads):
            p.grad = g.detach()
        opt.step()
    return RunResult(seed=seed, beta=beta, rho=rho, eps=eps, lr=lr, penalty=penalty, log=log,
                     checkpoints=kept, n_params=sum(p.numel() for p in params))

"""The implicit bias of a configured ``torch.optim`` optimizer on a real model.

:func:`implicit_correction` reads the optimizer (:func:`~modeq.numeric.torch_optim.from_torch`:
the exact update torch performs, ``h`` = its ``lr``), derives its modified flow to order 1 and
evaluates the first correction ``h F1`` at the current parameters, matrix-free: the emit
layer's form of ``F1`` with autograd's Hessian-vector products
(:mod:`modeq.numeric.torch_flow`), never a dense Hessian.  Convention: the flow is
``dθ/dt = -(F0 + h F1)``; vectors are lists of tensors shaped like the parameters.

:class:`ImplicitCorrectionLogger` records the size of the correction during training.
"""
from __future__ import annotations

import torch

__all__ = ["implicit_correction", "ImplicitCorrectionLogger"]

_FLOWS = {}


def _flow(declaration):
    key = (declaration.name, str(declaration.step), tuple(s.describe() for s in declaration.states))
    if key not in _FLOWS:
        from modeq.symbolic import derive
        _FLOWS[key] = derive(declaration, 1)
    return _FLOWS[key]


def implicit_correction(optimizer, loss, params=None, stationary=True, n=None):
    """``h F1`` of ``optimizer``'s modified flow at the current parameters: a list of tensors
    shaped like ``params`` (default: every parameter of the optimizer's param groups).

    ``stationary=True`` (default) is the ``n -> oo`` flow; ``stationary=False, n=k`` the flow
    exact in the step index.  Param groups must share one configuration.

    >>> import torch
    >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    >>> opt = torch.optim.SGD([w], lr=0.1)
    >>> loss = (w ** 4).sum() / 4                  # h F1 = (h/2) H g for gradient descent
    >>> [round(v, 6) for v in implicit_correction(opt, loss)[0].tolist()]
    [0.15, -4.8]
    """
    from .torch_flow import flow_correction
    from .torch_optim import from_torch
    declaration, values = from_torch(optimizer)
    if params is None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
    params = list(params)
    if not params:
        raise ValueError("params is empty")
    return flow_correction(_flow(declaration), loss, params, stationary=stationary, n=n,
                           **values)


class ImplicitCorrectionLogger:
    """Records ``‖h F1‖`` (Euclidean, over all parameters) and ``‖∇E‖`` each time it is called
    with the current loss: ``logger(loss)`` during training, ``logger.history`` afterwards.

    >>> import torch
    >>> w = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    >>> log = ImplicitCorrectionLogger(torch.optim.SGD([w], lr=0.1))
    >>> log((w ** 2).sum() / 2)["correction_norm"]
    0.05
    """

    def __init__(self, optimizer, params=None):
        self.optimizer, self.params = optimizer, params
        self.history = []

    def __call__(self, loss):
        params = self.params or [p for g in self.optimizer.param_groups for p in g["params"]]
        corr = implicit_correction(self.optimizer, loss, params)
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        entry = {"correction_norm": float(torch.sqrt(sum((c * c).sum() for c in corr))),
                 "grad_norm": float(torch.sqrt(sum((g * g).sum() for g in grads
                                                   if g is not None)))}
        self.history.append(entry)
        return entry

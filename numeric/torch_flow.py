"""Derived flows on torch models, matrix-free: autograd callbacks for the emit layer's forms.

Every full-batch term ``F_r`` has a matrix-free form (:mod:`modeq.symbolic.emit.forms`):
componentwise expressions in the gradient ``g`` and contractions ``H.u``, ``T[u, w]``.  This
module supplies the callbacks that form needs, from autograd on a scalar loss:

* ``g``          -> the flat gradient ``∇E`` (kept with its graph);
* ``hvp(u)``     -> one Hessian-vector product ``∂/∂θ (∇E · u)``;
* ``d3(u, w)``   -> a nested one ``∂/∂θ ((∂/∂θ (∇E · w)) · u)``;

and :class:`~modeq.symbolic.emit.matrixfree.MatrixFreeFunction` does the rest (one compiled
kernel per nesting level).  The cost is one HVP per ``H·u`` node and two per ``T[u, w]`` node,
never a dense Hessian.  Memory sums must be in closed form (use the stationary flow, or the
exact one where its sums close, e.g. bias-corrected Adam to order 1).

Convention (the package's, for every torch function): ``flow_field(...)`` returns the
right-hand side ``d theta/dt = -(F0 + h F1 + ...)``; ``flow_terms`` returns ``[F0, F1, ...]``;
``flow_correction`` returns ``h F1 + h^2 F2 + ...``; each vector is a list of tensors shaped like
``params``.
"""
from __future__ import annotations

import torch

from modeq.symbolic.emit import (BlockwiseFunction, MatrixFreeFlow, MatrixFreeFunction,
                                 flow_forms)
from modeq.symbolic.memo import Memo

__all__ = ["flow_terms", "flow_field", "flow_correction", "blockwise_correction",
           "correction_function", "AutogradCallbacks"]


def _check_params(params):
    params = list(params)
    if not params:
        raise ValueError("params is empty")
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"params[{i}] is not a tensor")
        if not p.is_floating_point():
            raise TypeError(f"params[{i}] has dtype {p.dtype}; a floating dtype is needed")
        if not p.requires_grad:
            raise ValueError(f"params[{i}] does not require grad")
    return params


class AutogradCallbacks:
    """``g``, ``theta`` (flat, detached), ``hvp(u)`` and ``d3(u, w)`` of a scalar torch loss at
    the current ``params``; vectors are flat, in ``params`` order."""

    def __init__(self, loss, params):
        self.params = _check_params(params)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError("loss must be a scalar tensor")
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        self._g = torch.cat([torch.zeros_like(p).reshape(-1) if x is None else x.reshape(-1)
                             for x, p in zip(grads, self.params)])
        self.g = self._g.detach()
        self._hw = {}

    @property
    def theta(self):
        """The flat parameters (detached)."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def _flat_grad(self, scalar, create_graph):
        if not scalar.requires_grad:               # the loss is at most linear in params
            return torch.zeros_like(self.g)
        parts = torch.autograd.grad(scalar, self.params, create_graph=create_graph,
                                    retain_graph=True, allow_unused=True)
        return torch.cat([torch.zeros_like(p).reshape(-1) if d is None else d.reshape(-1)
                          for p, d in zip(self.params, parts)])

    def split(self, flat):
        """A flat vector as a list of tensors shaped like ``params``."""
        out, k = [], 0
        for p in self.params:
            out.append(flat[k:k + p.numel()].view_as(p))
            k += p.numel()
        return out

    def hvp(self, u, create_graph=False):
        """``H u``."""
        return self._flat_grad(torch.dot(self._g, u.detach()), create_graph)

    def d3(self, u, w):
        """``T[u, w]``, with ``H w`` kept (and its graph) for every ``w`` seen."""
        key = id(w)
        if key not in self._hw:
            self._hw[key] = (w, self.hvp(w, create_graph=True))
        return self._flat_grad(torch.dot(self._hw[key][1], u.detach()), False)

    def evaluate(self, function, n=None):
        """``function(g, hvp, d3, theta, n)`` for a matrix-free function."""
        theta = self.theta if function.uses_theta else None
        return function(self.g, self.hvp, self.d3, theta, n).detach()


_COMPILED = Memo(limit=65)


def _compiled(flow, what, stationary, dtype, values, build):
    """``build()`` once per flow object, kind of function, variant, dtype and values."""
    key = (what, bool(stationary), str(dtype),
           tuple(sorted((k, str(v)) for k, v in values.items())))
    return _COMPILED.get(key, build, flow)


def flow_terms(flow, loss, params, stationary=True, n=None, **values):
    """``[F0, F1, ...]`` of ``flow`` at the current ``params`` (each a list shaped like
    ``params``)."""
    cb = AutogradCallbacks(loss, params)
    values = {k: v for k, v in values.items() if k != "h"}

    def build():
        return [MatrixFreeFunction([f], [1], "torch", cb.g.dtype, True,
                                   {k: v for k, v in values.items()
                                    if k in {str(s) for s in f.hyperparameters}})
                for f in flow_forms(flow, stationary)]

    functions = _compiled(flow, "terms", stationary, cb.g.dtype, values, build)
    return [cb.split(cb.evaluate(f, n if f.uses_n else None)) for f in functions]


def flow_field(flow, loss, params, stationary=True, n=None, **values):
    """``d theta/dt = -(F0 + h F1 + h^2 F2 ...)`` at the current ``params`` (a list shaped like
    ``params``)."""
    cb = AutogradCallbacks(loss, params)
    function = _compiled(flow, "field", stationary, cb.g.dtype, values,
                         lambda: MatrixFreeFlow(flow, stationary).lambdify(
                             "torch", cb.g.dtype, True, **values))
    return cb.split(cb.evaluate(function, n if function.uses_n else None))


def blockwise_correction(flow, loss, blocks, stationary=True, n=None):
    """:func:`flow_correction` where the parameters come in ``blocks = [(values, params),
    ...]``, each block's values of the flow's per-component constants on its own components
    (param groups of different settings: :class:`~modeq.symbolic.emit.BlockwiseFunction`); a
    list shaped like the concatenated ``params``."""
    params = [p for _, ps in blocks for p in ps]
    cb = AutogradCallbacks(loss, params)
    functions = [correction_function(flow, stationary, cb.g.dtype, **values)
                 for values, _ in blocks]
    bounds, start = [], 0
    for _, ps in blocks:
        stop = start + sum(p.numel() for p in ps)
        bounds.append((start, stop))
        start = stop
    function = BlockwiseFunction(functions, bounds)
    return cb.split(cb.evaluate(function, n if function.uses_n else None))


def correction_function(flow, stationary, dtype, **values):
    """The compiled matrix-free ``h F1 + h^2 F2 ...`` of ``flow`` for tensors of ``dtype``
    (cached per flow, variant and values); evaluate it with :meth:`AutogradCallbacks.evaluate`."""
    return _compiled(flow, "correction", stationary, dtype, values,
                     lambda: MatrixFreeFlow(flow, stationary).correction(
                         "torch", dtype, True, **values))


def flow_correction(flow, loss, params, stationary=True, n=None, **values):
    """``h F1 + h^2 F2 ...`` (the terms beyond the limiting flow, with the sign of ``F``) at the
    current ``params``: a list of tensors shaped like ``params``, detached."""
    cb = AutogradCallbacks(loss, params)
    function = correction_function(flow, stationary, cb.g.dtype, **values)
    return cb.split(cb.evaluate(function, n if function.uses_n else None))

"""Matrix-free evaluation of derived flows on torch models (any order the engine derives).

The component algebra of :mod:`modeq.symbolic.operators` maps directly onto autograd:

* ``g``          -> the flat gradient ``∇E`` (kept with its graph);
* ``H·u``        -> one Hessian-vector product ``∂/∂θ (∇E · u)``;
* ``T[u, w]``    -> a nested one ``∂/∂θ ((∂/∂θ (∇E · w)) · u)``;
* componentwise functions -> elementwise torch operations.

Arguments of the operators are *values* (the operators differentiate the loss, never their
arguments), so they are detached before each product: the cost is one HVP per ``H·u`` node and
two per ``T[u, w]`` node, never a dense Hessian.  Memory sums must be in closed form (use the
stationary flow, or the exact one where its sums close, e.g. bias-corrected Adam to order 1).

Convention: ``flow_field(...)`` returns ``d theta/dt = -(F0 + h F1 + ...)``; ``flow_terms``
returns ``[F0, F1, ...]``, each flattened over all parameters in ``params`` order.
"""
from __future__ import annotations

import sympy as sp
import torch

from modeq.symbolic.emit.values import resolve_values
from modeq.symbolic.family import h as h_sym, n as n_sym, theta as theta_sym
from modeq.symbolic.operators import D3, FULL, Grad, Hess

__all__ = ["flow_terms", "flow_field", "TorchFlowEvaluator"]

_FUNCS = {sp.exp: torch.exp, sp.log: torch.log, sp.tanh: torch.tanh, sp.sin: torch.sin,
          sp.cos: torch.cos, sp.cosh: torch.cosh, sp.sinh: torch.sinh, sp.atan: torch.atan}


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


class TorchFlowEvaluator:
    """Evaluate component expressions at the current parameters of a torch loss."""

    def __init__(self, loss, params):
        self.params = _check_params(params)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError("loss must be a scalar tensor")
        grads = torch.autograd.grad(loss, self.params, create_graph=True)
        self.g = torch.cat([x.reshape(-1) for x in grads])
        self.theta = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.dtype, self.device = self.g.dtype, self.g.device
        self._memo = {}
        self._hw = {}

    def _flat_grad(self, scalar, create_graph):
        parts = torch.autograd.grad(scalar, self.params, create_graph=create_graph,
                                    retain_graph=True, allow_unused=True)
        return torch.cat([torch.zeros_like(p).reshape(-1) if d is None else d.reshape(-1)
                          for p, d in zip(self.params, parts)])

    def hvp(self, u, create_graph=False):
        return self._flat_grad(torch.dot(self.g, u.detach()), create_graph)

    def third(self, u, w):
        key = id(w)
        if key not in self._hw:
            self._hw[key] = (w, self.hvp(w, create_graph=True))
        hw = self._hw[key][1]
        return self._flat_grad(torch.dot(hw, u.detach()), False)

    def evaluate(self, expr):
        expr = sp.sympify(expr)
        if expr in self._memo:
            return self._memo[expr]
        out = self._eval(expr)
        self._memo[expr] = out
        return out

    def _const(self, x):
        return torch.tensor(float(x), dtype=self.dtype, device=self.device)

    def _eval(self, e):
        if e.is_Number:
            return self._const(e)
        if isinstance(e, Grad):
            if e.args[0] != FULL:
                raise ValueError("mini-batch expressions are not supported by the torch path")
            return self.g.detach()
        if e == theta_sym:
            return self.theta
        if isinstance(e, Hess):
            return self.hvp(self.evaluate(e.args[1]))
        if isinstance(e, D3):
            return self.third(self.evaluate(e.args[1]), self.evaluate(e.args[2]))
        if isinstance(e, sp.Add):
            out = self.evaluate(e.args[0])
            for a in e.args[1:]:
                out = out + self.evaluate(a)
            return out
        if isinstance(e, sp.Mul):
            out = self.evaluate(e.args[0])
            for a in e.args[1:]:
                out = out * self.evaluate(a)
            return out
        if isinstance(e, sp.Pow):
            base, ex = e.args
            b = self.evaluate(base)
            if ex == sp.Rational(1, 2):
                return torch.sqrt(b)
            if ex == -sp.Rational(1, 2):
                return torch.rsqrt(b)
            return b ** float(ex) if not ex.is_Integer else b ** int(ex)
        if isinstance(e, sp.Function) and e.func in _FUNCS:
            return _FUNCS[e.func](self.evaluate(e.args[0]))
        if isinstance(e, sp.Sum):
            raise ValueError("a memory sum without closed form: use stationary=True")
        if e.free_symbols:
            raise ValueError(f"no value for symbol(s) {sorted(map(str, e.free_symbols))}")
        return self._const(sp.N(e, 20))


def _prepared_terms(flow, stationary, n, values):
    subs = resolve_values(flow, values)
    terms = flow.terms("full", stationary)
    if not stationary:
        if n is None:
            raise ValueError("give the step index n, or stationary=True")
        subs[n_sym] = sp.Integer(int(n))
    return [t.xreplace(subs).doit() for t in terms], subs


def flow_terms(flow, loss, params, stationary=True, n=None, **values):
    """``[F0, F1, ...]`` of ``flow`` at the current ``params`` (flat tensors)."""
    terms, _ = _prepared_terms(flow, stationary, n, values)
    ev = TorchFlowEvaluator(loss, params)
    return [ev.evaluate(t).detach() for t in terms]


def flow_field(flow, loss, params, stationary=True, n=None, **values):
    """``d theta/dt = -(F0 + h F1 + h^2 F2 ...)`` at the current ``params`` (flat tensor)."""
    terms, subs = _prepared_terms(flow, stationary, n, values)
    ev = TorchFlowEvaluator(loss, params)
    h = float(subs.get(h_sym, 0))
    out = torch.zeros_like(ev.theta)
    for r, t in enumerate(terms):
        out = out - (h ** r) * ev.evaluate(t)
    return out.detach()

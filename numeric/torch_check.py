"""Derived flows checked against torch's own iterates: an order study whose "iterates" are
``torch.optim``'s, run in float64 on a small smooth problem, and whose flows are the ones derived
from :func:`~modeq.numeric.torch_optim.from_torch` integrated in high precision (mpmath).

The discrepancy ``max_n |theta_torch^(n) - theta(nh)|`` must fall like ``h^(r+1)`` for the flow
of order ``r``; the verdicts are :func:`~modeq.numeric.study.judge.judge_order`'s (pass / fail /
unresolved), with torch's float64 rounding (``N`` steps of relative size ``2^-52``) and the
integrator's estimate as the floor a discrepancy must clear.  Param groups of different
settings (``split=``): one tensor per group, the merged declaration's constants per component.
"""
from __future__ import annotations

import math

import mpmath
import sympy as sp
import torch

from modeq.symbolic.emit import Kernel
from .integrate import method_for
from .study.fields import FieldFactory
from .study.judge import judge_order, memory_span, tolerances
from .study.run import flow_point
from .torch_optim import from_torch, from_torch_merged

__all__ = ["torch_iterates", "torch_order_study"]

FLOAT64_UNIT = 2.0 ** -52


def torch_iterates(make_optimizer, loss, params, theta0, lr, steps, schedule=None, split=None):
    """``[theta^(0), ..., theta^(steps)]`` of ``make_optimizer(tensors, lr)`` (float64) on the
    SymPy ``loss`` in ``params``; a list of losses is mini batch: step ``k`` uses
    ``loss[schedule[k]]`` (cyclic when ``schedule`` is ``None``).  ``tensors`` is one flat
    parameter tensor, or with ``split`` (sizes summing to ``len(params)``) one tensor per size,
    the components in order (param groups: ``make_optimizer`` puts them in its groups)."""
    losses = list(loss) if isinstance(loss, (list, tuple)) else [loss]
    kernels = [Kernel([E], list(params), "torch", torch.float64) for E in losses]
    tensors = _tensors(theta0, split)
    opt = make_optimizer(tensors, lr)
    out = [torch.cat([t.detach() for t in tensors])]
    for k in range(steps):
        b = k % len(losses) if schedule is None else schedule[k]
        opt.zero_grad()
        E = kernels[b](*[t[i] for t in tensors for i in range(t.numel())])[0]
        E.backward()
        opt.step()
        out.append(torch.cat([t.detach() for t in tensors]))
    return out


def _bounds(split, p):
    """``[(start, stop)]`` of the tensors: ``[(0, p)]`` without ``split``."""
    sizes = [p] if split is None else [int(k) for k in split]
    if any(k < 1 for k in sizes) or sum(sizes) != p:
        raise ValueError(f"split must be positive sizes summing to the {p} parameters, "
                         f"got {tuple(split)}")
    ends = [sum(sizes[:i + 1]) for i in range(len(sizes))]
    return list(zip([0, *ends[:-1]], ends))


def _tensors(theta0, split):
    return [torch.tensor([float(t) for t in theta0[a:b]], dtype=torch.float64,
                         requires_grad=True) for a, b in _bounds(split, len(theta0))]


def _read(make_optimizer, p, lr, split):
    """``(declaration, values)`` of the optimizer ``make_optimizer`` builds, ``h`` left out;
    with ``split``, one declaration for its param groups
    (:func:`~modeq.numeric.torch_optim.from_torch_merged`) and, for a constant that differs
    between them, one value per component (its group's)."""
    probe = _tensors([0] * p, split)
    opt = make_optimizer(probe, lr)
    for group in opt.param_groups:
        for q in group["params"]:
            if q.dtype != torch.float64:
                raise TypeError(f"check runs need float64 parameters, got {q.dtype}")
    if split is None:
        decl, values = from_torch(opt)
        return decl, {k: v for k, v in values.items() if k != "h"}
    decl, groups = from_torch_merged(opt)
    bounds, owner = _bounds(split, p), [None] * p
    for g in groups:
        for q in g.params:
            i = next((i for i, t in enumerate(probe) if t is q), None)
            if i is None:
                raise ValueError("make_optimizer must put the tensors it is given in its "
                                 "param groups")
            a, b = bounds[i]
            owner[a:b] = [g] * (b - a)
    if None in owner:
        raise ValueError("make_optimizer left a tensor out of its param groups")
    if groups[0].values["h"] != lr:
        raise ValueError(f"the largest lr of the param groups must be the lr given to "
                         f"make_optimizer ({lr}), got {groups[0].values['h']}")
    values = {}
    for k in groups[0].values:
        per = [g.values[k] for g in owner]
        if k != "h":
            values[k] = per[0] if len(set(per)) == 1 else per
    return decl, values


def torch_order_study(make_optimizer, loss, params, theta0, T=1, hs=None, orders=(0, 1),
                      dps=30, substeps=1, tol=None, schedule=None, method="auto", refine=True,
                      split=None):
    """``{order: OrderResult}``: torch's iterates against the derived flows.

    ``make_optimizer(params, lr)`` builds the configured ``torch.optim`` instance (e.g.
    ``lambda p, lr: torch.optim.AdamW(p, lr=lr, weight_decay=0.2)``); it must produce float64
    runs (a float32 parameter is refused: its rounding would hide the orders).  ``loss`` a
    list of batch losses: mini batch, step ``k`` on ``loss[schedule[k]]`` (cyclic by default),
    in torch's run and in the derived flows alike.  Each flow is integrated and judged as in
    :func:`~modeq.numeric.study.order_study` (:func:`~modeq.numeric.study.run.flow_point`:
    ``method`` per order, ``substeps`` to start with, raised while the integrator's estimate
    is the floor), the floor's rounding part being torch's (``4 N 2^-52`` times the iterates'
    scale).

    Param groups: with ``split`` (sizes summing to ``len(params)``) ``make_optimizer`` gets one
    tensor per size and puts them in its param groups; the flows are those of one declaration
    whose constants that differ between the groups take each group's value on its own
    components (:func:`~modeq.numeric.torch_optim.from_torch_merged`; full batch, with the
    memory sums in closed form).  The largest ``lr`` of the groups must be the one given.
    """
    hs = [sp.Rational(1, 2 ** k) for k in (3, 4, 5, 6)] if hs is None else \
        [sp.Rational(h) for h in hs]
    decl, values = _read(make_optimizer, len(params), float(hs[0]), split)
    if schedule is not None and len(schedule) < T / hs[-1]:
        raise ValueError(f"schedule must have at least T/h = {int(T / hs[-1])} entries for "
                         f"the smallest h, got {len(schedule)}")
    factory = FieldFactory(decl, loss, params, schedule=schedule, **values)
    tols = tolerances(tol)
    points = {r: [] for r in orders}
    with mpmath.workdps(dps):
        start = [mpmath.mpf(sp.Rational(t).p) / sp.Rational(t).q for t in theta0]
        for h in hs:
            N = int(math.floor(T / h))
            its = torch_iterates(make_optimizer, loss, params, theta0, float(h), N, schedule,
                                 split)
            its = [[mpmath.mpf(float(x)) for x in th] for th in its]
            scale = max(1.0, max(abs(float(x)) for th in its for x in th))

            def rounding(flow_scale, N=N, scale=scale):
                return 4 * FLOAT64_UNIT * N * scale, "of torch's float64 iterates"
            for r in orders:
                points[r].append(flow_point(factory(r, h), start, h, its,
                                            method_for(r, method), substeps, refine, rounding))
    memory = memory_span(decl, values)
    return {r: judge_order(r, points[r], tols[r], memory=memory) for r in orders}

"""Derived flows checked against torch's own iterates: an order study whose "iterates" are
``torch.optim``'s, run in float64 on a small smooth problem, and whose flows are the ones derived
from :func:`~modeq.numeric.torch_optim.from_torch` integrated in high precision (mpmath).

The discrepancy ``max_n |theta_torch^(n) - theta(nh)|`` must fall like ``h^(r+1)`` for the flow
of order ``r``; the verdicts are :func:`~modeq.numeric.study.judge.judge_order`'s (pass / fail /
unresolved), with torch's float64 rounding (``N`` steps of relative size ``2^-52``) and the
integrator's estimate as the floor a discrepancy must clear.
"""
from __future__ import annotations

import math

import mpmath
import sympy as sp
import torch

from modeq.symbolic.emit import Kernel
from .integrate import method_for
from .study.fields import FieldFactory
from .study.judge import judge_order, tolerances
from .study.run import flow_point
from .torch_optim import from_torch

__all__ = ["torch_iterates", "torch_order_study"]

FLOAT64_UNIT = 2.0 ** -52


def torch_iterates(make_optimizer, loss, params, theta0, lr, steps, schedule=None):
    """``[theta^(0), ..., theta^(steps)]`` of ``make_optimizer([w], lr)`` (float64, one flat
    parameter tensor ``w``) on the SymPy ``loss`` in ``params``; a list of losses is mini
    batch: step ``k`` uses ``loss[schedule[k]]`` (cyclic when ``schedule`` is ``None``)."""
    losses = list(loss) if isinstance(loss, (list, tuple)) else [loss]
    kernels = [Kernel([E], list(params), "torch", torch.float64) for E in losses]
    w = torch.tensor([float(t) for t in theta0], dtype=torch.float64, requires_grad=True)
    opt = make_optimizer([w], lr)
    out = [w.detach().clone()]
    for k in range(steps):
        b = k % len(losses) if schedule is None else schedule[k]
        opt.zero_grad()
        E = kernels[b](*w)[0]
        E.backward()
        opt.step()
        out.append(w.detach().clone())
    return out


def torch_order_study(make_optimizer, loss, params, theta0, T=1, hs=None, orders=(0, 1),
                      dps=30, substeps=1, tol=None, schedule=None, method="auto", refine=True):
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
    """
    hs = [sp.Rational(1, 2 ** k) for k in (3, 4, 5, 6)] if hs is None else \
        [sp.Rational(h) for h in hs]
    probe = torch.zeros(len(params), dtype=torch.float64, requires_grad=True)
    decl, values = from_torch(make_optimizer([probe], float(hs[0])))
    for group in make_optimizer([probe], float(hs[0])).param_groups:
        for p in group["params"]:
            if p.dtype != torch.float64:
                raise TypeError(f"check runs need float64 parameters, got {p.dtype}")
    values = {k: v for k, v in values.items() if k != "h"}
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
            its = torch_iterates(make_optimizer, loss, params, theta0, float(h), N, schedule)
            its = [[mpmath.mpf(float(x)) for x in th] for th in its]
            scale = max(1.0, max(abs(float(x)) for th in its for x in th))

            def rounding(flow_scale, N=N, scale=scale):
                return 4 * FLOAT64_UNIT * N * scale, "of torch's float64 iterates"
            for r in orders:
                points[r].append(flow_point(factory(r, h), start, h, its,
                                            method_for(r, method), substeps, refine, rounding))
    return {r: judge_order(r, points[r], tols[r]) for r in orders}

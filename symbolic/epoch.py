"""Epoch flows: the modified flow of one epoch of mini batches, averaged over the batch orders.

Setting (docs/conventions.md §1-§3, per-step time).  ``m`` batch losses ``E_0 .. E_{m-1}``,
``C = (1/m) sum_b E_b``.  One *epoch* is ``m`` steps of the optimizer that use every batch
once, in the order ``pi`` (a permutation of ``0..m-1``); the epoch map is
``Phi_pi: theta^(em) -> theta^((e+1)m)``.  Time runs ``h`` per step, so one epoch is time ``m h``.

*Random reshuffling* draws the orders of the epochs independently and uniformly.  For a
memoryless step the **averaged epoch map** is ``Psi = E_pi[Phi_pi]`` (the mean over the ``m!``
orders of the iterate after one epoch from a fixed start).  With memory the state is not a
function of ``theta``; the averaged object is then the one-epoch increment of the mean iterate,
``E[theta^((e+1)m)] - E[theta^(em)]`` as a function of ``E[theta^(em)]``, over the independent
orders of the current and all past epochs, in the stationary regime (the memory started
infinitely long ago: bias corrections and transients gone); see :mod:`epoch_memory`.  The
**epoch flow** of order ``r`` is the autonomous field ``F = F0 + h F1 + ... + h^r F_r`` such
that ``d theta/dt = -F`` over time ``m h`` reproduces that map through ``h^(r+1)``:

    exp(m h L_{-F}) theta - theta = Psi(theta) - theta + O(h^(r+2)).

The average is taken of the map (of the iterates), never inside a nonlinear step: for a step
nonlinear in order-dependent states (Adam's ``m / sqrt(v + eps)``) already ``F0`` is the mean of
a nonlinear function of the order-dependent weights, which has no finite closed form; it is
expanded in the spread of the batches instead (:mod:`epoch_adaptive`).

It is derived here, never typed in: the epoch displacement is expanded as a power series in
``h`` in the component algebra (:mod:`operators`, batch ``b`` written ``Grad(b)``,
``Hess(b, u)``, ``D3(b, u, w)``), averaged over the orders exactly, and matched with the flow's
Lie series over time ``m h`` (:func:`~.solve.flow_step_coefficients` applied to ``m F``, since
``exp(m h L_{-F}) = exp(h L_{-mF})``): the ``h^(r+1)`` coefficient is
``-m F_r + R_r(m F_0, .., m F_{r-1})``, so ``F_r = (R_r - E[d_{r+1}]) / m``.

Two derivations, by the kind of optimizer:

* **memoryless** steps ``theta <- theta - h psi(g_b, theta)`` (GD/SGD, any componentwise ``psi``):
  the ``m`` step maps are composed exactly as series in ``h`` with symbolic batch slots
  (:func:`epoch_displacement`), then every order of the slots is substituted and the results
  averaged (all ``m!`` orders, or the one fixed order when not reshuffled).  Orders 0, 1, 2.
* **linear memory** (heavy-ball, Nesterov-type ``g + mu b``: the step and every state's input are
  linear in ``g`` and the states, no ``theta``; :mod:`epoch_memory`): stationary, order 0 and 1.
* **adaptive steps** (Adam, RMSProp: a step ``psi(g, states)`` nonlinear in EMAs of functions of
  ``g``; :mod:`epoch_adaptive`): stationary, ``F0`` through the second moments of the batch
  spread (``O(spread^3)`` dropped), ``F1`` its noise-free part (``O(h spread^2)`` not derived);
  :attr:`EpochFlow.expansion` says so.

Why the mean map is the right object.  For memoryless steps the epoch maps differ from their
mean by ``O(h^2)`` (the ``h`` term ``-h sum_b psi_b`` does not depend on the order), so the mean
of ``K`` independent epochs differs from ``Psi^K`` by ``O(h^5)`` per epoch: the order-2 epoch
flow tracks the mean iterate to ``O(h^3)`` on a fixed horizon.  With memory the iterates spread
by ``O(h)`` over the orders: the first moment (the current point correlated with the past
orders) is part of ``F1`` (:mod:`epoch_memory`), the second enters at ``O(h^3)`` per epoch, so
the order-1 flow tracks the mean iterate to ``O(h^2)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import permutations

import sympy as sp

from .components import LossProvider, check_loss, lower_vector
from .epoch_adaptive import EXPANSION_NOTE, adaptive_terms
from .epoch_memory import MAX_MEMORY_ORDER, linear_memory_reason, memory_displacement
from .family import g, h
from .memo import Memo
from .expand import expand_mul
from .operators import D3, Grad, Hess, collect_fields, lie, linearize
from .solve import flow_step_coefficients

__all__ = ["EpochFlow", "epoch_flow", "epoch_terms", "epoch_displacement", "slot_symbols",
           "match_epoch", "check_epoch_inputs", "expansion_of", "MAX_EPOCH_ORDER", "MAX_MEMORY_ORDER"]

MAX_EPOCH_ORDER = 2        # memoryless steps: D3 is the highest derivative needed


@dataclass
class EpochFlow:
    """The epoch flow of ``optimizer`` with ``m`` batches (see the module docstring).

    ``terms[r]`` is ``F_r`` in the component algebra (``Grad(b)`` the gradient of batch ``b``);
    the flow is ``d theta/dt = -(F0 + h F1 + ...)``, time ``h`` per step, ``m h`` per epoch.
    ``displacement[p]`` is the ``h^p`` coefficient of ``Psi(theta) - theta`` (averaged; for
    adaptive steps only ``p = 1``: the ``h^2`` coefficient implied by ``F1`` is a Lie series of a
    large ``F0`` and is not formed).
    ``reshuffle=False``: the one fixed order ``0, 1, .., m-1`` repeated (cyclic), no average.
    ``expansion``: ``None`` when the terms are exact in the batches; otherwise what an expansion
    in the batch spread dropped (adaptive steps, :mod:`epoch_adaptive`)."""
    optimizer: object
    m: int
    order: int
    reshuffle: bool
    terms: list
    displacement: dict = field(default_factory=dict)
    losses: list = None
    params: list = None
    notes: list = field(default_factory=list)
    expansion: str = None

    @property
    def epoch_time(self):
        """The flow time of one epoch, ``m h``."""
        return self.m * h

    def F(self):
        """``F = F0 + h F1 + ...`` as one component expression."""
        return sp.Add(*[h ** r * f for r, f in enumerate(self.terms)])

    def field(self, losses=None, params=None):
        """``d theta/dt = -F(theta)`` as a SymPy column ``Matrix`` for the concrete losses
        (batch ``b`` is ``losses[b]``; by default the losses the flow was made for)."""
        losses = self.losses if losses is None else losses
        params = self.params if params is None else params
        if losses is None or params is None:
            raise ValueError("give the losses and params to lower the epoch flow to")
        check_epoch_inputs(losses, params, self.reshuffle, m=self.m)
        return -lower_vector(self.F(), LossProvider(list(losses), params))

    def __repr__(self):
        kind = "reshuffled" if self.reshuffle else "cyclic"
        return (f"EpochFlow({getattr(self.optimizer, 'name', '?')!r}, m={self.m}, "
                f"order={self.order}, {kind})")


def check_epoch_inputs(losses, params, reshuffle, m=None):
    """Validate ``losses`` (a non-empty list of smooth scalar losses in ``params``, at least two
    when reshuffled) and ``reshuffle`` (a bool): ``ValueError``/``TypeError`` naming the
    parameter."""
    if not isinstance(reshuffle, bool):
        raise TypeError(f"reshuffle must be True or False, got {reshuffle!r}")
    if not isinstance(losses, (list, tuple)):
        raise TypeError(f"losses must be a list of batch losses (one SymPy expression per "
                        f"batch), got {type(losses).__name__}")
    if len(losses) == 0:
        raise ValueError("losses is empty: an epoch needs at least one batch loss")
    if reshuffle and len(losses) < 2:
        raise ValueError("reshuffle=True needs at least 2 batches in losses (got 1): with one "
                         "batch every order is the same; that epoch is one full-batch step "
                         "(use reshuffle=False or derive(...).field(E, params))")
    if m is not None and len(losses) != m:
        raise ValueError(f"losses has {len(losses)} batches; this epoch flow is for m = {m}")
    return [check_loss(E, params, f"losses[{i}]") for i, E in enumerate(losses)]


def slot_symbols(m):
    """The symbolic batch slots ``s_0 .. s_{m-1}`` of the steps of one epoch."""
    return [sp.Symbol(f"slot_{i}", integer=True, nonnegative=True) for i in range(m)]


def _h_coeffs(expr, top):
    """``[c_0, .., c_top]``: the coefficients of ``h^p`` of a component expression polynomial
    in ``h`` (scalar factors pulled out of the operators first)."""
    e = expand_mul(linearize(sp.sympify(expr)))
    out = [[] for _ in range(top + 1)]
    for term in sp.Add.make_args(e):
        c, dep = term.as_independent(h, as_Add=False)
        base, p = dep.as_base_exp()
        if dep == 1:
            p = 0
        elif base != h or not p.is_Integer:
            raise ValueError(f"epoch expansion: {term} is not polynomial in h")
        if p <= top:
            out[int(p)].append(c)
    return [sp.Add(*t) for t in out]


def _taylor(q, delta, top):
    """``q(theta + delta)`` through ``h^top``, ``delta = sum_p h^p delta[p]`` (``delta[0] = 0``)
    frozen at the base point: ``sum_k D^k q[delta, .., delta] / k!``.  ``D^k q`` is the
    ``k``-fold Lie derivative along a constant direction (a fresh tag whose own derivatives
    ``Hess(tag, .)``, ``D3(tag, ., .)`` are dropped)."""
    tag = sp.Dummy("dir")
    d = Grad(tag)
    dser = sp.Add(*[h ** p * c for p, c in enumerate(delta) if p])
    total, cur = q, q
    for k in range(1, top + 1):
        cur = lie(cur, d)
        frozen = cur.replace(lambda x: isinstance(x, (Hess, D3)) and x.args[0] == tag,
                             lambda x: sp.S.Zero)
        total += frozen.xreplace({d: dser}) / math.factorial(k)
    return _h_coeffs(total, top)


def epoch_displacement(step, slots, top):
    """``[0, d_1, .., d_top]``: the ``h^p`` coefficients of ``theta_m - theta_0`` for the memoryless
    step ``theta <- theta - h psi(g_b, theta)`` applied with the batches ``slots`` in turn, all
    expanded at ``theta_0`` (component expressions in ``Grad(slot)``, ``Hess(slot, .)``, ...)."""
    delta = [sp.S.Zero] * (top + 1)
    for b in slots:
        psi = step.xreplace({g: Grad(b)})
        ps = _taylor(psi, delta, top - 1)
        delta = [sp.S.Zero] + [delta[p] - ps[p - 1] for p in range(1, top + 1)]
    return delta


def _average(exprs, slots, orders):
    """The mean over ``orders`` (tuples of batch indices) of ``exprs`` with the slots filled."""
    out = []
    for e in exprs:
        acc = sp.Add(*[e.xreplace(dict(zip(slots, map(sp.Integer, o)))) for o in orders])
        out.append(collect_fields(linearize(acc / len(orders))))
    return out


def _average_over_permutations(exprs, slots, m):
    """The mean over all ``m!`` orders of ``exprs`` with the slots filled, at the cost of the
    slots a term reads: a term reading ``r`` distinct slots takes, over a uniform permutation,
    every ordered ``r``-tuple of distinct batches equally often, so its mean is the mean over
    those ``m!/(m-r)!`` tuples (``r <= order + 2``; no sum over all ``m!`` orders)."""
    out = []
    for e in exprs:
        groups = {}
        for term in sp.Add.make_args(sp.expand(e)):
            key = tuple(sorted(term.free_symbols & set(slots), key=slots.index))
            groups.setdefault(key, []).append(term)
        acc = sp.S.Zero
        for key, part in ((key, sp.Add(*terms)) for key, terms in groups.items()):
            tuples = list(permutations(range(m), len(key)))
            acc += sp.Add(*[part.xreplace(dict(zip(key, map(sp.Integer, t))))
                            for t in tuples]) / len(tuples)
        out.append(collect_fields(linearize(acc)))
    return out


def match_epoch(d, m, order):
    """``[F_0 .. F_order]`` from the averaged displacement ``d[p]`` (``h^p`` coefficients) of one
    epoch of time ``m h``: ``F_r = (R_r(m F_0, .., m F_{r-1}) - d[r+1]) / m``."""
    F = []
    for r in range(order + 1):
        R = flow_step_coefficients([m * f for f in F], r + 1)[r + 1] if r else sp.S.Zero
        F.append(collect_fields(linearize((R - d[r + 1]) / m)))
    return F


def _memoryless_terms(optimizer, m, order, reshuffle):
    slots = slot_symbols(m)
    d = epoch_displacement(optimizer.step, slots, order + 1)
    avg = [sp.S.Zero] + (_average_over_permutations(d[1:], slots, m) if reshuffle
                         else _average(d[1:], slots, [tuple(range(m))]))
    return match_epoch(avg, m, order), {p: avg[p] for p in range(1, order + 2)}


def expansion_of(optimizer):
    """What the epoch flow of ``optimizer`` leaves out (:attr:`EpochFlow.expansion`)."""
    if optimizer.states and linear_memory_reason(optimizer) is not None:
        return EXPANSION_NOTE
    return None


def epoch_terms(optimizer, m, order, reshuffle=True):
    """``(terms, displacement)`` of the epoch flow of ``optimizer`` with ``m`` batches (see
    :class:`EpochFlow`); cached per optimizer object."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"the number of batches m must be an integer >= 1, got {m!r}")
    if reshuffle and m < 2:
        raise ValueError("reshuffle=True needs at least 2 batches (m >= 2)")
    return _EPOCH_TERMS.get((m, order, reshuffle),
                            lambda: _epoch_terms(optimizer, m, order, reshuffle), optimizer)


def _epoch_terms(optimizer, m, order, reshuffle):
    if optimizer.uses_n:
        raise NotImplementedError("epoch flows: the step uses the step index n (a schedule "
                                  "inside the epoch); not covered")
    if not optimizer.states:
        if order > MAX_EPOCH_ORDER:
            raise NotImplementedError(f"epoch flows of memoryless steps are derived to order "
                                      f"{MAX_EPOCH_ORDER}; got order {order}")
        out = _memoryless_terms(optimizer, m, order, reshuffle)
    elif linear_memory_reason(optimizer) is None:
        disp = memory_displacement(optimizer, m, order, reshuffle)
        out = match_epoch(disp, m, order), {p: disp[p] for p in range(1, order + 2)}
    else:
        if not reshuffle:
            raise NotImplementedError(
                "reshuffle=False with memory: the fixed order repeated is the cyclic schedule, "
                "whose per-step flow is ModifiedFlow.field(losses, params, n=...) (mini batch); "
                "its autonomous epoch form is not derived")
        terms = adaptive_terms(optimizer, m, order)
        out = terms, {1: linearize(-m * terms[0])}
    return out


_EPOCH_TERMS = Memo()


def epoch_flow(modified_flow, losses, params, reshuffle=True):
    """The epoch flow (:class:`EpochFlow`) for ``ModifiedFlow.epoch_flow`` at the flow's order."""
    losses = check_epoch_inputs(losses, params, reshuffle)
    terms, disp = epoch_terms(modified_flow.optimizer, len(losses), modified_flow.order,
                              reshuffle)
    notes = ["time h per step: one epoch is time m*h; d theta/dt = -F with F autonomous"]
    if reshuffle:
        notes.append("averaged over the m! orders of each epoch (the mean of the one-epoch "
                     "map); with memory, also over the independent orders of past epochs "
                     "(stationary regime)")
    else:
        notes.append("reshuffle=False: the fixed order 0..m-1 repeated (the cyclic schedule); "
                     "its per-step flow is ModifiedFlow.field(losses, params, n=...)")
    expansion = expansion_of(modified_flow.optimizer)
    if expansion is not None:
        notes.append(expansion)
    return EpochFlow(modified_flow.optimizer, len(losses), modified_flow.order, reshuffle,
                     list(terms), dict(disp), list(losses), list(params), notes, expansion)

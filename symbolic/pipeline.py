"""The pipeline: declaration -> memory -> expansion -> matching -> ``F0, F1, F2``.

:func:`derivation` runs the passes in order for one variant (full batch exact in ``n``, full
batch stationary, mini batch), once per optimizer and variant, and keeps every intermediate
result (for the derivation documents).  :func:`modeq.symbolic.derive` wraps it in a
:class:`~modeq.symbolic.flow.ModifiedFlow`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import sympy as sp

from . import cache
from .batches import check_groupable, grouped_step_terms
from .coefficients import hide, reads_step_index, reveal
from .coupled_decay import plain_of_coupled, shifted_derivation
from .family import Optimizer
from .memo import MISSING, Memo
from .expansion import MAX_ORDER, require_smooth, state_series, step_series
from .solve import flow_step_coefficients, solve_next

__all__ = ["derivation", "Derivation", "grouped_terms", "groupable", "MAX_ORDER",
           "require_stationary_flow"]


@dataclass
class Derivation:
    """All intermediate results of one derivation (component algebra, symbol ``n``).

    ``states[i].raw[r]`` / ``.terms[r]``: the ``h^r`` term of state ``i`` before / after the
    memory sums are evaluated; ``psi[r]``: the ``h^r`` term of the step; ``flow_step[p]``: the
    ``h^p`` coefficient of the flow's own step (with the solved ``F``); ``F[r]``: the solution.
    Where the step's step-index coefficients were held opaque (:mod:`.coefficients`),
    ``coefficients`` maps each ``c_i`` to its definition in ``n`` and ``F_opaque`` is
    ``F[order]`` in the ``c_i`` (what the displays print: written out it does not group).
    ``shift``: ``c`` where the terms are the plain declaration's on the loss
    ``E + c |theta|^2 / 2`` (:mod:`.coupled_decay`; the displays print the plain terms and
    the substitution), else ``None``.
    """
    optimizer: Optimizer
    order: int
    batch: str
    stationary: bool
    states: list = field(default_factory=list)
    psi: list = field(default_factory=list)
    F: list = field(default_factory=list)
    flow_step: dict = field(default_factory=dict)
    coefficients: dict = field(default_factory=dict)
    F_opaque: object = None
    shift: object = None


_DERIVED = Memo()


def derivation(optimizer, order, batch="full", stationary=False):
    """Derive ``F_0..F_order`` for one variant (cached per optimizer object and variant in
    memory, and on disk by the declaration's content: :mod:`.cache`; a coupled weight decay
    of a step reading ``n`` from the plain declaration's, :func:`_derived_by_shift`)."""
    if batch not in ("full", "mini"):
        raise ValueError(f"batch must be 'full' or 'mini', got {batch!r}")
    if batch == "mini" and stationary:
        raise ValueError("a stationary (n -> oo) flow is defined for full batch only")
    if batch == "mini" and order > 1 and optimizer.states:
        _check_step_indexed_order_2(optimizer)
    key = (order, batch, stationary)
    d = _DERIVED.peek(key, optimizer)
    if d is not MISSING:
        return d
    stored = cache.cached("derivation", optimizer,
                          lambda: replace(_derive(optimizer, order, batch, stationary),
                                          optimizer=None),
                          order=order, batch=batch, stationary=stationary)
    return _DERIVED.put(key, replace(stored, optimizer=optimizer), optimizer)


def _derive(optimizer, order, batch, stationary):
    """The derivation computed, where :func:`derivation` finds it neither in memory nor on
    disk."""
    coupled = _derived_by_shift(optimizer)
    if coupled is not None:
        plain, c = coupled
        d = shifted_derivation(derivation(plain, order, batch, stationary), optimizer, c)
    elif _hides_coefficients(optimizer, order, stationary):
        d = _derived_with_hidden_coefficients(optimizer, order, batch)
    else:
        lower = next((d for r in range(order - 1, -1, -1)
                      if (d := _DERIVED.peek((r, batch, stationary), optimizer)) is not MISSING),
                     None)
        d = Derivation(optimizer, order, batch, stationary)
        if lower is not None:
            d.F = list(lower.F)
            d.psi = list(lower.psi)
        _solve_terms(d, optimizer.step, len(d.F))
    d.flow_step = flow_step_coefficients(d.F, order + 1)
    return d


def _derived_by_shift(optimizer):
    """``(plain, c)`` where ``optimizer`` is derived as its plain declaration on the shifted
    loss ``E + c |theta|^2 / 2`` (:mod:`.coupled_decay`): a step reading the step index with
    states of ``g + lam theta`` (torch's NAdam with ``weight_decay``), whose direct derivation
    is slow (order 2: 203 s in full batch, 11 min in mini batch, where the shift takes 8-13 s
    after the plain derivation); ``None`` elsewhere (the direct derivation keeps the
    declaration's own grouping of ``lam``)."""
    return plain_of_coupled(optimizer) if reads_step_index(optimizer.step) else None


def _solve_terms(d, step, start):
    """Extend ``d.F`` from ``F_start`` through ``F_{d.order}`` for the step ``step`` (the
    declaration's, or with hidden coefficients); ``d.states`` and ``d.psi`` are left at the
    last order."""
    opt = d.optimizer
    if step is not opt.step:
        opt = Optimizer(opt.name, opt.states, step, hyperparameters=opt.hyperparameters,
                        notes=opt.notes)
    for r in range(start, d.order + 1):
        d.states = [state_series(s, d.F, r, d.batch, d.stationary) for s in opt.states]
        d.psi = step_series(opt, d.states, r, d.batch)
        d.F.append(solve_next(d.psi[r], d.F))


def _hides_coefficients(optimizer, order, stationary):
    """Whether ``F_order`` is derived with the step's step-index coefficients held opaque
    (:mod:`.coefficients`): exact in ``n`` (full batch, or mini batch step-indexed) at order 2,
    where written out they do not simplify; below order 2 the declared coefficients are kept
    (the published forms)."""
    return not stationary and order >= 2 and reads_step_index(optimizer.step)


def _derived_with_hidden_coefficients(optimizer, order, batch):
    """The derivation of ``order`` with ``F_order`` solved from the step whose step-index
    coefficients are undefined functions ``c_i(n)`` (:func:`.coefficients.hide`), then revealed
    (``c_i(l)`` -> the definition at ``n = l``, also inside the mini-batch sums over past
    steps).  ``F_0 .. F_{order-1}`` are the lower derivation's (the same functions, in their
    declared form); the solve restarts from ``F_0`` with hidden coefficients, so that the lower
    terms it composes carry ``c_i`` too."""
    lower = derivation(optimizer, order - 1, batch, False)
    step, definitions = hide(optimizer.step)
    hidden = Derivation(optimizer, order, batch, False)
    _solve_terms(hidden, step, 0)
    d = Derivation(optimizer, order, batch, False)
    d.F = list(lower.F) + [reveal(hidden.F[order], definitions)]
    d.coefficients, d.F_opaque = definitions, hidden.F[order]
    d.psi = [reveal(p, definitions) for p in hidden.psi]
    d.states = [replace(s, terms=[reveal(t, definitions) for t in s.terms],
                        raw=[reveal(t, definitions) for t in s.raw]) for s in hidden.states]
    return d


def require_stationary_flow(optimizer, order=1):
    """:class:`~.family.Refused`, with the derivation's reason, unless the stationary
    (``n -> oo``) flow of ``order`` exists, without deriving it: the step and the inputs of
    the states that read states are smooth through ``h^order`` at the states' limiting values
    (the stationary ``S0`` of order 0; the terms ``S1, S2`` enter the composition linearly,
    so placeholders stand for them)."""
    d = derivation(optimizer, 0, "full", stationary=True)
    series = {s.state: [s.terms[0], *(sp.Dummy() for _ in range(order))] for s in d.states}
    require_smooth(optimizer, series, order)


def _check_step_indexed_order_2(optimizer):
    """``NotImplementedError`` unless the step-indexed mini-batch form of order 2 is derived
    for ``optimizer``: it is where the batch grouping does not apply because a state stores its
    first input (torch's dampened buffer), reads another state (torch's RMSprop with momentum,
    AdaBelief with its bias corrections) or the step reads the step index (NAdam's products
    ``mu_1 ... mu_t``, held opaque while the ``h^2`` term is solved)."""
    if groupable(optimizer):
        raise NotImplementedError(
            "mini batch with memory has no step-indexed form at order 2: the memory sums of "
            "the h^2 term run over pairs of past batches with no closed form; "
            "flow.grouped_terms(m) gives the exact batch-grouped form (modeq derive ... "
            "--batch mini --order 2 prints it), flow.field / flow.lambdify evaluate it")


def groupable(optimizer):
    """Whether the batch grouping covers ``optimizer`` (:func:`~.batches.check_groupable`):
    its mini-batch flow of order 2 is then evaluated in the grouped form; otherwise (a state
    reading a state, torch's dampened buffer, a step reading ``n``) in the step-indexed one,
    its sums over pairs of past steps kept as finite nested sums."""
    try:
        check_groupable(optimizer)
    except NotImplementedError:
        return False
    return True


_GROUPED = Memo()


def grouped_terms(optimizer, m, order):
    """The mini-batch stage for numeric evaluation: the step terms of ``m`` batches with the sums
    over past steps grouped by batch (:func:`~.batches.grouped_step_terms`), cached."""
    return _GROUPED.get((m, order), lambda: grouped_step_terms(optimizer, m, order), optimizer)

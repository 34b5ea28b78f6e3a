"""The lambdified field ``f(n, theta) -> d theta/dt = -F^(n)(theta)``: one entry point.

:func:`lambdify_flow` is the one entry point behind ``ModifiedFlow.lambdify``: it resolves the
hyperparameter values (:mod:`.values`), lowers ``-F`` to components for the concrete loss and
compiles it as a :class:`~.full_batch.FullBatchField`; mini batch goes to
:class:`~.minibatch.MiniBatchField` (the batch grouping) or, for declarations the grouping does
not cover, to :class:`~.step_indexed.StepIndexedField`.

A flow whose memory sums have no closed form in ``n`` already at ``h^1`` (Adam and RMSprop
without bias correction, torch's RMSprop: ``Sum(..., (l, 0, n - 1))`` in ``F1``) is evaluated
as the mini-batch flow of the one loss ``[E]`` (:class:`OneBatchField`, :mod:`.minibatch`):
with one batch every step uses ``E``, so the two flows are the same function of ``n`` and
``theta``, and the mini-batch evaluator's cyclic tail (:mod:`.cyclic_tail`, period 1) sums the
steps from the one where every memory weight equals its limit to ``2^-(prec+10)`` relative in
closed form — the cost per call stops growing with ``n``.  Where the sums start at ``h^2``
(Adam with bias correction), the grouping does not cover the declaration (a state reading
another state, a step using ``n``) or a non-default ``dtype`` is asked for, the sums stay in
the compiled field and are evaluated by :class:`~.past_sums.PastSums` (node tables, windowed
sums or every term, by backend and ``n``); where they nest (node tables, ``O(n)`` per call),
the steps past the transient are evaluated by the stationary field, equal there at the working
precision (:mod:`.stationary_limit`).  At order 2 of a step that reads ``n`` (NAdam), whose
full-batch sums nest with every past step's coefficients inside (``O(n^2)`` per call), the
field is the step-indexed mini-batch flow of ``[E]`` (:class:`~.step_indexed.StepIndexedField`,
node tables, ``O(n)``).
"""
from __future__ import annotations

import sympy as sp

from ..components import LossProvider
from ..family import h as h_sym
from .arrays import resolve_dtype
from .full_batch import FullBatchField
from .minibatch import MiniBatchField
from .stationary_limit import StationaryLimit, limit_decays, sum_depth
from .step_indexed import StepIndexedField
from .values import (check_backend, lowered_with_values, per_component, resolve_symbols,
                     resolve_values)

__all__ = ["lambdify_flow", "FullBatchField", "OneBatchField"]


def lambdify_flow(flow, E_or_losses, params, backend="mpmath", stationary=False, schedule=None,
                  cse=True, dtype=None, late=(), **values):
    """``f(n, theta) -> d theta/dt`` on ``[nh, (n+1)h)`` for a concrete loss (full batch) or a
    list of losses (mini batch, step ``k`` uses ``losses[schedule[k]]``, cyclic by default).

    ``values``: every hyperparameter by name (``h`` too when the order is >= 1), converted
    exactly; names in ``late`` are left out and given later by ``f.bind(name=value)`` (full
    batch, and mini batch outside the batch grouping).  See :mod:`.arrays` for the layout of
    ``theta`` and the result.
    """
    check_backend(backend)
    provider = LossProvider(E_or_losses, params, schedule)
    subs = resolve_values(flow, values, late)
    late_symbols = [s for s in [*flow.optimizer.hyperparameters, h_sym] if str(s) in late]
    rows = per_component(subs)
    if rows and (not provider.full or _one_batch_applies(flow, stationary, backend, dtype)
                 or _one_batch_step_indexed(flow, stationary, dtype)):
        raise ValueError(
            f"one value per component ({', '.join(sorted(map(str, rows)))}) is supported by "
            f"the full-batch fields whose memory sums are in closed form; this flow is "
            f"evaluated by the step-indexed mini-batch evaluator: give one value")
    if provider.full:
        if _one_batch_applies(flow, stationary, backend, dtype):
            return OneBatchField(flow, provider, subs, backend, cse, late_symbols)
        if _one_batch_step_indexed(flow, stationary, dtype):
            return StepIndexedField(flow, LossProvider([E_or_losses], params), subs, backend,
                                    cse, late_symbols)
        def build(stationary):
            exprs = lowered_with_values(flow.F("full", stationary), provider.p, provider, subs)
            return FullBatchField(exprs, provider.params, backend, dtype, cse, late_symbols,
                                  flow.optimizer.decays)

        field = build(stationary)
        decays = limit_decays(flow.optimizer, subs)
        if not stationary and decays is not None and (
                field.sums.nested or flow.optimizer.uses_n):
            field.limit = StationaryLimit(lambda: build(True), decays,
                                          max(sum_depth(e) for e in field.expressions))
        return field
    if stationary:
        raise ValueError("stationary=True is for full batch; give a single loss")
    if dtype is not None:
        raise ValueError("dtype= is supported for full-batch flows; the mini-batch evaluator "
                         "works in each backend's default precision")
    if not flow.batch_grouped:
        return StepIndexedField(flow, provider, subs, backend, cse, late_symbols)
    if late:
        raise ValueError("late= is supported for full-batch flows and step-indexed mini batch")
    return MiniBatchField(flow, provider, subs, backend, cse)


def _one_batch_applies(flow, stationary, backend, dtype):
    """Whether the full-batch field is evaluated as the mini-batch flow of one loss
    (:class:`OneBatchField`): exact in ``n``, with a memory sum in no closed form already in
    the ``h^1`` term ``F1`` — the past steps' ``F0^(l)`` then depend on ``l`` (a memory without
    bias correction, whose weights ``1 - d^(l+1)`` enter a nonlinear step), and the windowed
    sums cost ``O(n)`` per call until ``d^l`` is negligible, nested at order 2.  With bias
    correction the sums start at ``h^2`` and the windowed sums are flat in ``n`` and cheaper
    than the one-batch sweep (``O(min(n, 2 tail.start))`` per call at order 2), so they stay.
    Also required: a declaration the batch grouping covers (``flow.batch_grouped``) and the
    mini-batch evaluator's working precision (mpmath, or float64)."""
    if stationary or not flow.batch_grouped:
        return False
    if dtype is not None and (backend == "mpmath"
                              or resolve_dtype(backend, dtype) != resolve_dtype(backend)):
        return False
    terms = flow.terms("full", stationary)
    return len(terms) >= 2 and terms[1].has(sp.Sum)


def _one_batch_step_indexed(flow, stationary, dtype):
    """Whether the full-batch field is evaluated as the step-indexed mini-batch flow of the one
    loss ``[E]`` (:class:`~.step_indexed.StepIndexedField`): exact in ``n`` at order 2 of a
    step that reads ``n`` (NAdam).  Its full-batch sums over past steps nest with the step
    coefficients of every past step inside and cost ``O(n^2)`` per call (12 s at ``n = 100``);
    one batch is the full batch (as for :class:`OneBatchField`), and the step-indexed form's
    node tables cost ``O(n)`` (52 ms there, the same field to the working precision)."""
    return (not stationary and flow.order >= 2 and flow.optimizer.uses_n and dtype is None
            and not flow.batch_grouped)


class OneBatchField:
    """``f(n, theta) -> d theta/dt = -F^(n)(theta)`` of a full-batch flow whose memory sums have
    no closed form in ``n``, evaluated as the mini-batch flow of the one loss ``[E]``
    (:class:`~.minibatch.MiniBatchField` with ``m = 1``).

    One batch is the full batch: the mini-batch flow of ``[E_0, ..., E_{m-1}]`` is derived from
    the same update with step ``k`` using ``E_{batch(k)}``; with ``m = 1`` every step uses ``E``,
    the batch weights ``u(l) = sum_{k<=l, batch(k)=0} d^(l-k)`` are the full-batch memory
    weights ``sum_{k<=l} d^(l-k)``, and the grouped terms are the full-batch terms with the sums
    over past steps regrouped — the same function of ``n`` and ``theta``.  The default (cyclic)
    schedule has period 1, so the closed-form tail of :mod:`.cyclic_tail` applies: from
    ``tail.start`` (the first step whose weights equal their limits to ``2^-(prec+10)``
    relative; at order 2 from ``2 tail.start + 1``, where the memory carried by a step is
    stationary too) every past step contributes the same ``F0`` at the working precision, and
    its memory sums are geometric sums in closed form.  The cost of a call stops growing with
    ``n`` once ``n`` passes the tail start.

    The interface of :class:`FullBatchField`: constants named in ``late`` are given by
    :meth:`bind` (the mini-batch field is built then; its order-2 kernels are cached across
    step sizes); ``theta`` and the result as in :mod:`.arrays` (float64 for NumPy and torch).
    ``batch_field`` is the :class:`~.minibatch.MiniBatchField` (``None`` until bound).
    """

    def __init__(self, flow, provider, subs, backend, cse=True, late=()):
        self.flow = flow
        self.params = list(provider.params)
        self.p = len(self.params)
        self.backend = backend
        self.dtype = resolve_dtype(backend)
        self.late = list(late)
        self.uses_n = True
        self._one = LossProvider(list(provider.losses), self.params)     # m = 1, cyclic
        self._subs, self._cse = dict(subs), cse
        self.batch_field = None if self.late else self._build(self._subs)

    def _build(self, subs):
        return MiniBatchField(self.flow, self._one, subs, self.backend, self._cse)

    def bind(self, **values):
        """A copy with the late-bound constants set (exact conversion, ranges checked)."""
        exact = resolve_symbols(self.late, values, self.flow.optimizer.decays, "this field")
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.batch_field = self._build({**self._subs, **exact})
        return out

    def __call__(self, n, theta):
        if self.batch_field is None:
            raise ValueError(f"this field has late-bound constants {[str(s) for s in self.late]}"
                             f": call .bind({self.late[0]}=...) first")
        return self.batch_field(n, theta)

    def __repr__(self):
        return (f"OneBatchField(p={self.p}, backend={self.backend!r}, dtype={self.dtype}, "
                f"uses_n=True)")

"""Build a derivation document: an ordered list of steps run on one typed build context.

``build_document(optimizer, order, batch, stationary)`` returns an unverified
:class:`~modeq.proofs.document.Document`; :func:`document` also verifies it.  Each step is a
function ``step(ctx)`` of a :class:`~modeq.proofs.context.BuildContext` (it adds prose,
quantities, equations and checks, and skips itself where it does not apply).

Full batch (:data:`FULL_BATCH_STEPS`), exact in ``n`` (``stationary=False``): recursion; memory
through the flow; evaluated memory sums with named memory coefficients (``b_n``, ``r_n``, ...);
the step in powers of ``h``; the flow's own step; matching; ``F_0, F_1 (, F_2)``; the
``n -> oo`` limit; the recognized published forms; for Adam-type flows the paper's correction,
its perturbed one-norm form and the regime table.  ``stationary=True`` derives directly with
the stationary memory (weight moments ``mu_m``), the route used for order 2 with memory.
Mini batch (:data:`MINI_BATCH_STEPS`, orders 0 and 1): the same chain
with one loss per step and the states named (:mod:`modeq.proofs.steps_mini`); at order 2
(:data:`GROUPED_STEPS`) the batch-grouped form, exact for every schedule, with its
reduction to the full-batch flow checked (:mod:`modeq.proofs.steps_grouped`).

Every equation of the document is a quantity of the document and is established by checks
(:mod:`modeq.proofs.checks`) that read it back from the document.
"""
from __future__ import annotations

from modeq.symbolic import derive, optimizers as builtin
from modeq.symbolic.pipeline import derivation

from . import (steps_adam, steps_common, steps_flow, steps_grouped, steps_limit,
               steps_memory, steps_mini)
from .context import BuildContext, document_name, title
from .document import Document

__all__ = ["build_document", "document", "document_name", "run_steps", "FULL_BATCH_STEPS",
           "MINI_BATCH_STEPS", "GROUPED_STEPS"]

#: the steps of a full-batch document, in order
FULL_BATCH_STEPS = (
    steps_common.square_root_abbreviations,
    steps_common.conventions,
    steps_common.recursion,
    steps_memory.name_memory_coefficients,
    steps_memory.memory_through_flow,
    steps_memory.memory_closed_form,
    steps_flow.step_expansion,
    steps_flow.flow_step,
    steps_flow.matching,
    steps_limit.stationary_limit,
    steps_limit.recognized,
    steps_adam.paper_correction,
    steps_adam.regimes,
    steps_limit.summary,
)

#: the steps of a mini-batch document, in order
MINI_BATCH_STEPS = (
    steps_mini.named_display,
    steps_common.conventions,
    steps_mini.mini_batch_convention,
    steps_common.recursion,
    steps_mini.named_states,
    steps_mini.engine_quantities,
    steps_mini.memory_sums,
    steps_mini.step_expansion,
    steps_mini.flow_step,
    steps_mini.modified_flow,
    steps_mini.reduction_checks,
    steps_mini.summary,
)


#: the steps of a mini-batch document at order 2 (an optimizer with memory): the grouped form
GROUPED_STEPS = (
    steps_common.conventions,
    steps_grouped.grouped_convention,
    steps_common.recursion,
    steps_grouped.grouped_terms,
    steps_grouped.grouped_definitions,
    steps_grouped.reduction_check,
    steps_grouped.summary,
)


def run_steps(ctx, steps):
    """Run ``steps`` in order on ``ctx``; returns ``ctx.doc``."""
    for step in steps:
        step(ctx)
    return ctx.doc


def build_document(optimizer, order=1, batch="full", stationary=False):
    """The unverified derivation document of ``optimizer`` (an
    :class:`~modeq.symbolic.family.Optimizer` or a built-in's name).

    >>> from modeq.proofs import build_document
    >>> doc = build_document("gd", order=1)
    >>> doc.name, doc.verified
    ('gd-full-order1', False)
    >>> [s.title for s in doc.steps][:2]
    ['The recursion', 'The step in powers of $h$']
    """
    if isinstance(optimizer, str):
        optimizer = builtin.get(optimizer)
    if batch not in ("full", "mini"):
        raise ValueError(f"batch must be 'full' or 'mini', got {batch!r}")
    if batch == "mini" and order > 2:
        raise NotImplementedError("mini-batch documents are derived to order 2")
    stationary = stationary and batch == "full"
    doc = Document(name=document_name(optimizer, order, batch, stationary),
                   title=title(optimizer, order, batch, stationary), summary="")
    if batch == "mini" and order == 2:
        ctx = BuildContext(optimizer, order, batch, False, doc, None)
        return run_steps(ctx, GROUPED_STEPS)
    ctx = BuildContext(optimizer, order, batch, stationary, doc,
                       derivation(optimizer, order, batch, stationary),
                       flow=derive(optimizer, order) if batch == "full" else None)
    return run_steps(ctx, FULL_BATCH_STEPS if batch == "full" else MINI_BATCH_STEPS)


def document(optimizer, order=1, batch="full", stationary=False):
    """Build and verify (raises :class:`~modeq.proofs.document.ProofError` on a failed check).

    >>> from modeq.proofs import document
    >>> doc = document("gd", order=1)
    >>> doc.verified, len(doc.checks) >= 10
    (True, True)
    """
    return build_document(optimizer, order, batch, stationary).verify()

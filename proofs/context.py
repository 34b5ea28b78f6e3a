"""The typed context a derivation document is built in, shared by every build step.

A document is built by running an ordered list of steps (:mod:`modeq.proofs.build`), each a
function ``step(ctx)`` that reads the engine's intermediate results from the
:class:`BuildContext`, adds quantities, prose, equations and checks to ``ctx.doc``, and
records what later steps need (named memory coefficients, stationary limits, recognized
forms) in typed fields of the context.

Conventions: the flow on ``[nh, (n+1)h)`` is ``d theta/dt = -F^(n)``, ``F = F_0 + h F_1 + ...``;
quantities are component expressions of :mod:`modeq.symbolic.operators` (``Grad``, ``Hess``,
``D3``); a memory coefficient is a scalar ``c(n)`` of the decays and the step index ``n``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from modeq.symbolic.family import Optimizer, n
from modeq.symbolic.recognize import Recognition

from .document import Document

__all__ = ["BuildContext", "MemoryCoefficient", "RecognizedTerm", "document_name", "title",
           "text_escape"]


def document_name(optimizer, order, batch="full", stationary=False):
    """File stem of a document: ``adam-full-order1``, ``adam-full-order2-stationary``, ...

    >>> from modeq.proofs import document_name
    >>> from modeq.symbolic import optimizers
    >>> document_name(optimizers.heavy_ball(), 2, "full", stationary=True)
    'heavy-ball-full-order2-stationary'
    """
    stem = f"{optimizer.name.replace('_', '-')}-{batch}-order{order}"
    return stem + ("-stationary" if stationary and batch == "full" else "")


def text_escape(s):
    """Unicode of the engine's source strings -> LaTeX text."""
    table = {"&": r"\&", "–": "--", "—": "---", "²": "$^2$", "³": "$^3$", "ε": r"$\varepsilon$",
             "β": r"$\beta$", "ρ": r"$\rho$", "∇": r"$\nabla$", "‖": r"$\|$", "·": r"$\cdot$",
             "θ": r"$\theta$", "∂": r"$\partial$", "_": r"\_", "%": r"\%", "#": r"\#"}
    return "".join(table.get(ch, ch) for ch in s)


def title(opt, order, batch, stationary):
    """The document's title (LaTeX)."""
    kind = "mini batch" if batch == "mini" else "full batch"
    variant = "" if batch == "mini" or not opt.states else (
        ", stationary" if stationary else ", exact in $n$")
    return (f"Modified flow of {text_escape(opt.name.replace('_', ' '))}: derivation to order "
            f"{order} ({kind}{variant})")


@dataclass
class MemoryCoefficient:
    """A named scalar ``sym(n)`` from the evaluated memory sums of one state: the weight
    moment ``sum_{k=0}^n w(n,k) (n-k)^moment`` of ``state`` (``moment`` an integer), or a
    coefficient defined by its closed form only (``moment is None``)."""
    sym: sp.Symbol
    value: sp.Expr
    state: object
    moment: int | None
    latex: str

    def definition(self, k):
        """``sum_{k=0}^n w(n,k) (n-k)^m`` for a moment, else ``None``."""
        if self.moment is None:
            return None
        return sp.Sum(self.state.weight(n, k) * (n - k) ** self.moment, (k, 0, n))


@dataclass
class RecognizedTerm:
    """A published form a term of the document equals: ``key`` is the reference's quantity,
    ``term_key`` the document's (``"F1"``, or ``"Finf1"`` for the stationary limit)."""
    recognition: Recognition
    key: str
    term_key: str
    stationary: bool


@dataclass
class BuildContext:
    """Everything the steps of one document share (see module docstring).

    ``derivation`` is the engine's :class:`~modeq.symbolic.pipeline.Derivation` of this
    variant; ``flow`` the :class:`~modeq.symbolic.flow.ModifiedFlow` (full batch);
    ``series`` the state series with their memory coefficients named (``coeffs``);
    ``limits`` the stationary value of each coefficient (``exact_limit`` when every ``F_r``
    has one); ``mini`` the mini-batch display of named states (mini batch only); ``grouped``
    the batch-grouped terms (mini batch, order 2)."""
    opt: Optimizer
    order: int
    batch: str
    stationary: bool
    doc: Document
    derivation: object
    flow: object = None
    coeffs: list = field(default_factory=list)
    series: list = field(default_factory=list)
    limits: dict = field(default_factory=dict)
    exact_limit: bool = False
    recognitions: list = field(default_factory=list)
    extra_checks: dict = field(default_factory=dict)
    mini: object = None
    grouped: object = None

    @property
    def names(self):
        """Printer names (symbol or function -> LaTeX), shared with the renderer."""
        return self.doc.display.names

    @property
    def memory(self):
        """The optimizer keeps states (EMAs)."""
        return bool(self.opt.states)

    @property
    def exact(self):
        """Full batch exact in ``n`` with memory (the memory coefficients depend on ``n``)."""
        return not self.stationary and self.memory

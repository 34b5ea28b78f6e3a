"""The document model of a derivation: named steps, equations, abbreviations and checks.

A :class:`Document` holds

* ``quantities`` — the SymPy expressions the document states (component algebra of
  :mod:`modeq.symbolic.operators`, possibly with scalar abbreviation symbols such as the memory
  coefficient ``b_n``), keyed by name (``"F1"``, ``"psi1"``, ``"S[m]1"``, ...);
* ``abbreviations`` — ``symbol := value`` (:class:`~modeq.proofs.notation.Abbreviation`),
  defined once and printed in the conventions;
* ``steps`` — named sections; each is a list of items: prose, aligned equations that refer
  to quantities by key (the renderer lays them out), or tables;
* ``display`` — typed :class:`DisplayHints` for the renderer (printer names, the square root
  ``s``, the field ``u``, memory scalars, EMA weights, a term printer);
* ``checks`` — every equality the document states, as a function of the document's own
  quantities.  :meth:`Document.verify` runs them all; a failed check raises
  :class:`ProofError`, so a document with a wrong coefficient is never rendered.  Checks read
  the quantities *from the document*, so a coefficient injected into the model after it was
  built is caught.

The model knows nothing about LaTeX beyond the strings the builder put in it
(:mod:`modeq.proofs.latex` renders it).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable

import sympy as sp

from .notation import Abbreviation, FieldSymbol, expand_abbreviations

__all__ = ["Check", "Equation", "Step", "Document", "DisplayHints", "ProofError"]


class ProofError(RuntimeError):
    """A check of a derivation document failed: the document must not be produced.

    >>> raise ProofError("F1 differs from the reference")
    Traceback (most recent call last):
    ...
    modeq.proofs.document.ProofError: F1 differs from the reference
    """


@dataclass
class Check:
    """One verified equality.  ``run(doc) -> bool``; ``passed`` is set by :meth:`Document.verify`."""
    label: str
    description: str
    run: Callable
    passed: bool | None = None
    seconds: float = 0.0
    error: str = ""


@dataclass
class Equation:
    """One numbered equation: ``lhs = <quantity key>`` (laid out by the renderer, broken by
    operator structure) or ``lhs = tex`` (literal LaTeX, for structural formulas).
    ``checks`` are the labels of the checks that establish it."""
    lhs: str
    key: str | None = None
    tex: str | None = None
    checks: list = field(default_factory=list)
    relation: str = "="


@dataclass
class Step:
    """A named step: ``items`` are ``("text", str)``, ``("equations", [Equation])`` or
    ``("table", header, rows)`` (LaTeX strings)."""
    title: str
    items: list = field(default_factory=list)
    label: str = ""

    def text(self, s):
        self.items.append(("text", s))
        return self

    def equations(self, *eqs):
        self.items.append(("equations", list(eqs)))
        return self

    def table(self, header, rows):
        self.items.append(("table", header, rows))
        return self


@dataclass
class DisplayHints:
    """How the renderer prints a document's quantities (printing only, never checked).

    ``names`` maps symbols or undefined functions to LaTeX (see
    :class:`~modeq.proofs.printer.DocPrinter`); ``radicand`` is the single radicand ``R`` of
    the flow, printed through ``s`` with ``s**2 = R``; ``u`` prints the field ``u_value``
    (``F_0``) where it is an operator argument; ``scalars`` are the memory coefficients the
    canonical layout collects by; ``weights`` maps a state's name to ``(W, state)``, ``W(n, k)``
    printing the EMA weight ``w_{n,k}``; ``term_printer(expr, renderer)``, when set, replaces
    the canonical layout by its own list of LaTeX terms (mini batch); ``line_width``, when set,
    replaces :data:`~modeq.proofs.latex.LINE_WIDTH` as the width of an equation line."""
    names: dict = field(default_factory=dict)
    radicand: sp.Expr | None = None
    s: FieldSymbol | None = None
    u: FieldSymbol | None = None
    u_value: sp.Expr | None = None
    scalars: tuple = ()
    weights: dict = field(default_factory=dict)
    term_printer: Callable | None = None
    line_width: int | None = None


@dataclass
class Document:
    """A derivation document (see module docstring).

    >>> from modeq.proofs import document
    >>> doc = document("gd", order=1)
    >>> doc.name, doc.verified
    ('gd-full-order1', True)
    """
    name: str
    title: str
    summary: str
    conventions: list = field(default_factory=list)
    abbreviations: list = field(default_factory=list)
    quantities: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    display: DisplayHints = field(default_factory=DisplayHints)

    # -- building ---------------------------------------------------------------------------
    def add(self, key, expr):
        self.quantities[key] = sp.sympify(expr)
        return key

    def abbreviate(self, symbol, value, text="", latex=""):
        self.abbreviations.append(Abbreviation(symbol, sp.sympify(value), text, latex))
        return symbol

    def check(self, description, run):
        """Register a check; returns its label (``C1``, ``C2``, ...)."""
        label = f"C{len(self.checks) + 1}"
        self.checks.append(Check(label, description, run))
        return label

    def step(self, title):
        s = Step(title)
        self.steps.append(s)
        return s

    # -- reading ----------------------------------------------------------------------------
    def q(self, key):
        """A quantity with every abbreviation expanded (what the checks compare)."""
        return expand_abbreviations(self.quantities[key], self.abbreviations)

    def expand(self, expr):
        return expand_abbreviations(expr, self.abbreviations)

    # -- verification -----------------------------------------------------------------------
    def verify(self):
        """Run every check; raise :class:`ProofError` naming the failures.  Returns ``self``."""
        failed = []
        for c in self.checks:
            t0 = time.perf_counter()
            try:
                ok = bool(c.run(self))
            except Exception as exc:  # a check that cannot run is a failed check
                ok = False
                c.error = f"could not run: {type(exc).__name__}: {exc}"
            c.seconds = time.perf_counter() - t0
            c.passed = ok
            if not ok:
                failed.append(c)
        self._fingerprint = None if failed else self.fingerprint()
        if failed:
            lines = "; ".join(f"{c.label}: {c.description}" + (f" [{c.error}]" if c.error else "")
                              for c in failed)
            raise ProofError(f"{self.name}: {len(failed)} of {len(self.checks)} checks failed "
                             f"— {lines}")
        return self

    def fingerprint(self):
        """A digest of everything the checks read (quantities and abbreviations)."""
        parts = [f"{k}={sp.srepr(v)}" for k, v in sorted(self.quantities.items())]
        parts += [f"{sp.srepr(a.symbol)}:={sp.srepr(a.value)}" for a in self.abbreviations]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    @property
    def verified(self):
        """True if every check passed and nothing changed since :meth:`verify`."""
        return (bool(self.checks) and all(c.passed for c in self.checks)
                and getattr(self, "_fingerprint", None) == self.fingerprint())

    def ensure_verified(self):
        """:meth:`verify` unless already verified with the current quantities."""
        return self if self.verified else self.verify()

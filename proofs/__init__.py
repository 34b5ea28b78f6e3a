"""modeq.proofs: derivation documents (LaTeX/PDF) and the ``modeq`` command line.

A derivation document derives an optimizer's modified flow ``d theta/dt = -(F_0 + h F_1 + ...)``
step by step from its recursion, with every stated equality checked exactly by SymPy when the
document is built; a document whose checks fail is never rendered.

>>> from modeq.proofs import document, render
>>> tex = render(document("gd", order=1))          # Barrett & Dherin's F_1 = (1/2) H g
>>> "Barrett" in tex and tex.startswith("\\\\documentclass")
True

* :func:`build_document` / :func:`document` — build (and verify) a document;
* :func:`render`, :func:`equation_tex` — LaTeX of a document, or of one of its equations;
* :func:`write_tex`, :func:`compile_pdf`, :func:`latex_engine` — write and compile, atomically;
* :func:`regenerate`, :func:`builtin_filename`, :data:`BUILTIN_DOCUMENTS` — the committed
  documents in ``proofs/tex/``.

Module map (imports point down the list; the prover is :mod:`modeq.symbolic.prove`):
``build`` (the driver and the two ordered step lists) -> ``steps_common``, ``steps_memory``,
``steps_flow``, ``steps_limit``, ``steps_adam``, ``steps_mini`` (+ ``mini_display``), each
``step(ctx)`` on a ``context.BuildContext`` -> ``checks`` (exact checks) -> ``document``
(quantities, steps, checks, ``DisplayHints``) -> ``notation`` (canonical layout);
``latex`` renders (``printer``), ``registry`` lists the committed documents, and
``commands/latex.py`` is ``modeq latex``.  One derivation: ``document("adam")`` runs
``FULL_BATCH_STEPS`` on the engine's ``derivation(adam, 1)``, ``verify()`` re-runs every check
from the document's own quantities, ``render`` lays it out.
"""
from modeq.symbolic.lazy_exports import install as _install

#: public name -> the module defining it; loaded on first use, so that ``modeq`` commands
#: answered from the output cache (:mod:`.output_cache`) never import SymPy
_EXPORTS = {"build_document": "build", "document": "build", "document_name": "build",
            "Document": "document", "ProofError": "document",
            "compile_pdf": "latex", "equation_tex": "latex", "latex_engine": "latex",
            "render": "latex", "write_tex": "latex",
            "BUILTIN_DOCUMENTS": "registry", "builtin_filename": "registry",
            "regenerate": "registry"}

__all__ = list(_EXPORTS)
_install(__name__, _EXPORTS)

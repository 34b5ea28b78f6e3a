"""The committed derivation documents: which variants, where they live, how to regenerate them.

:data:`BUILTIN_DOCUMENTS` lists ``(optimizer, order, batch, stationary)`` for every document
committed in ``proofs/tex/`` (:data:`TEX_DIR`); the drift tests regenerate each one and compare
it with the committed file as a string.  ``modeq latex --regenerate [--pdf]`` rewrites them.
"""
from __future__ import annotations

import os

from modeq.symbolic import optimizers

from .build import document, document_name
from .latex import compile_pdf, write_tex

__all__ = ["BUILTIN_DOCUMENTS", "TEX_DIR", "build_builtin", "builtin_filename", "regenerate"]

TEX_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tex")

#: (optimizer, order, batch, stationary) of the committed documents
BUILTIN_DOCUMENTS = (
    ("gd", 1, "full", False),
    ("gd", 2, "full", False),
    ("heavy_ball", 1, "full", False),
    ("rmsprop", 1, "full", False),
    ("adam", 1, "full", False),
    ("adam", 1, "mini", False),
    ("sgd", 1, "mini", False),
    ("adam", 2, "full", True),
)


def build_builtin(spec):
    """The verified document of one entry of :data:`BUILTIN_DOCUMENTS`."""
    name, order, batch, stationary = spec
    return document(optimizers.get(name), order, batch, stationary)


def builtin_filename(spec):
    """The file name of one entry of :data:`BUILTIN_DOCUMENTS` in :data:`TEX_DIR`.

    >>> from modeq.proofs import builtin_filename
    >>> builtin_filename(("adam", 2, "full", True))
    'adam-full-order2-stationary.tex'
    """
    name, order, batch, stationary = spec
    return document_name(optimizers.get(name), order, batch, stationary) + ".tex"


def regenerate(folder=TEX_DIR, pdf=False, specs=BUILTIN_DOCUMENTS, log=print):
    """Rewrite the committed documents (and PDFs if ``pdf``); returns the written paths.

    >>> import os, tempfile
    >>> from modeq.proofs import regenerate
    >>> paths = regenerate(tempfile.mkdtemp(), specs=[("gd", 1, "full", False)], log=None)
    >>> [os.path.basename(p) for p in paths]
    ['gd-full-order1.tex']
    """
    paths = []
    for spec in specs:
        doc = build_builtin(spec)
        path = os.path.join(folder, builtin_filename(spec))
        write_tex(doc, path)
        paths.append(path)
        if log is not None:
            log(f"wrote {path} ({len(doc.checks)} checks passed)")
        if pdf:
            compile_pdf(path)
    return paths

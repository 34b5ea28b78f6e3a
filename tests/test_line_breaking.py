"""Line breaking of long equations in the derivation documents (modeq.proofs.latex._break).

* the breaking routine on long synthetic sums (Hypothesis draws the term count and the term
  widths): every line's estimated width is within the limit, and the lines joined give back
  the same formula — for plain terms the same term list, for structured terms (a
  :class:`~modeq.proofs.printer.Piece` with sums inside operators) the printer's one-line LaTeX
  up to the size of its delimiters;
* a term wider than a line breaks inside itself, continuation lines starting with a sign;
* the batch-grouped mini-batch document (heavy ball, order 2) compiles with no
  ``Overfull \\hbox`` in its LaTeX log: every equation fits the page width.
"""
from __future__ import annotations

import re
import shutil
import string
import subprocess

import sympy as sp
from hypothesis import given, settings, strategies as st

from conftest import examples
from modeq.proofs import latex as L
from modeq.proofs.build import document
from modeq.proofs.printer import DocPrinter, width
from modeq.symbolic.operators import FULL, Hess

INDENT = r"\quad "


def _line_width(line):
    """Estimated width of a line as :func:`_break` budgets it: its indent (``\\quad``) counts 2."""
    quads = 0
    while line.startswith(INDENT):
        line, quads = line[len(INDENT):], quads + 1
    return width(line) + 2 * quads


def _strip_indent(line):
    while line.startswith(INDENT):
        line = line[len(INDENT):]
    return line


def _normal(tex):
    """LaTeX up to delimiter sizes, spacing and the ``\\times`` of a product broken over two
    lines: what the broken form keeps of the flat one."""
    tex = re.sub(r"\\(left|right|biggl|biggr|Bigl|Bigr|times)", "", tex)
    return re.sub(r"\s+", "", tex)


# -- plain terms (the full-batch documents' terms): kept whole ----------------------------------
_term = st.builds(lambda sign, letters: sign + " ".join(letters),
                  st.sampled_from(["", "- "]),
                  st.lists(st.sampled_from(["x", "y_{1}", r"\beta", "g_j", r"(H\,g)_j"]),
                           min_size=1, max_size=12))


@settings(max_examples=examples(30))
@given(st.lists(_term, min_size=1, max_size=40))
def test_plain_terms_fill_lines_and_keep_the_term_list(terms):
    lines = L._break(terms)
    assert all(_line_width(ln) <= L.LINE_WIDTH for ln in lines)
    # continuation lines start with their sign; joined, the lines are the terms joined
    assert all(ln.startswith(("+ ", "-")) for ln in lines[1:])
    assert " ".join(lines) == L._join(terms)


# -- structured terms (the grouped document's): broken inside sums and operators ---------------
def _symbols(k, size):
    return [sp.Symbol(c * size) for c in string.ascii_lowercase[:k]]


@st.composite
def _sums(draw):
    """A sum of terms ``c * x * y * (H [inner sum])``, the inner sums of drawn length and
    symbol widths (some nested once more), long enough to need several lines."""
    terms = []
    for i in range(draw(st.integers(1, 6))):
        size = draw(st.integers(1, 6))
        syms = _symbols(draw(st.integers(1, 3)), size)
        coef = draw(st.sampled_from([1, -1, 2, -3]))
        inner = sp.Add(*[draw(st.sampled_from([1, -1, 2])) * s * sp.Symbol(f"z{i}{k}")
                         for k, s in enumerate(_symbols(draw(st.integers(2, 14)),
                                                        draw(st.integers(1, 5))))])
        if draw(st.booleans()):
            inner = inner + sp.Symbol("w") * Hess(FULL, sp.Add(*_symbols(
                draw(st.integers(2, 10)), draw(st.integers(1, 4)))))
        terms.append(coef * sp.Mul(*syms) * Hess(sp.Integer(i % 2), inner))
    return terms


@settings(max_examples=examples(15))
@given(_sums())
def test_long_terms_break_inside_and_give_back_the_formula(terms):
    printer = DocPrinter()
    pieces = [printer.piece(t) for t in terms]
    lines = L._break(pieces)
    assert all(_line_width(ln) <= L.LINE_WIDTH for ln in lines), lines
    flat = " ".join(p.flat if i == 0 or p.flat.startswith("-") else "+ " + p.flat
                    for i, p in enumerate(pieces))
    assert _normal(" ".join(_strip_indent(ln) for ln in lines)) == _normal(flat)
    # a term wider than a line is broken inside; every continuation line starts with a sign
    # (or, a product broken between factors, with \times)
    if any(width(p.flat) > L.LINE_WIDTH for p in pieces):
        assert len(lines) > 1
    assert all(_strip_indent(ln).startswith(("+ ", "- ", r"\times ")) for ln in lines[1:]), lines


def test_a_wide_fraction_puts_its_coefficient_first():
    x = sp.Symbol("W")
    inner = sp.Add(*[s * sp.Symbol("g%d" % k) for k, s in enumerate(_symbols(12, 3))])
    term = -x * Hess(FULL, inner) / 2
    lines = L._break([DocPrinter().piece(term)])
    assert len(lines) > 1
    assert lines[0].startswith(r"- \frac{1}{2} W \Bigl(H\,\Bigl[")
    assert lines[-1].endswith(r"\Bigr]\Bigr)_j")
    assert all(_strip_indent(ln).startswith(("+ ", "- ")) for ln in lines[1:])
    assert all(_line_width(ln) <= L.LINE_WIDTH for ln in lines)


# -- the grouped document fits the page -----------------------------------------------------------
def test_grouped_document_has_no_overfull_equation(tmp_path):
    assert shutil.which("pdflatex"), "pdflatex is required (LaTeX is installed in CI)"
    doc = document("heavy_ball", order=2, batch="mini")
    tex = tmp_path / "doc.tex"
    tex.write_text(L.render(doc), encoding="utf-8")
    subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                   cwd=tmp_path, check=True, stdout=subprocess.DEVNULL,
                   stdin=subprocess.DEVNULL, timeout=300)
    log = (tmp_path / "doc.log").read_text(encoding="utf-8", errors="replace")
    assert "Overfull \\hbox" not in log
    # F2 was wider than the page before: it is broken, some lines inside its operators
    body = tex.read_text(encoding="utf-8")
    assert re.search(r"- \\frac\{1\}\{2\} W_\{u,0\} \\(Big|bigg)l\(H\^\{\(0\)\}", body)

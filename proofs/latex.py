"""Render a verified derivation document to a standalone LaTeX ``article`` and compile it.

Layout: title and summary; conventions and abbreviations first; one numbered section per step;
every equation numbered (``align``), long right-hand sides broken by operator structure (one
operator group or one coefficient piece per line, see :func:`modeq.proofs.notation.layout`);
the labels of the checks that establish an equation printed beside it; the list of checks at
the end.  :func:`render` verifies the document first, so a document whose checks fail is never
rendered.  Output is deterministic (canonical layout, fixed bound-variable names, no dates).
How quantities print is set by the document's :class:`~modeq.proofs.document.DisplayHints`.
:func:`write_tex` and :func:`compile_pdf` write atomically: a failure leaves any previous file
intact.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import sympy as sp

from modeq.symbolic.family import n

from .atomic import atomic_path, atomic_write_text
from .document import Equation
from .notation import FieldSymbol, canonical_dummies, layout
from .printer import DocPrinter, Piece, width

__all__ = ["render", "write_tex", "equation_tex", "compile_pdf", "latex_engine"]

LINE_WIDTH = 54          # visible characters per equation line (rough measure)

PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[margin=2.2cm]{geometry}
\usepackage{amsmath,amssymb}
\allowdisplaybreaks
\setlength{\parindent}{0pt}
\setlength{\parskip}{0.5em}
\newcommand{\chk}[1]{\quad\text{\footnotesize[#1]}}
"""


# -- width estimate and term layout ----------------------------------------------------------------
# ``width`` (a rough visible width of a formula) lives in the printer, next to the pieces whose
# places to break it measures.

class _Renderer:
    """Prints the quantities of one document (its display hints) as LaTeX terms and blocks."""

    def __init__(self, doc):
        self.doc = doc
        self.hints = doc.display

    def tex(self, e):
        return DocPrinter(self.hints.names).doprint(e)

    # -- a field expression as a list of terms -------------------------------------------------
    def terms(self, expr):
        hints = self.hints
        if hints.term_printer is not None:
            return hints.term_printer(expr, self)
        rows = layout(expr, radicand=hints.radicand, s=hints.s, u_value=hints.u_value,
                      u=hints.u, scalars=tuple(hints.scalars))
        out = []
        for row in rows:
            mono = row.monomial
            mt = "" if mono == 1 else self.tex(mono)
            if mono == 1:
                out.extend(self.tex(p) for p in row.pieces)
                continue
            pieces = [self._coef(p) for p in row.pieces]
            joined = _join(pieces)
            if len(pieces) > 1 and width(joined) + width(mt) <= LINE_WIDTH:
                out.append(r"\Bigl(" + joined + r"\Bigr)\," + mt)
            else:
                out.extend(_times(p, mt) for p in pieces)
        return out or ["0"]

    def _coef(self, p):
        t = self.tex(p)
        if isinstance(p, sp.Add):
            t = r"\left(" + t + r"\right)"
        return t

    # -- equation blocks -----------------------------------------------------------------------
    def equation_lines(self, eq, sumtree=False):
        if eq.tex is not None:
            rhs_terms = [eq.tex]
        elif sumtree:
            rhs_terms = self.sumtree_terms(self.doc.quantities[eq.key])
        else:
            rhs_terms = self.terms(self.doc.quantities[eq.key])
        lines = _break(rhs_terms, self.hints.line_width or LINE_WIDTH)
        rel = eq.relation
        out = [f"{eq.lhs} &{rel} {lines[0]}"]
        out += [r"&\quad " + ln for ln in lines[1:]]
        labels = sorted(set(eq.checks), key=lambda c: int(c[1:]))
        tag = r"\chk{%s}" % ",".join(labels) if labels else ""
        rendered = []
        for i, ln in enumerate(out):
            last = i == len(out) - 1
            rendered.append(ln + (tag if last else "") + ("" if last else r" \nonumber"))
        return rendered

    def block(self, eqs, sumtree=False):
        lines = []
        for eq in eqs:
            lines.extend(self.equation_lines(eq, sumtree))
        return "\\begin{align}\n" + " \\\\\n".join(lines) + "\n\\end{align}"

    # -- sums as written -----------------------------------------------------------------------
    def sumtree_terms(self, expr):
        expr = canonical_dummies(expr)
        return [self.sumtree(t) for t in sp.Add.make_args(expr)]

    def sumtree(self, e):
        if isinstance(e, sp.Sum):
            body = e.function
            (k, lo, hi), = e.limits[-1:]
            inner = sp.Sum(body, *e.limits[:-1]) if len(e.limits) > 1 else body
            head = r"\sum_{%s=%s}^{%s}" % (self.tex(k), self.tex(lo), self.tex(hi))
            parts = [self.sumtree(t) for t in sp.Add.make_args(inner)] \
                if isinstance(inner, sp.Add) else [self.sumtree(inner)]
            body_tex = _join(parts)
            if len(parts) > 1:
                body_tex = r"\Bigl(" + body_tex + r"\Bigr)"
            return head + " " + body_tex
        factors = sp.Mul.make_args(e)
        sums = [f for f in factors if isinstance(f, sp.Sum)]
        rest = sp.Mul(*[f for f in factors if not isinstance(f, sp.Sum)])
        weight_tex, field = self._weight(rest)
        pieces = []
        if weight_tex:
            pieces.append(weight_tex)
        if field != 1:
            ft = self.terms(field)
            pieces.append(ft[0] if len(ft) == 1 else r"\Bigl(" + _join(ft) + r"\Bigr)")
        for s in sums:
            pieces.append(self.sumtree(s))
        return r"\,".join(pieces) if pieces else "1"

    def _weight(self, rest):
        """Split a product into a named EMA weight ``w_{n,k}`` (if one divides it) and the rest."""
        for name, (W, state) in sorted(self.hints.weights.items()):
            for k in sorted(rest.free_symbols, key=str):
                if not k.is_integer or k == n:
                    continue
                ratio = sp.powsimp(sp.cancel(rest / state.weight(n, k)))
                if k not in ratio.free_symbols:
                    return self.tex(W(n, k)), ratio
        return "", rest


def _times(coef, mono):
    if coef == "1":
        return mono
    if coef == "-1":
        return "-" + mono
    return coef + r"\," + mono


def _join(parts):
    out = ""
    for i, p in enumerate(parts):
        p = p.strip()
        if i == 0:
            out = p
        elif p.startswith("-"):
            out += " " + p
        else:
            out += " + " + p
    return out


#: continuation lines inside delimiters are indented one ``\quad`` per level, up to this many
MAX_INDENT = 3


def _break(terms, limit=LINE_WIDTH):
    r"""Lay out a sum of terms in lines of at most ``limit`` visible characters (as
    :func:`width` estimates them); returns the lines, every line after the first starting with
    its sign (``+``, ``-``) or, inside an operator, with the next argument or ``\times``.

    A term is a LaTeX string (kept whole: a line breaks only between terms) or a
    :class:`~modeq.proofs.printer.Piece`, which breaks inside itself where it does not fit on
    a line of its own: between the terms of an inner sum, after an operator argument's comma,
    and (last resort) between factors.  A piece wider than a line where it has no place to
    break stays whole on its own line."""
    parts = []
    for i, t in enumerate(terms):
        if isinstance(t, Piece):
            p = t
            if i > 0 and not t.flat.startswith(("-", "+")):
                p = Piece("+ " + t.flat, "+ ", (t,))
        else:
            t = t.strip()
            p = Piece(t if i == 0 or t.startswith("-") else "+ " + t)
        parts.append(p)
    packer = _Packer(limit)
    packer.emit(Piece(" ".join(p.flat for p in parts), parts=tuple(parts), kind="sum"), 0, 0)
    return packer.finish()


class _Packer:
    """Greedy filling of lines with the pieces of one formula (see :func:`_break`)."""

    def __init__(self, limit):
        self.limit = limit
        self.lines = []
        self.cur, self.depth = "", 0

    def _indent(self, depth):
        return r"\quad " * min(depth, MAX_INDENT)

    def _room(self, text, reserve=0):
        """Whether ``text`` still fits on the current line, ``reserve`` characters kept for what
        must follow it there (closing delimiters)."""
        return width(self.cur + text) + 2 * min(self.depth, MAX_INDENT) + reserve <= self.limit

    def put(self, text):
        if self.cur and text and not self.cur.endswith(" ") and not text.startswith(
                (" ", "^", "_", ",")) and not self.cur.endswith(("[", "(", r"\,")):
            self.cur += " "
        self.cur += text

    def newline(self, depth):
        if self.cur.strip():
            self.lines.append(self._indent(self.depth) + self.cur.rstrip())
        self.cur, self.depth = "", depth

    def _fresh(self, text, depth, reserve=0):
        """Whether ``text`` fits on a new line at ``depth``."""
        return width(text) + 2 * min(depth, MAX_INDENT) + reserve <= self.limit

    def _open_line(self):
        """The current line holds more than its indent and a dangling sign."""
        c = self.cur.strip()
        return bool(c) and not c.endswith(("+", "-", r"\times"))

    def _lead(self, p):
        """The width of ``p`` up to its first place to break (a product that fits on a line
        of its own counts whole: after an opening delimiter it moves rather than breaks)."""
        if not p.parts or p.kind == "product" and self._fresh(p.flat, self.depth + 1):
            return width(p.flat)
        return width(p.open) + self._lead(p.parts[0])

    def emit(self, p, depth, reserve):
        """Put piece ``p`` on the lines (``depth``: the level of its continuation lines;
        ``reserve``: characters that must follow it on its last line).

        Where a part does not fit on the current line: a term of a sum or an operator
        argument starts a new line; a factor of a product starts one (with ``\times``) if its
        own first place to break is already out of reach, or if it fits there whole and the
        current line is a third full, else it breaks inside; a first part right after an opening delimiter goes to a new line if it
        cannot break or is a product that fits there whole (last resort)."""
        if not p.parts or self._room(p.flat, reserve):
            self.put(p.flat)
            return
        self.put(p.open)
        inner = depth + 1 if p.nest else depth
        last = len(p.parts) - 1
        for i, q in enumerate(p.parts):
            r = reserve + width(p.close) if i == last else 0
            if self._room(q.flat, r):
                self.put(q.flat)
                continue
            if i > 0 and self._open_line():
                if p.kind in ("sum", "args"):
                    self.newline(inner)
                elif not self._room("x" * self._lead(q)) or self._fresh(
                        r"\times " + q.flat, inner, r) and 3 * width(self.cur) > self.limit:
                    self.newline(inner)
                    self.put(r"\times ")
            elif i == 0 and self._open_line() and (
                    not q.parts or q.kind == "product" and self._fresh(q.flat, inner, r)):
                # after an opening delimiter: a product (a fraction) moves whole rather than
                # break between its factors
                self.newline(inner)
            self.emit(q, inner, r)
        self.put(p.close)

    def finish(self):
        self.newline(0)
        return self.lines


# -- the whole document ----------------------------------------------------------------------------

def render(doc):
    r"""The LaTeX source of ``doc`` (verified first unless it already was with the current
    quantities: raises ProofError if a check fails).

    >>> from modeq.proofs import build_document, render
    >>> tex = render(build_document("gd", order=1))
    >>> tex.count(r"\section{"), "All 11 checks passed" in tex
    (6, True)
    """
    doc.ensure_verified()
    R = _Renderer(doc)
    out = [PREAMBLE, r"\title{%s}" % doc.title,
           r"\author{generated by \texttt{modeq} from the optimizer's recursion}",
           r"\date{}", r"\begin{document}", r"\maketitle", ""]
    if doc.summary:
        out += [r"\begin{abstract}", doc.summary, r"\end{abstract}", ""]
    out += [r"\section*{Conventions}"] + [p + "\n" for p in doc.conventions]
    abbrev = [a for a in doc.abbreviations if isinstance(a.symbol, FieldSymbol)]
    if abbrev:
        out.append(r"Abbreviations used throughout (point-dependent, componentwise):")
        rows = []
        for a in abbrev:
            rows.append(a.latex.replace("=", "&:=", 1) if a.latex else
                        r"%s_j &:= F_{0,j} = %s" % (a.symbol.name, _join(R.terms(a.value))))
        out.append("\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}")
    for i, st in enumerate(doc.steps, 1):
        label = st.label or f"step:{i}"
        out.append(r"\section{%s}\label{%s}" % (st.title, label))
        for item in st.items:
            kind = item[0]
            if kind == "text":
                out.append(item[1] + "\n")
            elif kind == "equations":
                out.append(R.block(item[1]))
            elif kind == "sumtree":
                out.append(R.block(item[1], sumtree=True))
            elif kind == "raw":
                out.append("\\begin{align}\n" + " \\\\\n".join(item[1]) + "\n\\end{align}")
            elif kind == "table":
                header, rows = item[1], item[2]
                cols = "l" * len(header)
                body = " \\\\\n".join(" & ".join(r) for r in rows)
                out.append("\\begin{center}\n\\begin{tabular}{%s}\n%s \\\\\n\\hline\n%s\n"
                           "\\end{tabular}\n\\end{center}" % (cols, " & ".join(header), body))
    out.append(r"\section*{Checks run when this document was generated}")
    out.append("All %d checks passed. Each compares quantities read back from the document "
               "model, exactly (rational arithmetic, symbolic hyperparameters)." % len(doc.checks))
    out.append(r"\begin{enumerate}\setlength{\itemsep}{0pt}")
    for c in doc.checks:
        out.append(r"\item[{[%s]}] %s." % (c.label, c.description))
    out.append(r"\end{enumerate}")
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def equation_tex(doc, lhs, key, sumtree=False):
    r"""One quantity of ``doc`` laid out as in the document, as an ``aligned`` block (for
    notebooks: ``IPython.display.Math(equation_tex(doc, "F_{1,j}", "F1"))``).

    >>> from modeq.proofs import document, equation_tex
    >>> print(equation_tex(document("gd"), "F_{1,j}", "F1"))
    \begin{aligned}F_{1,j} &= \frac{1}{2}\,(H\,g)_j\end{aligned}
    """
    lines = _Renderer(doc).equation_lines(Equation(lhs, key=key), sumtree=sumtree)
    lines = [ln.replace(r" \nonumber", "") for ln in lines]
    return "\\begin{aligned}" + " \\\\ ".join(lines) + "\\end{aligned}"


def write_tex(doc, path):
    r"""Render and write atomically (a failed render leaves any previous file intact).

    >>> import os, tempfile
    >>> from modeq.proofs import document, write_tex
    >>> path = write_tex(document("gd"), os.path.join(tempfile.mkdtemp(), "gd.tex"))
    >>> open(path).read().startswith(r"\documentclass")
    True
    """
    text = render(doc)
    atomic_write_text(path, text)
    return path


# -- compiling ---------------------------------------------------------------------------------------

def latex_engine():
    """``"latexmk"``, ``"pdflatex"`` or ``None`` (no LaTeX installed).

    >>> from modeq.proofs import latex_engine
    >>> latex_engine() in ("latexmk", "pdflatex", None)
    True
    """
    for tool in ("latexmk", "pdflatex"):
        if shutil.which(tool):
            return tool
    return None


def compile_pdf(tex_path, pdf_path=None, engine=None):
    r"""Compile ``tex_path`` in a temporary folder and move the PDF atomically to ``pdf_path``
    (default: next to the ``.tex``).  Raises ``RuntimeError`` with the LaTeX log tail on error,
    ``FileNotFoundError`` if no LaTeX is installed.

    >>> import os, tempfile
    >>> from modeq.proofs import compile_pdf
    >>> tex = os.path.join(tempfile.mkdtemp(), "x.tex")
    >>> _ = open(tex, "w").write(r"\documentclass{article}\begin{document}ok\end{document}")
    >>> os.path.basename(compile_pdf(tex, engine="pdflatex"))
    'x.pdf'
    """
    engine = engine or latex_engine()
    if engine is None:
        raise FileNotFoundError("no LaTeX found (latexmk or pdflatex); compile the .tex with "
                                "'pdflatex FILE.tex'")
    pdf_path = pdf_path or os.path.splitext(tex_path)[0] + ".pdf"
    with tempfile.TemporaryDirectory(prefix="modeq-latex-") as tmp:
        src = os.path.join(tmp, "doc.tex")
        shutil.copyfile(tex_path, src)
        if engine == "latexmk":
            cmd = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"]
            runs = [cmd]
        else:
            cmd = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"]
            runs = [cmd, cmd]          # second run resolves references
        for c in runs:
            proc = subprocess.run(c, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=300)
            if proc.returncode != 0:
                tail = proc.stdout.decode("utf-8", "replace").splitlines()[-25:]
                raise RuntimeError(f"{engine} failed on {tex_path}:\n" + "\n".join(tail))
        with atomic_path(pdf_path) as out:
            shutil.copyfile(os.path.join(tmp, "doc.pdf"), out)
    return pdf_path

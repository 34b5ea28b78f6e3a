"""LaTeX printing of component expressions for the derivation documents.

Conventions of the printed formulas: ``g_j``, ``s_j``, ``u_j`` are components ``j`` of vector
fields; inside an operator the same letters stand for the whole vector (``(H u)_j =
sum_i H_ji u_i``, ``T[u, w]_j = sum_{i,k} T_jik u_i w_k``).  A superscript ``(k)`` marks the
loss of step ``k`` in mini batch (``g^{(k)}_j``, ``H^{(k)}``).  ``eps`` prints as
``\\varepsilon``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import sympy as sp
from sympy.printing.latex import LatexPrinter

from modeq.symbolic.operators import D3, FULL, Grad, Hess
from .notation import FieldSymbol

__all__ = ["DocPrinter", "Piece", "tex", "width"]


def width(tex):
    """A rough visible width of a LaTeX formula (fractions count their longer part)."""
    s = tex
    for _ in range(6):
        new = re.sub(r"\\frac\{((?:[^{}]|\{[^{}]*\})*)\}\{((?:[^{}]|\{[^{}]*\})*)\}",
                     lambda m: m.group(1) if width(m.group(1)) >= width(m.group(2))
                     else m.group(2), s)
        if new == s:
            break
        s = new
    s = re.sub(r"\\(left|right|biggl|biggr|Bigl|Bigr|bigl|bigr)", "", s)
    s = re.sub(r"\\[,;:!]", "", s)
    s = re.sub(r"\\[a-zA-Z]+", "x", s)
    s = re.sub(r"[{}^_ ]", "", s)
    return len(s)


@dataclass(frozen=True)
class Piece:
    r"""A formula with its places to break a line: printed ``flat`` where it fits, else as
    ``open``, the ``parts`` (each a :class:`Piece`) and ``close``.

    ``kind`` says where a line may break between parts: ``"sum"`` before any part after the
    first (each such part starts with its sign), ``"args"`` after the comma ending a part
    (operator arguments), ``"product"`` only where a factor fits nowhere else (the new line
    starts with ``\times``).  ``nest``: the parts are inside delimiters (continuation lines
    are indented one more step).  The broken form differs from ``flat`` only in the size of
    its delimiters (``\Bigl(`` or ``\biggl(`` for ``\left(``, which cannot span lines) and
    in a fraction ``\frac{N}{D}`` written ``\frac{c}{D}\,N`` when its numerator ``N`` is
    broken.
    """
    flat: str
    open: str = ""
    parts: tuple = ()
    close: str = ""
    kind: str = "product"
    nest: bool = False


def _prefixed(text, piece):
    """``piece`` preceded by ``text`` (a sign) on the same line."""
    return Piece(text + piece.flat, text, (piece,))


class DocPrinter(LatexPrinter):
    """A LaTeX printer aware of the component algebra (see module docstring).  ``names`` maps
    symbols or undefined functions to LaTeX (functions: a callable ``fmt(printer, *args)``
    returning LaTeX; ``printer.sub()`` is ``"_j"`` outside operators and ``""`` inside)."""
    printmethod = "_modeq_doc_latex"

    def __init__(self, names=None, **settings):
        settings.setdefault("mul_symbol", None)
        settings.setdefault("fold_short_frac", False)
        super().__init__(settings)
        self.names = dict(names or {})
        self.depth = 0

    # -- helpers ----------------------------------------------------------------------------
    def _inner(self, e, how=None):
        """``e`` printed one operator level deeper (no component subscript inside), by
        ``how`` (:meth:`_print` by default; :meth:`piece` for the breakable form)."""
        self.depth += 1
        try:
            return (how or self._print)(e)
        finally:
            self.depth -= 1

    def sub(self):
        return "_j" if self.depth == 0 else ""

    @staticmethod
    def _batch(b):
        return "" if b == FULL else "^{(%s)}" % sp.latex(b)

    def _exp(self, s, exp):
        return s if exp is None else "%s^{%s}" % (s, exp)

    # -- atoms ------------------------------------------------------------------------------
    def _print_Grad(self, e, exp=None):
        b = e.args[0]
        if b == FULL:
            s = "g" + self.sub()
        else:
            s = "g^{(%s)}%s" % (self._print(b), self.sub())
        if exp is not None:
            return "%s^{%s}" % (s, exp) if b == FULL else "\\left(%s\\right)^{%s}" % (s, exp)
        return s

    def _operator_argument(self, u):
        body = self._inner(u)
        simple = isinstance(u, (Grad, FieldSymbol)) or (
            isinstance(u, sp.Symbol) and len(body) <= 3) or (
            isinstance(u, sp.Function) and u.func in self.names)
        return body if simple else "\\left[%s\\right]" % body

    def _print_Hess(self, e, exp=None):
        b, u = e.args
        tag = "H" + ("" if b == FULL else "^{(%s)}" % self._print(b))
        arg = self._operator_argument(u)
        if arg.startswith("\\left["):
            s = "\\left(%s\\,%s\\right)%s" % (tag, arg, self.sub())
        else:
            s = "(%s\\,%s)%s" % (tag, arg, self.sub())
        return self._exp(s, exp)

    def _print_D3(self, e, exp=None):
        b, u, w = e.args
        tag = "T" + ("" if b == FULL else "^{(%s)}" % self._print(b))
        s = "%s[%s,\\,%s]%s" % (tag, self._inner(u), self._inner(w), self.sub())
        return self._exp(s, exp)

    def _print_Symbol(self, e, style="plain"):
        if e in self.names:
            return self.names[e]
        if isinstance(e, FieldSymbol):
            return e.name + self.sub()
        if e.name == "eps":
            return "\\varepsilon"
        if e.name == "theta":
            return "\\theta" + self.sub()
        return super()._print_Symbol(e, style=style)

    def _print_Function(self, e, exp=None):
        fmt = self.names.get(e.func)
        if fmt is not None:
            s = fmt(self, *e.args)
            if exp is not None:
                return "\\left(%s\\right)^{%s}" % (s, exp)
            return s
        return super()._print_Function(e, exp)

    def _print_Pow(self, e):
        b = e.base
        if isinstance(b, FieldSymbol) and e.exp.is_Integer and e.exp > 0:
            return "%s^{%s}" % (self._print(b), self._print(e.exp))
        return super()._print_Pow(e)


    # -- a formula with its places to break a line ------------------------------------------
    def piece(self, e):
        """``e`` as a :class:`Piece`: its LaTeX (as :meth:`doprint` gives it) and the places
        where a long line of it may break (inside sums, operator arguments and products)."""
        e = sp.sympify(e)
        flat = self._print(e)
        if isinstance(e, sp.Add):
            parts = []
            for i, t in enumerate(self._as_ordered_terms(e, order=None)):
                sign = ""
                if i > 0:
                    sign = "+ "
                    if t.could_extract_minus_sign():
                        sign, t = "- ", -t
                p = self.piece(t)
                if self._needs_add_brackets(t):
                    p = self._bracketed(p)
                parts.append(_prefixed(sign, p) if sign else p)
            return Piece(flat, parts=tuple(parts), kind="sum")
        if isinstance(e, sp.Mul):
            return self._mul_piece(e, flat)
        if isinstance(e, sp.Pow) and e.exp.is_Integer and e.exp > 0:
            if isinstance(e.base, sp.Add):
                inner = self.piece(e.base)
                z = self._size(inner.flat)
                return Piece(flat, r"\%sl(" % z, (inner,),
                             r"\%sr)^{%s}" % (z, self._print(e.exp)), nest=True)
            if isinstance(e.base, (Hess, D3)):
                return self._operator_piece(e.base, flat, "^{%s}" % self._print(e.exp))
        if isinstance(e, (Hess, D3)):
            return self._operator_piece(e, flat)
        return Piece(flat)

    @staticmethod
    def _size(flat):
        """The size of delimiters spanning lines around ``flat``: ``bigg`` around fractions
        (tall in display style), else ``Big``."""
        return "bigg" if r"\frac" in flat else "Big"

    def _bracketed(self, p):
        z = self._size(p.flat)
        return Piece(r"\left(%s\right)" % p.flat, r"\%sl(" % z, (p,), r"\%sr)" % z,
                     nest=True)

    def _operator_piece(self, e, flat, exp=""):
        if isinstance(e, Hess):
            b, u = e.args
            arg = self._operator_argument(u)
            if not arg.startswith("\\left["):
                return Piece(flat)
            tag = "H" + ("" if b == FULL else "^{(%s)}" % self._print(b))
            inner = self._inner(u, self.piece)
            z = self._size(inner.flat)
            return Piece(flat, r"\%sl(%s\,\%sl[" % (z, tag, z), (inner,),
                         r"\%sr]\%sr)" % (z, z) + self.sub() + exp, nest=True)
        b, u, w = e.args
        tag = "T" + ("" if b == FULL else "^{(%s)}" % self._print(b))
        first, second = self._inner(u, self.piece), self._inner(w, self.piece)
        z = self._size(first.flat + second.flat)
        first = Piece(first.flat + r",\,", "", (first,), r",\,")
        return Piece(flat, tag + r"\%sl[" % z, (first, second),
                     r"\%sr]" % z + self.sub() + exp, kind="args", nest=True)

    def _mul_piece(self, e, flat):
        if e.could_extract_minus_sign():
            return Piece(flat, "- ", (self.piece(-e),))
        num, den = sp.fraction(e, exact=True)
        c, rest = num.as_coeff_Mul()
        head = []
        if den != 1:
            head = [Piece(r"\frac{%s}{%s}" % (self._print(c), self._print(den)))]
        factors = list(rest.as_ordered_factors()) if isinstance(rest, sp.Mul) else [rest]
        if rest == 1:
            factors = []
        parts = head[:]
        for i, f in enumerate(factors):
            p = self.piece(f)
            if self._needs_mul_brackets(f, first=(i == 0 and not head and c == 1),
                                        last=(i == len(factors) - 1)):
                p = self._bracketed(p)
            parts.append(p)
        if den == 1 and c != 1:
            # an integer coefficient stays with its first factor
            if parts:
                parts[0] = _prefixed(self._print(c) + " ", parts[0])
            else:
                parts = [Piece(self._print(c))]
        if len(parts) < 2 and not any(p.parts for p in parts):
            return Piece(flat)
        return Piece(flat, parts=tuple(parts))


def tex(expr, names=None):
    """LaTeX of ``expr`` with :class:`DocPrinter`."""
    return DocPrinter(names).doprint(sp.sympify(expr))

"""LaTeX printing of component expressions for the derivation documents.

Conventions of the printed formulas: ``g_j``, ``s_j``, ``u_j`` are components ``j`` of vector
fields; inside an operator the same letters stand for the whole vector (``(H u)_j =
sum_i H_ji u_i``, ``T[u, w]_j = sum_{i,k} T_jik u_i w_k``).  A superscript ``(k)`` marks the
loss of step ``k`` in mini batch (``g^{(k)}_j``, ``H^{(k)}``).  ``eps`` prints as
``\\varepsilon``.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter

from modeq.symbolic.operators import FULL, Grad
from .notation import FieldSymbol

__all__ = ["DocPrinter", "tex"]


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
    def _inner(self, e):
        self.depth += 1
        try:
            return self._print(e)
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


def tex(expr, names=None):
    """LaTeX of ``expr`` with :class:`DocPrinter`."""
    return DocPrinter(names).doprint(sp.sympify(expr))

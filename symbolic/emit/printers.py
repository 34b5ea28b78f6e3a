"""SymPy code printers for the emit targets, with modeq's fixes.

``Sqrt`` (the shared square root of :mod:`.prepare`) prints as the backend's ``sqrt``; integer
powers ``x**k`` with ``2 <= |k| <= 4`` are multiplied out (NumPy, torch); Python's ``**`` is used
instead of ``torch.pow`` (no ``torch.pow`` of two Python numbers); ``Max``/``Min`` are
elementwise for torch; on request, finite products and geometric memory sums over the step
index call running tables (:mod:`.products`, :mod:`.running_sums`).  :func:`literal_printer`
prints generated source: non-rational constants as 17-digit literals.
"""
from __future__ import annotations

import sympy as sp

from ..family import n as n_sym
from . import products
from .prepare import is_constant
from .running_sums import NAME as RUNNING_SUM, geometric_ratio

__all__ = ["PRINTABLE", "make_printer", "literal_printer"]

#: targets with a printer: the three numeric backends and exact SymPy arithmetic
PRINTABLE = ("mpmath", "numpy", "torch", "exact")
# integer powers x**k with 2 <= |k| <= _POW_EXPAND are printed as products (NumPy, torch)
_POW_EXPAND = 4
_CLASSES = {}
# sums of more terms are printed as builtins.sum of a tuple (Python's compiler nests a + b + ...)
_LONG_ADD = 64


def make_printer(backend, fully_qualified=True, prefix_products=False, running_sums=False):
    """A SymPy code printer for ``backend`` (one of :data:`PRINTABLE`).  ``prefix_products``:
    finite products call :func:`.products.prefix_product` (bound as ``products.NAME`` in the
    namespace of the compiled code), else they are multiplied out in place.
    ``running_sums`` (mpmath): a sum over past steps ``sum_{l=lo}^{n+k} f(n, l)`` with
    ``f(n+1, l) = r f(n, l)`` calls :func:`.running_sums.running_sum` (a recurrence in ``n``);
    for kernels whose arguments are ``n`` and constants (a field's step-index coefficients)."""
    if backend not in PRINTABLE:
        raise ValueError(f"backend must be one of {PRINTABLE}, got {backend!r}")
    if backend not in _CLASSES:
        _CLASSES[backend] = _printer_class(backend)
    printer = _CLASSES[backend]({"fully_qualified_modules": fully_qualified, "inline": True,
                                 "allow_unknown_functions": True, "user_functions": {}})
    printer.prefix_products = prefix_products
    printer.running_sums = running_sums and backend == "mpmath"
    return printer


def literal_printer(backend):
    """``print(expr) -> str`` for generated source: the backend printer, with every
    non-rational constant written as a 17-digit literal."""
    p = make_printer(backend)

    def print_(e):
        e = e.replace(lambda x: isinstance(x, sp.Expr) and x.is_number and not x.is_Rational
                      and not x.free_symbols,
                      lambda x: sp.Float(x.evalf(17), 17))
        return p.doprint(e)

    return print_


def _printer_class(backend):
    from sympy.printing.precedence import PRECEDENCE, precedence

    if backend == "numpy":
        from sympy.printing.numpy import NumPyPrinter as Base
        sqrt_name = "numpy.sqrt"
    elif backend == "torch":
        from sympy.printing.pytorch import TorchPrinter as Base
        sqrt_name = "torch.sqrt"
    elif backend == "exact":
        from sympy.printing.pycode import SymPyPrinter as Base
        sqrt_name = "sympy.sqrt"
    else:
        from sympy.printing.pycode import MpmathPrinter as Base
        sqrt_name = "mpmath.sqrt"
    expand_powers = backend in ("numpy", "torch")

    class Printer(Base):
        prefix_products = False

        def _print_Add(self, expr, order=None):
            # a long flat sum ``a + b + ...`` is a left-nested expression tree in Python's
            # compiler (a RecursionError past about a thousand terms): a tuple summed instead
            if len(expr.args) <= _LONG_ADD:
                return super()._print_Add(expr, order=order)
            terms = ", ".join(self._print(t) for t in self._as_ordered_terms(expr, order=order))
            return f"{self._module_format('builtins.sum')}(({terms},))"

        def _print_Product(self, expr):
            if self.prefix_products and len(expr.limits) == 1:
                (i, a, b), = expr.limits
                body = self._print(expr.function)
                others = sorted(expr.function.free_symbols - {i}, key=str)
                values = "".join(f"{self._print(s)}, " for s in others)
                return (f"{products.NAME}({body!r}, (lambda {self._print(i)}: {body}), "
                        f"{self._print(a)}, {self._print(b)}, ({values}), "
                        f"{backend == 'mpmath'})")
            # a finite product over a step index (NAdam's schedule), as a generator
            loops = " ".join(f"for {self._print(i)} in range({self._print(a)}, "
                             f"{self._print(b)}+1)" for i, a, b in expr.limits)
            prod = "mpmath.fprod" if backend == "mpmath" else "math.prod"
            return f"({self._module_format(prod)}({self._print(expr.function)} {loops}))"

        running_sums = False

        def _print_Sum(self, expr):
            if self.running_sums and len(expr.limits) == 1:
                (l, lo, hi), = expr.limits
                f = expr.function
                r = (geometric_ratio(f, n_sym, l, hi)
                     if hi.has(n_sym) and not lo.has(n_sym) else None)
                if r is not None:
                    body = self._print(f)
                    others = sorted((f.free_symbols | r.free_symbols) - {l, n_sym}, key=str)
                    values = "".join(f"{self._print(s)}, " for s in others)
                    nn = self._print(n_sym)
                    return (f"{RUNNING_SUM}({body!r}, (lambda {nn}, {self._print(l)}: "
                            f"{body}), {self._print(lo)}, {self._print(sp.expand(hi - n_sym))}, "
                            f"{self._print(r)}, {nn}, ({values}), "
                            f"{self._module_format('mpmath.mp')}.prec)")
            if backend == "exact":
                # indices as SymPy integers: ``1/(l + 3)`` stays a rational, not a float
                loops = " ".join(f"for {self._print(i)} in map("
                                 f"{self._module_format('sympy.Integer')}, range("
                                 f"{self._print(a)}, {self._print(b)}+1))"
                                 for i, a, b in expr.limits[::-1])
                return f"(builtins.sum({self._print(expr.function)} {loops}))"
            return super()._print_Sum(expr)

        def _print_Sqrt(self, expr):
            return f"{self._module_format(sqrt_name)}({self._print(expr.args[0])})"

        def _print_Pow(self, expr, rational=False):
            b, x = expr.args
            if x.is_Integer and expand_powers and 2 <= abs(int(x)) <= _POW_EXPAND:
                base = self.parenthesize(b, PRECEDENCE["Mul"], strict=True)
                prod = "*".join([base] * abs(int(x)))
                return f"({prod})" if x > 0 else f"(1/({prod}))"
            if x == -1:
                return f"(1/{self.parenthesize(b, PRECEDENCE['Pow'], strict=True)})"
            if x == sp.S.Half:
                return f"{self._module_format(sqrt_name)}({self._print(b)})"
            if x == -sp.S.Half:
                return f"(1/{self._module_format(sqrt_name)}({self._print(b)}))"
            if x.is_Integer or backend in ("torch", "exact"):
                # Python's operator: no float exponent for integers, no torch.pow(int, int)
                PREC = precedence(expr)
                return "{}**{}".format(self.parenthesize(b, PREC, strict=False),
                                       self.parenthesize(x, PREC, strict=False))
            return super()._print_Pow(expr, rational=rational)

        if backend == "torch":
            def _minmax(self, expr, fn):
                args = [self._print(a) if not is_constant(a)
                        else f"{self._module_format('torch.as_tensor')}({self._print(a)})"
                        for a in expr.args]
                out = args[0]
                for a in args[1:]:
                    out = f"{self._module_format(fn)}({out}, {a})"
                return out

            def _print_Max(self, expr):
                return self._minmax(expr, "torch.maximum")

            def _print_Min(self, expr):
                return self._minmax(expr, "torch.minimum")

    Printer.__name__ = f"Modeq{Base.__name__}"
    return Printer

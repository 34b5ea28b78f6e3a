"""One kernel: a list of SymPy expressions compiled for one arithmetic.

``Kernel(exprs, args, backend, dtype=None, cse=True)``; ``kernel(*values)`` returns the list of
values, one per expression.  Backends: ``"mpmath"`` (constants at the *call-time*
``mpmath.mp.prec``, cached per precision), ``"numpy"`` / ``"torch"`` (elementwise over arrays;
constants correctly rounded to ``dtype``), and ``"exact"`` (SymPy numbers: rationals stay exact).
Expressions are prepared by :func:`~.prepare.prepare_expressions` (constants lifted, square
roots shared), printed by :func:`~.printers.make_printer` and compiled by ``sympy.lambdify``
with :func:`~.prepare.cse_with_opaque_sums`.  Every emitted callable is built from kernels.
"""
from __future__ import annotations

import importlib
import inspect

import sympy as sp

from ..dag import free_symbols
from . import intervals, products, running_sums
from .arrays import resolve_dtype, stack_components
from .prepare import cse_with_opaque_sums, prepare_expressions
from .printers import PRINTABLE, make_printer

__all__ = ["Kernel", "compile_exprs"]


class Kernel:
    """A list of SymPy expressions compiled for one backend (see the module docstring).

    ``kernel.source`` is the printed function; constants enter as trailing arguments.
    ``running=True`` (mpmath, for arguments ``n`` and constants): geometric memory sums over
    past steps by their recurrence in ``n`` (:mod:`.running_sums`).
    ``ValueError`` if an expression has a free symbol that is not in ``args``.

    >>> x, y = sp.symbols("x y")
    >>> Kernel([x / 3 + y, x * y], [x, y], "exact")(1, 2)
    [7/3, 2]
    """

    def __init__(self, exprs, args, backend="numpy", dtype=None, cse=True, running=False):
        if backend not in PRINTABLE + ("interval",):
            raise ValueError(f"backend must be one of {PRINTABLE}, got {backend!r}")
        self.backend = backend
        self.dtype = None if backend in ("exact", "interval") else resolve_dtype(backend, dtype)
        exprs = [sp.sympify(e) for e in exprs]
        args = list(args)
        free = set().union(*(free_symbols(e) for e in exprs)) if exprs else set()
        extra = free - set(args)
        if extra:
            raise ValueError(f"expression uses symbol(s) {sorted(map(str, extra))} that have "
                             f"no value (arguments: {[str(a) for a in args]})")
        prepared, consts = prepare_expressions(exprs)
        self._placeholders = [d for d, _ in consts]
        self._constants = [c for _, c in consts]
        self._cache = {}
        module = {"exact": "sympy", "interval": "mpmath"}.get(backend, backend)
        # modules for the fully qualified names the printers use
        namespace = {m: importlib.import_module(m)
                     for m in (module, "functools", "builtins", "math")}
        namespace[products.NAME] = products.prefix_product
        namespace[running_sums.NAME] = running_sums.running_sum
        if backend == "interval":
            namespace["mpmath"] = intervals.NAMESPACE
        self._fn = sp.lambdify(args + self._placeholders, prepared,
                               modules=[namespace, module],
                               printer=make_printer(module if backend == "interval" else backend,
                                                    prefix_products=True,
                                                    running_sums=running),
                               cse=cse_with_opaque_sums if cse is True else cse,
                               dummify=False)
        self.exprs = exprs
        self.args = args

    @property
    def source(self):
        return inspect.getsource(self._fn)

    def constants(self, device=None):
        """Values of the lifted constants in the working arithmetic (cached)."""
        if self.backend == "mpmath":
            import mpmath
            key = mpmath.mp.prec
        elif self.backend == "interval":
            from mpmath import iv
            key = iv.prec
        else:
            key = device
        if key not in self._cache:
            self._cache[key] = [self._value(c, device) for c in self._constants]
        return self._cache[key]

    def _value(self, c, device):
        if self.backend == "exact":
            return c
        if self.backend == "interval":
            from mpmath import iv
            if c.is_Rational:
                return iv.mpf(int(c.p)) / int(c.q)
            return intervals.enclose(c.evalf(int(iv.prec * 0.302) + 15))
        if self.backend == "mpmath":
            import mpmath
            if c.is_Rational:
                return mpmath.mpf(int(c.p)) / int(c.q)
            return mpmath.mpf(c.evalf(mpmath.mp.dps + 15))
        if self.backend == "numpy":
            if self.dtype.itemsize > 8:
                return self.dtype.type(str(c.evalf(40)))
            return self.dtype.type(float(c.evalf(30)))
        import torch
        return torch.tensor(float(c.evalf(30)), dtype=self.dtype, device=device)

    def __call__(self, *values, device=None):
        return self._fn(*values, *self.constants(device))

    def broadcast(self, outs, batch_shape, device=None):
        """Stack per-expression results into one array of shape ``(len(outs), *batch_shape)``
        in the working dtype (constant results are broadcast)."""
        return stack_components(self.backend, self.dtype, outs, batch_shape, device)


def compile_exprs(exprs, args, arithmetic="mpmath"):
    """``fn(*args) -> list``: ``exprs`` evaluated in ``"mpmath"`` (at the call-time precision)
    or ``"exact"`` (SymPy numbers) arithmetic.

    >>> x = sp.Symbol("x")
    >>> compile_exprs([x**2 / 2], [x], "exact")(sp.Rational(1, 3))
    [1/18]
    """
    if arithmetic not in ("mpmath", "exact"):
        raise ValueError(f"arithmetic must be one of ('mpmath', 'exact'), got {arithmetic!r}")
    kernel = Kernel(exprs, args, arithmetic)
    return lambda *a: list(kernel(*a))

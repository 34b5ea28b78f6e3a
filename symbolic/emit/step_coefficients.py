"""The step-index coefficients of compiled expressions, evaluated once per ``n`` in mpmath.

A field or a matrix-free function exact in the step index ``n`` has parts that depend on ``n``
(and on late-bound constants such as ``h``) but not on the point: memory moments in closed
form, bias corrections, NAdam's products ``mu_1 ... mu_t``, finite memory sums.
:class:`StepCoefficients` takes each maximal such part out of the expressions
(:func:`~.prepare.hoist_coefficients`; in float arithmetic after their growth is balanced,
:mod:`.growth`), evaluates them per ``n`` in mpmath with guard digits (memory sums by their
recurrence in ``n``, :mod:`.running_sums`) and rounds once to the working arithmetic: their
closed forms cancel badly in float64 for decays near 1 (``1 - (n+1) rho^n + n rho^(n+1)`` with
``rho = 0.999``), and their parts leave the float range (NAdam's ``600^(n psi)``).
"""
from __future__ import annotations

from ..family import n as n_sym
from .arrays import all_finite, resolve_dtype, to_mpf
from .growth import balance_growth
from .kernel import Kernel
from .prepare import hoist_coefficients

__all__ = ["StepCoefficients"]


class StepCoefficients:
    """``exprs`` with their step-index coefficients taken out (module docstring).

    ``uses_n``: whether an expression reads ``n``; ``body``: the expressions in the coefficient
    symbols ``symbols`` (each an argument of the kernels compiled from ``body``, after the
    point's); ``kernel``: the coefficients' mpmath kernel (arguments ``n`` and the late
    constants; ``None`` without any); ``values(n, late, device)`` gives the coefficients'
    values at step ``n`` in the working arithmetic, ``late`` the exact values of the late-bound
    constants ``late`` (memoized per step and values)."""

    _MEMO_SIZE = 4096

    def __init__(self, exprs, point, backend, dtype=None, cse=True, late=(), what="field"):
        exprs = list(exprs)
        self.backend, self.late, self._what = backend, list(late), what
        self.dtype = resolve_dtype(backend, dtype)
        self.uses_n = any(e.has(n_sym) for e in exprs)
        if backend in ("numpy", "torch") and self.uses_n:
            exprs = balance_growth(exprs, n_sym, point)
        self.body, coeffs = hoist_coefficients(exprs, point, {n_sym, *self.late})
        self.symbols = [s for s, _ in coeffs]
        self.kernel = Kernel([e for _, e in coeffs], [n_sym, *self.late], "mpmath", None, cse,
                              running=True) if coeffs else None
        self._memo = {}

    def __bool__(self):
        return self.kernel is not None

    def values(self, n, late=(), device=None):
        """The coefficients at step ``n`` (mpmath numbers at the working precision, or floats
        of ``dtype``); ``FloatingPointError`` where one is past the float range."""
        if self.kernel is None:
            return []
        import mpmath
        mp_backend = self.backend == "mpmath"
        key = (n, tuple(late), mpmath.mp.prec if mp_backend else str(device))
        if key in self._memo:
            return self._memo[key]
        if len(self._memo) >= self._MEMO_SIZE:
            self._memo.clear()
        with mpmath.workdps(mpmath.mp.dps + 10 if mp_backend else 30):
            values = list(self.kernel(n, *[to_mpf(v) for v in late]))
        if mp_backend:
            out = [+v for v in values]                   # rounded to the working precision
        elif self.backend == "numpy":
            out = [self.dtype.type(str(v)) if self.dtype.itemsize > 8
                   else self.dtype.type(float(v)) for v in values]
        else:
            import torch
            out = [torch.tensor(float(v), dtype=self.dtype, device=device) for v in values]
        if not mp_backend and not all_finite(out):
            raise FloatingPointError(
                f"a step-index coefficient of the {self._what} overflowed {self.dtype} at step "
                f"{n} (exact in n, it grows past the float range even with the growth of its "
                f"parts balanced against each other): evaluate with backend='mpmath'")
        self._memo[key] = out
        return out

"""The compiled full-batch field ``f(n, theta) -> d theta/dt = -F^(n)(theta)``
(:class:`FullBatchField`).

Its coefficients that depend on the step index ``n`` (and on late-bound constants such as
``h``) but not on the point are evaluated once per ``n`` in mpmath and rounded once to the
working arithmetic (:class:`~.step_coefficients.StepCoefficients`).  Constants named in
``late`` stay symbols in the compiled code and are given by :meth:`FullBatchField.bind`, so
that an order study compiles each flow once for all its step sizes.  The sums over past steps
with no closed form in ``n`` are evaluated by :class:`~.past_sums.PastSums` (node tables,
windowed sums or every term, by backend and ``n``).  Where those sums nest (their node
tables cost ``O(n)`` per call), :attr:`FullBatchField.limit`
(:class:`~.stationary_limit.StationaryLimit`) hands the steps past the transient to the
stationary field, equal at the working precision.
"""
from __future__ import annotations

import math

from ..family import n as n_sym
from .arrays import as_points, to_mpf
from .kernel import Kernel
from . import mpfr
from .past_sums import PastSums
from .prepare import extract_sums
from .step_coefficients import StepCoefficients
from .values import check_step, resolve_symbols

__all__ = ["FullBatchField"]

_MEMO_SIZE = 4096


class FullBatchField:
    """``f(n, theta) -> d theta/dt = -F^(n)(theta)`` for a full-batch flow (module docstring).

    ``n``: the step index (an integer >= 0; may be ``None`` when the field does not depend on
    it, e.g. ``stationary=True``).  Attributes: ``expressions`` (the lowered components,
    exact), ``source`` (the printed code), ``backend``, ``dtype``, ``p``, ``late`` (symbols
    still to be bound), ``sums`` (the sums over past steps, :class:`~.past_sums.PastSums`).
    ``step_data=True``: the sums read per-step data, given per call as ``data``
    (:class:`~.step_indexed.StepIndexedField` builds such fields, and passes ``period = (N0,
    m)`` past their periodic start: the node tables start there, :mod:`.node_tables`).  The attribute ``limit``: a
    :class:`~.stationary_limit.StationaryLimit` set by the builder, or ``None``; from
    :meth:`limit_start` on, a call evaluates the stationary field instead (module docstring).
    """

    def __init__(self, exprs, params, backend, dtype=None, cse=True, late=(), decays=(),
                 step_data=False):
        self.expressions = list(exprs)
        self.params = list(params)
        self.p = len(self.params)
        self.backend = backend
        self.late = list(late)
        self._decays = list(decays)
        self._coefficients = StepCoefficients(self.expressions, self.params, backend, dtype,
                                              cse, self.late)
        self.uses_n = self._coefficients.uses_n
        body, groups = extract_sums(self._coefficients.body)
        head = [n_sym, *self.params, *self.late, *self._coefficients.symbols]
        self.sums = PastSums(groups, head, backend, dtype, cse, step_data)
        self.kernel = Kernel(body, head + self.sums.symbols, backend, dtype, cse)
        self.dtype = self.kernel.dtype
        # the same code in MPFR arithmetic (:mod:`.mpfr`), where gmpy2 is installed; with past
        # sums, their values (summed by :class:`.PastSums`) are its last arguments
        self._fast_kernel = mpfr.fast_kernel(self.kernel)
        self._fast = self._fast_kernel if not self.sums else None
        self._bound = None if self.late else []
        self._exact_late = []
        self._memo = {}
        self.limit = None
        self._limit_field = None

    def bind(self, **values):
        """A copy with the late-bound constants set (exact conversion, ranges checked); the
        compiled kernels are shared."""
        exact = resolve_symbols(self.late, values, self._decays, "this field")
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out._exact_late = [exact[s] for s in self.late]
        out._bound = [self._in_arithmetic(v) for v in out._exact_late]
        out._memo = {}
        out._limit_field = None
        return out

    @property
    def source(self):
        return self.kernel.source

    def _in_arithmetic(self, v):
        if self.backend == "mpmath":
            return v                       # converted at call time, at the working precision
        if self.backend == "numpy":
            return self.dtype.type(float(v))
        import torch
        return torch.tensor(float(v), dtype=self.dtype)

    def _late_values(self, device):
        if self.backend == "mpmath":
            import mpmath
            key = ("late", mpmath.mp.prec)
            if key not in self._memo:
                self._memo[key] = [to_mpf(v) for v in self._exact_late]
            return self._memo[key]
        if self.backend == "torch" and device is not None:
            return [b.to(device) for b in self._bound]
        return self._bound

    def _coefficient_values(self, n, device):
        return self._coefficients.values(n, self._exact_late, device)

    def __call__(self, n, theta, data=None, period=None):
        if self._bound is None:
            raise ValueError(f"this field has late-bound constants {[str(s) for s in self.late]}"
                             f": call .bind({self.late[0]}=...) first")
        n = check_step(n, self.uses_n)
        start = self.limit_start() if data is None else None
        if start is not None and n >= start and self.limit.field is not None:
            return self._stationary()(None, theta)
        x = as_points(theta, self.p, self.backend, self.dtype)
        if self._fast is not None:
            import mpmath
            prec = mpmath.mp.prec
            outs = mpfr.run(prec, lambda: self._fast(prec, n, *map(mpfr.from_mpf, x),
                                                      *self._fast_head(n, prec)),
                            lambda r: mpfr.to_mpf(r, prec))
            if outs is not None:
                return outs
        device = getattr(x, "device", None)
        head = [n, *x, *self._late_values(device), *self._coefficient_values(n, device)]
        sums = self.sums(head, device, data, period)
        if self._fast_kernel is not None and self.sums and _all_real(sums):
            import mpmath
            prec = mpmath.mp.prec
            outs = mpfr.run(prec, lambda: self._fast_kernel(
                prec, n, *map(mpfr.from_mpf, x), *self._fast_head(n, prec),
                *map(mpfr.from_mpf, sums)), lambda r: mpfr.to_mpf(r, prec))
            if outs is not None:
                return outs
        try:
            outs = self.kernel(*head, *sums, device=device)
        except ZeroDivisionError:
            raise ValueError(
                f"the field divides by zero at step {n}, theta = {[str(v) for v in x]}: a term "
                f"is singular there (e.g. with eps outside the root the order-2 term holds "
                f"g/|g|, undefined where a component of the gradient is 0)") from None
        if self.backend == "mpmath":
            return list(outs)
        return self.kernel.broadcast(outs, tuple(x.shape[1:]), device)

    def limit_start(self):
        """The first step evaluated by the stationary field at the current working precision
        (``None`` without a :attr:`limit` or while a decay is unbound)."""
        if self.limit is None:
            return None
        return self.limit.start(self.precision, self.bound_values)

    @property
    def bound_values(self):
        """``{symbol: exact value}`` of the late-bound constants (empty until bound)."""
        return dict(zip(self.late, self._exact_late))

    @property
    def precision(self):
        """The working precision in bits (mpmath's, or the mantissa of the float dtype)."""
        if self.backend == "mpmath":
            import mpmath
            return mpmath.mp.prec
        if self.backend == "numpy":
            import numpy as np
            return np.finfo(self.dtype).nmant + 1
        import torch
        return int(round(-math.log2(torch.finfo(self.dtype).eps))) + 1

    def _stationary(self):
        """The stationary field, bound to this field's late-bound values."""
        if self._limit_field is None:
            field = self.limit.field
            if self.late:
                field = field.bind(**{str(s): v for s, v in self.bound_values.items()})
            self._limit_field = field
        return self._limit_field

    def fixed(self, n, values, bits, out_bits):
        """The field in fixed point, for an integrator that works in it: ``values[j]`` is
        ``theta_j 2^bits`` (an integer); returns ``[f_j 2^out_bits]`` (truncated integers), or
        ``None`` where the MPFR path does not apply (no gmpy2, a kernel it does not cover, a
        non-finite result): then call the field itself.  Same arithmetic as ``self(n, theta)``
        (the point rounded to the working precision first)."""
        if self._fast is None or self._bound is None:
            return None
        import mpmath
        prec = mpmath.mp.prec
        n = check_step(n, self.uses_n)
        return mpfr.run(prec, lambda: self._fast(prec, n, *(mpfr.from_fixed(v, bits)
                                                             for v in values),
                                                 *self._fast_head(n, prec)),
                        lambda r: mpfr.to_fixed(r, out_bits))

    def _fast_head(self, n, prec):
        """The late and step-index coefficient values as ``mpfr`` (memoized per ``n`` and
        precision; inside ``with mpfr.context(prec)``)."""
        key = ("mpfr", n, prec)
        head = self._memo.get(key)
        if head is None:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            values = [*self._late_values(None), *self._coefficient_values(n, None)]
            head = self._memo[key] = [mpfr.from_mpf(v) for v in values]
        return head

    def __repr__(self):
        return (f"FullBatchField(p={self.p}, backend={self.backend!r}, "
                f"dtype={self.dtype}, uses_n={self.uses_n})")


def _all_real(values):
    """Whether every value is an ``mpf`` or an integer (an ``mpc`` stays in mpmath)."""
    import mpmath
    return all(isinstance(v, (mpmath.mpf, int)) for v in values)

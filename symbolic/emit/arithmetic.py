"""The two arithmetics a mini-batch field runs in: the backend's own, or MPFR.

A mini-batch field (orders 0 to 2) is a loop over past steps of scalar weights and compiled
kernels of the current point.  The loop is written once, against an arithmetic ``ar``:

* :data:`Plain` -- the backend's numbers as they are (exact SymPy, ``mpf``, floats);
* :class:`InMpfr` -- MPFR at the working precision of mpmath (inside
  ``mpfr.context(prec)``): scalars converted from ``mpf`` by ``ar.num``, kernels run as their
  :attr:`Compiled.fast` code, a cyclic tail read through :class:`TailIn`.

Both round each operation to nearest at the same precision (:mod:`.mpfr`), so the loop gives
the same numbers up to the last bits of integer powers; only the speed differs.  A kernel whose
MPFR result is not finite raises :class:`NotFinite`, and the caller evaluates in mpmath.
"""
from __future__ import annotations

from . import mpfr
from .kernel import Kernel

__all__ = ["Compiled", "Plain", "InMpfr", "NotFinite", "TailIn"]


class Compiled:
    """A callable through :class:`~.kernel.Kernel` (modeq's printers: no torch printer gaps,
    constants at the working precision); a single expression gives a single value.  ``fast``
    is the same code in MPFR (:func:`.mpfr.fast_kernel`), or ``None``."""

    def __init__(self, args, exprs, modules, cse=True):
        self.single = not isinstance(exprs, (list, tuple))
        self.kernel = Kernel([exprs] if self.single else list(exprs), list(args), modules, None,
                             cse)
        self.fast = mpfr.fast_kernel(self.kernel)

    def __call__(self, *a):
        out = self.kernel(*a)
        return out[0] if self.single else out


class Plain:
    """The backend's own arithmetic (the tables' numbers as they are)."""
    key = None

    @staticmethod
    def num(v):
        return v

    @staticmethod
    def call(k, *a):
        return k(*a)

    @staticmethod
    def tail(tail):
        return tail


class NotFinite(ArithmeticError):
    """An MPFR kernel gave a value that is not finite (mpmath decides what it is)."""


class InMpfr:
    """MPFR arithmetic at ``prec`` bits (inside ``mpfr.context(prec)``): numbers converted from
    ``mpf``, kernels run as their :attr:`Compiled.fast` version."""
    key = "mpfr"

    def __init__(self, prec):
        self.prec = prec

    @staticmethod
    def num(v):
        return mpfr.from_mpf(v)

    def call(self, k, *a):
        out = k.fast(self.prec, *a)
        if out is None:
            raise NotFinite
        return out[0] if k.single else out

    def tail(self, tail):
        return None if tail is None else TailIn(tail, self.num)


class TailIn:
    """A :class:`~.cyclic_tail.CyclicTail` whose scalars are read in another arithmetic
    (``num`` converts one ``mpf``); conversions remembered, the tail itself unchanged."""

    def __init__(self, tail, num):
        self._tail, self._num = tail, num
        self.start, self.batch, self.m = tail.start, tail.batch, tail.m
        self._memo = {}

    def _get(self, key, read):
        hit = self._memo.get(key)
        if hit is None:
            if len(self._memo) > 4096:
                self._memo.clear()
            hit = self._memo[key] = read()
        return hit

    def residues(self, n, lo):
        return self._tail.residues(n, lo)

    def u(self, r):
        return self._get(("u", r % self.m),
                         lambda: [[self._num(v) for v in row] for row in self._tail.u(r)])

    def weights(self, r):
        return self._get(("w", r % self.m),
                         lambda: [self._num(v) for v in self._tail.weights(r)])

    def lag_sums(self, i, s, T):
        return self._get(("lag", i, s, T),
                         lambda: [self._num(v) for v in self._tail.lag_sums(i, s, T)])

    def limit(self, i):
        return self._get(("c", i), lambda: self._num(self._tail.limit(i)))

    def power(self, i, s):
        return self._get(("d", i, s), lambda: self._num(self._tail.power(i, s)))

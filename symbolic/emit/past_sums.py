"""The sums over past steps of a full-batch field, evaluated at one ``(n, point)``.

A field's lowered components may keep finite memory sums ``sum_{k=lo(n)}^{hi(n)} f(k, theta)``
(no closed form in ``n``); :func:`~.prepare.extract_sums` replaces each by a symbol and groups
them by their limits.  :class:`PastSums` gives their values, one way per situation:

* **node tables** (:mod:`.nested_sums`, one forward pass over the steps, linear in ``n``): always
  when a sum has sums inside it (a state reading another state; printed loops would cost
  ``O(n^depth)``), and for mpmath up to ``n = tables_up_to``.  In mpmath the tables run with
  :data:`GUARD_BITS` extra bits (they are recurrences over the steps) and are rounded once, in
  MPFR arithmetic where gmpy2 is installed;
* **windowed** (:func:`~.windowed.windowed_sum`, mpmath beyond ``tables_up_to``): the recent and
  the first steps term by term, the middle enclosed in interval arithmetic and kept only as far
  as it matters at the working precision (a proved bound; cost bounded in ``n``);
* **every term** (NumPy, torch): one compiled summand per group of equal limits, added up.

The tables are compiled at the first call that needs them.
"""
from __future__ import annotations

import sympy as sp

from ..dag import make_sum
from ..family import n as n_sym
from . import mpfr
from .intervals import point
from .kernel import Kernel
from .nested_sums import NestedSums
from .node_tables import NotPeriodic
from .windowed import windowed_sum

__all__ = ["PastSums", "GUARD_BITS"]

#: guard bits of the node tables in mpmath
GUARD_BITS = 34


class PastSums:
    """``PastSums(groups, head, backend, dtype, cse, step_data)``; ``sums(head_values, device,
    data)`` returns the sums' values in the order of :attr:`symbols` (``groups`` as returned by
    :func:`~.prepare.extract_sums`; ``head`` starts with the step index ``n``).
    ``step_data=True``: the summands read per-step data ``_D<slot>(k)`` (a mini-batch flow),
    given per call as ``data = (rows, batch)`` (:class:`~.nested_sums.NestedSums`); such sums
    are always node tables."""

    #: up to this step index, mpmath fills the sums as node tables; beyond it they are windowed
    tables_up_to = 2048

    def __init__(self, groups, head, backend, dtype=None, cse=True, step_data=False):
        self.symbols = [t for members in groups.values() for t, _ in members]
        self.nested = step_data or any(f.has(sp.Sum) for members in groups.values()
                                       for _, f in members)
        self._sums = [make_sum(f, key) for key, members in groups.items() for _, f in members]
        self._head, self._backend, self._dtype, self._cse = list(head), backend, dtype, cse
        self._tables = self._split_tables = None
        self._refused = set()
        self._loops = []           # (limits(n), summand kernel, interval kernel or None, count)
        if self.nested:
            return
        for (index, lo, hi), members in groups.items():
            limits = sp.lambdify([n_sym], [lo, hi], modules="math")
            terms = [sp.powsimp(f, combine="exp") for _, f in members]
            summands = Kernel(terms, self._head + [index], backend, dtype, cse)
            enclosure = (Kernel(terms, self._head + [index], "interval", None, cse)
                         if backend == "mpmath" else None)
            self._loops.append((limits, summands, enclosure, len(members)))

    def __bool__(self):
        return bool(self._sums)

    @property
    def tables(self):
        """The sums as node tables (:class:`~.nested_sums.NestedSums`), compiled at first use."""
        if self._tables is None:
            self._tables = NestedSums(self._sums, self._head, n_sym, self._backend,
                                      self._dtype, self._cse)
        return self._tables

    def _periodic_tables(self):
        """``(name, tables)`` to try in turn for a call past a periodic start: :attr:`tables`,
        then the same sums lowered with every weight in ``n - k`` shifted
        (``NestedSums(periodic=True)``, compiled at first need: NAdam's order 2); those that
        refused the closed form once (``name`` in ``_refused``) are skipped.  When none
        answers, the caller fills :attr:`tables` from the first step."""
        if "own" not in self._refused:
            yield "own", self.tables
        if "split" not in self._refused:
            if self._split_tables is None:
                self._split_tables = NestedSums(self._sums, self._head, n_sym, self._backend,
                                                self._dtype, self._cse, periodic=True)
            yield "split", self._split_tables

    def __call__(self, head, device=None, data=None, period=None):
        """The sums' values; ``period = (N0, m)``: a mini-batch field periodic from ``N0`` with
        period ``m`` (mpmath: the node tables start there, :mod:`.node_tables`)."""
        n = head[0]
        if self.nested or (self._backend == "mpmath" and n is not None
                           and n <= self.tables_up_to):
            return self._by_tables(head, device, data, period)
        out = []
        for limits, summands, enclosure, count in self._loops:
            lo, hi = (int(v) for v in limits(n))
            if enclosure is None:
                totals = [0] * count
                for index in range(lo, hi + 1):
                    totals = [a + b for a, b in zip(totals, summands(*head, index, device=device))]
            else:
                boxed = [n, *(point(v) for v in head[1:])]
                totals, _ = windowed_sum(lambda l: summands(*head, l),
                                         lambda L: enclosure(*boxed, L), count, lo, hi)
            out += totals
        return out

    def _by_tables(self, head, device, data, period=None):
        if self._backend != "mpmath":
            return self.tables(*head, device=device, data=data)
        import mpmath
        prec = mpmath.mp.prec
        if period is not None:
            for name, tables in self._periodic_tables():
                try:
                    return _in_mpmath(tables, head, data, (*period, prec), prec)
                except NotPeriodic:
                    self._refused.add(name)
        return _in_mpmath(self.tables, head, data, None, prec)


def _in_mpmath(tables, head, data, period, prec):
    """The values of ``tables`` in MPFR where it is finite, else mpmath, at ``prec`` bits plus
    :data:`GUARD_BITS`; ``period``: tables started by the closed form (``NotPeriodic`` where
    it does not apply, from tables lowered for it)."""
    import mpmath
    guarded = prec + GUARD_BITS
    with mpmath.workprec(guarded):
        if tables.has_fast:
            outs = mpfr.run(guarded, lambda: tables.fast(
                guarded, *map(mpfr.from_mpf, head), data=_in_mpfr(data), period=period,
                strict=True), lambda r: mpfr.to_mpf(r, prec))
            if outs is not None:
                return outs
        values = tables(*head, data=data, period=period, strict=True)
    return [+v for v in values]


def _in_mpfr(data):
    """``(rows, batch)`` with the rows' values as ``mpfr`` (inside an ``mpfr.context``)."""
    if data is None:
        return None
    rows, batch = data
    return [[mpfr.from_mpf(v) for v in row] for row in rows], batch

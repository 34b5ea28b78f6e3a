"""Memory sums nested in memory sums, by one forward pass over the steps: ``O(n)`` per call.

A flow whose states read other states (torch's RMSprop with momentum,
``b <- mu b + g/(sqrt(v) + eps)``) has sums over past steps inside sums over past steps already
at ``h^1``, e.g. ``sum_{k=0}^{n} mu^(n-k) A_k sum_{l=k}^{n-1} B_l`` with
``B_l = sum_{j=0}^{l} mu^(l-j) c_j``; printed as nested loops they cost ``O(n^depth)`` per
evaluation (``O(n^3)`` for that flow).  This module rewrites them, exactly, as *prefix nodes*

    ``P(U) = sum_{j=base}^{U} s(U, j)``  with  ``s(U+1, j) = r s(U, j)``,

so that ``P(U) = r P(U-1) + s(U, U)`` fills a node's table for ``U = base, base+1, ...``
with one evaluation of the summand per step; :mod:`.prefix_nodes` lowers the sums to such
nodes (inner sums first), exactly, and keeps as printed loops, which are always right, the sums
that do not fit.

**Per-step data** (a mini-batch flow, :mod:`.step_indexed`): a summand may read
``_D<slot>(j)``, the derivatives of the batch step ``j`` used; one call gives them as
``data = (rows, batch)``, ``_D<slot>(j) = rows[batch(j)][slot]``.  They are factors of the index
like any other (a recurrence's ratio does not see them); a loop that is kept reads them through
a function argument of the printed code.
"""
from __future__ import annotations

import sympy as sp

from .. import dag
from ..dag import free_symbols
from . import mpfr
from .arrays import all_finite
from .kernel import Kernel
from .node_tables import NotFinite, NotPeriodic, PeriodicRun, TableRun
from .prefix_nodes import Lowering
from .prepare import fresh_names

__all__ = ["NestedSums"]


class _Group:
    """Nodes whose tables grow together: one kernel gives their summands on the diagonal
    ``j = U`` (the only ones a recurrence needs; common subexpressions shared), ``apps`` the
    applications of inner nodes and per-step data as ``(key, step read)`` (a :class:`_Step`),
    ``ratios`` the positions of the members' ratios among the per-call values.  A node without a
    recurrence is a group of its own (``direct``), its summand evaluated at every ``(U, j)``;
    so is a suffix node (``last``: its upper limit as a function of ``n``, else ``None``)."""

    def __init__(self, members, base, apps, ratios, direct, last=None):
        self.members, self.base, self.apps = members, base, apps
        self.ratios, self.direct, self.last = ratios, direct, last
        self.kernel = None


def _applications(expr, n, U, J):
    """``expr`` with each application of a node (``_P<id>(arg)``) or of per-step data
    (``_D<slot>(step)``) replaced by a symbol; ``[(key, step read)]`` (a :class:`_Step`) with
    ``key`` ``("P", node id)`` or ``("D", slot)``."""
    apps = sorted({a for a in expr.atoms(sp.core.function.AppliedUndef)
                   if a.func.__name__[:2] in ("_P", "_D")
                   and a.args[0].free_symbols <= {n, U, J}}, key=str)    # not inside a loop
    names = fresh_names("_a", [expr])
    symbols = [sp.Symbol(next(names)) for _ in apps]
    out = dag.xreplace(expr, dict(zip(apps, symbols)))
    table = [((a.func.__name__[1], int(a.func.__name__[2:])), _Step(a.args[0], n, U, J))
             for a in apps]
    return out, table, symbols


class _Step:
    """The step an application reads, ``step(n, U, j)``; ``linear = (a, b, c, d)`` where it is
    ``a n + b U + c j + d`` with integers (every lowering so far), else ``None``."""

    def __init__(self, expr, n, U, J):
        expr = sp.expand(expr)
        coeffs = [expr.coeff(v) for v in (n, U, J)]
        rest = sp.expand(expr - sum(c * v for c, v in zip(coeffs, (n, U, J))))
        linear = all(c.is_Integer for c in (*coeffs, rest))
        self.linear = tuple(int(c) for c in (*coeffs, rest)) if linear else None
        self._fn = None if linear else sp.lambdify([n, U, J], expr, "math")

    def __call__(self, n, U, j):
        if self.linear is not None:
            a, b, c, d = self.linear
            return a * n + b * U + c * j + d
        return self._fn(n, U, j)


def _hoist_invariants(exprs, varying, names):
    """Replace each maximal subexpression free of the ``varying`` symbols (a function of the
    point, the hyperparameters and ``n`` only) by a symbol, evaluated once per call."""
    table = {}

    def walk(e):
        if not e.args:
            return e
        fs = free_symbols(e)
        if fs and not fs & varying:
            if e not in table:
                table[e] = sp.Symbol(next(names))
            return table[e]
        if isinstance(e, (sp.Sum, sp.Product)):     # bound variables stay inside
            return e
        return e.func(*[walk(a) for a in e.args])

    return [walk(e) for e in exprs], [(sym, e) for e, sym in table.items()]


class NestedSums:
    """The values of top-level memory sums (``Sum`` objects of one index each, possibly with
    sums inside) at one ``(n, point, ...)``, computed by the node tables of the module
    docstring.  ``NestedSums(sums, head, n, backend)``; ``nested(*head_values)`` returns the
    list of the sums' values (``head`` holds ``n`` and every other free symbol).  What depends
    only on the head (the gradient, the Hessian's entries, the ratios) is evaluated once per
    call, not once per step of a table.  ``periodic=True``: lowered for the periodic closed
    form (:class:`~.prefix_nodes.Lowering` ``split_n_weights``), and a call with a ``period``
    raises :class:`~.node_tables.NotPeriodic` where the form does not apply instead of
    filling the tables from the first step.

    >>> n, k, l = sp.symbols("n k l", integer=True)
    >>> c, x = sp.Rational(1, 2), sp.Symbol("x")
    >>> inner = sp.Sum(c ** (l - k) * x, (k, 0, l))
    >>> NestedSums([sp.Sum(inner, (l, 0, n))], [n, x], n, "exact")(3, 1)
    [49/8]
    """

    def __init__(self, sums, head, n, backend, dtype=None, cse=True, periodic=False):
        head = list(head)
        names = fresh_names("_ns", list(sums))
        U, J = sp.Symbol(next(names), integer=True), sp.Symbol(next(names), integer=True)
        self.periodic = periodic
        lowering = Lowering(n, U, J, split_n_weights=periodic)
        tops = [lowering.lower(s) for s in sums]
        # a sum left as printed loops reads its per-step data by calls: _D<slot> then names a
        # kernel argument, given per call as a function of the step
        self._readers = sorted({int(a.func.__name__[2:])
                                for e in tops + [node.summand for node in lowering.nodes]
                                for loop in e.atoms(sp.Sum)
                                for a in loop.atoms(sp.core.function.AppliedUndef)
                                if a.func.__name__.startswith("_D")})
        head += [sp.Symbol(f"_D{slot}") for slot in self._readers]
        self._n = head.index(n)
        groups = self._group(lowering.nodes, J, U)
        varying, exprs, ratios, plans = {U, J}, [], [], []
        for members, base, direct, last in groups:
            summands = [lowering.nodes[i].summand for i in members]
            if not direct:
                summands = [dag.xreplace(e, {J: U}) for e in summands]
            expr, apps, symbols = _applications(sp.Tuple(*summands), n, U, J)
            varying.update(symbols)
            plans.append((members, base, apps, symbols, direct, last, len(exprs)))
            exprs += list(expr)
            ratios += [lowering.nodes[i].ratio for i in members if not direct]
        hoisted, invariants = _hoist_invariants(exprs + ratios, varying,
                                                fresh_names("_v", list(sums) + [U, J]))
        inv = [sym for sym, _ in invariants]
        self._inv = len(inv)
        self._invariants = Kernel([e for _, e in invariants] + hoisted[len(exprs):], head,
                                  backend, dtype, cse)
        self._groups, self._where = [], {}
        ratio = 0
        for members, base, apps, symbols, direct, last, start in plans:
            group = _Group(members, base, apps,
                           [] if direct else list(range(ratio, ratio + len(members))), direct,
                           None if last is None else sp.lambdify([n], last, "math"))
            ratio += 0 if direct else len(members)
            group.kernel = Kernel(hoisted[start:start + len(members)],
                                  [*head, *inv, U, J, *symbols], backend, dtype, cse)
            for slot, i in enumerate(members):
                self._where[i] = (len(self._groups), slot)
            self._groups.append(group)
        self.size = len(lowering.nodes)
        top = sp.Tuple(*tops)
        top, self._apps, symbols = _applications(top, n, U, J)
        self._kernel = Kernel(list(top), head + symbols, backend, dtype, cse)
        # exact arithmetic: indices as SymPy integers (``1/(j + 3)`` is not a float)
        self._index = sp.Integer if backend == "exact" else int
        self._backend = backend
        fast = [mpfr.fast_kernel(k) for k in
                [self._invariants, self._kernel] + [g.kernel for g in self._groups]]
        self._fast = fast if all(f is not None for f in fast) else None

    @staticmethod
    def _group(nodes, J, U):
        """``[(member ids, base, direct, last)]``: nodes with a forward recurrence grouped by
        base and by level (1 + the deepest inner node they read), inner groups first; a node
        without one (``direct``) and a suffix node (``last``) each a group of its own."""
        level, out, keyed = {}, [], {}
        for i, node in enumerate(nodes):
            inner = [int(a.func.__name__[2:])
                     for a in node.summand.atoms(sp.core.function.AppliedUndef)
                     if a.func.__name__.startswith("_P")]
            level[i] = 1 + max((level[k] for k in inner), default=-1)
            if node.ratio is None or node.last is not None:
                out.append((level[i], [i], node.base, node.ratio is None, node.last))
            else:
                key = (level[i], node.base)
                if key not in keyed:
                    keyed[key] = (level[i], [], node.base, False, None)
                    out.append(keyed[key])
                keyed[key][1].append(i)
        out.sort(key=lambda g: g[0])
        return [group[1:] for group in out]

    def __call__(self, *head, device=None, data=None, period=None, strict=False):
        """The sums' values; ``data = (rows, batch)``: the per-step data ``_D<slot>(k)`` of the
        summands is ``rows[batch(k)][slot]`` (a mini-batch flow: each past step with the
        derivatives of its own batch); ``period = (N0, m, bits)``: the tables start at
        ``N0 - 1`` by the periodic closed form (:class:`~.node_tables.PeriodicRun`) where it
        applies, else from the first step (``strict``, or tables lowered ``periodic``: raise
        :class:`~.node_tables.NotPeriodic` instead)."""
        head = [*head, *self._reader_values(data)]
        # a peeled last term reads n outside the limits (``1/(n + 3)``): exact in "exact"
        head[self._n] = self._index(head[self._n])
        values = list(self._invariants(*head, device=device))

        def run(kind, **extra):
            return kind(self, head, head[self._n], values[:self._inv], values[self._inv:],
                        device, data=data, **extra)

        out = list(self._kernel(*head, *self._tops(run, period, strict), device=device))
        if self._backend in ("numpy", "torch") and not all_finite(out) \
                and all_finite(values) and all_finite([] if data is None else data[0]):
            raise FloatingPointError(
                f"the sums over past steps overflowed {self._invariants.dtype} while summing "
                f"up to step {head[self._n]} (a summand grows over the steps in a form the "
                f"lowering does not balance) although every value at the point is finite: "
                f"evaluate with backend='mpmath'")
        return out

    def _tops(self, run, period, strict=False):
        """The values of the node applications in the top-level sums: from tables started at
        the periodic start (``period``) where the closed form applies, else from step 0
        (``strict`` or :attr:`periodic`: :class:`~.node_tables.NotPeriodic` instead);
        ``run(kind, **extra)`` makes the tables' run."""
        def read(tables):
            return [tables.value(key, arg(tables.n, 0, 0)) for key, arg in self._apps]

        if period is not None:
            try:
                return read(run(PeriodicRun, period=period))
            except NotPeriodic:
                if self.periodic or strict:
                    raise
        return read(run(TableRun))

    def _reader_values(self, data):
        """The per-step data of the printed loops, as functions of the step."""
        if not self._readers:
            return []
        if data is None:
            raise ValueError("these sums read per-step data: pass data=(rows, batch)")
        rows, batch = data
        return [lambda k, slot=slot: rows[batch(int(k))][slot] for slot in self._readers]

    @property
    def has_fast(self):
        """Whether :meth:`fast` applies (mpmath kernels, gmpy2 installed)."""
        return self._fast is not None

    def fast(self, prec, *head, data=None, period=None, strict=False):
        """The same values in MPFR arithmetic (:mod:`.mpfr`) at ``prec`` bits, inside
        ``with mpfr.context(prec)``, the head values (and ``data``'s rows) ``mpfr`` or ints
        (``n``); ``None`` where a value is not finite (then call the mpmath path)."""
        invariants, top, *groups = self._fast
        values = invariants(prec, *head)
        if values is None:
            return None

        def run(kind, **extra):
            return kind(self, head, head[self._n], values[:self._inv], values[self._inv:],
                        None, (prec, groups), data, **extra)

        try:
            return top(prec, *head, *self._tops(run, period, strict))
        except NotFinite:
            return None

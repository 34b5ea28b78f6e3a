"""One evaluation of the node tables of :mod:`.nested_sums`: from the first step, or periodic.

:class:`TableRun` fills each node's table ``P(U) = r P(U-1) + s(U)`` from ``P(base - 1) = 0``
on, one step at a time, as far as the values asked for need: ``O(n)`` per call.

:class:`PeriodicRun` is for a mini-batch field with the cyclic schedule of period ``m`` past its
transient (:mod:`.step_indexed`): from a step ``N0`` on, every summand ``s(U)`` repeats with
the period up to a polynomial in the number of whole periods, ``s(N0 + b m + i) = y_i(b)``
(a node of ratio ``1``, such as ``sum_{l=k}^{n-1} F0^(l)``, grows by a fixed amount per
period, and nodes that read it inherit that growth).  The table then starts at ``N0 - 1``:

* ratio ``|r| < 1``: the past before ``N0`` is the same polynomial-periodic input continued
  backwards (the steps before the transient are below the working precision), so with Newton's
  differences ``D^d y_i`` over the first ``deg + 1`` periods and ``z = r^m``

      P(N0 - 1) = sum_i r^(m-1-i) sum_{d=0}^{deg} (-1)^d D^d y_i / (1 - z)^(d+1)

  (``sum_{c>=1} z^(c-1) C(c+d-1, d) = (1-z)^-(d+1)``);
* ratio ``1``: ``P(N0 - 1) = 0``.  Such a table holds a sum over past steps up to a constant,
  which cancels: the lowering reads it only as differences ``P(hi) - P(lo - 1)`` (a lower
  limit above its base) or, from the base, under a weight that has decayed below the working
  precision (torch's first-input term ``(1 - c) d^n``).

Each group's fit is checked on one more period (``y_i(deg + 1)`` predicted to the working
precision); a summand that is not of that form, a table without a recurrence or starting
after step 1 (the closed form takes its past back to the transient: the steps it adds before
the table's base are within the start's margin only for a base near 0), a suffix node, a
ratio outside ``(-1, 1]`` or a value asked for before ``N0 - 1`` raise
:class:`NotPeriodic`, and the caller fills the tables from the first step instead.  The cost is
``O((deg + 2) m)`` summands per node, whatever ``n``.
"""
from __future__ import annotations

__all__ = ["TableRun", "PeriodicRun", "NotFinite", "NotPeriodic", "DEGREE"]

#: the degree of the polynomials in the number of periods fitted (each node of ratio 1 adds
#: one to the nodes that read it: two for the products of two such sums at order 2); a summand
#: of higher degree fails the check and its tables are filled from the first step
DEGREE = 2


class NotFinite(ArithmeticError):
    """A summand of the MPFR path is not finite."""


class NotPeriodic(ValueError):
    """The periodic closed form does not apply to this evaluation (module docstring)."""


class TableRun:
    """The node tables of one evaluation, filled from the first step."""

    def __init__(self, sums, head, n, invariants, ratios, device, fast=None, data=None):
        self.groups, self.where, self.index = sums._groups, sums._where, sums._index
        self.data = data
        self.fast = fast                         # (prec, the groups' MPFR kernels) or None
        self.n, self.device = int(n), device
        self.args = [*head, *invariants]
        # per group, its members' ratios (``ratios``: the per-call values they index)
        self.group_ratios = [[ratios[r] for r in g.ratios] for g in self.groups]
        # per group, its rows [P(base - 1) = 0, P(base), ...], each a value per member
        self.tables = [[[0] * len(g.members)] for g in self.groups]
        self.first = [g.base for g in self.groups]     # row k of a table: step first - 1 + k
        self.direct = [{} for _ in self.groups]
        self.suffixes = {}                       # group: its suffix tables, once filled
        # per group, its reads: (node?, key, the node's group and member, the step read as
        # ``base + b U + c j`` in this run, else its function)
        self.reads = [[(key[0] == "P", key, *(self.where[key[1]] if key[0] == "P"
                                               else (None, None)), *self._step(step))
                       for key, step in g.apps] for g in self.groups]

    def _step(self, step):
        if step.linear is None:
            return 0, 0, 0, step
        a, b, c, d = step.linear
        return a * self.n + d, b, c, None

    def value(self, key, U):
        """A node's table entry ``P(U)`` or the per-step data ``_D<slot>(U)``."""
        kind, i = key
        if kind == "P":
            g, slot = self.where[i]
            rows = self.tables[g]
            k = int(U) - self.first[g] + 1
            if 0 < k < len(rows):                      # filled already (most reads)
                return rows[k][slot]
            return self.get(i, U)
        if self.data is None:
            raise ValueError("these sums read per-step data: pass data=(rows, batch)")
        rows, batch = self.data
        return rows[batch(int(U))][i]

    def summands(self, g, U, j):
        group, n, tables, first = self.groups[g], self.n, self.tables, self.first
        apps = []
        for node, key, h, slot, base, b, c, step in self.reads[g]:   # self.value, inlined
            u = base + b * U + c * j if step is None else int(step(n, U, j))
            if node:
                rows, k = tables[h], u - first[h] + 1
                apps.append(rows[k][slot] if 0 < k < len(rows) else self.get(key[1], u))
            else:
                apps.append(self.value(key, u))
        if self.fast is not None:
            prec, kernels = self.fast
            outs = kernels[g](prec, *self.args, U, j, *apps)
            if outs is None:
                raise NotFinite
            return outs
        return group.kernel(*self.args, self.index(U), self.index(j), *apps,
                            device=self.device)

    def get(self, i, U):
        g, slot = self.where[i]
        group = self.groups[g]
        U = int(U)
        if U < group.base:
            return 0
        if group.direct:
            memo = self.direct[g]
            if U not in memo:
                total = 0
                for j in range(group.base, U + 1):
                    total = total + self.summands(g, U, j)[0]
                memo[U] = total
            return memo[U]
        if group.last is not None:
            return self._suffix(g, slot, U)
        return self._filled(g, slot, U, group.base)

    def _suffix(self, g, slot, U):
        """``S(U)`` of member ``slot`` of the suffix group ``g`` (:mod:`.prefix_nodes`):
        ``S(last + 1) = 0``, ``S(L) = s(L, L) + S(L + 1) / r`` down to the base, at the first
        read (entry ``i`` of a table: ``S(last + 1 - i)``)."""
        group = self.groups[g]
        last = int(group.last(self.n))
        if U > last:
            return 0
        if g not in self.suffixes:
            tables = [[0] for _ in group.members]
            for L in range(last, group.base - 1, -1):
                outs = self.summands(g, L, L)
                for table, r, s in zip(tables, self.group_ratios[g], outs):
                    table.append(s + table[-1] / r)
            self.suffixes[g] = tables
        return self.suffixes[g][slot][last + 1 - U]

    def _filled(self, g, slot, U, first):
        """``P(U)`` of member ``slot`` of group ``g``, its rows (``tables[g]``, row 0 at step
        ``first - 1``) extended by the recurrence as far as ``U``."""
        rows, ratios = self.tables[g], self.group_ratios[g]
        while len(rows) <= U - first + 1:
            outs = self.summands(g, first - 1 + len(rows), first - 1 + len(rows))
            rows.append([r * p + s for r, p, s in zip(ratios, rows[-1], outs)])
        return rows[U - first + 1][slot]


class PeriodicRun(TableRun):
    """The tables of one evaluation started at ``N0 - 1`` by the closed form of the module
    docstring; ``period = (N0, m, bits)``, ``bits`` the working precision of the check."""

    #: ``P(N0 - 1)`` of a table of ratio 1: any constant gives the same field (module
    #: docstring); the tests change it to check that
    ratio_one_start = 0

    def __init__(self, sums, head, n, invariants, ratios, device, fast=None, data=None,
                 period=None):
        super().__init__(sums, head, n, invariants, ratios, device, fast, data)
        self.N0, self.m, self.bits = period
        self.first = [self.N0] * len(self.groups)
        self.started = [False] * len(self.groups)

    def get(self, i, U):
        g, slot = self.where[i]
        group = self.groups[g]
        U = int(U)
        if group.direct or group.last is not None or U < self.N0 - 1 or group.base > 1:
            raise NotPeriodic(f"node {i} at step {U}")
        if not self.started[g]:
            self._start(g)
        return self._filled(g, slot, U, self.N0)

    def _start(self, g):
        """``P(N0 - 1)`` of every member of group ``g`` (module docstring), and the tables
        filled over the periods the fit used."""
        self.started[g] = True
        m, N0 = self.m, self.N0
        blocks = DEGREE + 2
        s = [self.summands(g, u, u) for u in range(N0, N0 + blocks * m)]
        starts = []
        for slot, r in enumerate(self.group_ratios[g]):
            series = [[s[b * m + i][slot] for b in range(blocks)] for i in range(m)]
            diffs = [self._differences(y) for y in series]
            if r == 1:
                starts.append(self.ratio_one_start)
                continue
            if not abs(r) < 1:
                raise NotPeriodic(f"ratio {r}")
            z = r ** m
            total = 0
            for i, D in enumerate(diffs):
                inner, sign, q = 0, 1, 1 / (1 - z)
                for d in D:
                    inner = inner + sign * d * q
                    sign, q = -sign, q / (1 - z)
                total = total + r ** (m - 1 - i) * inner
            starts.append(total)
        ratios, rows = self.group_ratios[g], [starts]
        for outs in s:
            rows.append([r * p + v for r, p, v in zip(ratios, rows[-1], outs)])
        self.tables[g] = rows

    def _differences(self, y):
        """Newton's forward differences ``D^0 y_0 .. D^deg y_0`` of the first ``deg + 1``
        values; :class:`NotPeriodic` unless they predict the last value to the precision."""
        deg = len(y) - 2
        rows, row = [], list(y)
        while row:
            rows.append(row[0])
            row = [b - a for a, b in zip(row, row[1:])]
        # rows[deg + 1] is the (deg+1)-th difference: zero for a polynomial of degree deg
        scale = max(abs(v) for v in y)
        if abs(rows[deg + 1]) * 2 ** (self.bits - 8) > (1 + scale) * 2 ** (deg + 1):
            raise NotPeriodic("the summands are not polynomial-periodic")
        return rows[:deg + 1]

"""Memory sums over past steps whose dependence on ``n`` is geometric, by a recurrence in ``n``.

A coefficient of a field that depends on the step index alone (NAdam's memory sums over the
momentum schedule, ``S(n) = sum_{l=lo}^{n+k} f(n, l)`` with ``f(n, l) = r^n a(l)``) costs
``O(n)`` when summed out at every new ``n``; an order study, which asks ``n = 0, 1, 2, ...``,
pays ``O(N^2)``.  When ``f(n+1, l) = r f(n, l)`` for one constant ``r`` (the printer checks this
symbolically, :func:`geometric_ratio`), the sums satisfy

    ``S(n+1) = r S(n) + f(n+1, n+1+k)``,

so each new ``n`` costs one term.  :func:`running_sum` keeps, per sum (its printed form, ``lo``,
``k``, the values of its other symbols and the working precision), the last ``(n, S(n))`` and
checkpoints every :data:`CHECKPOINT` steps, and extends from the nearest one below the ``n``
asked for; an ``n`` below every checkpoint is summed out.  The recurrence is forward and
``|r| <= 1`` for a memory decay, so its rounding errors do not grow: after ``m`` steps they are
at most ``m`` roundings of the sum's size (the coefficients are evaluated with guard digits and
rounded once, :class:`~.field.FullBatchField`).
"""
from __future__ import annotations

import sympy as sp

from ..memo import Memo

__all__ = ["running_sum", "geometric_ratio", "NAME", "CHECKPOINT"]

#: the name the printers call (bound in every kernel's namespace)
NAME = "_running_sum"
#: steps between remembered values of one sum
CHECKPOINT = 256
_TABLES = Memo(limit=4096)


def geometric_ratio(summand, n, index, upper):
    """``r`` with ``summand(n+1, l) = r summand(n, l)`` for every ``l`` (free of ``n`` and the
    summation ``index``), when the upper limit is ``n + k`` for an integer ``k``; else ``None``.

    >>> n, l, c = sp.symbols("n l c")
    >>> geometric_ratio(c**(n - l) / (l + 1), n, l, n - 1), geometric_ratio(c**(n*l), n, l, n)
    (c, None)
    >>> geometric_ratio(sp.S.Zero, n, l, n) is None      # a zero summand has no ratio (0/0)
    True
    """
    offset = sp.expand(upper - n)
    if not offset.is_Integer or summand.has(sp.Sum) or summand.is_zero:
        return None
    ratio = sp.powsimp(sp.expand_power_exp(summand.xreplace({n: n + 1})) /
                       sp.expand_power_exp(summand), combine="exp", force=True)
    ratio = sp.powsimp(sp.expand_power_base(ratio, force=True), force=True)
    if ratio.has(n, index, sp.Product, sp.nan, sp.zoo, sp.oo, -sp.oo):
        return None
    return ratio


def running_sum(key, term, lo, offset, ratio, n, values=(), prec=None):
    """``sum_{l=lo}^{n+offset} term(n, l)`` for a summand with ``term(n+1, l) = ratio
    term(n, l)`` (module docstring).

    >>> import mpmath
    >>> term = lambda n, l: mpmath.mpf(1) / 2 ** (n - l)
    >>> [running_sum("2^-(n-l)", term, 0, 0, mpmath.mpf(1) / 2, n) for n in (0, 1, 2, 3)]
    [mpf('1.0'), mpf('1.5'), mpf('1.75'), mpf('1.875')]
    """
    lo, offset, n = int(lo), int(offset), int(n)
    if n + offset < lo:
        return 0
    full = (key, lo, offset, tuple(values), prec)
    table = _TABLES.get(full, lambda: {"last": None, "checks": {}})
    last = table["last"]
    if last is not None and last[0] <= n:
        start, total = last
    else:
        below = [m for m in table["checks"] if m <= n]
        if below:
            start = max(below)
            total = table["checks"][start]
        else:                      # nothing remembered below n: summed out at the first step
            start = max(lo - offset, 0)
            total = 0
            for l in range(lo, start + offset + 1):
                total = total + term(start, l)
            if start % CHECKPOINT == 0:
                table["checks"][start] = total
    for m in range(start + 1, n + 1):
        total = ratio * total + term(m, m + offset)
        if m % CHECKPOINT == 0:
            table["checks"][m] = total
    if last is None or n >= last[0]:
        table["last"] = (n, total)
    return total

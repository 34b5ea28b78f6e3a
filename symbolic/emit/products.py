"""Finite products over a step index, evaluated once per prefix.

A factor ``prod_{i=lo}^{hi} f(i)`` (NAdam's ``mu_1 ... mu_t``) appears in a field at many upper
limits: once per step ``n``, and once per past step ``l`` inside a memory sum.  Multiplying out
each occurrence costs ``O(n)`` (``O(n^2)`` per call inside a sum).  :func:`prefix_product` keeps
the running products ``f(lo), f(lo) f(lo+1), ...`` of each factor (keyed by the factor's printed
form, ``lo``, the values of its other symbols and, in mpmath, the working precision) and extends
them on demand: the same sequence of multiplications as a left-to-right product, so every value is
the one a direct product gives, bit for bit.
"""
from __future__ import annotations

from ..memo import Memo

__all__ = ["prefix_product", "NAME"]

#: the name the kernels' printers call (bound in every kernel's namespace)
NAME = "_prefix_product"
_TABLES = Memo(limit=512)


def _hashable(v):
    """A key for the value ``v`` (``None`` if it has none that names its value)."""
    if hasattr(v, "detach"):                       # a torch tensor (a lifted constant)
        return (str(v.dtype), str(v.device), v.item()) if v.numel() == 1 else None
    if type(v).__module__ == "numpy":
        return (str(getattr(v, "dtype", type(v))), repr(v)) if getattr(v, "ndim", 0) == 0 \
            else None
    return v


def prefix_product(key, factor, lo, hi, values=(), mpmath_prec=False):
    """``factor(lo) * factor(lo+1) * ... * factor(hi)`` (``1`` if ``hi < lo``), from a table
    of running products shared by every call with the same ``key`` and ``values``.

    >>> calls = []
    >>> f = lambda i: calls.append(i) or i
    >>> prefix_product("i", f, 1, 5), prefix_product("i", f, 1, 3), calls
    (120, 6, [1, 2, 3, 4, 5])
    """
    lo, hi = int(lo), int(hi)
    if hi < lo:
        return 1
    keys = tuple(_hashable(v) for v in values)
    if None in keys:                               # an array value: multiplied out in place
        out = 1
        for i in range(lo, hi + 1):
            out = out * factor(i)
        return out
    full = (key, lo, keys)
    if mpmath_prec:
        import mpmath
        full += (mpmath.mp.prec,)
    table = _TABLES.get(full, lambda: [1 * factor(lo)])
    while len(table) <= hi - lo:
        table.append(table[-1] * factor(lo + len(table)))
    return table[hi - lo]

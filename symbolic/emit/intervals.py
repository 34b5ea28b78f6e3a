"""Interval arithmetic for kernels: enclosures of a summand over a whole range of step indices.

A kernel compiled for the ``"interval"`` backend is the mpmath kernel run in mpmath's interval
context (``mpmath.iv``, outward rounding at the working precision): its arguments and constants
are intervals, so one call encloses every value the expression takes when an argument runs over
an interval.  Functions ``mpmath.iv`` lacks (``cosh``, ``tanh``, ...) are evaluated in mpmath
with 20 guard digits and widened by a relative ``2^-(iv.prec-4)``, which is only possible at a
point: on a proper interval they raise :class:`NoEnclosure`, and the caller falls back to exact
evaluation.
"""
from __future__ import annotations

import contextlib

import mpmath
from mpmath import iv

__all__ = ["NoEnclosure", "NAMESPACE", "enclose", "point", "bounds", "working_precision",
           "GUARD_BITS"]


class NoEnclosure(ArithmeticError):
    """No interval enclosure of this expression could be computed."""


def enclose(value):
    """A point value (mpf, int, SymPy number) as an interval containing it, with a relative
    radius ``2^-(iv.prec-4)`` unless it is exactly representable (integers, dyadic mpf)."""
    if isinstance(value, int):
        return iv.mpf(value)
    with mpmath.workprec(iv.prec):
        v = mpmath.mpf(value)
    if not mpmath.isfinite(v):
        raise NoEnclosure(f"non-finite value {v}")
    r = abs(v) * mpmath.ldexp(1, -iv.prec + 4)
    return iv.mpf([v - r, v + r])


#: extra bits of the interval arithmetic: a power ``beta^n`` computed as ``exp(n log beta)``
#: widens by about ``n`` ulps, and enclosures are compared with ``2^-prec`` relative bounds
GUARD_BITS = 64


@contextlib.contextmanager
def working_precision():
    """``mpmath.iv`` at ``mpmath.mp.prec + GUARD_BITS`` inside the block (restored after)."""
    saved = iv.prec
    iv.prec = mpmath.mp.prec + GUARD_BITS
    try:
        yield
    finally:
        iv.prec = saved


def point(x):
    """An mpf argument as a point interval: the value the term-by-term evaluation uses, taken
    as exact (the enclosure bounds the summand *at these inputs*)."""
    return x if isinstance(x, iv.mpf) else iv.mpf(x)


def bounds(x):
    """``(low, high)`` of an interval as mpf."""
    a, b = x._mpi_
    return mpmath.mpf(a), mpmath.mpf(b)


class _Namespace:
    """``mpmath.<name>`` for interval kernels: ``mpmath.iv``'s function where it has one, else
    the point fallback described in the module docstring."""

    def __getattr__(self, name):
        fn = getattr(iv, name, None)
        if fn is not None:
            return fn
        real = getattr(mpmath, name)
        return lambda *args: _at_point(real, args)


def _at_point(fn, args):
    values = []
    for a in args:
        if isinstance(a, iv.mpf):
            lo, hi = bounds(a)
            if lo != hi:
                raise NoEnclosure(f"mpmath.iv has no {getattr(fn, '__name__', fn)}")
            values.append(lo)
        else:
            values.append(a)
    with mpmath.workprec(iv.prec + 64):
        out = fn(*values)
    return enclose(out)


NAMESPACE = _Namespace()

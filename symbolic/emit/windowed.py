"""Memory sums over past steps at a cost bounded in ``n``, with a proved truncation bound.

A field's memory sum ``S = sum_{l=lo}^{hi} a(l)`` (no closed form in ``n``: Adam without bias
correction, torch's RMSprop and NAdam) has ``O(n)`` terms, but at the working precision only the
recent steps (weights ``beta^(n-l)`` not yet negligible) and the first steps (``rho^l`` not yet
negligible against 1) need to be added one by one.  :func:`windowed_sum` encloses the summand
over a whole piece ``P`` of the index range in one call of its interval kernel (the index an
interval) and takes ``|P|`` times the enclosure's midpoint, with an error of at most ``|P|``
times its radius.  A piece is accepted when its radius is at most ``2^-(prec+GUARD) A / N``,
where ``A`` is a proved lower bound of ``sum |a(l)|`` and ``N`` the number of terms enclosed in
pieces: the total truncation error is then below ``2^-(prec+GUARD) sum |a(l)|``, less than the
rounding error of adding up every term at the working precision.  Pieces that fail are bisected;
pieces of at most ``LEAF`` terms are added term by term.  A summand the interval kernel cannot
enclose (a function ``mpmath.iv`` lacks, varying over the piece) is added term by term.
"""
from __future__ import annotations

import mpmath
from mpmath import iv

from .intervals import NoEnclosure, bounds, working_precision

__all__ = ["windowed_sum", "MIN_TERMS", "LEAF", "GUARD"]

#: sums with at most this many terms are always evaluated term by term
MIN_TERMS = 64
#: pieces with at most this many terms are added term by term
LEAF = 128
#: guard bits of the truncation bound below the working precision
GUARD = 8


def _add_terms(term, indices, totals, absolutes):
    """Add ``term(l)`` for every ``l`` of ``indices`` one by one; returns how many."""
    count = 0
    for l in indices:
        for j, v in enumerate(term(l)):
            totals[j] += v
            absolutes[j] += abs(v)
        count += 1
    return count


def _enclose(enclosure, a, b):
    """``[(mid, radius, mig)]`` of the enclosure of each summand over ``[a, b]``, or ``None``."""
    try:
        with working_precision():
            encs = enclosure(iv.mpf([a, b]))
        out = []
        for e in encs:
            lo, hi = bounds(e if isinstance(e, iv.mpf) else iv.mpf(e))
            if not (mpmath.isfinite(lo) and mpmath.isfinite(hi)):
                return None
            mig = 0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
            out.append(((lo + hi) / 2, (hi - lo) / 2, mig))
        return out
    except (NoEnclosure, ArithmeticError, TypeError, ValueError):
        return None


def windowed_sum(term, enclosure, k, lo, hi, edge=16):
    """``sum_{l=lo}^{hi} term(l)`` (``term`` returns ``k`` mpf values) as described in the
    module docstring; ``enclosure(L)`` encloses every ``term(l)`` for ``l`` in the interval
    ``L``.  The first and last ``edge`` terms are always added one by one.

    Returns ``(totals, exact)``: the ``k`` sums and how many terms were added one by one.

    >>> import mpmath
    >>> from mpmath import iv
    >>> term = lambda l: [mpmath.mpf(1) / 2 ** (300 - l)]
    >>> enclosure = lambda L: [iv.mpf(2) ** (L - 300)]
    >>> total, exact = windowed_sum(term, enclosure, 1, 0, 300)
    >>> abs(total[0] - 2) <= 2 * mpmath.eps, exact < 300     # 2 - 2^-300, rounded
    (True, True)
    """
    totals = [mpmath.mpf(0)] * k
    absolutes = [mpmath.mpf(0)] * k
    if hi - lo + 1 <= max(MIN_TERMS, 2 * edge + LEAF):
        return totals, _add_terms(term, range(lo, hi + 1), totals, absolutes)
    a, b = lo + edge, hi - edge
    exact = _add_terms(term, (*range(lo, a), *range(b + 1, hi + 1)), totals, absolutes)
    count = b - a + 1
    whole = _enclose(enclosure, a, b)
    if whole is None:                          # no enclosure at all: every term
        return totals, exact + _add_terms(term, range(a, b + 1), totals, absolutes)
    lower = [x + count * mig for x, (_, _, mig) in zip(absolutes, whole)]
    threshold = [mpmath.ldexp(x, -mpmath.mp.prec - GUARD) / count for x in lower]
    pieces = [(a, b, whole)]
    while pieces:
        p, q, enc = pieces.pop()
        if enc is not None and all(rad <= t for (_, rad, _), t in zip(enc, threshold)):
            for j, (mid, _, _) in enumerate(enc):
                totals[j] += (q - p + 1) * mid
        elif q - p + 1 <= LEAF:
            exact += _add_terms(term, range(p, q + 1), totals, absolutes)
        else:
            c = (p + q) // 2
            pieces += [(p, c, _enclose(enclosure, p, c)), (c + 1, q, _enclose(enclosure, c + 1, q))]
    return totals, exact

"""mpmath kernels run in MPFR arithmetic (through gmpy2), when gmpy2 is installed.

The arithmetic is the mpmath backend's: every operation rounded to nearest at
``mpmath.mp.prec`` bits, read at call time.  MPFR rounds each arithmetic operation and each
elementary function correctly at that precision (mpmath's elementary functions are accurate to
a few ulps); only the speed differs, about seven times per operation at 100-200 bits, because
MPFR's numbers are C objects and mpmath's are Python ones.

:func:`fast_kernel` takes a compiled mpmath :class:`~.kernel.Kernel` and returns the same code
object bound to a namespace of gmpy2 functions (nothing is printed or compiled twice), or
``None`` when the kernel calls something outside :data:`FUNCTIONS` and the running products
of :mod:`.products` (multiplied out in MPFR, in tables of their own; other finite products,
sums, ``max`` stay in mpmath).  A non-finite result (a square root of a negative number, where
mpmath would return a complex) is never returned: :class:`FastKernel` gives ``None`` and the
caller evaluates in mpmath, so that errors and edge cases are mpmath's.

This module imports gmpy2 only; without it :func:`available` is false and nothing changes.
"""
from __future__ import annotations

import re
import types

from . import products

try:
    import gmpy2
except ImportError:                                     # pragma: no cover - gmpy2 is optional
    gmpy2 = None

__all__ = ["available", "fast_kernel", "FastKernel", "FUNCTIONS", "context", "run", "from_mpf",
           "to_mpf", "from_fixed", "to_fixed"]

#: the functions the mpmath printer may call that MPFR provides under the same name
FUNCTIONS = ("sqrt", "exp", "log", "sin", "cos", "tan", "sinh", "cosh", "tanh", "asin", "acos",
             "atan", "asinh", "acosh", "atanh", "atan2", "erf", "erfc", "expm1", "log1p", "cbrt",
             "sec", "csc", "cot", "sech", "csch", "coth", "gamma", "lgamma")

_CALL = re.compile(r"([A-Za-z_][\w.]*)\s*\(")
_CONTEXTS = {}
_POWERS = {}


def _prefix_product(key, factor, lo, hi, values=(), mpmath_prec=False):
    """:func:`.products.prefix_product` on ``mpfr`` values: its tables kept apart from the
    mpmath ones (keyed by the context's precision), the same multiplications in the same order."""
    return products.prefix_product(("mpfr", gmpy2.get_context().precision, key), factor, lo, hi,
                                   values)


def _pow2(e):
    """``2^e`` as an ``mpfr`` (exact at any precision; cached): a product with it is exact and
    several times cheaper than ``gmpy2.mul_2exp``."""
    r = _POWERS.get(e)
    if r is None:
        if len(_POWERS) > 4096:
            _POWERS.clear()
        with gmpy2.context(precision=2):
            r = _POWERS[e] = gmpy2.mul_2exp(gmpy2.mpfr(1), e)
    return r


def available():
    """Whether gmpy2 is installed."""
    return gmpy2 is not None


def context(prec):
    """The gmpy2 context of ``prec`` bits, rounding to nearest (cached; enter it with
    ``with``)."""
    ctx = _CONTEXTS.get(prec)
    if ctx is None:
        ctx = _CONTEXTS[prec] = gmpy2.context(precision=prec)
    return ctx


def run(prec, compute, convert):
    """``[convert(r) for r in compute()]`` with ``compute`` called inside ``context(prec)`` (its
    arguments converted there, its results ``mpfr``); ``None`` when ``compute`` gives ``None``
    (a value not finite: the caller evaluates in mpmath instead)."""
    with context(prec):
        outs = compute()
        return None if outs is None else [convert(r) for r in outs]


def from_mpf(x):
    """An ``mpmath.mpf`` (or an integer) as an ``mpfr`` of the current context (exact when
    ``x`` has at most the context's precision)."""
    if isinstance(x, int):
        return gmpy2.mpfr(x)
    sign, man, exp, _ = x._mpf_
    if not man:
        return gmpy2.mpfr(float(x))                     # zero, infinities, nan
    r = gmpy2.mpfr(man) * _pow2(exp)
    return -r if sign else r


def to_mpf(r, prec):
    """A finite ``mpfr`` as an ``mpmath.mpf`` rounded to ``prec`` bits."""
    import mpmath
    from mpmath.libmp import MPZ, from_man_exp
    man, exp = gmpy2.mpfr(r).as_mantissa_exp()
    return mpmath.mp.make_mpf(from_man_exp(MPZ(man), int(exp), prec, "n"))


def from_fixed(v, bits):
    """The integer ``v`` read as ``v 2^-bits``, rounded to the current context."""
    return gmpy2.mpfr(v) * _pow2(-bits)


def to_fixed(r, bits):
    """A finite ``mpfr`` as the integer ``r 2^bits`` (truncated)."""
    return int(r * _pow2(bits))


def fast_kernel(kernel):
    """A :class:`FastKernel` for the mpmath ``kernel``, or ``None`` (no gmpy2, not an mpmath
    kernel, or a call outside :data:`FUNCTIONS`)."""
    if gmpy2 is None or kernel.backend != "mpmath":
        return None
    fn = kernel._fn
    for name in _CALL.findall(kernel.source):
        if name in (fn.__name__, products.NAME, "builtins.sum", "abs"):
            continue                    # sum(): a long sum printed as one call, any numbers;
            #                             abs(): |g|, Python's abs of an mpfr is an mpfr
        module, _, attr = name.rpartition(".")
        if module != "mpmath" or attr not in FUNCTIONS:
            return None
    return FastKernel(kernel)


class FastKernel:
    """The code of an mpmath :class:`~.kernel.Kernel` evaluated on ``mpfr`` values:
    ``fast(*values)`` inside ``with context(prec)``, the values already ``mpfr`` (or ints);
    the kernel's lifted constants are converted once per precision."""

    _NAMESPACE = None

    def __init__(self, kernel):
        if FastKernel._NAMESPACE is None:
            FastKernel._NAMESPACE = types.SimpleNamespace(
                **{f: getattr(gmpy2, f) for f in FUNCTIONS if hasattr(gmpy2, f)})
        fn = kernel._fn
        self._kernel = kernel
        self._fn = types.FunctionType(fn.__code__, {**fn.__globals__,
                                                     "mpmath": FastKernel._NAMESPACE,
                                                     products.NAME: _prefix_product},
                                      fn.__name__, fn.__defaults__, fn.__closure__)
        self._constants = {}
        self._at = {}                  # per precision: the code with its constants as defaults

    def constants(self, prec):
        """The kernel's constants as ``mpfr`` (call inside ``with context(prec)``)."""
        out = self._constants.get(prec)
        if out is None:
            out = self._constants[prec] = [from_mpf(c) for c in self._kernel.constants()]
        return out

    def __call__(self, prec, *values):
        """The results as ``mpfr`` (inside ``with context(prec)``), or ``None`` when one is not
        finite."""
        fn = self._at.get(prec)
        if fn is None:           # the constants are the last parameters (:class:`.kernel.Kernel`)
            fn = self._at[prec] = types.FunctionType(
                self._fn.__code__, self._fn.__globals__, self._fn.__name__,
                tuple(self.constants(prec)) or None, self._fn.__closure__)
        outs = fn(*values)
        return outs if all(map(gmpy2.is_finite, outs)) else None

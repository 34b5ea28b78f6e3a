"""Lowering the component algebra to coordinates: explicit matrices for a concrete ``p``.

A *provider* says what ``g_j``, ``H_ji``, ``T_jik`` and ``theta_j`` are for each batch index:

* :class:`LossProvider` — derivatives of concrete SymPy losses in the given parameters;
* :class:`SymbolProvider` — generic symbols ``g_j``, ``H_ij = H_ji``, ``T_ijk`` (symmetric) for
  the dimension-``p`` display of a result for any loss.

:func:`lower` gives component ``j`` of a component expression.  ``sum_i H_ji u_i`` is formed with
``u`` lowered at component ``i``.  A :class:`sympy.Sum` over a step index with concrete limits
is unrolled (mini batch: each step has its own loss); with symbolic limits the summand is
lowered inside the sum (full batch, where it carries no batch index).
"""
from __future__ import annotations

import itertools
import math
import numbers

import sympy as sp

from . import dag
from .family import check_smooth, theta
from .operators import D3, FULL, Grad, Hess, Vec, is_field

__all__ = ["LossProvider", "SymbolProvider", "lower", "lower_vector", "check_loss",
           "check_schedule_entries", "check_point"]


def check_loss(E, params, what="loss"):
    """Validate a concrete loss: a smooth scalar SymPy expression whose free symbols are among
    ``params`` (extra symbols are an error naming them)."""
    E = sp.sympify(E)
    if not isinstance(E, sp.Expr) or isinstance(E, sp.MatrixBase):
        raise TypeError(f"{what} must be a scalar SymPy expression, got {type(E).__name__}")
    check_smooth(E, what)
    params = list(params)
    for p in params:
        if not isinstance(p, sp.Symbol):
            raise TypeError(f"params must be SymPy symbols, got {p!r}")
    if len(set(params)) != len(params):
        raise ValueError("params must be distinct symbols")
    extra = E.free_symbols - set(params)
    if extra:
        raise ValueError(f"{what} has symbol(s) {sorted(map(str, extra))} that are not in "
                         f"params {[str(p) for p in params]}")
    return E


def check_point(at, params):
    """``{parameter: exact value}`` for a point ``at`` given as one value per parameter:
    integers, ``Rational``, strings such as ``"1/3"``, or floats (taken exactly as the binary
    numbers they are).  ``ValueError`` naming ``at`` for a wrong length or a value that is not
    a finite rational number (``inf``, ``nan``, ``True``, ``"x"``, ``sqrt(2)``)."""
    params = list(params)
    values = list(at) if hasattr(at, "__iter__") and not isinstance(at, str) else None
    if values is None or len(values) != len(params):
        raise ValueError(f"at must give one value per parameter ({len(params)}: "
                         f"{[str(p) for p in params]}), got {at!r}")
    point = {p: _exact_real(v) for p, v in zip(params, values)}
    bad = [(p, v) for (p, x), v in zip(point.items(), values) if x is None]
    if bad:
        raise ValueError(f"at: the value {bad[0][1]!r} of {bad[0][0]} is not a finite rational "
                         "number (an integer, Rational, 'p/q' or float)")
    return point


def _exact_real(v):
    """``v`` as an exact ``Rational``, or ``None`` (not a finite rational number)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, numbers.Integral):
        return sp.Integer(int(v))
    if isinstance(v, numbers.Real) and not isinstance(v, sp.Basic):
        return sp.Rational(float(v)) if math.isfinite(float(v)) else None
    try:
        x = sp.sympify(v, strict=not isinstance(v, str))
    except (sp.SympifyError, TypeError, ValueError):
        return None
    if x.is_Float:
        return sp.Rational(x) if x.is_finite else None
    return x if x.is_Rational else None


def check_schedule_entries(schedule, n_losses):
    """The schedule as a list of Python ints, each a loss index in ``[0, n_losses)``.

    A schedule is a non-empty sequence of integers (anything with ``__index__`` but ``bool``):
    ``TypeError`` naming ``schedule`` for a non-sequence (a number, a string, a mapping),
    ``ValueError`` for an empty one or entries that are not loss indices (negative, too large,
    non-integer such as ``0.5`` or ``"1"``)."""
    import operator
    from collections.abc import Mapping
    if isinstance(schedule, (str, bytes, Mapping)) or not hasattr(schedule, "__iter__"):
        raise TypeError(f"schedule must be a sequence of loss indices, got {schedule!r}")
    entries = list(schedule)
    if not entries:
        raise ValueError("schedule must have at least one entry (a loss index per step)")
    out, bad = [], []
    for s in entries:
        try:
            i = None if isinstance(s, bool) else operator.index(s)
        except TypeError:
            i = None
        if i is None or not 0 <= i < n_losses:
            bad.append(s)
        else:
            out.append(i)
    if bad:
        more = f" (nor {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"schedule entry {bad[0]!r} is not a loss index in "
                         f"[0, {n_losses - 1}]{more}; a schedule lists integer loss indices")
    return out


class LossProvider:
    """Derivatives of concrete losses.  ``losses`` is one expression (full batch) or a list
    (mini batch, step ``k`` uses ``losses[schedule(k)]``, cyclic by default).  With a point
    ``at`` (one exact value per parameter, :func:`check_point`) the lowering's derivatives
    (:meth:`grad`, :meth:`hess`, :meth:`d3`) and ``theta`` are their values there;
    :meth:`loss_derivative` stays an expression in the parameters."""

    def __init__(self, losses, params, schedule=None, at=None):
        self.params = list(params)
        if isinstance(losses, (list, tuple)):
            if not losses:
                raise ValueError("losses must be a non-empty list")
            self.losses = [check_loss(E, self.params, f"loss {i}") for i, E in enumerate(losses)]
            self.full = False
        else:
            self.losses = [check_loss(losses, self.params)]
            self.full = True
        if schedule is not None:
            schedule = check_schedule_entries(schedule, len(self.losses))
        self.schedule = schedule
        self.p = len(self.params)
        self._d = {}
        self._at = check_point(at, self.params) if at is not None else {}

    def loss_index(self, b):
        if not isinstance(b, int):                # a step index as a SymPy integer, or FULL
            if b == FULL:
                return 0
            b = int(b)
        if self.schedule is None:
            return b % len(self.losses)
        if b >= len(self.schedule):
            raise ValueError(f"schedule has {len(self.schedule)} entries; step {b} needs one")
        return self.schedule[b]

    def _deriv(self, b, idx):
        d = self.loss_derivative(self.loss_index(b), idx)
        return d.xreplace(self._at) if self._at else d

    def loss_derivative(self, loss, idx):
        """Derivative of ``losses[loss]`` (a loss index, not a step) in the parameters ``idx``,
        as an expression in the parameters (also with a point ``at``: compiled kernels take
        it)."""
        key = (int(loss), tuple(sorted(idx)))
        if key not in self._d:
            self._d[key] = sp.diff(self.losses[key[0]], *[self.params[i] for i in key[1]])
        return self._d[key]

    def grad(self, b, j):
        return self._deriv(b, (j,))

    def hess(self, b, j, i):
        return self._deriv(b, (j, i))

    def d3(self, b, j, i, k):
        return self._deriv(b, (j, i, k))

    def theta(self, j):
        return self._at.get(self.params[j], self.params[j])


class SymbolProvider:
    """Generic symbols for dimension ``p``: ``g_j``, symmetric ``H_ij``, symmetric ``T_ijk``,
    ``theta_j`` (1-based names)."""

    def __init__(self, p):
        if p < 1:
            raise ValueError(f"dimension p must be >= 1, got {p}")
        self.p = p
        self.g = [sp.Symbol(f"g_{j + 1}", real=True) for j in range(p)]
        self.th = [sp.Symbol(f"theta_{j + 1}", real=True) for j in range(p)]
        self._H = {}
        self._T = {}

    def grad(self, b, j):
        self._full_only(b)
        return self.g[j]

    def hess(self, b, j, i):
        self._full_only(b)
        key = tuple(sorted((j, i)))
        if key not in self._H:
            self._H[key] = sp.Symbol("H_%d%d" % (key[0] + 1, key[1] + 1), real=True)
        return self._H[key]

    def d3(self, b, j, i, k):
        self._full_only(b)
        key = tuple(sorted((j, i, k)))
        if key not in self._T:
            self._T[key] = sp.Symbol("T_%d%d%d" % tuple(x + 1 for x in key), real=True)
        return self._T[key]

    def theta(self, j):
        return self.th[j]

    @staticmethod
    def _full_only(b):
        if b != FULL:
            raise ValueError("generic symbols are for full-batch expressions")


_INFINITIES = (sp.zoo, sp.oo, -sp.oo, sp.nan)


def lower(expr, j, provider, cache=None):
    """Component ``j`` (0-based) of the component expression ``expr``."""
    cache = {} if cache is None else cache
    return _lower(sp.sympify(expr), j, provider, cache)


def _lower(e, j, P, cache):
    key = (e, j)
    if key in cache:
        return cache[key]
    if e == theta:
        out = P.theta(j)
    elif isinstance(e, Grad):
        out = P.grad(e.args[0], j)
    elif isinstance(e, Vec):
        out = P.vec(e.args[0], j)
    elif isinstance(e, Hess):
        b, u = e.args
        out = sp.Add(*[_product(P.hess(b, j, i), _lower(u, i, P, cache))
                       for i in range(P.p)])
    elif isinstance(e, D3):
        b, u, w = e.args
        out = sp.Add(*[_product(P.d3(b, j, i, k), _lower(u, i, P, cache),
                                _lower(w, k, P, cache))
                       for i, k in itertools.product(range(P.p), repeat=2)])
    elif isinstance(e, sp.Sum):
        out = _lower_sum(e, j, P, cache)
    elif not e.args or not is_field(e):
        out = e
    elif e.is_Mul:
        out = _product(*[_lower(a, j, P, cache) for a in e.args])
    else:
        out = e.func(*[_lower(a, j, P, cache) for a in e.args])
    cache[key] = out
    return out


def _product(*factors):
    """The product; 0 where a factor is 0 and no other holds an infinity (SymPy would first
    ask whether each other factor, thousands of operations at a point, is finite: seconds),
    SymPy's ``nan`` for ``0 * zoo`` kept."""
    factors = [sp.sympify(f) for f in factors]
    if any(f == 0 for f in factors) and not any(f.has(*_INFINITIES) for f in factors):
        return sp.S.Zero
    return sp.Mul(*factors)


def _lower_sum(e, j, P, cache):
    f = e.function
    limits = list(e.limits)
    k, lo, hi = limits[-1]
    inner = dag.make_sum(f, *limits[:-1]) if len(limits) > 1 else f
    if lo.is_Integer and hi.is_Integer:
        return sp.Add(*[_lower(dag.xreplace(inner, {k: sp.Integer(i)}), j, P, cache)
                        for i in range(int(lo), int(hi) + 1)])
    return dag.make_sum(_lower(inner, j, P, cache), (k, lo, hi))


def lower_vector(expr, provider):
    """The column ``Matrix`` of all ``p`` components."""
    cache = {}
    return sp.Matrix([_lower(sp.sympify(expr), j, provider, cache) for j in range(provider.p)])

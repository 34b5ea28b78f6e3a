"""Hyperparameter values and step indices, resolved and validated once for every target.

Values are converted *exactly*: Python floats by their binary value, strings and fractions as
exact rationals, mpmath numbers by mantissa and exponent.  Every target of the emit layer (the
lambdified fields, the matrix-free forms, the torch adapter) resolves its values through
:func:`resolve_symbols`, which checks the ranges of
:func:`modeq.symbolic.family.check_hyperparameter_values` (``beta in [0, 1)``, ``rho in (0, 1)``,
``eps > 0``, ``h > 0``, every EMA decay in ``[0, 1)``).  A hyperparameter that differs
between param groups (:class:`~modeq.symbolic.family.ComponentConstant`) takes one value per
component (a list), checked component by component; the full-batch fields lower it per
component, inside the contractions ``H.u`` too.
"""
from __future__ import annotations

import fractions
import math
import operator

import sympy as sp

from .. import dag
from ..components import lower
from ..family import ComponentConstant, check_hyperparameter_values, h as h_sym
from ..operators import FULL, Grad, Vec
from .absolute import abs_gradient

__all__ = ["BACKENDS", "check_backend", "exact_value", "resolve_symbols", "resolve_values",
           "check_step", "normalize_values", "lowered_with_values", "per_component"]

BACKENDS = ("mpmath", "numpy", "torch")


def check_backend(backend):
    """The backend name, or ``ValueError`` naming the choices."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def exact_value(name, value):
    """Exact SymPy number for a user-given value of the hyperparameter ``name``.

    >>> exact_value("beta", 0.5), exact_value("rho", "99/100")
    (1/2, 99/100)
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if isinstance(value, sp.Basic):
        if not value.is_number:
            raise TypeError(f"{name} must be a number, got {value}")
        if value.has(sp.nan) or value.is_finite is False:
            raise ValueError(f"{name} must be finite, got {value}")
        return sp.nsimplify(value, rational=True) if value.is_Float else value
    if isinstance(value, int):
        return sp.Integer(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        return sp.Rational(value)
    if isinstance(value, fractions.Fraction):
        return sp.Rational(value.numerator, value.denominator)
    if isinstance(value, str):
        try:
            return sp.Rational(value)
        except (TypeError, ValueError, ZeroDivisionError):
            raise ValueError(f"{name}: cannot read {value!r} as a number") from None
    if hasattr(value, "man_exp"):  # an mpmath mpf: mantissa * 2**exponent, exactly
        import mpmath
        if not mpmath.isfinite(value):   # inf and nan have mantissa 0: not the number 0
            raise ValueError(f"{name} must be finite, got {value}")
        man, ex = value.man_exp
        man = -abs(man) if value < 0 else abs(man)   # man_exp gives the mantissa unsigned
        return sp.Integer(man) * sp.Integer(2) ** ex
    if type(value).__module__ == "numpy" and hasattr(value, "dtype"):  # numpy scalar
        if getattr(value, "ndim", 0) != 0:
            raise TypeError(f"{name} must be a number, got an array of shape {value.shape}")
        kind = value.dtype.kind
        if kind == "f" and (value != value or abs(value) == math.inf):   # nan, +-inf
            raise ValueError(f"{name} must be finite, got {value}")
        if kind in "iu":
            return sp.Integer(int(value))
        if kind == "f":
            return exact_value(name, float(value)) if value.dtype.itemsize <= 8 else \
                sp.Rational(*value.as_integer_ratio())
    raise TypeError(f"{name} must be a number, got {value!r}")


def normalize_values(values):
    """Hyperparameter values with strings (``"9/10"``, ``"1e-3"``) turned into exact SymPy
    rationals; other values are kept as given.

    >>> normalize_values({"beta": "9/10", "h": 0.5})
    {'beta': 9/10, 'h': 0.5}
    """
    def one(k, v):
        if isinstance(v, str):
            try:
                return sp.Rational(v)
            except (TypeError, ValueError, ZeroDivisionError, sp.SympifyError):
                raise ValueError(f"{k}: cannot read {v!r} as a number") from None
        return v
    return {k: [one(k, x) for x in v] if isinstance(v, (list, tuple)) else one(k, v)
            for k, v in values.items()}


def resolve_symbols(needed, values, decays=(), owner="this flow", optional=(),
                    require_all=True):
    """``{symbol: exact value}`` for the symbols ``needed``, from ``values`` given by name.

    ``ValueError`` naming an unknown name, a missing value (unless ``require_all=False``: a
    subset may be given) or a value out of its range; ``optional`` names may be given or not
    (e.g. ``h`` for a flow of order 0).
    """
    by_name = {str(s): s for s in needed}
    unknown = sorted(set(values) - set(by_name) - set(optional))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for {owner}; it has "
                         f"{sorted(by_name)}")
    exact = {name: _exact(name, v, by_name) for name, v in values.items()}
    for k in range(max((len(v) for v in exact.values() if isinstance(v, tuple)), default=1)):
        check_hyperparameter_values({name: v[k] if isinstance(v, tuple) else v
                                     for name, v in exact.items()}, decays)
    missing = sorted(set(by_name) - set(exact))
    if missing and require_all:
        raise ValueError(f"no value given for {missing} (pass e.g. {missing[0]}=...)")
    return {by_name[k]: v for k, v in exact.items() if k in by_name}


def _exact(name, value, by_name):
    """:func:`exact_value`, or a tuple of them for a constant per component (a list or tuple
    given for a :class:`~..family.ComponentConstant`: one value per component)."""
    if not isinstance(value, (list, tuple)):
        return exact_value(name, value)
    if not isinstance(by_name.get(name), ComponentConstant):
        raise ValueError(f"{name}: one value per component is for the hyperparameters that "
                         f"differ between param groups (from_torch_merged); give {name} one "
                         f"number")
    if not value:
        raise ValueError(f"{name}: give one value per component, got none")
    return tuple(exact_value(name, v) for v in value)


def per_component(subs):
    """The symbols of ``subs`` (:func:`resolve_symbols`) given one value per component."""
    return {s for s, v in subs.items() if isinstance(v, tuple)}


def resolve_values(flow, values, late=()):
    """``{symbol: exact value}`` for every hyperparameter of ``flow`` (``h`` included when its
    order is >= 1; a value of ``h`` is accepted and ignored at order 0), except the names in
    ``late`` (bound later)."""
    opt = flow.optimizer
    needed = list(opt.hyperparameters) + ([h_sym] if flow.order >= 1 else [])
    known = {str(s) for s in needed}
    bad = sorted(set(late) - known)
    if bad:
        raise ValueError(f"late: {bad} are not hyperparameters of {opt.name!r} "
                         f"({sorted(known)})")
    needed = [s for s in needed if str(s) not in late]
    return resolve_symbols(needed, values, opt.decays, f"{opt.name!r}", optional=("h",))


def check_step(n, required=True):
    """The step index as a Python ``int`` (``None`` allowed, as 0, when the field does not use
    it)."""
    if n is None:
        if required:
            raise ValueError("this flow depends on the step index n (it is exact in n); pass "
                             "an integer n >= 0, or build it with stationary=True")
        return 0
    if isinstance(n, sp.Basic) and n.is_Integer:
        n = int(n)
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise ValueError(f"step index n must be an integer >= 0, got {n!r}")
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"step index n must be an integer >= 0, got {n}")
    return n


def lowered_with_values(F, p, provider, subs):
    """The components ``[-F_j for j < p]`` of the dimension-free ``F`` for ``provider``'s loss,
    with the hyperparameter values ``subs`` substituted: the non-zero values into ``F`` before
    it is lowered (``F`` is shared by the components and far smaller than them; substituting
    into the lowered sums rebuilds every ``Sum``, ~4x the time on torch's RMSprop with momentum
    at order 2), the zeros after (a decay ``0`` in ``beta**n * beta**(-k)`` must first meet its
    partner power, or it reads ``0 * zoo``).  A full-batch ``F`` without memory sums has its
    ``sqrt(g**2)`` written ``|g|`` and cancelled (:mod:`.absolute`: finite where a gradient
    component is 0)."""
    if getattr(provider, "full", False) and not F.has(sp.Sum):
        F = abs_gradient(F, Grad(FULL))
    rows = {s: v for s, v in subs.items() if isinstance(v, tuple)}
    subs = {s: v for s, v in subs.items() if s not in rows}
    zeros = {s: v for s, v in subs.items() if v == 0}
    F = dag.xreplace(F, {s: v for s, v in subs.items() if v != 0})
    if rows:
        for s, v in rows.items():
            if len(v) != p:
                raise ValueError(f"{s}: {len(v)} values given, one per component needs {p}")
        # component j of a constant per component is its j-th value, also inside H.u
        F = dag.xreplace(F, {s: Vec(s) for s in rows})
        provider = _WithComponentValues(provider, rows)
    cache = {}
    return [dag.xreplace(-lower(F, j, provider, cache), zeros) for j in range(p)]


class _WithComponentValues:
    """``provider`` whose :class:`~..operators.Vec` of a constant per component reads its
    values (the lowering asks ``vec(symbol, j)``)."""

    def __init__(self, provider, rows):
        self._provider, self._rows = provider, rows

    def __getattr__(self, name):
        return getattr(self._provider, name)

    def vec(self, symbol, j):
        return self._rows[symbol][j]


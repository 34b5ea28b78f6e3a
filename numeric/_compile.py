"""Compile SymPy expressions into fast callables over mpmath numbers or exact SymPy numbers.

``sympy.lambdify`` re-creates every rational constant (``mpf(1)/mpf(3)``) on each call and
prints rationals as binary floats in the ``sympy`` module.  Here every non-integer number of the
expression is replaced by a placeholder bound once, at compile time, to its value in the chosen
arithmetic: an ``mpmath.mpf`` at the current ``mpmath.mp.dps`` or an exact ``sympy.Rational``.
Compile again after changing the precision.
"""
from __future__ import annotations

import mpmath
import sympy as sp

__all__ = ["compile_exprs", "to_number", "normalize_values", "ARITHMETICS"]

ARITHMETICS = ("mpmath", "exact")


def normalize_values(values):
    """Hyperparameter values with strings (``"9/10"``, ``"1e-3"``) turned into exact SymPy
    rationals; other values are kept as given."""
    out = {}
    for k, v in values.items():
        if isinstance(v, str):
            try:
                v = sp.Rational(v)
            except (TypeError, ValueError, sp.SympifyError):
                raise ValueError(f"{k}: cannot read {v!r} as a number") from None
        out[k] = v
    return out


def to_number(value, arithmetic="mpmath"):
    """A hyperparameter or coordinate value in the chosen arithmetic.

    ``mpmath``: an ``mpf`` at the current precision; strings and SymPy rationals are rounded once
    from their exact value, Python floats are taken as the binary number they are.
    ``exact``: a SymPy number (floats are taken exactly as binary rationals).
    """
    if arithmetic == "exact":
        if isinstance(value, float):
            return sp.Rational(value)
        value = sp.Rational(value) if isinstance(value, str) else sp.sympify(value)
        return sp.Rational(value) if isinstance(value, sp.Float) else value
    if isinstance(value, (mpmath.mpf, int, float)):
        return mpmath.mpf(value)
    if isinstance(value, str):
        value = sp.Rational(value)
    value = sp.sympify(value)
    if value.is_Rational:
        return mpmath.mpf(int(value.p)) / int(value.q)
    if value.is_number and value.is_real:
        return mpmath.mpf(sp.N(value, mpmath.mp.dps + 10))
    raise TypeError(f"expected a real number, got {value!r}")


def compile_exprs(exprs, args, arithmetic="mpmath"):
    """A callable ``fn(*args)`` returning the list of ``exprs`` evaluated in ``arithmetic``.

    ``exprs`` is a list of SymPy expressions in the symbols ``args`` only (any other free symbol
    is a ``ValueError``).
    """
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"arithmetic must be one of {ARITHMETICS}, got {arithmetic!r}")
    exprs = [sp.sympify(e) for e in exprs]
    free = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
    extra = free - set(args)
    if extra:
        raise ValueError(f"expression uses symbol(s) {sorted(map(str, extra))} that have no "
                         f"value here")
    consts = {}
    for e in exprs:
        for a in sp.preorder_traversal(e):
            if a.is_Number and not a.is_Integer:
                consts.setdefault(a, sp.Dummy(f"c{len(consts)}"))
    # Integer exponents stay integers (x**2, x**-1); every other number becomes a placeholder.
    replaced = [e.xreplace(consts) for e in exprs]
    replaced = [_restore_int_exponents(e, consts) for e in replaced]
    placeholders = list(consts.values())
    modules = "mpmath" if arithmetic == "mpmath" else "sympy"
    fn = sp.lambdify(list(args) + placeholders, replaced, modules=modules, cse=True)
    values = [to_number(c, arithmetic) for c in consts]

    def compiled(*xs):
        return fn(*xs, *values)

    return compiled


def _restore_int_exponents(expr, consts):
    # x**(1/2) and x**(-1/2) become sqrt again (exact in SymPy, correctly rounded in mpmath);
    # other rational exponents stay bound placeholders (exact SymPy Rational or mpf).
    halves = {consts[r] for r in (sp.Rational(1, 2), sp.Rational(-1, 2)) if r in consts}
    inv = {v: k for k, v in consts.items() if v in halves}
    if not inv:
        return expr
    return expr.replace(lambda e: e.is_Pow and e.exp in inv,
                        lambda e: sp.Pow(e.base, inv[e.exp], evaluate=False))

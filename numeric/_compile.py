"""Compile SymPy expressions into fast callables over mpmath numbers or exact SymPy numbers.

``sympy.lambdify`` re-creates every rational constant (``mpf(1)/mpf(3)``) on each call and
prints rationals as binary floats in the ``sympy`` module.  Here every non-integer number of the
expression is replaced by a placeholder bound once, at compile time, to its value in the chosen
arithmetic: an ``mpmath.mpf`` at the current ``mpmath.mp.dps`` or an exact ``sympy.Rational``.
Compile again after changing the precision.
"""
from __future__ import annotations

import functools

import mpmath
import sympy as sp

__all__ = ["compile_exprs", "compile_field", "CompiledField", "to_number", "normalize_values", "ARITHMETICS"]

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
    if arithmetic == "mpmath":
        modules = [{"sqrtpow": lambda x, k: mpmath.sqrt(x) ** int(k)}, "mpmath"]
    else:
        modules = [{"sqrtpow": lambda x, k: sp.sqrt(x) ** int(k)}, "sympy"]
    fn = sp.lambdify(placeholders + list(args), replaced, modules=modules, cse=True)
    values = [to_number(c, arithmetic) for c in consts]
    return functools.partial(fn, *values)


def _restore_int_exponents(expr, consts):
    # x**(k/2) becomes sqrt(x)**k (exact in SymPy, correctly rounded in mpmath, and much faster
    # than a general power); other rational exponents stay bound placeholders.
    inv = {v: k for k, v in consts.items() if k.is_Rational and k.q == 2}
    if not inv:
        return expr
    return expr.replace(lambda e: e.is_Pow and e.exp in inv,
                        lambda e: _half_power(e.base, inv[e.exp]))


_SQRTPOW = sp.Function("sqrtpow")


def _half_power(base, q):
    # sqrt(x)**k as an opaque call: common-subexpression elimination would fold it back
    # into x**(k/2), a general (exp/log) power in mpmath
    if q.p in (1, -1):
        return sp.Pow(base, q, evaluate=False)
    return _SQRTPOW(base, int(q.p))


class CompiledField:
    """Expressions in an integer index ``n``, coordinates ``args`` and run constants ``consts``
    (``h``, hyperparameters), compiled once; :meth:`bind` fixes the constants and returns
    ``f(n, theta) -> list``.

    Subexpressions free of the coordinates (``beta**n``, bias-correction moments, ``1 - beta``)
    are hoisted out and evaluated once per value of ``n`` (the last one is cached), since an
    integrator calls the field several times with the same ``n``.  Numbers are bound at the
    ``mpmath.mp.dps`` in force when :meth:`bind` is called.
    """

    def __init__(self, exprs, index, args, consts=(), arithmetic="mpmath"):
        self.exprs = [sp.sympify(e) for e in exprs]
        self.index, self.args, self.consts = index, list(args), list(consts)
        self.arithmetic = arithmetic
        outer = {index, *self.consts}
        hoisted = {}
        sums = []

        def hoist(e):
            if e.is_Atom:
                return e
            if isinstance(e, sp.Sum):
                return record_sum(e)
            fs = e.free_symbols
            if fs and fs <= outer and not e.has(sp.Sum):
                if e not in hoisted:
                    hoisted[e] = sp.Dummy(f"nq{len(hoisted)}")
                return hoisted[e]
            return e.func(*[hoist(a) for a in e.args])

        def record_sum(e):
            # a finite memory sum over a bound index whose limits depend on n only
            if len(e.limits) != 1:
                return e.func(*[hoist(a) for a in e.args])
            var, lo, hi = e.limits[0]
            if not ({lo, hi} and (lo.free_symbols | hi.free_symbols) <= outer):
                raise ValueError(f"cannot evaluate the sum {e}: its limits depend on more "
                                 f"than the step index")
            if e.function.has(sp.Sum):
                raise NotImplementedError(
                    "the field has nested memory sums over past steps (no closed form in n); "
                    "evaluating them costs O(n^2) per call -- use the stationary flow or ask "
                    "the engine for closed forms")
            dummy = sp.Dummy(f"sum{len(sums)}")
            sums.append((dummy, e.function, var, lo, hi))
            return dummy

        self._body = [hoist(e) for e in self.exprs]
        self._hoisted = hoisted
        self._sums = sums
        self._compiled = None

    def _compile(self):
        prec = mpmath.mp.prec if self.arithmetic == "mpmath" else None
        if self._compiled is None or self._compiled[0] != prec:
            outer = [self.index] + self.consts
            nfun = compile_exprs(list(self._hoisted), outer, self.arithmetic) \
                if self._hoisted else None
            # sums with the same limits are evaluated together, one compiled call per index
            L = sp.Dummy("L")
            groups = {}
            for k, (dummy, summand, var, lo, hi) in enumerate(self._sums):
                # sums free of the coordinates depend on n only: computed once per n
                free = not (summand.free_symbols & set(self.args))
                groups.setdefault((lo, hi, free), []).append((k, summand.xreplace({var: L})))
            sums = []
            for (lo, hi, free), members in groups.items():
                limits = sp.lambdify(outer, [lo, hi], modules="sympy")
                term = compile_exprs([m for _, m in members], self.args + outer + [L],
                                     self.arithmetic)
                sums.append((limits, term, [k for k, _ in members], free))
            fun = compile_exprs(self._body, self.args + outer + list(self._hoisted.values())
                                + [d for d, *_ in self._sums], self.arithmetic)
            self._compiled = (prec, nfun, fun, sums)
        return self._compiled[1:]

    def bind(self, *const_values):
        """``f(n, theta)`` with the constants set to ``const_values`` (in ``consts`` order)."""
        if len(const_values) != len(self.consts):
            raise ValueError(f"expected values for {[str(c) for c in self.consts]}")
        nfun, fun, sums = self._compile()
        cv = [to_number(v, self.arithmetic) for v in const_values]
        cache = {}

        def field(n, theta):
            nv = cache.get(n)
            if nv is None:
                # n enters as a number of the arithmetic, never a Python int: 3**(-n) with an
                # int n would be a binary float
                nn = to_number(n, self.arithmetic)
                nv = [nn, *cv, *(nfun(nn, *cv) if nfun is not None else ())]
                cache.clear()
                cache[n] = nv
            if sums:
                svals = [None] * len(self._sums)
                head = nv[:1 + len(cv)]
                for limits, term, index, free in sums:
                    key = ("sum", id(term))
                    totals = cache.get(key) if free else None
                    if totals is None:
                        lo, hi = (int(v) for v in limits(n, *cv))
                        totals = [to_number(0, self.arithmetic)] * len(index)
                        for l_ in range(lo, hi + 1):
                            vals = term(*theta, *head, to_number(l_, self.arithmetic))
                            totals = [a + b for a, b in zip(totals, vals)]
                        if free:
                            cache[key] = totals
                    for k, v in zip(index, totals):
                        svals[k] = v
                return fun(*theta, *nv, *svals)
            return fun(*theta, *nv)

        return field


def compile_field(exprs, index, args, arithmetic="mpmath"):
    """``f(n, theta) -> list`` for expressions in an integer index and the symbols ``args``
    (see :class:`CompiledField`)."""
    return CompiledField(exprs, index, args, (), arithmetic).bind()

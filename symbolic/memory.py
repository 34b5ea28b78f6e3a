"""Memory kernels: sums over past steps in closed form.

The derivation produces sums ``sum_{k=lo}^{hi} c(k) X`` over step indices, where ``c`` is a
product of polynomials in ``k`` and powers ``d^(a k + b)`` of EMA decays (the weights and their
moments), possibly divided by bias-correction factors ``1 - d^(l+1)`` of an inner step ``l``.
:func:`simplify_sums` evaluates every sum whose scalar part is polynomial-geometric in closed
form (finite, or infinite for the stationary moments), swaps triangular double sums,
and pushes sums into the linear operators of :mod:`operators`; what has no closed form stays an
exact, unevaluated :class:`sympy.Sum`.  Decays are taken in ``[0, 1)``: SymPy's case splits
``d = 1`` / ``|d| >= 1`` are resolved accordingly (:func:`resolve_piecewise`).
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp

from .dag import contains, make_sum, split_independent, sum_variables
from .family import ComponentConstant
from .expand import expand_mul
from .operators import (LARGE, D3, Hess, collect_fields, is_field, is_scalar, scalar_simplify,
                        split_scalar)

__all__ = ["closed_sum", "simplify_sums", "resolve_piecewise", "stationary_limit",
           "gather_powers_into_sums"]


def _decay_symbols(expr):
    return {s for s in expr.free_symbols if not s.is_integer}


def _probe(expr):
    """Generic values for the symbols of ``expr``: decays ``1/3, 1/4, ...`` in ``(0, 1)``, step
    indices ``7, 8, ...``."""
    probe = {s: sp.Rational(1, 3 + i) for i, s in enumerate(sorted(_decay_symbols(expr),
                                                                   key=str))}
    probe.update({s: sp.Integer(7 + i) for i, s in enumerate(
        sorted(expr.free_symbols - set(probe), key=str))})
    return probe


def resolve_piecewise(expr):
    """Pick, in every Piecewise, the branch valid for generic decays in ``(0, 1)`` and step
    indices (ratios of decays equal to 1 are :func:`closed_sum`'s own cases)."""
    if not expr.has(sp.Piecewise):
        return expr

    def pick(pw):
        for value, cond in pw.args:
            if cond == sp.true or bool(cond.subs(_probe(cond))):
                return value
        raise ValueError(f"no branch of {pw} holds for decays in (0, 1)")

    return expr.replace(lambda e: isinstance(e, sp.Piecewise), pick)


def _is_poly_geometric(c, k):
    for f in sp.Mul.make_args(c):
        if k not in f.free_symbols:
            continue
        if isinstance(f, sp.Pow) and k not in f.base.free_symbols:
            if not f.exp.is_polynomial(k) or sp.degree(f.exp, k) > 1:
                return False
            continue
        if f.is_polynomial(k):
            continue
        return False
    return True


def _ratio(dep, k):
    """``(r, rest)`` with ``dep = rest(k) * r^k``: ``r`` the product of the bases of the powers
    ``b^(a k + c)`` in ``dep`` raised to ``a``, ``rest`` the polynomial factors times the
    ``b^c``."""
    r, rest = sp.S.One, sp.S.One
    for f in sp.Mul.make_args(dep):
        if isinstance(f, sp.Pow) and k not in f.base.free_symbols and k in f.exp.free_symbols:
            a = sp.expand(f.exp).coeff(k)
            r *= f.base ** a
            rest *= f.base ** sp.expand(f.exp - a * k)
        else:
            rest *= f
    return r, rest


def can_be_one(r):
    """Whether the ratio ``r`` (a product of powers of decays and positive constants) can equal
    1 for decays in ``(0, 1)``: ``log r = c + sum a_i log d_i`` with ``log d_i`` ranging over
    ``(-oo, 0)``.  Anything else (another base, a symbolic exponent) counts as possible."""
    const, signs = sp.S.One, set()
    for f in sp.Mul.make_args(sp.powdenest(sp.expand_power_base(r, force=True), force=True)):
        base, e = f.as_base_exp()
        if not base.free_symbols:
            const *= f
        elif base.is_Symbol and base.is_positive and e.is_number and e.is_real:
            signs.add(sp.sign(e))
        else:
            return True
    if not const.is_positive:
        return True
    if signs == {1}:
        return bool(const > 1)
    if signs == {-1}:
        return bool(const < 1)
    return bool(signs) or const == 1


def _geometric_sum(dep, k, lo, hi):
    """``sum_{k=lo}^{hi} dep`` for one polynomial-geometric product; where its ratio ``r`` can
    be 1 at some decays in ``(0, 1)`` (``rho / beta``, ``2 rho``: two decays in a product of
    EMAs), the value there (a polynomial sum) is kept as the first branch of a ``Piecewise``
    on ``Eq(r, 1)``, so that values with ``r = 1`` give the sum, not ``0/0``."""
    r, rest = _ratio(dep, k)
    if not r.free_symbols:
        s = resolve_piecewise(sp.summation(dep, (k, lo, hi)))
        return None if s.has(sp.Sum, sp.oo, sp.zoo) or s is sp.nan else s
    if hi == sp.oo and not abs(r.subs(_probe(r))) < 1:
        return None                          # a tail that diverges for generic decays
    s = _polynomial_geometric_sum(r, rest, k, lo, hi)
    if hi == sp.oo or not can_be_one(r):
        return s
    at_one = sp.summation(rest, (k, lo, hi))
    return sp.Piecewise((scalar_simplify(at_one), sp.Eq(r, 1)), (scalar_simplify(s), True))


def _polynomial_geometric_sum(r, rest, k, lo, hi):
    """``sum_{k=lo}^{hi} rest(k) r^k`` for a polynomial ``rest`` and ``r != 1``, by its
    antidifference ``Q(k) r^k``: ``Q`` is the polynomial of the degree of ``rest`` with
    ``r Q(k+1) - Q(k) = rest(k)`` (solved from the top coefficient down, exactly), and the sum
    is ``Q(hi+1) r^(hi+1) - Q(lo) r^lo`` (Karr's convention for ``hi < lo - 1``, as SymPy's
    ``summation``); ``hi = oo``: ``-Q(lo) r^lo`` (``|r| < 1``, the caller's check).  The case
    ``r = 1`` is the caller's too."""
    z = sp.Dummy("z")      # no assumptions: the arithmetic below asks SymPy nothing
    p = sp.Poly(rest, k).all_coeffs()[::-1]          # p[i]: the coefficient of k^i
    q = [sp.S.Zero] * len(p)
    for i in range(len(p) - 1, -1, -1):
        carried = sp.Add(*[q[j] * sp.binomial(j, i) for j in range(i + 1, len(p))])
        q[i] = sp.cancel((p[i] - z * carried) / (z - 1))

    def Q(x):
        return sp.Add(*[c * x ** i if i else c for i, c in enumerate(q) if c != 0])

    head = Q(lo) * z ** lo
    total = -head if hi == sp.oo else Q(hi + 1) * z ** (hi + 1) - head
    return total.xreplace({z: r})


@lru_cache(maxsize=None)
def closed_sum(c, k, lo, hi):
    """``sum_{k=lo}^{hi} c`` for a scalar ``c`` that is polynomial-geometric in ``k``; ``None``
    if ``c`` is not of that class.  ``hi`` may be ``oo`` (convergent geometric tails).  Exact
    at every decay in ``[0, 1)``: a ratio of decays that can be 1 keeps that case as a
    ``Piecewise`` branch (:func:`_geometric_sum`)."""
    c = sp.expand(sp.powsimp(sp.expand_power_exp(c)))
    total, cases = sp.S.Zero, sp.S.Zero
    for term in sp.Add.make_args(c):
        coeff, dep = term.as_independent(k, as_Add=False)
        if dep == 1:
            if hi == sp.oo:
                return None
            total += coeff * (hi - lo + 1)
            continue
        if not _is_poly_geometric(dep, k):
            return None
        s = _geometric_sum(dep, k, lo, hi)
        if s is None:
            return None
        if isinstance(s, sp.Piecewise):
            cases += coeff * s
        else:
            total += coeff * s
    return scalar_simplify(total) + cases


def _pull_inner_sum(scal, inner, k, lo, hi):
    """``sum_{k=lo}^{hi} scal(k) * sum_{l=a}^{b} X`` evaluated with the inner sum brought
    outside: a triangular domain ``a = k + s`` becomes ``sum_{l=lo+s}^{b} sum_{k=lo}^{l-s}``, a
    rectangular one is interchanged (:func:`_interchanged`).  ``None`` if the limits have
    another shape."""
    if len(inner.limits) != 1:
        return None
    (l, a, b) = inner.limits[0]
    if k in b.free_symbols:
        return None
    X = inner.function
    if k not in a.free_symbols:
        return _interchanged(scal * X, (k, lo, hi), (l, a, b))
    shift = sp.expand(a - k)
    if k in shift.free_symbols or not shift.is_integer:
        return None
    return simplify_sums(make_sum(make_sum(scal * X, (k, lo, l - shift)), (l, lo + shift, b)))


def _interchanged(Y, inner, outer):
    """``sum_outer sum_inner Y`` (a rectangular domain), the inner sum first.  Terms whose
    inner sum stays open are left as double sums in this order: summed over the outer index,
    they would be interchanged back, and so on without end (neither order has a closed
    form; the finite double sum is exact)."""
    k = inner[0]
    summed = _sum_expr(_simplify_sums(Y), *inner)
    closed, open_ = [], []
    for t in sp.Add.make_args(summed):
        (open_ if k in sum_variables(t) else closed).append(t)
    out = _sum_expr(sp.Add(*closed), *outer) if closed else sp.S.Zero
    return out + sp.Add(*[make_sum(t, outer) for t in open_])


def _sum_term(term, k, lo, hi, simplify=True):
    """Sum one product term over ``k`` (``hi`` finite); a closed form is left unsimplified
    when ``simplify`` is false (the caller gathers terms first)."""
    indep, dep = split_independent(term, k)
    if dep == 1:
        return indep * (hi - lo + 1)
    factors = sp.Mul.make_args(dep)
    sums = [f for f in factors if isinstance(f, sp.Sum)]
    if len(sums) == 1:
        rest = sp.Mul(*[f for f in factors if f is not sums[0]])
        pulled = _pull_inner_sum(rest, sums[0], k, lo, hi)
        if pulled is not None:
            return indep * pulled
    if is_scalar(dep):
        s = closed_sum(dep, k, lo, hi)
        if s is None:
            return indep * make_sum(dep, (k, lo, hi))
        if not simplify:
            return indep * s
        c, f = split_scalar(indep)
        return scalar_simplify(c * s) * f
    scal, fld = [], []
    for f in factors:
        (fld if is_field(f) else scal).append(f)
    scal = sp.Mul(*scal)
    if len(fld) == 1 and isinstance(fld[0], (Hess, D3)) and k in fld[0].args[0].free_symbols:
        return indep * make_sum(dep, (k, lo, hi))
    if scal.has(ComponentConstant) and any(isinstance(f, (Hess, D3)) for f in fld):
        # the weight is the outer component's: moved into the contraction it would be read
        # at every inner component, so the finite sum stays
        return indep * make_sum(dep, (k, lo, hi))
    if len(fld) == 1 and isinstance(fld[0], Hess):
        b, u = fld[0].args
        return indep * Hess(b, _sum_expr(scal * u, k, lo, hi))
    if len(fld) == 1 and isinstance(fld[0], D3):
        b, u, w = fld[0].args
        if k not in w.free_symbols:
            return indep * D3(b, _sum_expr(scal * u, k, lo, hi), w)
        if k not in u.free_symbols:
            return indep * D3(b, u, _sum_expr(scal * w, k, lo, hi))
    return indep * make_sum(dep, (k, lo, hi))


def _sum_expr(f, k, lo, hi):
    """``sum_{k=lo}^{hi} f`` term by term; the terms of a large sum are gathered by field
    monomial and each coefficient is simplified once (:func:`operators.collect_fields`)."""
    terms = sp.Add.make_args(expand_mul(f))
    if len(terms) <= LARGE:
        return sp.Add(*[_sum_term(t, k, lo, hi) for t in terms])
    return collect_fields(sp.Add(*[_sum_term(t, k, lo, hi, simplify=False) for t in terms]))


def simplify_sums(e):
    """Evaluate or normalise every :class:`sympy.Sum` in ``e`` (innermost first)."""
    return _simplify_sums(sp.sympify(e))


@lru_cache(maxsize=None)
def _simplify_sums(e):
    if not e.args or not contains(e, sp.Sum):
        return e
    if isinstance(e, sp.Sum):
        f = _simplify_sums(e.function)
        out = f
        for (k, lo, hi) in e.limits:
            out = _sum_expr(out, k, lo, hi)
        return out
    return e.func(*[_simplify_sums(a) for a in e.args])


def stationary_limit(expr, n):
    """``n -> oo`` limit of a closed form in which ``n`` enters only through powers ``d^(..n..)``
    of decays in ``[0, 1)`` (bias corrections, transients); raises if ``n`` survives."""
    expr = sp.expand_power_exp(sp.sympify(expr))
    expr = expr.replace(
        lambda e: isinstance(e, sp.Pow) and n in e.exp.free_symbols
        and n not in e.base.free_symbols, lambda e: sp.S.Zero)
    expr = sp.simplify(expr) if expr.has(n) else expr
    if n in expr.free_symbols:
        raise ValueError(f"no stationary limit: {expr} still depends on {n}")
    return expr


def gather_powers_into_sums(expr, bases):
    """Move every factor ``b**e`` (``b`` in ``bases``, ``e`` free of the sum's index) of a
    product into the :class:`sympy.Sum` it multiplies, and merge powers of one base:
    ``beta**n * Sum(beta**(-k) a_k, (k, 0, n))`` becomes ``Sum(beta**(n-k) a_k, (k, 0, n))``.

    Exact.  Needed before a decay is set to 0: split as ``beta**n * beta**(-k)`` the weight
    reads ``0 * zoo`` there, merged it is ``0**(n-k)``, which is 1 at ``k = n`` and 0 before.

    >>> b, n, k = sp.symbols("beta n k")
    >>> gather_powers_into_sums(b**n * sp.Sum(b**(-k) * k, (k, 0, n)), [b])
    Sum(beta**(-k + n)*k, (k, 0, n))
    """
    bases, done = set(bases), {}
    if not bases:
        return sp.sympify(expr)

    def is_power(f):
        return (f.base if f.is_Pow else f) in bases

    def walk(e):
        if e not in done:
            done[e] = merged(e)
        return done[e]

    def merged(e):
        if not e.args:
            return e
        e = e.func(*[walk(a) for a in e.args])
        if isinstance(e, sp.Sum):
            return sp.Sum(sp.powsimp(e.function, combine="exp"), *e.limits)
        if e.is_Mul:
            target = next((f for f in e.args if isinstance(f, sp.Sum)), None)
            if target is not None:
                bound = {v for v, *_ in target.limits}
                moving = [f for f in e.args if f is not target and is_power(f)
                          and not f.free_symbols & bound]
                if moving:
                    rest = [f for f in e.args if f is not target and f not in moving]
                    inner = sp.powsimp(sp.Mul(*moving, target.function), combine="exp")
                    return sp.Mul(*rest, sp.Sum(inner, *target.limits))
        return e

    return walk(sp.sympify(expr))

"""Queries on expressions, cached per distinct subexpression.

SymPy's ``free_symbols`` and ``as_independent`` walk the expression as a tree.  The
derivation's expressions are DAGs that share subtrees heavily (the same memory sum recurs in
many terms), so a tree walk repeats the same subexpressions many times over; these functions
answer once per distinct subexpression (a cache keyed by the subexpression).
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits

__all__ = ["free_symbols", "split_independent", "contains", "sums_in", "sum_variables", "make_sum",
           "xreplace", "substitute_free", "doit", "rebuilt"]


@lru_cache(maxsize=1 << 16)
def free_symbols(e):
    """``e.free_symbols`` as a frozenset.  A ``Sum``'s or ``Product``'s are its summand's with
    each variable removed and its limits' added, limit by limit (innermost first, as SymPy
    lists them, so an inner bound may name an outer variable); SymPy's own rebuilds the whole
    summand with its variables replaced, at every call and every level of nesting.  Classes
    with a ``free_symbols`` of their own (symbols, derivatives, ...) answer themselves."""
    if isinstance(e, (sp.Sum, sp.Product)) and all(lim[0].is_Symbol for lim in e.limits):
        out = set(free_symbols(e.function))
        for v, *bounds in e.limits:
            out.discard(v)
            for b in bounds:
                out |= free_symbols(b)
        return frozenset(out)
    if not e.args or _answers_itself(type(e)):
        return frozenset(e.free_symbols)
    return frozenset().union(*[free_symbols(a) for a in e.args])


@lru_cache(maxsize=None)
def _answers_itself(cls):
    """Whether instances of ``cls`` have a ``free_symbols`` other than ``Basic``'s (looked up
    on the instances' classes, not on the metaclass: a function class such as ``Hess`` has
    one of its own, its applications do not)."""
    own = next(vars(c)["free_symbols"] for c in cls.__mro__ if "free_symbols" in vars(c))
    return own is not vars(sp.Basic)["free_symbols"]


def split_independent(term, x):
    """``(independent, dependent)`` factors of the product ``term`` with respect to the
    symbol ``x`` (``term.as_independent(x, as_Add=False)``)."""
    indep, dep = [], []
    for f in sp.Mul.make_args(term):
        (dep if x in free_symbols(f) else indep).append(f)
    return sp.Mul(*indep), sp.Mul(*dep)


@lru_cache(maxsize=1 << 16)
def contains(e, kind):
    """Whether ``e`` has a subexpression of the class ``kind`` (``e.has(kind)``)."""
    return isinstance(e, kind) or any(contains(a, kind) for a in e.args)


@lru_cache(maxsize=1 << 16)
def sums_in(e):
    """Every ``Sum`` in ``e``, at any depth, ``e`` itself included (a frozenset)."""
    own = {e} if isinstance(e, sp.Sum) else set()
    return frozenset(own).union(*[sums_in(a) for a in e.args])


@lru_cache(maxsize=1 << 16)
def sum_variables(e):
    """The variables of every ``Sum`` in ``e`` (a frozenset)."""
    return frozenset(lim[0] for s in sums_in(e) for lim in s.limits)


def make_sum(f, *limits):
    """``sp.Sum(f, *limits)`` for limits ``(k, lo, hi)`` with ``k`` a symbol.  SymPy's
    constructor also folds every ``Piecewise`` of ``f`` that reads a variable, and merges a
    summand that is itself a ``Sum`` into one ``Sum`` with more limits; it walks ``f`` as a
    tree to find them.  Here the question is cached (:func:`contains`) and SymPy's constructor
    runs only where it has something to do."""
    f = sp.sympify(f)
    if (isinstance(f, sp.Sum) or f is sp.nan or contains(f, sp.Piecewise)
            or any(len(lim) != 3 or not isinstance(lim[0], sp.Symbol) for lim in limits)):
        return sp.Sum(f, *limits)
    obj = sp.Expr.__new__(sp.Sum)
    obj._args = (f, *[sp.Tuple(*[sp.sympify(x) for x in lim]) for lim in limits])
    obj.is_commutative = f.is_commutative
    return obj


def rebuilt(e, args):
    """``e`` with the arguments ``args`` (``e`` itself where they are its own; a ``Sum`` by
    :func:`make_sum`)."""
    if all(a is b for a, b in zip(args, e.args)):
        return e
    if isinstance(e, sp.Sum):
        return make_sum(*args)
    return e.func(*args)


def xreplace(e, rule):
    """``e.xreplace(rule)``, each distinct subexpression replaced once."""
    done = {}

    def walk(x):
        if x in rule:
            return rule[x]
        if x not in done:
            done[x] = rebuilt(x, [walk(a) for a in x.args]) if x.args else x
        return done[x]

    return walk(sp.sympify(e))


def substitute_free(e, var, value):
    """``e`` with the free occurrences of ``var`` replaced by ``value``; a sum or product that
    binds ``var`` keeps it (``xreplace`` would replace the bound variable too)."""
    done = {}

    def walk(x):
        if x == var:
            return value
        if var not in free_symbols(x):
            return x
        if x not in done:
            done[x] = (x.subs(var, value) if isinstance(x, ExprWithLimits)
                       and any(lim[0] == var for lim in x.limits)
                       else rebuilt(x, [walk(a) for a in x.args]))
        return done[x]

    return walk(e)


def doit(e):
    """``e.doit()``, each distinct subexpression evaluated once.  A sum or product whose
    outermost limits are integers is written out term by term, outermost first (an inner sum
    whose limits read the outer index then has integer limits when it is reached; SymPy's
    ``doit`` sums the inner one first, symbolically, which for NAdam's products ``mu_1 ... mu_t``
    runs for minutes).  Limits ``hi < lo - 1`` read as SymPy's (Karr's convention):
    ``sum_lo^hi = -sum_(hi+1)^(lo-1)``, ``prod_lo^hi = 1 / prod_(hi+1)^(lo-1)``.  Other nodes:
    the arguments first, then the node (sums, products, derivatives and piecewise by their own
    ``doit`` one level deep, whose result is evaluated in turn; the rest as they are rebuilt).

    >>> k, l = sp.symbols("k l", integer=True)
    >>> doit(sp.Sum(sp.Product(k, (k, 1, l)), (l, 0, 3)))
    10
    """
    done = {}

    def written_out(x):
        *inner, (k, lo, hi) = x.limits
        body = (make_sum if isinstance(x, sp.Sum) else x.func)(x.function, *inner) \
            if inner else x.function
        flip = hi < lo - 1
        terms = [walk(substitute_free(body, k, sp.Integer(j)))
                 for j in (range(hi + 1, lo) if flip else range(lo, hi + 1))]
        if isinstance(x, sp.Sum):
            return -sp.Add(*terms) if flip else sp.Add(*terms)
        return 1 / sp.Mul(*terms) if flip else sp.Mul(*terms)

    def walk(x):
        if x not in done:
            done[x] = x                      # a result that contains x itself stops there
            if isinstance(x, (sp.Sum, sp.Product)) and x.limits[-1][1].is_Integer \
                    and x.limits[-1][2].is_Integer:
                done[x] = written_out(x)
                return done[x]
            y = rebuilt(x, [walk(a) for a in x.args]) if x.args else x
            if isinstance(y, (ExprWithLimits, sp.Derivative, sp.Piecewise)):
                z = y.doit(deep=False)
                y = walk(z) if z != y else z
            done[x] = y
        return done[x]

    return walk(sp.sympify(e))

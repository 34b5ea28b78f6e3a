"""Preparing SymPy expressions for every target: one routine each for constants, square roots,
step-index coefficients and common subexpressions.

* :func:`prepare_expressions` lifts every non-integer number-valued subexpression (``1/3``,
  ``sqrt(2)``, ``2**(-n)``'s base) out into placeholder symbols, bound later to values in the
  target arithmetic, and writes ``B**(k/2)`` as ``Sqrt(B)**k`` so that one square root is shared;
* :func:`hoist_coefficients` replaces each maximal subexpression that depends on the step index
  (and on late-bound constants such as ``h``) but not on the point by a symbol: memory moments,
  bias corrections and finite memory sums are then evaluated once per ``n``, not per point;
* :func:`cse_with_opaque_sums` is SymPy's CSE with each ``Sum`` held as one opaque value.

Printing (``printers``) and compiling (``kernel``) come after; generated source modules use
the same steps.
"""
from __future__ import annotations

import itertools

import sympy as sp
from sympy.codegen.cfunctions import Sqrt

from .. import dag
from ..dag import contains, free_symbols

__all__ = ["prepare_expressions", "share_square_roots", "hoist_coefficients", "extract_sums",
           "cse_with_opaque_sums", "fresh_names", "is_constant"]

# integers up to this size stay literal in the printed code (exact in every float type used)
INT_LITERAL = 2 ** 24


def is_constant(e):
    """A number-valued expression (no free symbol)."""
    return isinstance(e, sp.Expr) and not free_symbols(e) and e.is_number


def fresh_names(prefix, exprs, extra=()):
    """Symbol names ``prefix0, prefix1, ...`` that no expression of ``exprs`` uses."""
    taken = {str(s) for e in exprs for s in free_symbols(sp.sympify(e))} | set(extra)
    return (nm for nm in (f"{prefix}{k}" for k in itertools.count()) if nm not in taken)


def prepare_expressions(exprs):
    """Lift constants out of ``exprs`` and share square roots.

    Returns ``(prepared, constants)``: ``prepared`` uses placeholder symbols (``_c0``...) for every
    non-integer number-valued subexpression; ``constants`` is ``[(placeholder, exact value)]``.
    Integers (of modest size) and integer exponents stay; a number raised to a symbolic power
    becomes a placeholder (``2**(-n)`` would otherwise be a Python float); ``B**(k/2)`` becomes
    ``Sqrt(B)**k``.  Sums keep their limits untouched.

    >>> x = sp.Symbol("x")
    >>> prepare_expressions([x / 3 + sp.sqrt(x)])
    ([_c0*x + Sqrt(x)], [(_c0, 1/3)])
    """
    exprs = [sp.sympify(e) for e in exprs]
    names = fresh_names("_c", exprs)
    indices = fresh_names("_i", exprs)
    table = {}
    memo = {}

    def const(c):
        # plain symbols (not Dummy): lambdify would otherwise rename every argument
        if c not in table:
            table[c] = sp.Symbol(next(names), real=True)
        return table[c]

    def walk(e):
        if e in memo:
            return memo[e]
        if e.is_Integer:
            out = e if abs(int(e)) <= INT_LITERAL else const(e)
        elif not e.args:
            out = const(e) if is_constant(e) else e
        elif is_constant(e):
            out = const(e)
        elif e.is_Pow:
            b, x = e.args
            if x.is_Integer:
                out = sp.Pow(walk(b), x)
            elif x.is_Rational and x.q == 2:
                out = Sqrt(walk(b)) ** int(x.p)
            else:
                nb = const(b) if is_constant(b) else walk(b)
                out = sp.Pow(nb, walk(x))
        elif isinstance(e, sp.Sum):
            # bound variables printed as identifiers (a Dummy named ``_l'`` is not one); an
            # outer variable is renamed in the inner limits' bounds too
            f, limits = e.function, []
            for v, a, b in e.limits:
                if not str(v).isidentifier():
                    w = sp.Symbol(next(indices), integer=True)
                    f = dag.xreplace(f, {v: w})
                    limits = [(u, x.xreplace({v: w}), y.xreplace({v: w}))
                              for u, x, y in limits]
                    v = w
                limits.append((v, a, b))
            out = sp.Sum(walk(f), *limits)
        else:
            out = e.func(*[walk(a) for a in e.args])
        memo[e] = out
        return out

    prepared = [walk(e) for e in exprs]
    return prepared, [(d, c) for c, d in table.items()]


def share_square_roots(expr):
    """``B**(k/2)`` -> ``Sqrt(B)**k`` (an unevaluated square root): CSE then shares one root
    between ``sqrt(B)``, ``B**(3/2)`` and ``B**(-1/2)``; the printers print it as the backend's
    ``sqrt``."""
    return sp.sympify(expr).replace(
        lambda e: e.is_Pow and e.exp.is_Rational and e.exp.q == 2 and not e.exp.is_Integer,
        lambda e: Sqrt(e.base) ** int(e.exp.p))


def hoist_coefficients(exprs, point, step):
    """Replace each maximal subexpression that depends on the step index ``step`` (or on any of
    the symbols in the set ``step``) but on no symbol of ``point`` by a fresh symbol ``_m0, ...``.

    Returns ``(body, [(symbol, coefficient)])``.  Memory coefficients in closed form and finite
    sums without one are hoisted whole (a ``Sum`` is never entered); the step-index factors of
    one product (terms of one sum) are one coefficient.  An undefined function's
    application (per-step data ``_D<slot>(k)`` of a mini-batch flow) counts as depending on
    the point.
    """
    outer = {step} if isinstance(step, sp.Symbol) else set(step)
    point = set(point)
    table = {}
    names = fresh_names("_m", exprs)

    done = {}

    def hoist(e):
        if e not in done:
            done[e] = hoisted(e)
        return done[e]

    def hoisted(e):
        if is_coefficient(e) and not e.is_Symbol:
            if e not in table:
                table[e] = sp.Symbol(next(names))
            return table[e]
        if not e.args or isinstance(e, sp.Sum):
            return e
        if isinstance(e, (sp.Mul, sp.Add)):
            # one coefficient: apart, a scale 600^(n psi) and its ratio 24^(-3 n psi) ...
            # (:mod:`.growth`) overflow a float that their product fits
            alone = [a for a in e.args if is_coefficient(a)]
            if len(alone) > 1:
                rest = [hoist(a) for a in e.args if not is_coefficient(a)]
                return e.func(hoist(e.func(*alone)), *rest)
        return e.func(*[hoist(a) for a in e.args])

    def is_coefficient(e):
        fs = free_symbols(e)
        return bool(fs & outer) and not fs & point and not contains(
            e, sp.core.function.AppliedUndef)

    body = [hoist(sp.sympify(e)) for e in exprs]
    return body, [(sym, c) for c, sym in table.items()]


def extract_sums(exprs):
    """Replace each outermost ``Sum`` by a fresh symbol ``_t0, ...`` and group the sums by
    their (outermost) limits, so that sums over the same range are evaluated in one loop (one
    compiled summand function, common subexpressions shared across the summands).  A ``Sum``
    of several indices is the sum over its last limit of the ``Sum`` over the others.

    Returns ``(body, groups)`` with ``groups = {(index, low, high): [(symbol, summand)]}``.
    """
    names = fresh_names("_t", exprs)
    table = {}
    groups = {}

    def walk(e):
        if isinstance(e, sp.Sum):
            if e not in table:
                table[e] = sp.Symbol(next(names))
                *inner, outer = e.limits
                f = sp.Sum(e.function, *inner) if inner else e.function
                groups.setdefault(tuple(outer), []).append((table[e], f))
            return table[e]
        if not e.args:
            return e
        return e.func(*[walk(a) for a in e.args])

    body = [walk(sp.sympify(e)) for e in exprs]
    return body, groups


def cse_with_opaque_sums(exprs, prefix="_x", sum_prefix="_s", taken=()):
    """SymPy's CSE with each outermost ``Sum`` / ``Product`` held as one opaque value (its
    bound variable never escapes, nested ones stay inside it); returns ``(replacements, reduced)`` where the sums come first.  New symbols are
    named ``sum_prefix<k>`` / ``prefix<k>``, avoiding the expressions' symbols and ``taken``."""
    exprs = list(exprs)
    sums = {}
    used = set(taken)
    sum_names = fresh_names(sum_prefix, exprs, used)

    def hide(e):
        # outermost sums and products only: a nested one may use the outer bound variable
        if isinstance(e, (sp.Sum, sp.Product)):
            if e not in sums:
                sums[e] = sp.Symbol(next(sum_names))
                used.add(str(sums[e]))
            return sums[e]
        if not e.args:
            return e
        return e.func(*[hide(a) for a in e.args])

    hidden = [hide(sp.sympify(e)) for e in exprs]
    symbols = (sp.Symbol(nm) for nm in fresh_names(prefix, hidden, used))
    repl, reduced = sp.cse(hidden, list=True, symbols=symbols)
    return [(d, s) for s, d in sums.items()] + list(repl), reduced

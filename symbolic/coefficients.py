"""Step-index coefficients held opaque while the flow is derived.

A step that reads the step index ``n`` does so through scalar coefficients: NAdam's
``c0(n) = (1 - mu_{n+1}) / (1 - P_{n+1})`` and ``c1(n) = mu_{n+2} / (1 - P_{n+1} mu_{n+2})``
with ``P_t = mu_1 ... mu_t``.  The derivation never needs their form: it shifts them
(``F^(l)`` in a memory sum reads ``c(l)``), multiplies them and collects them, and a sum over
past steps of a summand with ``c(l)`` has no closed form either way.  Written out, the
products and powers inside them become generators of SymPy's rational simplification, which
at ``h^2`` does not finish (torch's NAdam: over 55 min and 20 GB); held as undefined functions
``c_i(n)`` they are a few generators more.

:func:`hide` replaces each maximal ``n``-dependent scalar part of a step (free of the states,
``g`` and ``theta``; the ``n``-dependent factors of one product, or terms of one sum, taken
together) by ``c_i(n)``; :func:`reveal` puts the definitions back, ``c_i(x)`` -> the definition
with ``n = x``, so that every result leaves the derivation in the declaration's own terms.
The displays print that ``F2`` in the ``c_i`` instead (``c1(k)`` at the past steps of its
sums), each defined once: written out, grouping it for print expands the products again.
"""
from __future__ import annotations

import sympy as sp

from .family import EMA, g, n, theta

__all__ = ["hide", "reveal", "reads_step_index"]


def reads_step_index(step):
    """Whether ``step`` has a coefficient in the step index ``n``."""
    return n in sp.sympify(step).free_symbols


def _is_coefficient(e):
    """``e`` depends on ``n`` and on no state, gradient or parameter."""
    free = e.free_symbols
    return n in free and not any(s in (g, theta) or isinstance(s, EMA) for s in free)


def hide(step):
    """``(hidden, definitions)``: ``step`` with its step-index coefficients replaced by
    undefined functions ``c_i(n)``, and ``{c_i: definition in n}``.  Equal coefficients share
    one function.  ``reveal(hidden, definitions) == step`` up to the grouping of factors."""
    step = sp.sympify(step)
    taken = {f.func.__name__ for f in step.atoms(sp.Function)}
    definitions = {}

    def name(c):
        for f, d in definitions.items():
            if d == c:
                return f(n)
        i = len(definitions)
        while f"c{i}" in taken:
            i += 1
        f = sp.Function(f"c{i}", real=True)
        taken.add(f.__name__)
        definitions[f] = c
        return f(n)

    def walk(e):
        if _is_coefficient(e):
            return name(e)
        if not e.args or n not in e.free_symbols:
            return e
        if isinstance(e, (sp.Mul, sp.Add)):
            coefficients = [a for a in e.args if _is_coefficient(a)]
            rest = [walk(a) for a in e.args if not _is_coefficient(a)]
            if coefficients:
                rest.append(name(e.func(*coefficients)))
            return e.func(*rest)
        return e.func(*[walk(a) for a in e.args])

    return walk(step), definitions


def reveal(expr, definitions):
    """``expr`` with every ``c_i(x)`` of ``definitions`` replaced by its definition at
    ``n = x`` (``x`` a step index: ``n``, a summation variable, ``l + 1``, ...)."""
    expr = sp.sympify(expr)
    values = {c: definitions[c.func].xreplace({n: c.args[0]})
              for c in expr.atoms(sp.core.function.AppliedUndef) if c.func in definitions}
    return expr.xreplace(values) if values else expr

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

__all__ = ["hide", "reveal", "reads_step_index", "transient_rates"]


def reads_step_index(step):
    """Whether ``step`` has a coefficient in the step index ``n``."""
    return n in sp.sympify(step).free_symbols


def transient_rates(step, index=n):
    """Rates ``r`` (expressions in the hyperparameters) such that every step-index coefficient
    of ``step`` is its limit as ``index -> oo`` up to ``O(r^index)``, or ``None`` where the
    index enters otherwise (a power of it, ``1/(n+1)``: no geometric transient).

    ``index`` enters through powers ``b^(a index + c)`` (rate ``b^a``) and products
    ``prod_{i=lo}^{index + c} f(i)`` of factors with such transients of their own (rate
    ``|f(oo)|``, the factors' limit, with the factors' own rates).  The rates are valid where
    their values lie in ``[0, 1)``; the caller checks that once the hyperparameters have values.

    >>> from modeq.symbolic.optimizers import torch_nadam
    >>> transient_rates(torch_nadam().step)
    [(24/25)**psi, beta]
    >>> transient_rates(n / (n + 1)) is None
    True
    """
    step = sp.sympify(step)
    rates, atoms = [], {}
    for e in sp.preorder_traversal(step):
        if e in atoms or index not in e.free_symbols:
            continue
        if e.is_Pow and index not in e.base.free_symbols:
            a = sp.diff(e.exp, index)
            if index in a.free_symbols:
                return None
            rates.append(sp.Abs(e.base ** a))
            atoms[e] = sp.Dummy()
        elif isinstance(e, sp.Product) and len(e.limits) == 1:
            i, lo, hi = e.limits[0]
            if index in lo.free_symbols or sp.diff(hi, index) != 1:
                return None
            inner = transient_rates(e.function, i)
            if inner is None:
                return None
            limit = e.function.xreplace({p: 0 for p in e.function.atoms(sp.Pow)
                                         if i in p.exp.free_symbols})
            rates.extend([*inner, sp.Abs(limit)])
            atoms[e] = sp.Dummy()
    if index in step.xreplace(atoms).free_symbols:
        return None
    return list(dict.fromkeys(rates))


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

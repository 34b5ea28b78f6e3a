"""``sympy.expand_mul`` and ``sympy.expand`` that expand each distinct subexpression once.

SymPy's deep expansion walks the whole tree on every pass (at least two) and expands a
subexpression again wherever it recurs -- the memory sums of a derivation recur in many
terms, and their summands are thousands of operations each.  :func:`expand_mul` and
:func:`expand` run the same algorithm (the same ``_eval_expand_<hint>`` calls on the same
arguments, so the result is the same expression, structurally) with the answer for each
distinct subexpression remembered for the duration of the call.

>>> import sympy as sp
>>> x, y, z = sp.symbols("x y z")
>>> e = x * (y + z) + sp.Sum(x * (y + z), (z, 0, 3)) / (x * (x + 1))
>>> expand_mul(e) == sp.expand_mul(e)
True
>>> f = (x + sp.sqrt(y * (z + 1)) ** 3) ** 2 / (x + y) ** 2 + (sp.Rational(2, 3)
...                                                         ** (x * (y + 2)))
>>> expand(f) == sp.expand(f)
True
"""
from __future__ import annotations

import sympy as sp

from .dag import rebuilt

__all__ = ["expand_mul", "expand"]

#: the hints of ``sympy.expand``, in the order it applies them (sorted by name, ``mul`` as
#: ``mulz``: after ``multinomial``, before ``power_base``)
_ALL = ("basic", "log", "multinomial", "mul", "power_base", "power_exp")


def expand_mul(expr):
    """``sympy.expand_mul(expr)`` (deep), each distinct subexpression expanded once."""
    hints = dict.fromkeys(_ALL, False)
    hints["mul"] = True
    e = sp.sympify(expr)
    return _repeated(e, [_Pass("mul", hints)])


def expand(expr):
    """``sympy.expand(expr)`` (deep, every default hint), each distinct subexpression expanded
    once per hint.  As ``Expr.expand``: one pass of each hint, then ``multinomial``, ``mul``
    and ``log`` again until nothing changes."""
    hints = dict.fromkeys(_ALL, True)
    passes = {name: _Pass(name, hints) for name in _ALL}
    e = sp.sympify(expr)
    for name in _ALL:
        e = passes[name](e)
    return _repeated(e, [passes[name] for name in ("multinomial", "mul", "log")])


def _repeated(e, passes):
    while True:
        was = e
        for run in passes:
            e = run(e)
        if e == was:
            return e


class _Pass:
    """``Expr._expand_hint(e, "_eval_expand_" + name, deep=True, **hints)``, the answer for
    each distinct subexpression remembered across the calls of one expansion."""

    def __init__(self, name, hints):
        self.rule, self.hints, self.memo = "_eval_expand_" + name, hints, {}

    def __call__(self, e):
        return self._walk(e)[0]

    def _walk(self, e):
        found = self.memo.get(e)
        if found is not None:
            return found
        key, hit = e, False
        if getattr(e, "args", ()) and not e.is_Atom:
            args = []
            for a in e.args:
                a, a_hit = self._walk(a)
                hit |= a_hit
                args.append(a)
            if hit:
                e = rebuilt(e, args)
        out = (e, hit)
        rule = getattr(e, self.rule, None)
        if rule is not None:
            new = rule(**self.hints)
            if new != e:
                out = (new, True)
        self.memo[key] = out
        return out

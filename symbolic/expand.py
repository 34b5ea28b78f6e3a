"""``sympy.expand_mul`` that expands each distinct subexpression once.

SymPy's deep expansion walks the whole tree on every pass (at least two) and expands a
subexpression again wherever it recurs -- the memory sums of a derivation recur in many
terms, and their summands are thousands of operations each.  :func:`expand_mul` runs the same
algorithm (the same ``_eval_expand_mul`` calls on the same arguments, so the result is the
same expression, structurally) with the answer for each distinct subexpression remembered
for the duration of the call.

>>> import sympy as sp
>>> x, y, z = sp.symbols("x y z")
>>> e = x * (y + z) + sp.Sum(x * (y + z), (z, 0, 3)) / (x * (x + 1))
>>> expand_mul(e) == sp.expand_mul(e)
True
"""
from __future__ import annotations

import sympy as sp

from .dag import rebuilt

__all__ = ["expand_mul"]

# the hints sympy.expand_mul hands to every _eval_expand_mul
_HINTS = dict(power_base=False, power_exp=False, mul=True, log=False, multinomial=False,
              basic=False)


def expand_mul(expr):
    """``sympy.expand_mul(expr)`` (deep), each distinct subexpression expanded once."""
    memo = {}

    def walk(e):
        # Expr._expand_hint(e, "_eval_expand_mul", deep=True), remembered per subexpression
        found = memo.get(e)
        if found is not None:
            return found
        key, hit = e, False
        if getattr(e, "args", ()) and not e.is_Atom:
            args = []
            for a in e.args:
                a, a_hit = walk(a)
                hit |= a_hit
                args.append(a)
            if hit:
                e = rebuilt(e, args)
        out = (e, hit)
        rule = getattr(e, "_eval_expand_mul", None)
        if rule is not None:
            new = rule(**_HINTS)
            if new != e:
                out = (new, True)
        memo[key] = out
        return out

    e = walk(sp.sympify(expr))[0]
    while True:                      # Expr.expand repeats the pass until nothing changes
        was = e
        e = walk(e)[0]
        if e == was:
            return e

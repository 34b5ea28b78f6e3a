"""A gradient component is real: ``sqrt(g**2)`` is ``|g|``, and written so it cancels.

With eps outside the root (every adaptive ``torch.optim`` optimizer) the derivation writes
``|g|`` as ``sqrt(g**2)`` (its ``g`` has no sign assumption) and leaves terms such as
``g**2/sqrt(g**2)``, which read ``0/0`` where a component of the gradient is 0 (a dead unit, an
input feature that is always 0, a symmetric point): NaN, where the term is ``|g|``, i.e. 0.
:func:`abs_gradient` writes the roots of squares and the even powers of ``g`` as powers of
``|g|``, pulls ``|g|`` out of denominators so that it cancels, and puts the even powers that
did not cancel back; :func:`abs_back` is its inverse, for the symbolic proofs.  ``g`` is the
gradient as the caller writes it (the symbol of the matrix-free forms, or ``Grad(FULL)``).
"""
from __future__ import annotations

import sympy as sp

__all__ = ["abs_gradient", "abs_back"]

_ABS = sp.Dummy("abs_g", positive=True)


def abs_gradient(e, g):
    """``e`` with ``|g|`` written as such and cancelled where it can be (module docstring).

    >>> g = sp.Symbol("g")
    >>> abs_gradient(g ** 2 / (sp.sqrt(g ** 2) * (1 + sp.sqrt(g ** 2)) ** 2), g)
    Abs(g)/(Abs(g) + 1)**2
    """
    e = e.replace(lambda x: x.is_Pow and not x.exp.is_Integer and x.base.is_Add
                  and x.base.has(g), lambda x: _split_square(x, g))
    if not e.find(lambda x: x == sp.Abs(g) or (x.is_Pow and not x.exp.is_Integer
                                               and x.base.is_Pow and x.base.base == g
                                               and x.base.exp.is_even)):
        return e                                             # neither |g| nor a root of g**2
    e = e.xreplace({sp.Abs(g): _ABS}).replace(
        lambda x: x.is_Pow and x.base == g and x.exp.is_Integer and x.exp.is_even,
        lambda x: _ABS ** x.exp)
    # |g| as a common factor of a denominator's terms cancels only once pulled out
    e = e.replace(lambda x: x.is_Pow and x.exp.is_negative and x.base.is_Add
                  and x.base.has(_ABS), lambda x: sp.factor_terms(x.base) ** x.exp)
    # what did not cancel goes back: even powers are powers of g, odd ones of |g|
    e = e.replace(lambda x: x.is_Pow and x.base == _ABS and x.exp.is_Integer
                  and x.exp.is_even, lambda x: g ** x.exp)
    return e.xreplace({_ABS: sp.Abs(g)})


def _split_square(x, g):
    """``(g**2 b)**q`` as ``(g**2)**q b**q`` where the base has the common factor ``g**2``
    (centered RMSprop's ``sqrt(v - a**2)``: ``g**2`` times a variance of the weights), which
    holds for a real ``g`` and any ``b`` (principal powers of a positive real factor)."""
    base = sp.factor_terms(x.base)
    square = [f for f in sp.Mul.make_args(base)
              if f.is_Pow and f.base == g and f.exp.is_Integer and f.exp.is_even]
    if not square:
        return x
    rest = sp.Mul(*[f for f in sp.Mul.make_args(base) if f is not square[0]])
    return sp.Pow(square[0], x.exp, evaluate=False) * rest ** x.exp


def abs_back(e, g):
    """The inverse of :func:`abs_gradient` (``|g|`` as ``sqrt(g**2)``): the derivation's
    form, whose ``g`` has no sign assumption."""
    return e.xreplace({sp.Abs(g): sp.sqrt(g ** 2)})

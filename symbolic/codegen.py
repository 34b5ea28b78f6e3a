"""``generate_module``: derive, recognize and emit a standalone NumPy/torch module in one call.

A composition, no printing of its own: :func:`~modeq.symbolic.derive` gives the flow,
:func:`~modeq.symbolic.recognize.recognize` the published forms it equals (stationary flows of
order >= 1), and :func:`~modeq.symbolic.emit.source.module_source` writes the module.
"""
from __future__ import annotations

import sympy as sp

from .display import SIMPLIFY_MAX_OPS, formula_lines, named_terms, simplified_coefficient
from .emit.absolute import abs_back, abs_gradient
from .emit.matrixfree import G
from .emit.source import CODEGEN_BACKENDS, module_source
from .family import Optimizer, n
from .flow import derive
from .named import memory_symbols, split_coefficient
from .recognize import recognize

__all__ = ["generate_module", "coefficient_naming", "CODEGEN_BACKENDS"]


def generate_module(optimizer, order=1, backend="numpy", stationary=False, command=None,
                    verify_dims=(1, 2)):
    """Source of a standalone module computing ``optimizer``'s modified flow to ``order``
    (functions ``F0``, ``F1``..., ``correction`` and ``flow`` of ``g``, ``hvp(v) = H v`` and,
    at order 2, ``d3(u, w) = T[u, w]``; see :mod:`modeq.symbolic.emit.source`).

    >>> from modeq.symbolic import optimizers
    >>> src = generate_module(optimizers.gd(), order=1, backend="numpy")
    >>> "def flow(g, hvp, *, h):" in src
    True
    """
    if backend not in CODEGEN_BACKENDS:
        raise ValueError(f"backend must be one of {CODEGEN_BACKENDS}, got {backend!r}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"expected an Optimizer declaration, got {type(optimizer).__name__}")
    if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= 2:
        raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
    flow = derive(optimizer, order)
    recognized = recognize(flow, stationary=True, dims=(1, 2)) \
        if stationary and order >= 1 else []
    return module_source(flow, backend, stationary, command, verify_dims, recognized,
                         naming=coefficient_naming(flow, stationary))


def coefficient_naming(flow, stationary):
    """``(formula lines, rename)``: ``F0`` and ``F1`` as ``modeq derive`` prints them (memory
    coefficients ``a_n, b_n, ...`` named once) and ``rename(c) -> (c', [(name, value)])``,
    which writes a coefficient of the generated code in the same names where it splits into
    them (else returns it unchanged): the module computes the named coefficients once and
    its docstring defines them as ``modeq derive`` does.  The names come from ``F1`` only:
    the display of an exact-in-``n`` ``F2`` costs tens of seconds and names little (its
    coefficients are mostly beyond the displays' simplification budget)."""
    named = named_terms(derive(flow.optimizer, min(flow.order, 1)), "full", stationary)
    memory = memory_symbols(flow.optimizer, n)
    values = list(named.coefficients)

    def rename(c):
        # a large coefficient, one with a memory sum or one only `simplify` brings to lowest
        # terms is left as derived: that costs minutes (Adam's exact-in-n F2)
        if (not c.free_symbols & memory or not values or c.has(sp.Sum)
                or sp.count_ops(c) > SIMPLIFY_MAX_OPS):
            return c, []
        named_c, used = _renamed(abs_back(c, G))      # split as displayed: |g| as sqrt(g**2)
        return (abs_gradient(named_c, G), used) if used else (c, [])

    def _renamed(c):
        simple = simplified_coefficient(c, cheap_only=True)
        split = None if simple is None else split_coefficient(simple, memory)
        if split is None:
            return c, []
        used, parts = [], []
        for mono, a in split.terms:
            if a.is_Number or sp.count_ops(a) <= 2:
                parts.append(a * mono)
                continue
            name = next((nm for nm, v in values if sp.cancel(a - v) == 0), None)
            if name is None:
                return c, []
            used.append((name, a))
            parts.append(name * mono)
        return split.prefactor * sp.Add(*parts), used

    lines = formula_lines(named, "    ")
    if named.s is not None:
        lines.append(f"    s = {sp.sstr(named.s)}")
    return lines, rename

"""``generate_module``: derive, recognize and emit a standalone NumPy/torch module in one call.

A composition, no printing of its own: :func:`~modeq.symbolic.derive` gives the flow,
:func:`~modeq.symbolic.recognize.recognize` the published forms it equals (stationary flows of
order >= 1), and :func:`~modeq.symbolic.emit.source.module_source` writes the module.
"""
from __future__ import annotations

from .family import Optimizer
from .emit.source import CODEGEN_BACKENDS, module_source
from .flow import derive
from .recognize import recognize

__all__ = ["generate_module", "CODEGEN_BACKENDS"]


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
    return module_source(flow, backend, stationary, command, verify_dims, recognized)

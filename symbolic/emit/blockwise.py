"""One matrix-free flow whose constants differ from one block of components to another.

A ``torch.optim`` optimizer with param groups of different settings runs one recursion with
other constants on each group's components.  Its flow is derived with those constants as
:class:`~modeq.symbolic.family.ComponentConstant` (kept inside the contractions ``H.u``,
``T[u, w]``); every other operation is componentwise.  :class:`BlockwiseFunction` evaluates it
from one :class:`~.matrixfree.MatrixFreeFunction` per block (the same forms, each block's
values): each compiled kernel runs on its block's slice of ``g`` (and ``theta``), and the
slices are concatenated before every contraction, which runs over all components.
"""
from __future__ import annotations

__all__ = ["BlockwiseFunction"]


class BlockwiseFunction:
    """``f(g, hvp, d3=None, theta=None, n=None)`` for flat ``g`` of shape ``(p,)`` whose
    components ``bounds[i][0] .. bounds[i][1] - 1`` take the constants of ``functions[i]``.

    ``functions``: :class:`~.matrixfree.MatrixFreeFunction` objects of the same forms and
    weights (their values differ); ``bounds``: consecutive ``(start, stop)`` covering
    ``0 .. p``."""

    def __init__(self, functions, bounds):
        functions, bounds = list(functions), [(int(a), int(b)) for a, b in bounds]
        if not functions or len(functions) != len(bounds):
            raise ValueError("give one function per block, at least one")
        if bounds[0][0] != 0 or any(b0[1] != b1[0] for b0, b1 in zip(bounds, bounds[1:])) \
                or any(a >= b for a, b in bounds):
            raise ValueError(f"blocks must be consecutive and non-empty from 0, got {bounds}")
        first = functions[0]
        for f in functions[1:]:
            if (f._level0_names != first._level0_names or f._terms != first._terms
                    or [t[:3] for t in f._plan] != [t[:3] for t in first._plan]
                    or f.backend != first.backend or f.dtype != first.dtype):
                raise ValueError("the blocks' functions must be built from the same forms")
        self.functions, self.bounds = functions, bounds
        self.uses_n = any(f.uses_n for f in functions)
        self.uses_theta = any(f.uses_theta for f in functions)
        self.needs_d3 = any(f.needs_d3 for f in functions)

    def __call__(self, g, hvp, d3=None, theta=None, n=None):
        first = self.functions[0]
        g, theta, n = first.checked_inputs(g, hvp, d3, theta, n)
        shape = tuple(g.shape)
        if len(shape) != 1 or shape[0] != self.bounds[-1][1]:
            raise ValueError(f"g must have shape ({self.bounds[-1][1]},), got {shape}")
        device = getattr(g, "device", None)
        steps = [f._steps.values(n, (), device) for f in self.functions]
        cat = _concatenate(first.backend)

        def level(lv, current):
            parts = []
            for f, (a, b), st in zip(self.functions, self.bounds, steps):
                th = theta[a:b] if self.uses_theta else 0
                if lv == 0:
                    out = f._kernel0(g[a:b], th, n, *st, device=device)
                else:
                    cur = [c[a:b] if getattr(c, "ndim", 0) else c for c in current]
                    out = f._nested[lv][1](g[a:b], th, n, *st, *cur, device=device)
                parts.append([f._full(o, (b - a,), device) for o in out])
            return [cat([p[i] for p in parts]) for i in range(len(parts[0]))]
        return first.evaluate(level, hvp, d3, shape, device)


def _concatenate(backend):
    if backend == "numpy":
        import numpy as np
        return np.concatenate
    import torch
    return torch.cat

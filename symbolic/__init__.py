"""modeq.symbolic: exact (SymPy) derivation of modified flows of optimizer recursions.

Public contract::

    import sympy as sp
    from modeq.symbolic import Optimizer, EMA, g, theta, derive, optimizers
    beta, rho, eps = sp.symbols("beta rho eps", positive=True)
    m = EMA("m", decay=beta, of=g, normalized=True, bias_correction=True)
    v = EMA("v", decay=rho, of=g**2, normalized=True, bias_correction=True)
    adam = Optimizer("adam", states=[m, v], step=m / sp.sqrt(v + eps))
    flow = derive(adam, order=1)

Conventions are those of ``docs/conventions.md``: the modified flow on ``[nh, (n+1)h)`` is
``d theta/dt = -F^(n)(theta)`` with ``F = F0 + h F1 + h^2 F2 + ...``.
"""
from .lazy_exports import install as _install

#: public name -> the submodule defining it (``None``: the name is the submodule), loaded on
#: first use so that light submodules (``cache_location``) can be imported without SymPy
_EXPORTS = {**{name: "family" for name in ("EMA", "Optimizer", "g", "theta", "h", "n", "beta",
                                           "rho", "eps")},
            "optimizers": None, "derive": "flow", "ModifiedFlow": "flow",
            "recognize": "recognize", "regime_table": "regimes",
            "generate_module": "codegen"}

__all__ = list(_EXPORTS)
_install(__name__, _EXPORTS)

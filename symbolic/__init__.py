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
from .family import EMA, Optimizer, beta, eps, g, h, n, rho, theta
from . import optimizers
from .flow import derive, ModifiedFlow
from .recognize import recognize
from .regimes import regime_table


def __getattr__(name):
    # generate_module loads the whole emit chain: imported on first use
    if name == "generate_module":
        from .codegen import generate_module
        return generate_module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["EMA", "Optimizer", "g", "theta", "h", "n", "beta", "rho", "eps", "derive",
           "ModifiedFlow", "optimizers", "recognize", "regime_table", "generate_module"]

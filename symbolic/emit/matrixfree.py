"""Numeric evaluation of matrix-free forms: ``F_r`` from ``g`` and contraction callbacks.

:class:`MatrixFreeFunction` evaluates ``sum_r weights[r] * F_r`` given the gradient ``g`` (any
array shape), ``hvp(v) = H v`` and, where a form needs it, ``d3(u, w) = T[u, w]``.  The torch
adapter (:mod:`modeq.numeric.torch_flow`) supplies autograd callbacks; :class:`ArrayFunction`
supplies explicit arrays ``H``, ``T`` (component first, ``(p, p[, N])``).  Hyperparameters are
resolved by :func:`~.values.resolve_symbols`, expressions compiled by :class:`~.kernel.Kernel`;
coefficients in the step index are evaluated once per ``n`` in mpmath
(:class:`~.step_coefficients.StepCoefficients`), as a field's are.
"""
from __future__ import annotations

import sympy as sp

from ..family import n as n_sym
from ..family import theta as theta_sym
from .arrays import as_array, resolve_dtype
from .kernel import Kernel
from .step_coefficients import StepCoefficients
from .values import check_backend, check_step, resolve_symbols

__all__ = ["G", "MatrixFreeFunction", "ArrayFunction"]

#: the gradient component in array forms (no assumptions: ``sqrt(g**2)`` stays as derived)
G = sp.Symbol("g")


class MatrixFreeFunction:
    """``f(g, hvp, d3=None, theta=None, n=None) = sum_r weights[r] * F_r`` for matrix-free forms.

    ``g``: array (NumPy) or tensor (torch) of any shape, component-wise; ``hvp(v)`` returns
    ``H v`` in the shape of ``v``; ``d3(u, w)`` returns ``T[u, w]`` (needed only if a form has a
    third-derivative contraction); ``theta`` when a form uses it; ``n`` (integer >= 0) when a form
    is exact in the step index.  Hyperparameters are given by name when building, converted
    exactly and lifted as constants of the working ``dtype`` (float64 by default); names in
    ``optional`` may be given although no form uses them.

    Evaluation: one compiled kernel (with CSE) gives every contraction argument that depends on
    ``g`` only together with every output coefficient; nested arguments get one kernel per
    nesting level; the output is the sum of coefficient times products of contractions.
    """

    def __init__(self, forms, weights, backend="numpy", dtype=None, cse=True, values=None,
                 optional=()):
        self.backend = check_backend(backend)
        if backend == "mpmath":
            raise ValueError("matrix-free forms are evaluated with backend 'numpy' or 'torch'")
        self.dtype = resolve_dtype(backend, dtype)
        self.forms = list(forms)
        weights = [sp.sympify(w) for w in weights]
        needed = set()
        for f in self.forms:
            needed |= set(f.hyperparameters)
        for w in weights:
            needed |= w.free_symbols
        subs = resolve_symbols(sorted(needed, key=str), dict(values or {}), needed,
                               "this form", optional)
        self.uses_n = any(f.uses_n for f in self.forms)
        self.uses_theta = any(f.uses_theta for f in self.forms)
        self.needs_d3 = any(f.n_d3 for f in self.forms)
        self.weights = [w.xreplace(subs) for w in weights]
        # rename contraction symbols per form: w<r>_<k>
        self._plan = []
        inputs = [G, theta_sym, n_sym]
        level0, level0_names = [], []
        nested = []        # (level, name, kind, args)
        outputs = []       # per form: list of (coeff name, monomial in renamed symbols)
        for r, (f, w) in enumerate(zip(self.forms, self.weights)):
            ren = {c.symbol: sp.Symbol(f"_v{r}_{i}") for i, c in enumerate(f.contractions)}
            level = {}
            for c in f.contractions:
                args = [a.xreplace(subs).xreplace(ren) for a in c.args]
                deps = set().union(*(a.free_symbols for a in args)) & set(ren.values())
                lv = 1 + max((level[d] for d in deps), default=-1)
                level[ren[c.symbol]] = lv
                names = []
                for a in args:
                    name = f"_a{len(level0_names) + len(nested)}"
                    if lv == 0:
                        level0.append(a)
                        level0_names.append(name)
                    else:
                        nested.append((lv, name, a))
                    names.append(name)
                self._plan.append((lv, ren[c.symbol], c.kind, names))
            mons = []
            for coeff, mono in f.monomials:
                name = f"_k{len(level0_names)}"
                level0.append((w * coeff).xreplace(subs))
                level0_names.append(name)
                mons.append((name, mono.xreplace(ren)))
            outputs.append(mons)
        self._plan.sort(key=lambda t: t[0])
        # each output term: (coefficient name, [contraction symbols, repeated by power])
        self._terms = []
        for mons in outputs:
            for name, mono in mons:
                factors = []
                for f in sp.Mul.make_args(mono):
                    if f != 1:
                        base, e = (f.base, int(f.exp)) if f.is_Pow else (f, 1)
                        factors += [base] * e
                self._terms.append((name, factors))
        allv = [v for _, v, _, _ in self._plan]
        # step-index coefficients once per n in mpmath (NAdam's products, memory sums)
        self._steps = StepCoefficients(level0 + [a for _, _, a in nested],
                                       [G, theta_sym, *allv], backend, self.dtype, cse,
                                       what="matrix-free function")
        body = self._steps.body
        level0, nested = body[:len(level0)], [
            (lv, nm, a) for (lv, nm, _), a in zip(nested, body[len(level0):])]
        inputs += self._steps.symbols
        self._kernel0 = Kernel(level0, inputs, backend, dtype, cse)
        self._level0_names = level0_names
        self._nested = {}
        for lv in sorted({lv for lv, _, _ in nested}):
            items = [(nm, a) for l2, nm, a in nested if l2 == lv]
            k = Kernel([a for _, a in items], inputs + allv, backend, dtype, cse)
            self._nested[lv] = ([nm for nm, _ in items], k)

    def _as_array(self, x, name):
        return as_array(x, self.backend, self.dtype, name)

    def __call__(self, g, hvp, d3=None, theta=None, n=None):
        g, theta, n = self.checked_inputs(g, hvp, d3, theta, n)
        device = getattr(g, "device", None)
        steps = self._steps.values(n, (), device)

        def level(lv, current):
            if lv == 0:
                return self._kernel0(g, theta, n, *steps, device=device)
            return self._nested[lv][1](g, theta, n, *steps, *current, device=device)
        return self.evaluate(level, hvp, d3, tuple(g.shape), device)

    def checked_inputs(self, g, hvp, d3=None, theta=None, n=None):
        """``(g, theta, n)`` as arrays of the working dtype (``theta`` 0 where no form uses it)
        and a checked step; ``TypeError``/``ValueError`` naming what is missing or misshapen."""
        n = check_step(n, self.uses_n)
        g = self._as_array(g, "g")
        shape = tuple(g.shape)
        if not callable(hvp):
            raise TypeError("hvp must be a callable v -> H v")
        if self.needs_d3 and not callable(d3):
            raise TypeError("this flow has a third-derivative term: pass d3(u, w) -> T[u, w]")
        if self.uses_theta:
            if theta is None:
                raise ValueError("this flow depends on theta: pass theta (the shape of g)")
            theta = self._as_array(theta, "theta")
            if tuple(theta.shape) != shape:
                raise ValueError(f"theta has shape {tuple(theta.shape)}, g has shape {shape}")
        else:
            theta = 0
        return g, theta, n

    def evaluate(self, level, hvp, d3, shape, device=None):
        """The sum of the forms from ``level(lv, current)``: the values of the compiled
        kernel of nesting level ``lv`` (``current``: the contractions computed so far, in plan
        order) -- the kernels of this function, or of several functions of the same forms, one
        per block of components (:class:`~.blockwise.BlockwiseFunction`)."""
        env = dict(zip(self._level0_names, level(0, ())))
        vals = {}
        allv = [v for _, v, _, _ in self._plan]
        done_levels = {0}
        for lv, sym, kind, names in self._plan:
            if lv not in done_levels:
                nm, _ = self._nested[lv]
                env.update(zip(nm, level(lv, [vals.get(v, 0) for v in allv])))
                done_levels.add(lv)
            args = [self._full(env[a], shape, device) for a in names]
            out = hvp(args[0]) if kind == "hvp" else d3(args[0], args[1])
            if tuple(out.shape) != shape:
                raise ValueError(f"{kind} returned shape {tuple(out.shape)}, expected {shape}")
            vals[sym] = out
        total = None
        for name, factors in self._terms:
            term = env[name]
            for f in factors:
                term = term * vals[f]
            total = term if total is None else total + term
        return self._full(0 if total is None else total, shape, device)

    def _full(self, x, shape, device):
        if self.backend == "numpy":
            import numpy as np
            return np.broadcast_to(np.asarray(x, dtype=self.dtype), shape).copy() \
                if np.shape(x) != shape else np.asarray(x, dtype=self.dtype)
        import torch
        x = torch.as_tensor(x, dtype=self.dtype, device=device)
        return x if tuple(x.shape) == shape else torch.broadcast_to(x, shape).clone()


class ArrayFunction:
    """``f(g, H, T=None, theta=None, n=None)`` from a :class:`MatrixFreeFunction`."""

    def __init__(self, mf):
        self.mf = mf

    def __call__(self, g, H, T=None, theta=None, n=None):
        mf = self.mf
        g = mf._as_array(g, "g")
        H = mf._as_array(H, "H")
        p = g.shape[0] if g.ndim else 0
        batch = tuple(g.shape[1:])
        if g.ndim == 0 or tuple(H.shape) != (p, p) + batch:
            raise ValueError(f"g must have shape (p,) or (p, N) and H shape (p, p) or "
                             f"(p, p, N); got g {tuple(g.shape)}, H {tuple(H.shape)}")
        if mf.needs_d3:
            if T is None:
                raise ValueError("this flow has a third-derivative term: pass T")
            T = mf._as_array(T, "T")
            if tuple(T.shape) != (p, p, p) + batch:
                raise ValueError(f"T must have shape {(p, p, p) + batch}, got {tuple(T.shape)}")
        ein = _einsum(mf.backend)
        return mf(g, lambda v: ein("ij...,j...->i...", H, v),
                  (lambda u, w: ein("ijk...,j...,k...->i...", T, u, w)) if T is not None
                  else None, theta, n)


def _einsum(backend):
    """``einsum`` with the ellipsis spelled out (NumPy's explicit subscripts are faster)."""
    letters = "abcdefgh"

    def spell(spec, ops):
        nb = ops[-1].ndim - 1                       # batch dimensions of the vectors
        return spec.replace("...", letters[:nb])

    if backend == "numpy":
        import numpy as np
        return lambda spec, *ops: np.einsum(spell(spec, ops), *ops, optimize=len(ops) > 2)
    import torch
    return lambda spec, *ops: torch.einsum(spell(spec, ops), *ops)

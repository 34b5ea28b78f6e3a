"""Numeric lowering of modified flows through :func:`sympy.lambdify`.

``lambdify_flow(flow, E_or_losses, params, backend, stationary, schedule, **values)`` returns
``f(n, theta) -> d theta/dt`` (a list of ``p`` numbers) on ``[nh, (n+1)h)``.

* Hyperparameter values are converted *exactly* (floats by their binary value, strings and
  fractions as exact rationals) and substituted before printing, so with ``backend="mpmath"``
  every constant is evaluated at the caller's ``mpmath.mp.dps`` (no float literal).
* Full batch: the lowered field (exact in ``n``) is printed once, with common-subexpression
  elimination.
* Mini batch: the flow on step ``n`` depends on every past batch.  Grouping the memory sums by
  batch (:func:`~modeq.symbolic.expansion.grouped_step_terms`), one call evaluates each batch's
  gradient and Hessian once, whatever ``n``; past steps enter only through scalar weight tables
  and the cheap ``F0`` kernel.  The memory window is cut only where the dropped weights are
  below the working precision.
"""
from __future__ import annotations

import fractions
import math

import sympy as sp

from .components import LossProvider, lower
from .expansion import grouped_step_terms
from .family import h as h_sym
from .family import n as n_sym
from .operators import Grad

__all__ = ["lambdify_flow", "exact_value", "resolve_values", "BACKENDS"]

BACKENDS = ("mpmath", "numpy", "torch")


def exact_value(name, value):
    """Exact SymPy number for a user-given hyperparameter value."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if isinstance(value, sp.Basic):
        if not value.is_number:
            raise TypeError(f"{name} must be a number, got {value}")
        return sp.nsimplify(value, rational=True) if value.is_Float else value
    if isinstance(value, int):
        return sp.Integer(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        return sp.Rational(value)
    if isinstance(value, fractions.Fraction):
        return sp.Rational(value.numerator, value.denominator)
    if isinstance(value, str):
        try:
            return sp.Rational(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: cannot read {value!r} as a number") from None
    if hasattr(value, "man_exp"):  # an mpmath mpf: mantissa * 2**exponent, exactly
        man, ex = value.man_exp
        return sp.Integer(man) * sp.Integer(2) ** ex
    raise TypeError(f"{name} must be a number, got {value!r}")


def resolve_values(flow, values):
    """``{symbol: exact value}`` for every hyperparameter of the flow (``h`` included when the
    order is >= 1); raises naming a missing or unknown hyperparameter, or a value out of range."""
    opt = flow.optimizer
    known = {str(s): s for s in opt.hyperparameters}
    if flow.order >= 1:
        known["h"] = h_sym
    unknown = sorted(set(values) - set(known) - {"h"})
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for {opt.name!r}; it has "
                         f"{sorted(known)}")
    exact = {name: exact_value(name, v) for name, v in values.items()}
    opt.check_values(exact)
    if "h" in exact:
        from .family import check_hyperparameter_values
        check_hyperparameter_values({"h": exact["h"]})
    missing = sorted(set(known) - set(exact))
    if missing:
        raise ValueError(f"no value given for {missing} (pass e.g. {missing[0]}=...)")
    return {known[k]: v for k, v in exact.items() if k in known}


def _modules(backend):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def lambdify_flow(flow, E_or_losses, params, backend="mpmath", stationary=False, schedule=None,
                  cse=True, **values):
    """See the module docstring."""
    modules = _modules(backend)
    provider = LossProvider(E_or_losses, params, schedule)
    subs = resolve_values(flow, values)
    if provider.full:
        return _full_batch(flow, provider, subs, modules, stationary, cse)
    if stationary:
        raise ValueError("stationary=True is for full batch; give a single loss")
    return MiniBatchField(flow, provider, subs, modules, cse)


def _check_theta(theta, p):
    if len(theta) != p:
        raise ValueError(f"theta has {len(theta)} components, the loss has {p} parameters")


def _hoist_sums(exprs, params):
    """Replace each (outermost) ``Sum`` by a placeholder symbol: common-subexpression
    elimination must not pull the summation variable out of its sum.  Returns the new
    expressions and ``[(symbol, sum, depends_on_theta)]``."""
    table = {}

    def rep(e):
        if e not in table:
            table[e] = sp.Dummy("memsum")
        return table[e]

    out = [e.replace(lambda x: isinstance(x, sp.Sum), rep) for e in exprs]
    return out, [(sym, s, bool(s.free_symbols & set(params))) for s, sym in table.items()]


def _full_batch(flow, provider, subs, modules, stationary, cse):
    F = flow.F("full", stationary)
    cache = {}
    exprs = [(-lower(F, j, provider, cache)).xreplace(subs) for j in range(provider.p)]
    params = list(provider.params)
    body, sums = _hoist_sums(exprs, params)
    fn = sp.lambdify([n_sym, *params, *[s for s, _, _ in sums]], body, modules=modules,
                     cse=cse)
    # memory sums without closed form: scalar ones once per step index, others per call
    scalar = [(sp.lambdify([n_sym], e, modules=modules), {}) for _, e, dep in sums if not dep]
    pointwise = [sp.lambdify([n_sym, *params], e, modules=modules) for _, e, dep in sums if dep]
    order = [dep for _, _, dep in sums]
    p = provider.p
    if modules == "mpmath":
        import mpmath

        def precision():
            return mpmath.mp.prec
    else:
        def precision():
            return None

    def field(n, theta):
        _check_theta(theta, p)
        si, pi, extra = iter(scalar), iter(pointwise), []
        for dep in order:
            if dep:
                extra.append(next(pi)(n, *theta))
            else:
                f, memo = next(si)
                key = (n, precision())
                if key not in memo:
                    memo[key] = f(n)
                extra.append(memo[key])
        return list(fn(n, *theta, *extra))

    field.expressions = exprs
    return field


class _KernelProvider:
    """Symbols for per-batch gradients, Hessians, external vectors and parameters."""

    def __init__(self, params, m):
        self.params = list(params)
        self.p = len(params)
        self.G = [[sp.Symbol(f"g_{b}_{j}") for j in range(self.p)] for b in range(m)]
        self.H = [[[sp.Symbol(f"H_{b}_{min(i, j)}_{max(i, j)}") for i in range(self.p)]
                   for j in range(self.p)] for b in range(m)]
        self.V = {}

    def grad(self, b, j):
        return self.G[int(b)][j]

    def hess(self, b, j, i):
        return self.H[int(b)][j][i]

    def theta(self, j):
        return self.params[j]

    def vec(self, name, j):
        key = (str(name), j)
        if key not in self.V:
            self.V[key] = sp.Symbol(f"{name}_{j}")
        return self.V[key]

    def hess_symbols(self, b):
        return [self.H[b][j][i] for j in range(self.p) for i in range(j, self.p)]


class MiniBatchField:
    """``f(n, theta)`` for a mini-batch flow of order 0 or 1 (see the module docstring)."""

    def __init__(self, flow, provider, subs, modules, cse):
        if flow.order > 1 and flow.optimizer.states:
            raise NotImplementedError("mini-batch flows with memory are implemented to order 1")
        self.flow, self.provider, self.modules = flow, provider, modules
        self.m = len(provider.losses)
        self.p = provider.p
        self.h = subs.get(h_sym, None)
        opt = flow.optimizer
        K = _KernelProvider(provider.params, self.m)
        terms = grouped_step_terms(opt, self.m, flow.order)
        self.W = terms.W
        self.states = opt.states
        args0 = [s for row in terms.W for s in row] + [x for row in K.G for x in row] \
            + list(provider.params)
        self._F0 = []
        self._F1 = []
        for c in range(self.m):
            F0 = [lower(terms.F0[c], j, K).xreplace(subs) for j in range(self.p)]
            self._F0.append(sp.lambdify(args0, F0, modules=modules, cse=cse))
            if flow.order >= 1:
                vec_names = [v for row in terms.V for v in row]
                F1 = [lower(terms.F1[c], j, K).xreplace(subs) for j in range(self.p)]
                vsyms = [K.vec(v.args[0], j) for v in vec_names for j in range(self.p)]
                hsyms = [x for b in range(self.m) for x in K.hess_symbols(b)]
                self._F1.append(sp.lambdify(args0 + hsyms + vsyms, F1, modules=modules,
                                            cse=cse))
        self.V = terms.V
        # per-batch derivatives of the losses
        prm = provider.params
        self._grad = [sp.lambdify(prm, [provider.grad(b, j) for j in range(self.p)],
                                  modules=modules) for b in range(self.m)]
        self._hess = [sp.lambdify(prm, [provider.hess(b, j, i) for j in range(self.p)
                                        for i in range(j, self.p)], modules=modules)
                      for b in range(self.m)]
        # state weights: w(l, l) and decay per state, exact then numeric at call time
        self._w_last = [sp.lambdify([n_sym], s.weight(n_sym, n_sym).xreplace(subs),
                                    modules=modules) for s in opt.states]
        self._decay = [sp.lambdify([], s.decay.xreplace(subs), modules=modules)
                       for s in opt.states]
        self._tables = {}

    # scalar tables, independent of theta -------------------------------------------------
    def _u_table(self, n):
        """``u[i][l][b] = sum_{k<=l, batch(k)=b} d_i^(l-k)`` for l <= n (cached, extended)."""
        key = self._precision_key()
        tab = self._tables.get(key)
        if tab is None:
            tab = {"u": [[] for _ in self.states], "d": [d() for d in self._decay]}
            self._tables = {key: tab}
        for i, d in enumerate(tab["d"]):
            rows = tab["u"][i]
            while len(rows) <= n:
                l = len(rows)
                prev = rows[-1] if rows else [0 * d] * self.m
                row = [d * x for x in prev]
                b = self.provider.loss_index(l)
                row[b] = row[b] + 1
                rows.append(row)
        return tab

    def _precision_key(self):
        if self.modules == "mpmath":
            import mpmath
            return mpmath.mp.prec
        return 53

    def _weights(self, tab, l):
        return [self._w_last[i](l) * x for i in range(len(self.states))
                for x in tab["u"][i][l]]

    def _window(self, tab, n):
        """Earliest past step whose weight can matter at the working precision."""
        tol = 2.0 ** (-self._precision_key() - 8)
        lo = n
        for i, d in enumerate(tab["d"]):
            dv = float(d)
            if dv <= 0.0:
                continue
            bound = 1.0 / (1.0 - dv) if dv < 1 else float("inf")
            L = math.ceil(math.log(tol / bound) / math.log(dv)) if dv < 1 else n
            lo = min(lo, max(0, n - L))
        return lo if self.states else n

    # the field ------------------------------------------------------------------------------
    def __call__(self, n, theta):
        _check_theta(theta, self.p)
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise ValueError(f"step index n must be an integer >= 0, got {n!r}")
        n = int(n)
        tab = self._u_table(n)
        G = [self._grad[b](*theta) for b in range(self.m)]
        Gflat = [x for row in G for x in row]
        c = self.provider.loss_index(n)
        F0 = self._F0[c](*self._weights(tab, n), *Gflat, *theta)
        if self.flow.order == 0:
            return [-x for x in F0]
        Hflat = [x for b in range(self.m) for x in self._hess[b](*theta)]
        # V[i][b] = w_i(n, n) sum_{l<n} d_i^(n-l) u_ib(l) F0^(l)
        V = [[[0 * x for x in F0] for _ in range(self.m)] for _ in self.states]
        start = self._window(tab, n)
        for l in range(start, n):
            F0l = self._F0[self.provider.loss_index(l)](*self._weights(tab, l), *Gflat, *theta)
            for i, d in enumerate(tab["d"]):
                scale = d ** (n - l)
                for b in range(self.m):
                    coef = scale * tab["u"][i][l][b]
                    if coef:
                        V[i][b] = [a + coef * f for a, f in zip(V[i][b], F0l)]
        wn = [self._w_last[i](n) for i in range(len(self.states))]
        Vflat = [wn[i] * x for i in range(len(self.states)) for b in range(self.m)
                 for x in V[i][b]]
        F1 = self._F1[c](*self._weights(tab, n), *Gflat, *theta, *Hflat, *Vflat)
        h = self._h_value()
        return [-(a + h * b) for a, b in zip(F0, F1)]

    def _h_value(self):
        if self.modules == "mpmath":
            import mpmath
            return mpmath.mpf(self.h.p) / self.h.q
        return float(self.h)

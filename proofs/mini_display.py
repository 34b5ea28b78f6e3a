"""Display forms of mini-batch expressions: the engine's sums with the states named.

In mini batch step ``k`` uses its own loss ``E_k`` (``g^{(k)}``, ``H^{(k)}``), the memory sums
over past steps do not collapse, and the flow for step ``n`` depends on ``E_0, ..., E_n``.
:class:`MiniDisplay` writes the engine's sums with named states: ``\\hat m^{(X+1)}`` for the
(bias-corrected) average after step ``X``, ``sigma^{(X+1)} = sqrt(\\hat v^{(X+1)} + eps)`` and
``f^{(X)} = F_0^{(X)}`` the leading term of the flow at step ``X``; the EMA weights are
``w_{X,k}``.  :meth:`MiniDisplay.expand` turns a display form back into the engine's
expression (the documents check every printed form that way); :class:`MiniTerms` prints them.
"""
from __future__ import annotations

import sympy as sp

from modeq.symbolic.family import eps, g as g_sym, n
from modeq.symbolic.operators import D3, FULL, Grad, Hess, factored

from .notation import canonical_dummies

__all__ = ["MiniDisplay", "MiniTerms"]


class MiniDisplay:
    """Named states and weights for mini-batch expressions (display only; see module doc)."""

    def __init__(self, opt, F0):
        self.opt = opt
        self.names = {}
        self.ema = {}
        for s in opt.states:
            E = sp.Function(f"ema_{s.name}")
            hat = "\\hat " if s.bias_correction else ""
            self.ema[s.name] = (E, s)
            self.names[E] = (lambda P, X, hat=hat, nm=s.name:
                             f"{hat}{nm}^{{({P._print(X + 1)})}}{P.sub()}")
        self.W = {}
        for s in opt.states:
            W = sp.Function(f"w_{s.name}")
            self.W[s.name] = (W, s)
            self.names[W] = (lambda P, a, k, nm=s.name:
                             f"w^{{({nm})}}_{{{P._print(a)},{P._print(k)}}}")
        self.sigma = None
        v = self.ema.get("v")
        if v is not None and F0.has(sp.Pow):
            self.sigma = sp.Function("sigma_v")
            self.names[self.sigma] = (lambda P, X:
                                      f"\\sigma^{{({P._print(X + 1)})}}{P.sub()}")
        self.f = sp.Function("f_0")
        self.names[self.f] = lambda P, X: f"f^{{({P._print(X)})}}{P.sub()}"
        self.F0_display = None
        self._is_f = {}
        shown = self.transform(F0)
        self.F0_display = None if isinstance(shown, Grad) else shown

    # -- expanding back ------------------------------------------------------------------------
    def expand(self, e):
        """The engine-level expression of a display form."""
        X = sp.Dummy("X", integer=True)
        k = sp.Dummy("k", integer=True, nonnegative=True)
        e = sp.sympify(e)
        if self.F0_display is not None:
            f0 = self.F0_display
            e = e.replace(self.f, sp.Lambda(X, f0.xreplace({n: X})))
        if self.sigma is not None:
            Ev, _ = self.ema["v"]
            e = e.replace(self.sigma, sp.Lambda(X, sp.sqrt(eps + Ev(X))))
        for name, (W, s) in self.W.items():
            e = e.replace(W, sp.Lambda((X, k), s.weight(X, k)))
        for name, (E, s) in self.ema.items():
            kk = sp.Dummy("k", integer=True, nonnegative=True)
            e = e.replace(E, sp.Lambda(X, sp.Sum(s.weight(X, kk) * s.of.xreplace(
                {g_sym: Grad(kk)}), (kk, 0, X))))
        return e

    # -- transforming -----------------------------------------------------------------------------
    def transform(self, e):
        e = canonical_dummies(sp.sympify(e))
        e = self._states(e)
        e = e.replace(lambda x: isinstance(x, sp.Pow) and x.exp.is_Rational and x.exp.q == 2,
                      lambda x: sp.Pow(factored(x.base), x.exp))
        if self.sigma is not None:
            Ev, _ = self.ema["v"]
            e = e.replace(
                lambda x: isinstance(x, sp.Pow) and x.exp.is_Rational and x.exp.q == 2
                and isinstance(x.base, sp.Add) and len(x.base.args) == 2 and eps in x.base.args
                and any(isinstance(a, Ev) for a in x.base.args),
                lambda x: self.sigma([a for a in x.base.args if isinstance(a, Ev)][0].args[0])
                ** (2 * x.exp))
        return self._simplify(e)

    def _states(self, e):
        if isinstance(e, sp.Sum) and len(e.limits) > 1:       # innermost limit first
            inner = self._states(sp.Sum(e.function, e.limits[0]))
            if isinstance(inner, sp.Sum):
                return sp.Sum(inner.function, *inner.limits, *e.limits[1:])
            return self._states(sp.Sum(inner, *e.limits[1:]))
        if isinstance(e, sp.Sum):
            body = self._states(e.function)
            S = sp.Sum(body, *e.limits)
            if len(S.limits) == 1:
                k, lo, hi = S.limits[0]
                if lo == 0:
                    for name, (E, s) in self.ema.items():
                        phi = s.of.xreplace({g_sym: Grad(k)})
                        ratio = sp.cancel(sp.powsimp(body / (s.weight(hi, k) * phi)))
                        if k not in ratio.free_symbols and not ratio.has(Grad, Hess, D3):
                            return ratio * E(hi)
            return S
        if not e.args:
            return e
        return e.func(*[self._states(a) for a in e.args])

    def _simplify(self, e):
        """Terms as (cancelled coefficient) x (sums and operators, simplified inside), terms
        with the same sums and operators collected."""
        groups = {}
        for term in _distribute(e):
            coeff, rest = [], []
            for f in sp.Mul.make_args(term):
                b, ex = f.as_base_exp()
                if isinstance(b, sp.Sum):
                    c2, s2 = self._sum(b)
                    coeff.append(c2 ** ex)
                    rest.append(s2 ** ex)
                elif isinstance(b, (Hess, D3)):
                    c2, op = self._operator(b)
                    coeff.append(c2 ** ex)
                    rest.append(op ** ex)
                else:
                    coeff.append(f)
            key = sp.Mul(*rest)
            groups[key] = groups.get(key, 0) + sp.Mul(*coeff)
        out = sp.S.Zero
        for key in sorted(groups, key=sp.default_sort_key):
            out += _cancel(groups[key]) * key
        return self._name_f(out)

    def _sum(self, S):
        """``S = c * Sum(w_{X,k} * body)`` with a named weight when one divides the summand."""
        (k, lo, hi), = S.limits[-1:]
        inner = sp.Sum(S.function, *S.limits[:-1]) if len(S.limits) > 1 else S.function
        body = self._simplify(inner)
        for name, (W, s) in sorted(self.W.items()):
            if s.decay not in body.free_symbols:
                continue
            ratio = _cancel(body / s.weight(hi, k))
            if k in ratio.free_symbols and not _k_only_in_fields(ratio, k):
                continue
            c, field = _split_k(ratio, k)
            return c, sp.Sum(W(hi, k) * field, (k, lo, hi))
        if not isinstance(body, sp.Add):
            c, f = [], []
            for y in sp.Mul.make_args(body):
                (f if (k in y.free_symbols or y.atoms(sp.Function, sp.Sum)) else c).append(y)
            return sp.Mul(*c), sp.Sum(sp.Mul(*f), (k, lo, hi))
        return sp.S.One, sp.Sum(body, (k, lo, hi))

    def _operator(self, a):
        """``(constant, operator)``: a constant factor of a one-term argument pulled out."""
        args, const = [], sp.S.One
        for x in a.args[1:]:
            x = self._simplify(x)
            if not isinstance(x, sp.Add):
                c, f = [], []
                for y in sp.Mul.make_args(x):
                    (f if y.atoms(sp.Function, sp.Sum) else c).append(y)
                const *= sp.Mul(*c)
                x = sp.Mul(*f)
            args.append(x)
        return const, a.func(a.args[0], *args)

    def _name_f(self, e):
        """``F_0`` of step ``X`` written as ``f^{(X)}`` (``X`` the one step of its states)."""
        if self.F0_display is None:
            return e
        f0 = self.F0_display
        heads = [E for E, _ in self.ema.values()]

        def step_of(x):
            steps = {a.args[0] for a in x.atoms(sp.Function) if a.func in heads
                     or isinstance(a, Grad) or (self.sigma is not None and a.func == self.sigma)}
            return steps.pop() if len(steps) == 1 else None

        def is_f(x):
            if not (isinstance(x, sp.Mul) or isinstance(x, Grad) or x.func in heads):
                return False
            if (x, f0) not in self._is_f:         # nested sums ask about the same terms again
                X = step_of(x)
                self._is_f[x, f0] = (X is not None and X != FULL
                                     and sp.simplify(x - f0.xreplace({n: X})) == 0)
            return self._is_f[x, f0]

        return e.replace(is_f, lambda x: self.f(step_of(x)))


def _distribute(e):
    """The terms of ``e`` with products distributed over sums at the top level only (never
    inside a Sum, an operator or a function — SymPy's ``expand`` may pull factors out of a Sum
    whose summand holds operators)."""
    if isinstance(e, sp.Add):
        out = []
        for a in e.args:
            out.extend(_distribute(a))
        return out
    if isinstance(e, sp.Mul):
        terms = [sp.S.One]
        for f in e.args:
            fs = _distribute(f)
            terms = [t * x for t in terms for x in fs]
        return terms
    if isinstance(e, sp.Pow) and e.exp.is_Integer and e.exp > 1 and isinstance(e.base, sp.Add):
        terms = [sp.S.One]
        for _ in range(int(e.exp)):
            terms = [t * x for t in terms for x in _distribute(e.base)]
        return terms
    return [e]


def _cancel(c):
    """Cancel a coefficient with sums and functions as opaque atoms (never pulling a factor
    out of a sum), powers ``d**(l+1)`` split as ``d * d**l``."""
    rep = {}

    def atom(x):
        rep.setdefault(x, sp.Dummy("f"))
        return rep[x]

    c = c.replace(lambda x: isinstance(x, sp.Sum), atom)
    c = c.replace(lambda x: isinstance(x, sp.Function) and not isinstance(x, sp.Dummy), atom)
    out = factored(sp.expand_power_exp(c))
    back = {v: k for k, v in rep.items()}
    for _ in range(3):
        out = out.xreplace(back)
    return out


def _k_only_in_fields(ratio, k):
    return all(k not in f.free_symbols or f.has(Grad, Hess, D3, sp.Sum)
               for f in sp.Mul.make_args(ratio))


def _split_k(ratio, k):
    c, fld = [], []
    for f in sp.Mul.make_args(ratio):
        (fld if (k in f.free_symbols or f.has(Grad, Hess, D3, sp.Sum)) else c).append(f)
    return sp.Mul(*c), sp.Mul(*fld)


class MiniTerms:
    """The renderer's term printer for mini-batch display forms (sums printed as written,
    one term per summand group)."""

    def __init__(self, disp):
        self.disp = disp

    def terms(self, expr, renderer):
        out = []
        for term in sp.Add.make_args(expr):
            factors = sp.Mul.make_args(term)
            sums = [f for f in factors if isinstance(f, sp.Sum)]
            rest = sp.Mul(*[f for f in factors if not isinstance(f, sp.Sum)])
            parts = []
            if rest != 1 or not sums:
                t = renderer.tex(rest)
                if rest == -1:
                    t = "-"
                elif isinstance(rest, sp.Add):
                    t = r"\left(" + t + r"\right)"
                parts.append(t)
            for s in sums:
                parts.append(self._sum(s, renderer))
            txt = r"\,".join(p for p in parts if p != "-")
            out.append(("-" + txt) if parts and parts[0] == "-" else txt)
        return out

    def _sum(self, s, renderer):
        (k, lo, hi), = s.limits[-1:]
        body = sp.Sum(s.function, *s.limits[:-1]) if len(s.limits) > 1 else s.function
        head = r"\sum_{%s=%s}^{%s}" % (renderer.tex(k), renderer.tex(lo), renderer.tex(hi))
        inner = self.terms(body, renderer)
        txt = inner[0] if len(inner) == 1 else r"\Bigl(" + " + ".join(inner) + r"\Bigr)"
        return head + " " + txt

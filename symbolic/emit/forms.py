"""Array and matrix-free forms of the terms of a full-batch modified flow.

Every full-batch term ``F_r`` of the component algebra (:mod:`operators`) is a componentwise
expression in the gradient ``g_j`` (and ``theta_j``, the step index ``n``) and in *contractions*
with derivatives of the loss at the current point: Hessian-vector products ``(H.u)_j`` and
third-derivative contractions ``T[u, w]_j``, whose arguments ``u, w`` are again such expressions
(nested for ``F2``).  :func:`matrix_free` reads this structure off a derived term:

* ``contractions``: ``v_k = H.u_k`` (kind ``"hvp"``) or ``v_k = T[u_k, w_k]`` (kind ``"d3"``), in
  evaluation order; each argument is a componentwise expression in ``g``, ``theta``, ``n`` and
  earlier ``v``'s;
* ``output``: ``F_r`` as a polynomial in the ``v``'s with componentwise coefficients.

For the first correction this is ``F1 = sum_k c_k(g) * (H.u_k(g))`` — for Adam a single term
``c(g) * (H.(g/sqrt(g^2+eps)))`` — so one Hessian-vector product per distinct ``u_k``
(:attr:`MatrixFreeForm.pairs`).  Numerically (:meth:`MatrixFreeForm.lambdify`) the form needs only
``g`` and callbacks ``hvp(v) = H v`` and ``d3(u, w) = T[u, w]``; with explicit arrays
(:meth:`MatrixFreeForm.array_function`) it is ``f(g, H[, T])`` for any dimension ``p``.

Conventions: arrays are *component first*: ``g`` of shape ``(p,)`` or ``(p, N)`` (``N`` points),
``H`` of shape ``(p, p)`` or ``(p, p, N)``, ``T`` of shape ``(p, p, p)`` or ``(p, p, p, N)``;
``(H.u)_j = sum_i H_ji u_i``, ``T[u, w]_j = sum_ik T_jik u_i w_k``.  All other operations are
componentwise.  The callbacks of :meth:`lambdify` may use any array shape (e.g. a network's
parameter tensor) as long as ``hvp`` and ``d3`` map it to the same shape.

:func:`verify` proves the extraction right: the form rebuilt in the component algebra equals the
derived term (dimension-free, and lowered to generic ``g_i, H_ij, T_ijk`` for ``p = 1..4``), and the
array form evaluated with explicit symmetric matrices ``H``, ``T`` equals the component form.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..components import SymbolProvider, lower_vector
from ..family import ComponentConstant
from ..family import n as n_sym
from ..family import theta as theta_sym
from ..family import h as h_sym
from ..operators import D3, FULL, Grad, Hess, Vec, factored, linearize
from ..prove import agree_at_random_points, is_zero_linear, prove_equal
from .absolute import abs_back, abs_gradient
from .matrixfree import G, ArrayFunction, MatrixFreeFunction

__all__ = ["G", "Contraction", "MatrixFreeForm", "matrix_free", "flow_forms",
           "first_order_form", "verify", "MatrixFreeFlow"]


KINDS = ("hvp", "d3")
# coefficients larger than this (SymPy operation count) are kept as derived: factoring them
# costs minutes and changes nothing the numbers see
SIMPLIFY_LIMIT = 400


@dataclass(frozen=True)
class Contraction:
    """``symbol = H.args[0]`` (``kind="hvp"``) or ``symbol = T[args[0], args[1]]`` (``"d3"``)."""
    symbol: sp.Symbol
    kind: str
    args: tuple

    def __str__(self):
        if self.kind == "hvp":
            return f"{self.symbol} = H.({self.args[0]})"
        return f"{self.symbol} = T[{self.args[0]}, {self.args[1]}]"


class MatrixFreeForm:
    """A term ``F`` as contractions plus a polynomial in them (see the module docstring).

    Attributes: ``expr`` (the component-algebra term), ``contractions`` (list of
    :class:`Contraction`), ``monomials`` (list of ``(coefficient, v-monomial)``, coefficients
    componentwise in ``g``, ``theta``, ``n`` and hyperparameters), ``output`` (their sum),
    ``label`` (e.g. ``"F1"``).
    """

    def __init__(self, expr, contractions, monomials, label="F"):
        self.expr = expr
        self.contractions = list(contractions)
        self.monomials = list(monomials)
        self.label = label

    # -- structure --------------------------------------------------------------------------
    @property
    def output(self):
        return sp.Add(*[c * m for c, m in self.monomials])

    @property
    def symbols(self):
        return [c.symbol for c in self.contractions]

    @property
    def n_hvp(self):
        return sum(c.kind == "hvp" for c in self.contractions)

    @property
    def n_d3(self):
        return sum(c.kind == "d3" for c in self.contractions)

    @property
    def is_linear(self):
        """True for ``sum_k c_k(g) * (H.u_k(g))``: one unnested HVP per term, no ``T``."""
        vs = set(self.symbols)
        return (all(c.kind == "hvp" and not (c.args[0].free_symbols & vs)
                    for c in self.contractions)
                and all(m in vs for _, m in self.monomials))

    @property
    def pairs(self):
        """``[(c_k, u_k)]`` with ``F = sum_k c_k * (H.u_k)`` (``ValueError`` if not linear)."""
        if not self.is_linear:
            raise ValueError(f"{self.label} is not of the form sum_k c_k * (H.u_k): "
                             f"{len(self.contractions)} contraction(s), nested or with T")
        coeff = {m: c for c, m in self.monomials}
        return [(coeff.get(k.symbol, sp.S.Zero), k.args[0]) for k in self.contractions]

    @property
    def free_symbols(self):
        out = set()
        for c in self.contractions:
            for a in c.args:
                out |= a.free_symbols
        for c, m in self.monomials:
            out |= c.free_symbols
        return out - set(self.symbols)

    @property
    def hyperparameters(self):
        """Symbols needing a value: everything but ``g``, ``theta``, ``n`` and the ``v``'s."""
        return sorted(self.free_symbols - {G, theta_sym, n_sym}, key=str)

    @property
    def uses_n(self):
        return n_sym in self.free_symbols

    @property
    def uses_theta(self):
        return theta_sym in self.free_symbols

    # -- back to the component algebra ------------------------------------------------------
    def to_components(self):
        """The form rebuilt as a component expression (``v_k`` -> its operator atom)."""
        back = {G: Grad(FULL)}
        for c in self.contractions:
            args = [abs_back(a, G).xreplace(back) for a in c.args]
            back[c.symbol] = Hess(FULL, args[0]) if c.kind == "hvp" else D3(FULL, *args)
        return abs_back(self.output, G).xreplace(back)

    # -- explicit arrays, symbolically ------------------------------------------------------
    def lower(self, g, H, T=None, theta=None):
        """The array form with explicit SymPy arrays: ``g`` (length ``p``), ``H`` (``p x p``),
        ``T`` (``p x p x p``, needed if the form has a ``T`` contraction), ``theta`` (length ``p``,
        needed if the form uses it).  Returns a column ``Matrix``."""
        g = list(g)
        p = len(g)
        Hm = sp.Matrix(H)
        if Hm.shape != (p, p):
            raise ValueError(f"H must be {p} x {p}, got {Hm.shape}")
        th = list(theta) if theta is not None else None
        if self.uses_theta and (th is None or len(th) != p):
            raise ValueError(f"this form uses theta: pass theta with {p} components")
        if self.n_d3 and T is None:
            raise ValueError("this form has a third-derivative contraction: pass T")

        def point(j, extra):
            rep = {G: g[j], **{s: v[j] for s, v in extra.items()}}
            if th is not None:
                rep[theta_sym] = th[j]
            return rep

        values = {}
        for c in self.contractions:
            args = [[a.xreplace(point(j, values)) for j in range(p)] for a in c.args]
            if c.kind == "hvp":
                values[c.symbol] = list(Hm * sp.Matrix(args[0]))
            else:
                u, w = args
                values[c.symbol] = [sp.Add(*[T[j][i][k] * u[i] * w[k]
                                             for i in range(p) for k in range(p)])
                                    for j in range(p)]
        out = self.output
        return sp.Matrix([out.xreplace(point(j, values)) for j in range(p)])

    # -- numeric ----------------------------------------------------------------------------
    def lambdify(self, backend="numpy", dtype=None, cse=True, **values):
        """``f(g, hvp, d3=None, theta=None, n=None)``: see
        :class:`~.matrixfree.MatrixFreeFunction`."""
        return MatrixFreeFunction([self], [sp.S.One], backend, dtype, cse, values)

    def array_function(self, backend="numpy", dtype=None, cse=True, **values):
        """``f(g, H, T=None, theta=None, n=None)`` with explicit arrays (module docstring)."""
        return ArrayFunction(self.lambdify(backend, dtype, cse, **values))

    def describe(self):
        """Readable text: the contractions and the output."""
        lines = [str(c) for c in self.contractions]
        lines.append(f"{self.label} = {self.output}")
        return "\n".join(lines)

    def __repr__(self):
        return (f"MatrixFreeForm({self.label}: {self.n_hvp} HVP, {self.n_d3} T-contraction(s), "
                f"{len(self.monomials)} monomial(s))")


# ----------------------------------------------------------------------------- extraction
def _canonical(u):
    """Canonical form of a contraction argument (merges equal arguments written differently)."""
    if u.has(sp.Sum) or sp.count_ops(u) > SIMPLIFY_LIMIT:
        return u
    return factored(u)


def _split_constant(u, point):
    """``u = c * rest`` with ``c`` free of the point (pulled out of the linear operator) and
    of the constants of one component (:class:`~..family.ComponentConstant`, which stay in)."""
    c, rest = u.as_independent(*point, *u.atoms(ComponentConstant), as_Add=False)
    return c, rest


def _roots_as_symbols(c):
    """``c`` with every square root a symbol, and the map back.  A nested root's base holds
    the inner root's symbol, so the map is closed under itself (``back`` applied once
    restores every root)."""
    roots = {}
    c2 = c.replace(lambda e: e.is_Pow and e.exp.is_Rational and e.exp.q == 2,
                   lambda e: roots.setdefault(e.base, sp.Dummy("s", positive=True)) ** e.exp.p)
    back = {}
    for b, s in roots.items():           # inner roots first (replace works bottom-up)
        back[s] = sp.sqrt(b.xreplace(back))
    return c2, back


def _simplify_coefficient(c):
    """The shortest (by operation count) of: ``c`` as collected, ``factor(cancel(c))``, and the
    same with every square root held as an independent symbol (no expansion of ``sqrt(g**2)``
    against ``g``).  The plain ``factor(cancel(c))`` is not tried when a root is the root of a
    square (``sqrt(g**2)``, i.e. ``|g|``, as with eps outside the root): cancelling it against
    ``g`` only makes ``c`` longer, at a cost that grows quickly with ``c``."""
    if c.has(sp.Sum) or sp.count_ops(c) > SIMPLIFY_LIMIT:
        return c
    c2, back = _roots_as_symbols(c)
    cands = [c]
    if not any(_is_square(root.base) for root in back.values()):
        cands.append(factored(c))
    if back:
        cands.append(factored(c2).xreplace(back))
    return min(cands, key=sp.count_ops)


def _is_square(b):
    return b.is_Pow and b.exp.is_Integer and b.exp.is_even


def matrix_free(expr, label="F"):
    """The :class:`MatrixFreeForm` of a full-batch component expression (module docstring).

    ``ValueError`` for mini-batch operators (a batch index other than ``FULL``) or an external
    vector (``Vec``)."""
    expr = linearize(sp.sympify(expr))
    table = {}
    contractions = []
    point = {G, theta_sym}
    memo = {}

    def new(kind, args):
        key = (kind, args)
        if key not in table:
            sym = sp.Symbol(f"v{len(contractions)}")
            contractions.append(Contraction(sym, kind, args))
            point.add(sym)
            table[key] = sym
        return table[key]

    def conv(e):
        if e in memo:
            return memo[e]
        if isinstance(e, Grad):
            if e.args[0] != FULL:
                raise ValueError("array forms are for full-batch terms (the gradient of batch "
                                 f"{e.args[0]} appears)")
            out = G
        elif isinstance(e, Vec):
            raise ValueError(f"an external vector {e} has no array form")
        elif isinstance(e, (Hess, D3)):
            if e.args[0] != FULL:
                raise ValueError("array forms are for full-batch terms (an operator of batch "
                                 f"{e.args[0]} appears)")
            parts = [_split_constant(_canonical(abs_gradient(conv(a), G)), point)
                     for a in e.args[1:]]
            scale = sp.Mul(*[c for c, _ in parts])
            args = tuple(r for _, r in parts)
            if isinstance(e, D3):
                args = tuple(sorted(args, key=sp.default_sort_key))
            out = scale * new("hvp" if isinstance(e, Hess) else "d3", args)
        elif not e.args:
            out = e
        else:
            out = e.func(*[conv(a) for a in e.args])
        memo[e] = out
        return out

    # |g| cancelled term by term before the coefficients are combined over a common
    # denominator (where a |g| left in it no longer cancels against the numerator)
    out = abs_gradient(conv(expr), G)
    syms = [c.symbol for c in contractions]
    groups = {}
    terms = []
    for term in sp.Add.make_args(out):
        # expand only products where a contraction sits inside a sum
        # (and powers of such sums: (v0 + v1)**2)
        if any(isinstance(b := (f.base if f.is_Pow and f.exp.is_Integer and f.exp > 0 else f),
                          sp.Add) and b.free_symbols & set(syms)
               for f in sp.Mul.make_args(term)):
            terms.extend(sp.Add.make_args(sp.expand(term, power_base=False, power_exp=False,
                                                    log=False, multinomial=True, mul=True)))
        else:
            terms.append(term)
    for term in terms:
        coeff, mono = [], []
        for f in sp.Mul.make_args(term):
            base = f.base if f.is_Pow else f
            (mono if base in syms and (not f.is_Pow or f.exp.is_Integer) else coeff).append(f)
        key = sp.Mul(*mono)
        groups.setdefault(key, []).append(sp.Mul(*coeff))
    monomials = []
    for mono, coeff in ((mono, sp.Add(*parts)) for mono, parts in groups.items()):
        coeff = abs_gradient(_simplify_coefficient(abs_back(coeff, G)), G)
        if coeff.free_symbols & set(syms):
            if coeff.has(sp.Sum):
                shown = str(coeff)
                shown = shown if len(shown) <= 160 else shown[:150] + " ..."
                raise ValueError(
                    f"{label}: a sum over past steps multiplies a contraction ({shown}): no "
                    f"matrix-free form (with constants per component, a memory weight of one "
                    f"component cannot enter H.u; the stationary flow has none)")
            raise ValueError(f"{label}: a contraction enters non-polynomially: {coeff}")
        if coeff != 0:
            monomials.append((coeff, mono))
    monomials.sort(key=lambda cm: sp.default_sort_key(cm[1]))
    contractions, monomials = _merge_proportional_hvps(contractions, monomials, point)
    return MatrixFreeForm(expr, contractions, monomials, label)


def _merge_proportional_hvps(contractions, monomials, point):
    """``c (H.u) + r c (H.w) = c H.(u + r w)`` when ``r`` is free of the point: one
    Hessian-vector product instead of two (AdamW's ``H.(g/(eps+|g|))`` and ``H.theta``).
    Only unnested HVPs that enter linearly are merged."""
    syms = {c.symbol for c in contractions}
    used_in_args = set().union(*(a.free_symbols for c in contractions for a in c.args)) & syms
    linear = {m: c for c, m in monomials if m in syms and m not in used_in_args}
    by_symbol = {c.symbol: c for c in contractions}
    candidates = [v for v in linear if by_symbol[v].kind == "hvp"
                  and not (by_symbol[v].args[0].free_symbols & syms)]
    merged = {}                                       # dropped symbol -> (kept symbol, ratio)
    for i, a in enumerate(candidates):
        if a in merged:
            continue
        for b in candidates[i + 1:]:
            if b in merged or sp.count_ops(linear[b]) + sp.count_ops(linear[a]) > SIMPLIFY_LIMIT:
                continue
            r = sp.cancel(linear[b] / linear[a])
            # a constant of one component (a param group's) must not enter another's
            if not (r.free_symbols & point) and not r.has(ComponentConstant):
                merged[b] = (a, r)
    if not merged:
        return contractions, monomials
    args = {a: by_symbol[a].args[0] for a in candidates}
    for b, (a, r) in merged.items():
        args[a] = args[a] + r * args[b]
    kept = [Contraction(c.symbol, c.kind, (args[c.symbol],)) if c.symbol in args else c
            for c in contractions if c.symbol not in merged]
    return kept, [(c, m) for c, m in monomials if m not in merged]


def flow_forms(flow, stationary=True):
    """``[form of F0, form of F1, ...]`` of a flow (full batch)."""
    return [matrix_free(t, f"F{r}") for r, t in enumerate(flow.terms("full", stationary))]


def first_order_form(flow, stationary=True):
    """The form of ``F1``: ``F1 = sum_k c_k(g) * (H.u_k(g))``; see :attr:`MatrixFreeForm.pairs`."""
    if flow.order < 1:
        raise ValueError("the flow of order 0 has no first correction; derive with order >= 1")
    return matrix_free(flow.terms("full", stationary)[1], "F1")


# ---------------------------------------------------------------------------- verification
def verify(form, dims=(1, 2, 3, 4)):
    """Symbolic checks that ``form`` equals the term it was extracted from; returns
    ``[(description, ok)]``:

    * the form rebuilt in the component algebra equals the term (dimension-free, and lowered to
      generic ``g_i, H_ij, T_ijk`` for each ``p`` in ``dims``), by
      :func:`~modeq.symbolic.prove.prove_equal`;
    * for each ``p`` in ``dims``, the array form evaluated with explicit symmetric ``H``, ``T``
      (matrix products, elementwise operations) equals the component form of the term.
    """
    if sp.count_ops(form.expr) > 4 * SIMPLIFY_LIMIT:
        return _verify_at_random_points(form, dims)
    checks = [(f"matrix-free form: {what}", ok)
              for what, ok in prove_equal(form.to_components(), form.expr, dims)]
    for p in dims:
        P = SymbolProvider(p)
        ref = lower_vector(form.expr, P)
        H = [[P.hess(FULL, j, i) for i in range(p)] for j in range(p)]
        T = [[[P.d3(FULL, j, i, k) for k in range(p)] for i in range(p)] for j in range(p)] \
            if form.n_d3 else None
        arr = form.lower(P.g, H, T, P.th)
        ops = sorted(set(P._H.values()) | set(P._T.values()), key=str)
        ok = all(is_zero_linear(a - b, ops) for a, b in zip(arr, ref))
        checks.append((f"array form with explicit H{', T' if T else ''} equals the component "
                       f"form for p = {p}", ok))
    return checks


def _verify_at_random_points(form, dims):
    """For terms too large for an exact proof in seconds (e.g. ``F2`` exact in ``n``): the
    array form with explicit ``H``, ``T`` against the component form of the term, at random
    rational points (:func:`~modeq.symbolic.prove.agree_at_random_points`)."""
    checks = []
    for p in dims:
        P = SymbolProvider(p)
        ref = lower_vector(form.expr, P)
        H = [[P.hess(FULL, j, i) for i in range(p)] for j in range(p)]
        T = [[[P.d3(FULL, j, i, k) for k in range(p)] for i in range(p)] for j in range(p)] \
            if form.n_d3 else None
        arr = form.lower(P.g, H, T, P.th)
        checks.append((f"array form with explicit H{', T' if T else ''} equals the component "
                       f"form for p = {p} at 3 random rational points (60 digits)",
                       agree_at_random_points(list(arr), list(ref))))
    return checks


class MatrixFreeFlow:
    """``d theta/dt = -(F0 + h F1 + h^2 F2 ...)`` of a flow in matrix-free form.

    ``MatrixFreeFlow(flow, stationary=True)``: ``.forms`` (one :class:`MatrixFreeForm` per term);
    ``.lambdify(backend, dtype, **values)`` -> ``f(g, hvp, d3=None, theta=None, n=None)``
    returning ``d theta/dt``; ``.correction(...)`` -> the same for ``h F1 + h^2 F2 ...`` (the
    terms beyond the limiting flow, with the sign of ``F``)."""

    def __init__(self, flow, stationary=True):
        self.flow = flow
        self.stationary = stationary
        self.forms = flow_forms(flow, stationary)

    def lambdify(self, backend="numpy", dtype=None, cse=True, **values):
        w = [-h_sym ** r for r in range(len(self.forms))]
        if len(self.forms) == 1:
            values.pop("h", None)
        return MatrixFreeFunction(self.forms, w, backend, dtype, cse, values, self._declared())

    def correction(self, backend="numpy", dtype=None, cse=True, **values):
        if len(self.forms) < 2:
            raise ValueError("the flow of order 0 has no correction")
        return MatrixFreeFunction(self.forms[1:], [h_sym ** r for r in range(1, len(self.forms))],
                                  backend, dtype, cse, values, self._declared())

    def _declared(self):
        """The optimizer's hyperparameter names: accepted even where the forms do not use them
        (a decay that drops out of the stationary flow)."""
        return tuple(str(s) for s in self.flow.optimizer.hyperparameters)

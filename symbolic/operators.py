"""The dimension-free component algebra (docs/conventions.md §6).

A *component expression* stands for component ``j`` of a vector field built from

* ``Grad(b)``      — ``g_j = (grad E_b)_j``, the gradient of the loss used at step ``b``;
* ``theta``        — ``theta_j``;
* ``Hess(b, u)``   — ``(H_b u)_j = sum_i d_j d_i E_b  u_i``;
* ``D3(b, u, w)``  — ``T_b[u, w]_j = sum_{i,k} d_j d_i d_k E_b  u_i w_k``;

where ``u``, ``w`` are themselves component expressions (read at component ``i``, ``k``), and
componentwise functions of these.  The batch index ``b`` is :data:`FULL` in full-batch
derivations and the step index in mini-batch ones.  All derivatives are at the current point.

:func:`lie` is the Lie derivative ``L_V q = Dq . V`` along a field ``V`` given as a component
expression, and :func:`linearize` puts every operator in normal form (linear in each argument,
scalar factors pulled out).
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp
from sympy.polys.fields import sfield

from .dag import contains, free_symbols, make_sum
from .expand import expand_mul
from .family import ComponentConstant, theta

__all__ = ["FULL", "Grad", "Hess", "D3", "Vec", "ATOMS", "is_field", "is_scalar", "lie",
           "linearize", "atoms_of", "batch_indices"]

FULL = sp.Symbol("FULL")


class _Atom(sp.Function):
    """Base for the opaque operators of the component algebra."""

    @property
    def batch(self):
        return self.args[0]

    def _batch_label(self, printer):
        b = self.args[0]
        return "" if b == FULL else "_{%s}" % printer._print(b)

    @staticmethod
    def _latex_power(body, exp):
        """``body`` raised to ``exp`` (the LaTeX printer passes ``exp`` for a power of a
        function, e.g. ``(H.u)^2``)."""
        return body if exp is None else r"\left(%s\right)^{%s}" % (body, exp)


class Grad(_Atom):
    """``g_j`` for the loss of batch ``b`` (``Grad(FULL)`` is printed ``g``)."""
    nargs = 1

    def _sympystr(self, printer):
        b = self.args[0]
        return "g" if b == FULL else f"g[{printer._print(b)}]"

    def _latex(self, printer, exp=None):
        if self.args[0] == FULL:
            return "g_j" if exp is None else "g_j^{%s}" % exp
        return self._latex_power("g^{(%s)}_j" % printer._print(self.args[0]), exp)


class Hess(_Atom):
    """``(H_b u)_j``; linear in ``u`` (so ``H.(0) = 0``)."""
    nargs = 2

    @classmethod
    def eval(cls, b, u):
        if u == 0:
            return sp.S.Zero
        return None

    def _sympystr(self, printer):
        b = self.args[0]
        tag = "H" if b == FULL else f"H[{printer._print(b)}]"
        return f"({tag}.({printer._print(self.args[1])}))"

    def _latex(self, printer, exp=None):
        b = self.args[0]
        tag = "H" if b == FULL else "H^{(%s)}" % printer._print(b)
        return self._latex_power(
            r"\left(%s\,\left[%s\right]\right)_j" % (tag, printer._print(self.args[1])), exp)


class D3(_Atom):
    """``T_b[u, w]_j``; bilinear and symmetric in ``u, w`` (zero when either is)."""
    nargs = 3

    @classmethod
    def eval(cls, b, u, w):
        if u == 0 or w == 0:
            return sp.S.Zero
        if sp.default_sort_key(u) > sp.default_sort_key(w):
            return cls(b, w, u)
        return None

    def _sympystr(self, printer):
        b = self.args[0]
        tag = "T" if b == FULL else f"T[{printer._print(b)}]"
        return f"{tag}[{printer._print(self.args[1])}, {printer._print(self.args[2])}]"

    def _latex(self, printer, exp=None):
        b = self.args[0]
        tag = "T" if b == FULL else "T^{(%s)}" % printer._print(b)
        return self._latex_power(r"%s\left[%s,\,%s\right]_j" % (
            tag, printer._print(self.args[1]), printer._print(self.args[2])), exp)


class Vec(_Atom):
    """An externally supplied vector field, component ``j`` (used by numeric lowerings)."""
    nargs = 1

    def _sympystr(self, printer):
        return f"{printer._print(self.args[0])}"


ATOMS = (Grad, Hess, D3, Vec)


def is_field(e) -> bool:
    """True if ``e`` depends on the point (has a gradient, operator or theta)."""
    return isinstance(e, sp.Basic) and (contains(e, ATOMS) or theta in free_symbols(e))


def is_scalar(e) -> bool:
    return not is_field(e)


def atoms_of(e):
    return e.atoms(*ATOMS)


def batch_indices(e):
    return {a.args[0] for a in e.atoms(*ATOMS)}


class _HigherDerivativeNeeded(NotImplementedError):
    pass


def lie(e, V):
    """Lie derivative ``L_V e = De . V`` of the component expression ``e`` along ``V``.

    Rules (docs/conventions.md §6): ``L_V g = H.V``, ``L_V theta = V``,
    ``L_V (H.u) = T[V, u] + H.(L_V u)``; sums over step indices commute with ``L_V``.
    """
    return _lie(sp.sympify(e), sp.sympify(V))


@lru_cache(maxsize=None)
def _lie(e, V):
    if not is_field(e):
        return sp.S.Zero
    if e == theta:
        return V
    if isinstance(e, Grad):
        return Hess(e.args[0], V)
    if isinstance(e, Hess):
        b, u = e.args
        return D3(b, V, u) + Hess(b, _lie(u, V))
    if isinstance(e, Vec):
        raise TypeError(f"an external vector {e} cannot be differentiated along the flow")
    if isinstance(e, D3):
        raise _HigherDerivativeNeeded(
            "the fourth derivative of the loss is needed (order >= 3 is not implemented)")
    if isinstance(e, sp.Add):
        return sp.Add(*[_lie(a, V) for a in e.args])
    if isinstance(e, sp.Mul):
        args = e.args
        terms = []
        for i, a in enumerate(args):
            da = _lie(a, V)
            if da != 0:
                terms.append(sp.Mul(*(args[:i] + (da,) + args[i + 1:])))
        return sp.Add(*terms)
    if isinstance(e, sp.Pow):
        base, ex = e.args
        if is_field(ex):
            raise ValueError(f"exponent depending on the point is not supported: {e}")
        return ex * base ** (ex - 1) * _lie(base, V)
    if isinstance(e, sp.Sum):
        e = _fresh_sum(e)  # before V is inserted, so V's own sums are not renamed
        return sp.Sum(_lie(e.function, V), *e.limits)
    if isinstance(e, sp.Function) and len(e.args) == 1:
        x = sp.Dummy("x")
        return e.func(x).diff(x).subs(x, e.args[0]) * _lie(e.args[0], V)
    raise TypeError(f"cannot differentiate {e!r} along the flow")


def _fresh_sum(s):
    """The same sum with fresh bound variables (no capture when it is nested in another sum
    over a variable of the same name)."""
    # every variable of the sum renamed at once: SymPy lists the limits innermost first, so an
    # inner bound may name an outer variable (``Sum(f, (k, 0, l), (l, 0, n))``)
    rename = {k: sp.Dummy(k.name, integer=True) for (k, _, _) in s.limits}
    limits = [(rename[k], lo.xreplace(rename), hi.xreplace(rename)) for (k, lo, hi) in s.limits]
    return sp.Sum(s.function.xreplace(rename), *limits)


def split_scalar(term):
    """Split a product into (scalar factor, field factor)."""
    scal, fld = [], []
    for f in sp.Mul.make_args(term):
        (fld if is_field(f) else scal).append(f)
    return sp.Mul(*scal), sp.Mul(*fld)


def _factor_denominators(term):
    """Factor sums in denominators so that scalar factors can be split off
    (``beta*s - s -> (beta - 1)*s``)."""
    return sp.Mul(*[sp.Pow(_factored_field(f.base), f.exp)
                    if isinstance(f, sp.Pow) and f.exp.is_negative and isinstance(f.base, sp.Add)
                    and is_field(f.base) else f
                    for f in sp.Mul.make_args(term)])


@lru_cache(maxsize=4096)
def _factored_field(e):
    return sp.factor(e)


def _linear_parts(u):
    """Write ``u`` as sum of (scalar coefficient, field) with the fields merged."""
    parts = {}
    for term in sp.Add.make_args(expand_mul(u)):
        c, f = split_scalar(_factor_denominators(term))
        if c.has(ComponentConstant):      # one value per component: stays in the argument
            own = [a for a in sp.Mul.make_args(c) if a.has(ComponentConstant)]
            c, f = c / sp.Mul(*own), sp.Mul(*own) * f
        # a constant vector field (e.g. an eps term) has no point dependence but is a field
        parts.setdefault(f, []).append(c)
    return {f: sp.Add(*cs) for f, cs in parts.items()}


def linearize(e):
    """Normal form: operators linear in each vector argument with scalar factors pulled out,
    arguments themselves in normal form."""
    return _linearize(sp.sympify(e))


@lru_cache(maxsize=None)
def _linearize(e):
    if not e.args or not is_field(e):
        return e
    if isinstance(e, Hess):
        b, u = e.args
        parts = _linear_parts(_linearize(u))
        return sp.Add(*[c * Hess(b, f) for f, c in parts.items() if c != 0])
    if isinstance(e, D3):
        b, u, w = e.args
        pu = _linear_parts(_linearize(u))
        pw = _linear_parts(_linearize(w))
        return sp.Add(*[cu * cw * D3(b, fu, fw) for fu, cu in pu.items() for fw, cw in pw.items()
                        if cu != 0 and cw != 0])
    if isinstance(e, sp.Sum):
        return make_sum(_linearize(e.function), *e.limits)
    return e.func(*[_linearize(a) for a in e.args])


def scalar_simplify(c):
    """Canonical simplification of a scalar coefficient (rational in decays and ``d^n``):
    :func:`factored` after ``d^(a + b) -> d^a d^b``."""
    c = sp.sympify(c)
    if c.is_Number or c.has(sp.Sum):
        return c
    return factored(sp.expand_power_exp(c))


def factored(c):
    """``factor(cancel(c))``: lowest terms, numerator and denominator factored.

    ``factor`` alone brings ``c`` to lowest terms (it factors over a common denominator, and
    the common factors cancel) and returns the same form at about half the cost, except that
    ``cancel`` first splits a power of a fraction with a symbolic exponent, ``(24/25)^x``, into
    ``24^x 25^(-x)``: there the two steps are kept, so that the forms do not depend on the path.

    >>> x, b = sp.symbols("x beta")
    >>> factored((b**2 - 1) / (b + 1) + x / (b - 1))
    (beta**2 - 2*beta + x + 1)/(beta - 1)
    """
    c = sp.sympify(c)
    if any(p.base.is_Rational and not p.base.is_Integer and not p.exp.is_number
           for p in c.atoms(sp.Pow)):
        return sp.factor(sp.cancel(c))
    return sp.factor(c)


def _index_symbols(e):
    return [s for s in e.free_symbols if s.is_integer]


def _indexed(e):
    return bool(_index_symbols(e))


def _normal_factors(term):
    """``(q, num, den)`` with ``term = q * num * den``: ``q`` free of the step indices, ``num``
    the index-dependent factors with ``d^(a k + b)`` reduced to ``d^(a k)`` (``d^b`` goes to
    ``q``), ``den`` the index-dependent denominators that do not factor further (``expand``
    multiplies ``beta^k (1 - beta)^2`` out into one sum; factored, its parts split again)."""
    q, num, den = [], [], []
    stack = list(sp.Mul.make_args(term))
    while stack:
        f = stack.pop()
        if not _indexed(f):
            q.append(f)
        elif isinstance(f, sp.Pow) and not _indexed(f.base):
            const, var = sp.expand(f.exp).as_independent(*_index_symbols(f.exp), as_Add=True)
            q.append(f.base ** const)
            num.append(f.base ** var)
        elif _is_denominator(f) and isinstance(f.base, sp.Add):
            factored = sp.factor(f.base)
            if isinstance(factored, sp.Mul):
                stack.extend(sp.Mul.make_args(factored ** f.exp))
            else:
                den.append(factored ** f.exp)
        else:
            num.append(f)
    return sp.Mul(*q), sp.Mul(*num), sp.Mul(*den)


def _is_denominator(f):
    return isinstance(f, sp.Pow) and f.exp.is_negative


def index_polynomial(c):
    """``c`` as a sum over monomials in the step-index-dependent factors (``n``, ``d^n``,
    ``d^(k-l)``, ...), each coefficient -- a rational function of the hyperparameters alone --
    summed in a field of fractions and factored.  Canonical like :func:`scalar_simplify`, but
    it never expands the hyperparameters' denominators nor cancels across the index powers,
    which is what keeps large memory sums cheap."""
    c = sp.sympify(c)
    if c.is_Number or c.has(sp.Sum, sp.Piecewise):
        return scalar_simplify(c)
    groups = {}
    for term in sp.Add.make_args(expand_mul(sp.expand_power_exp(c))):
        q0, num, den = _normal_factors(term)
        for part in sp.Add.make_args(sp.expand(num)):
            q1, atoms, _ = _normal_factors(part)
            groups.setdefault(atoms * den, []).append(q0 * q1)
    out = []
    for atoms, qs in groups.items():
        field, elements = sfield(qs)
        q = sp.factor(sum(elements, field.zero).as_expr())
        if q != 0:
            out.append(q * atoms)
    return sp.Add(*out)


LARGE = 64
"""Sums of more terms than this take the cheap canonical form :func:`index_polynomial`."""

FACTOR_LIMIT = 8
"""Index polynomials of at most this many monomials are still factored whole."""


def coefficient_form(c):
    """A field monomial's coefficient in canonical form: factored whole (``1 - beta^(n+1)``
    reads well and evaluates without cancellation in float64), except for a large sum in the
    step indices -- a memory sum of a product of memory sums -- whose whole factorisation costs
    minutes: that one is an :func:`index_polynomial`, factored only if it has at most
    :data:`FACTOR_LIMIT` monomials."""
    if len(sp.Add.make_args(c)) <= LARGE or not _indexed(c):
        return scalar_simplify(c)
    c = index_polynomial(c)
    return scalar_simplify(c) if len(sp.Add.make_args(c)) <= FACTOR_LIMIT else c


def collect_fields(e):
    """Group ``e`` by distinct field monomials with simplified scalar coefficients."""
    groups = {}
    for term in sp.Add.make_args(expand_mul(e)):
        c, f = split_scalar(term)
        groups.setdefault(f, []).append(c)
    out = []
    for f, cs in groups.items():
        c = coefficient_form(sp.Add(*cs))
        if c != 0:
            out.append(c * f)
    return sp.Add(*out)

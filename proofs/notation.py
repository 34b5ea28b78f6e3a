"""Display forms for the derivation documents: abbreviations and a canonical layout.

The engine's expressions are correct but their *shape* depends on the order in which SymPy
met them, and they repeat ``sqrt(g_j^2 + eps)`` and the memory coefficients everywhere.  This
module turns a component expression into a canonical, abbreviated display form:

* ``s`` — a :class:`FieldSymbol` for the single square root ``sqrt(R)`` of the expression
  (``R = g^2 + eps`` for Adam/RMSProp), so ``s^2 = R``;
* ``u`` — a :class:`FieldSymbol` for the leading term ``F0`` where it is an operator argument;
* scalar symbols for memory coefficients (``b_n``, ``r_n``, ...) are chosen by the builder.

Canonical layout (:func:`layout`): by linearity every field expression is a sum of
``constant x point coefficient x product of operator atoms``, each atom ``(H w)_j`` or
``T[w, w']_j`` with ``w`` again a single such product; the point coefficient is written
uniquely as ``R1(g) + R2(g) s`` (the field ``K(g)(s)`` with ``s^2 = R`` has degree 2) and
split into monomials in ``g``.  Display forms are for printing only: they are never fed back
to the engine (``s`` and ``u`` depend on the point, which the engine's linearisation cannot
know); every displayed equation is checked after the abbreviations are expanded.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from modeq.symbolic.family import theta
from modeq.symbolic.operators import D3, FULL, Grad, Hess

__all__ = ["FieldSymbol", "Abbreviation", "canonical_dummies", "find_radicand", "layout",
           "Row", "expand_abbreviations", "point_pieces"]


class FieldSymbol(sp.Symbol):
    """A point-dependent abbreviation (a vector field, read at component ``j``)."""


@dataclass
class Abbreviation:
    """``symbol := value``; ``text`` says what it is (LaTeX)."""
    symbol: sp.Symbol
    value: sp.Expr
    text: str = ""
    latex: str = ""


def expand_abbreviations(expr, abbreviations):
    """Substitute every abbreviation by its value (repeatedly: values may use others)."""
    e = sp.sympify(expr)
    table = {a.symbol: a.value for a in abbreviations}
    for _ in range(5):
        new = e.xreplace(table)
        if new == e:
            return e
        e = new
    return e


# -- canonical bound variables -----------------------------------------------------------------

def canonical_dummies(expr):
    """Replace the Dummy bound variables of every Sum by ordinary symbols named after them
    (``k``, ``l``, ``l'``), adding primes where a name is already bound by an enclosing sum."""
    return _canon(sp.sympify(expr), frozenset())


def _canon(e, bound):
    if isinstance(e, sp.Sum):
        names, rename = set(bound), {}
        for (k, _, _) in reversed(e.limits):       # outermost limit last in SymPy
            base = k.name.lstrip("_") or "k"
            name = base
            while name in names:
                name += "'"
            names.add(name)
            rename[k] = sp.Symbol(name, integer=True)
        limits = [(rename[k], _canon(lo.xreplace(rename), bound),
                   _canon(hi.xreplace(rename), bound)) for (k, lo, hi) in e.limits]
        f = _canon(e.function.xreplace(rename), frozenset(names))
        return sp.Sum(f, *limits)
    if not e.args:
        return e
    return e.func(*[_canon(a, bound) for a in e.args])


# -- the square root ----------------------------------------------------------------------------

def find_radicand(expr):
    """The single radicand ``R`` of half-integer powers that depend on the point, or ``None``
    when there is none or more than one."""
    bases = set()
    for p in sp.sympify(expr).atoms(sp.Pow):
        if p.exp.is_Rational and p.exp.q == 2 and p.base.has(Grad):
            bases.add(sp.expand(p.base))
    return bases.pop() if len(bases) == 1 else None


def _is_point(e, point_syms):
    return e.has(Grad, Hess, D3, theta, *point_syms)


class _Ctx:
    def __init__(self, radicand, s, u_value, u, scalars):
        self.R = radicand
        self.s = s
        self.t = sp.Dummy("t", positive=True)
        self.u_value = u_value       # F0 as a display field (or None)
        self.u = u
        self.scalars = tuple(scalars)
        self.atoms = {}              # operator atom -> its canonical form (_atom), per layout


def _to_t(e, ctx):
    """Half-integer powers of the radicand -> powers of ``t``; the radicand itself -> t^2."""
    if ctx.R is None:
        return e
    R = ctx.R

    def rep(p):
        return ctx.t ** (p.exp * 2)

    e = e.replace(lambda x: isinstance(x, sp.Pow) and x.exp.is_Rational and x.exp.q == 2
                  and sp.expand(x.base) == R, rep)
    return e


def _quadratic_normal(c, ctx):
    """``c`` rational in ``t`` (with ``t^2 = R``) -> ``(R1, R2)`` with ``c = R1 + R2 t``,
    computed factor by factor (no global common denominator)."""
    a, b = _qn(sp.sympify(c), ctx)
    return fast_cancel(a, ctx.R), fast_cancel(b, ctx.R)


def fast_cancel(e, R=None):
    """``cancel(together(e))`` with the operator atoms as plain symbols."""
    e = sp.sympify(e)
    if e == 0:
        return sp.S.Zero
    atoms = sorted(e.atoms(Grad, Hess, D3), key=sp.default_sort_key)
    rep = {a_: sp.Dummy("a") for a_ in atoms}
    back = {v_: k_ for k_, v_ in rep.items()}
    return sp.cancel(sp.together(e.xreplace(rep))).xreplace(back)


def _qn(e, ctx):
    """``e`` as ``(a, b)`` with ``e = a + b t`` and ``t^2 = R``, factor by factor."""
    t, R = ctx.t, ctx.R
    if t not in e.free_symbols:
        return e, sp.S.Zero
    if e == t:
        return sp.S.Zero, sp.S.One
    if isinstance(e, sp.Add):
        parts = [_qn(x, ctx) for x in e.args]
        return sp.Add(*[p for p, _ in parts]), sp.Add(*[q for _, q in parts])
    if isinstance(e, sp.Mul):
        a, b = sp.S.One, sp.S.Zero
        for f in e.args:
            p, q = _qn(f, ctx)
            a, b = a * p + b * q * R, a * q + b * p
        return a, b
    if isinstance(e, sp.Pow) and e.exp.is_Integer:
        k = int(e.exp)
        if e.base == t:
            return (R ** (k // 2), sp.S.Zero) if k % 2 == 0 else (sp.S.Zero, R ** ((k - 1) // 2))
        p, q = _qn(e.base, ctx)
        if k < 0:
            d = p ** 2 - q ** 2 * R
            p, q, k = p / d, -q / d, -k
        a, b = sp.S.One, sp.S.Zero
        for _ in range(k):
            a, b = a * p + b * q * R, a * q + b * p
        return a, b
    raise ValueError(f"cannot normalise {e} in t")


def point_pieces(c, ctx, split_scalars=True, basis=False):
    """A point coefficient as a list of display pieces whose sum is ``c``.

    Top level (``basis=False``): the canonical ``R1 + R2 s`` collected by the memory scalars,
    then by powers of ``g``; each piece factored, ``R`` shown as ``s^2``.  Operator arguments
    (``basis=True``): ``R1`` and ``R2`` in partial fractions in ``g`` so that the pieces are
    a basis (``g^a``, ``g^b / R^k`` with ``b < 2``) and linearity can merge equal pieces of
    different operator atoms — this makes the layout canonical."""
    c = _to_t(sp.sympify(c), ctx)
    grads = sorted(c.atoms(Grad), key=sp.default_sort_key)
    other_roots = any(p.exp.is_Rational and p.exp.q == 2 for p in c.atoms(sp.Pow))
    if ctx.R is None or len(grads) > 1 or c.has(sp.Sum) or other_roots:
        return [sp.factor(c)] if c != 0 else []
    if ctx.t not in c.free_symbols:
        r1, r2 = fast_cancel(c, ctx.R), sp.S.Zero
    else:
        r1, r2 = _quadratic_normal(c, ctx)
    gsym = sp.Dummy("g")
    gatom = grads[0] if grads else Grad(FULL)
    out = []
    for part, tpow in ((r1, 0), (r2, 1)):
        if part == 0:
            continue
        part = part.xreplace({gatom: gsym})
        if basis:
            try:
                fractions = sp.Add.make_args(sp.apart(part, gsym)) if part.has(gsym) else (part,)
            except sp.PolynomialError:
                fractions = (part,)
            for frac in fractions:
                num, den = sp.fraction(sp.cancel(frac))
                for mono, coeff in sorted(_collect(sp.expand(num), [gsym]).items(),
                                          key=lambda kv: sp.default_sort_key(kv[0])):
                    piece = _pretty(sp.factor(coeff * mono / den), ctx, gsym, tpow)
                    out.append(piece.xreplace({gsym: gatom}))
            continue
        num, den = sp.fraction(sp.cancel(part))
        num = sp.expand(num)
        scal = [x for x in ctx.scalars if num.has(x)] if split_scalars else []
        groups = _collect(num, scal + [gsym])
        for mono in sorted(groups, key=sp.default_sort_key):
            piece = _pretty(sp.factor(groups[mono] * mono / den), ctx, gsym, tpow)
            out.append(piece.xreplace({gsym: gatom}))
    return out


def _collect(num, gens):
    """``num`` as ``{monomial in gens: coefficient}``; monomials in the scalars only first
    (so ``b_n (g^2 + eps)`` stays one piece and cancels against ``s^2`` later)."""
    if not gens:
        return {sp.S.One: num}
    scal, g = gens[:-1], gens[-1]
    if scal:
        poly = sp.Poly(num, *scal)
        out = {}
        for monom, coeff in poly.terms():
            m = sp.Mul(*[x ** k for x, k in zip(scal, monom)])
            if m == 1:
                for gm, gc in _collect(coeff, [g]).items():
                    out[gm] = out.get(gm, 0) + gc
            else:
                out[m] = out.get(m, 0) + coeff
        return out
    poly = sp.Poly(num, g)
    return {g ** k: coeff for (k,), coeff in poly.terms()}


def _pretty(piece, ctx, gsym, tpow):
    """Rewrite factors ``R^e`` (with ``g`` as ``gsym``) as ``s^(2e)`` and fold in ``t^tpow``."""
    R = ctx.R.xreplace({g: gsym for g in ctx.R.atoms(Grad)})
    spow = tpow
    rest = []
    for f in sp.Mul.make_args(piece):
        b, e = f.as_base_exp()
        if sp.expand(b) == sp.expand(R) and e.is_Integer:
            spow += 2 * int(e)
        else:
            rest.append(f)
    return sp.Mul(*rest) * ctx.s ** spow


# -- fields --------------------------------------------------------------------------------------

@dataclass
class Row:
    """One operator structure of a displayed field: ``sum(pieces) * monomial``."""
    monomial: sp.Expr
    pieces: list

    def expr(self):
        return sp.Add(*self.pieces) * self.monomial


def _terms(e, ctx):
    """``e`` (a field) as ``{operator monomial: point coefficient}`` with canonical atoms."""
    out = {}
    for term in sp.Add.make_args(sp.expand(e)):
        coeff, mono = sp.S.One, sp.S.One
        for f in sp.Mul.make_args(term):
            b, ex = f.as_base_exp()
            if isinstance(b, (Hess, D3)):
                mono *= sp.Add(*[c * m for m, c in _atom(b, ctx).items()]) ** ex
            elif isinstance(f, sp.Sum) and _is_point(f, (ctx.s, ctx.u)):
                mono *= f
            else:
                coeff *= f
        for t2 in sp.Add.make_args(sp.expand(coeff * mono)):
            c2, m2 = _split_atoms(t2)
            out[m2] = out.get(m2, 0) + c2
    return out


def _split_atoms(term):
    c, m = [], []
    for f in sp.Mul.make_args(term):
        b, _ = f.as_base_exp()
        if isinstance(b, (Hess, D3)) or isinstance(b, sp.Sum) and b.has(Grad):
            m.append(f)
        else:
            c.append(f)
    return sp.Mul(*c), sp.Mul(*m)


def _argument_fields(arg, ctx):
    """An operator argument as ``[(constant, display field)]`` (linearity pulls constants)."""
    out = []
    for mono, coeff in sorted(_terms(arg, ctx).items(), key=lambda kv: sp.default_sort_key(kv[0])):
        for piece in point_pieces(coeff, ctx, split_scalars=False, basis=True):
            const, pt = [], []
            for f in sp.Mul.make_args(piece):
                (pt if _is_point(f, (ctx.s,)) else const).append(f)
            field = sp.Mul(*pt) * mono
            if ctx.u_value is not None and field == ctx.u_value:
                field = ctx.u
            out.append((sp.Mul(*const), field))
    return out


def _atom(a, ctx):
    """``{canonical atom: constant}`` for one operator atom (each distinct atom once per
    ``ctx``: the terms of a field share their atoms)."""
    if a not in ctx.atoms:
        ctx.atoms[a] = _atom_form(a, ctx)
    return ctx.atoms[a]


def _atom_form(a, ctx):
    b = a.args[0]
    if isinstance(a, Hess):
        return {Hess(b, f): c for c, f in _argument_fields(a.args[1], ctx)}
    out = {}
    for c1, f1 in _argument_fields(a.args[1], ctx):
        for c2, f2 in _argument_fields(a.args[2], ctx):
            key = D3(b, f1, f2)
            out[key] = out.get(key, 0) + c1 * c2
    return out


def canonical_terms(expr, radicand=None, s=None):
    """``{canonical operator monomial: point coefficient}`` (coefficients not normalised):
    the operator part of the canonical layout, for equality tests.  Remembered per
    ``(expr, radicand, s)``: a document compares the same quantity in several checks."""
    return dict(_canonical_terms(sp.sympify(expr), radicand, s))


@functools.lru_cache(maxsize=256)
def _canonical_terms(expr, radicand, s):
    return _terms(canonical_dummies(expr), _Ctx(radicand, s, None, None, ()))


def layout(expr, radicand=None, s=None, u_value=None, u=None, scalars=()):
    """Canonical display rows of a field expression (module docstring); remembered per
    argument (LRU 256), a copy returned."""
    rows = _remembered_layout(sp.sympify(expr), radicand, s, u_value, u, tuple(scalars))
    return [Row(r.monomial, list(r.pieces)) for r in rows]


@functools.lru_cache(maxsize=256)
def _remembered_layout(*key):
    return _layout(*key)


def _layout(expr, radicand=None, s=None, u_value=None, u=None, scalars=()):
    """Canonical display rows of a field expression (see module docstring)."""
    ctx = _Ctx(radicand, s, None, u, scalars)
    if u_value is not None:
        # u's own display form, so that arguments equal to F0 print as u
        fields = _argument_fields(u_value, ctx)
        if len(fields) == 1 and fields[0][0] == 1:
            ctx.u_value = fields[0][1]
    rows = []
    terms = _terms(canonical_dummies(expr), ctx)
    for mono in sorted(terms, key=sp.default_sort_key):
        pieces = point_pieces(terms[mono], ctx)
        pieces = [p for p in pieces if p != 0]
        if pieces:
            rows.append(Row(mono, pieces))
    return rows

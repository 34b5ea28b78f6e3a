"""Text and LaTeX display of derived flows (grouped by operator structure).

:func:`flow_text` and :func:`flow_latex` are cached on disk per declaration and variant
(:mod:`.cache`)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import sympy as sp

from . import cache
from .coefficients import reveal
from .coupled_decay import plain_of_coupled, shifted
from .family import eps, g, n, theta
from .named import memory_symbols, split_coefficient
from .expand import expand_mul
from .operators import ATOMS, collect_fields, factored, is_field
from .pipeline import derivation

__all__ = ["flow_text", "flow_latex", "grouped_terms", "structured_coefficient", "named_terms",
           "NamedTerms", "formula_lines", "simplified_coefficient", "NOTATION", "S_SYMBOL"]

NOTATION = ("g = g_j = dE/dtheta_j;  (H.(u)) = sum_i d2E/dtheta_j dtheta_i u_i;  "
            "T[u, w] = sum_ik d3E/dtheta_j dtheta_i dtheta_k u_i w_k")
#: the name of the one point denominator of a flow's terms (:class:`NamedTerms`): the root
#: ``sqrt(eps + g**2)`` (eps inside the root) or ``eps + sqrt(g**2)`` (eps outside)
S_SYMBOL = sp.Symbol("s", positive=True)
#: added to :data:`NOTATION` for mini-batch output only
MINI_NOTATION = ";  g[k], H[k]: the derivatives of the loss E_k of step k"


#: Coefficients up to this many operations are simplified in full (:func:`_simplified`);
#: larger ones (e.g. Adam's exact-in-``n`` ``F2``, ~3,000 operations) get the bounded
#: structured form of :func:`structured_coefficient`: a full simplification of those runs for
#: many CPU-minutes.
SIMPLIFY_MAX_OPS = 400
#: Budget of operations simplified in full over all coefficients of one expression (an
#: expression with hundreds of small coefficients, e.g. Adam without bias correction at order 2,
#: gets the structured form for those beyond it).
SIMPLIFY_TOTAL_OPS = 1500
#: Scalar sub-coefficients of a structured form up to this size are cancelled and factored.
CANCEL_MAX_OPS = 500


def grouped_terms(expr, max_ops=SIMPLIFY_MAX_OPS):
    """``[(operator monomial, coefficient)]``: the terms of ``expr`` grouped by their
    operator structure (``H.u``, ``H.(a H.u)``, ``T[u,w]``, ...).

    A coefficient of at most ``max_ops`` operations (:data:`CANCEL_MAX_OPS` for a rational
    one, which costs only ``factor(cancel(c))``: see :func:`_simplified`) is simplified in
    full, as long as the
    coefficients simplified so far stay within :data:`SIMPLIFY_TOTAL_OPS`; the others are
    given in the bounded :func:`structured_coefficient` form (never an unbounded
    simplification: the cost grows with the size of the expression, not beyond)."""
    groups = {}
    for term in sp.Add.make_args(expand_mul(collect_fields(expr))):
        ops = [f for f in sp.Mul.make_args(term) if isinstance(f, ATOMS[1:]) or
               (isinstance(f, sp.Pow) and isinstance(f.base, ATOMS[1:])) or
               isinstance(f, sp.Sum) and is_field(f)]
        key = sp.Mul(*ops)
        groups.setdefault(key, []).append(term / key)
    out, spent = [], 0
    for k, c in ((k, sp.Add(*cs)) for k, cs in groups.items()):
        ops = sp.count_ops(c)
        bound = max(max_ops, CANCEL_MAX_OPS) if _rational(c) else max_ops
        if ops <= bound and spent + ops <= max(SIMPLIFY_TOTAL_OPS, bound):
            spent += ops
            out.append((k, _simplified(c)))
        else:
            out.append((k, structured_coefficient(c)))
    return out


def simplified_coefficient(c, cheap_only=False):
    """A coefficient of a flow term simplified as the displays simplify it (see
    :func:`grouped_terms`); ``cheap_only``: ``None`` instead for anything but a rational
    function of symbols, powers and roots of sums (whose other parts would be atoms)."""
    if cheap_only and _rational(c) is None:
        return None
    return _simplified(c)


def _simplified(c):
    """``c`` simplified.  A rational function of symbols, powers ``d**n`` and square roots of
    sums of monomials with integer exponents (Adam's coefficients, ``sqrt(eps + g**2)``) is
    brought to lowest terms and factored (``factor(cancel(c))``: what ``simplify`` returns for
    them, at a fraction of the cost); so is one in which the square roots of even powers
    (``sqrt(g**2)``, eps outside the root) are the only other roots, each taken as an atom
    ``r = |g|`` (with ``g**2 = r**2``).  Any other coefficient is treated the same way with
    its other parts as atoms (:func:`_opaque_parts`: sums, products, functions, powers with
    symbolic exponents, roots of roots; SymPy's ``simplify``, used for those before, ran for
    minutes on NAdam's mini-batch coefficients, which have all of them)."""
    rational = _rational(c) or _opaque_parts(c)
    c, back = rational
    return _factor(c, factored).xreplace(back)


def _opaque_parts(c):
    """``(c', back)``: ``c`` with every maximal part that is not :func:`_plain` (a sum, a
    product, a function, a power with a symbolic exponent other than a symbol, a root of
    anything but a sum of monomials) written as a symbol; ``c'.xreplace(back) == c``."""
    back, names = {}, {}

    def walk(e):
        if _plain(e):
            return e.func(*[walk(a) for a in e.args]) if e.args else e
        if e not in names:
            names[e] = sp.Dummy("o", commutative=e.is_commutative)
            back[names[e]] = e
        return names[e]

    return walk(c), back


def _factor(c, how=sp.factor):
    """``how(c)`` (``sp.factor`` or :func:`~.operators.factored`) with the random evaluation
    points of SymPy's multivariate factorisation (Wang's algorithm) drawn from a fixed seed,
    SymPy's random state restored after: the same form and the same cost on every run (an
    unlucky draw made one display take minutes)."""
    from sympy.core import random as sympy_random
    state = sympy_random.rng.getstate()
    sympy_random.rng.seed(0)
    try:
        return how(c)
    finally:
        sympy_random.rng.setstate(state)


def _rational(c):
    """``(c', back)`` with ``c'`` a rational function (:func:`_plain`) and
    ``c'.xreplace(back) == c`` (``c`` itself, or ``c`` with its roots of squares as atoms:
    :func:`_roots_as_atoms`); ``None`` when there is no such form."""
    if all(_plain(e) for e in sp.preorder_traversal(c)):
        return c, {}
    atomized, back = _roots_as_atoms(c)
    if back and all(_plain(e) for e in sp.preorder_traversal(atomized)):
        return atomized, back
    return None


def _roots_as_atoms(c):
    """``(c', back)``: ``c`` with every even power ``x**(2j)`` of an atom ``x`` that has a
    root ``sqrt(x**(2k))`` in ``c`` written ``r**(2j)``, ``r`` a positive ``Dummy`` standing for
    ``sqrt(x**2) = |x|`` (so ``sqrt(x**(2k)) = r**k``); ``back`` maps ``r`` to ``sqrt(x**2)``.
    Exact for real ``x``: ``c'.xreplace(back)`` equals ``c``."""
    atoms = {e.base.base for e in sp.preorder_traversal(c)
             if isinstance(e, sp.Pow) and e.exp.is_Rational and e.exp.q == 2
             and _even_power(e.base) and (e.base.base.is_Atom or isinstance(e.base.base, ATOMS))}
    back = {}
    for x in sorted(atoms, key=sp.default_sort_key):
        r = sp.Dummy("r", positive=True)
        back[r] = sp.sqrt(x ** 2)
        c = c.replace(lambda e, x=x: _even_power(e) and e.base == x,
                      lambda e, r=r: r ** e.exp)
    return c, back


def _root_of_square(e):
    """Whether ``e`` is ``sqrt(x**(2k))`` (``|x|**k`` for real ``x``: nonnegative)."""
    return (isinstance(e, sp.Pow) and e.exp.is_Rational and e.exp.q == 2 and e.exp > 0
            and _even_power(e.base))


def _even_power(e):
    return isinstance(e, sp.Pow) and e.exp.is_Integer and e.exp.is_even


def _plain(e):
    if isinstance(e, (sp.Add, sp.Mul, sp.Symbol, sp.Number, ATOMS[0])):
        return True
    if not isinstance(e, sp.Pow):
        return False
    if e.exp.is_Integer or e.exp.is_Symbol:
        return True
    return (e.exp.is_Rational and e.exp.q == 2 and isinstance(e.base, sp.Add) and
            all(not isinstance(x, sp.Pow) or x.exp.is_Integer
                for x in sp.preorder_traversal(e.base)))


def structured_coefficient(c, max_ops=CANCEL_MAX_OPS):
    """``c`` as a sum of (scalar memory coefficient) x (point factor in ``g`` and
    ``s = sqrt(eps + g^2)``-like roots), one summand per distinct point factor.

    Each term is split once (common factors pulled out of its denominators); the scalar parts
    of a point factor are added, and their closed part (the terms without an unevaluated
    ``Sum``) is cancelled and factored when it has at most ``max_ops`` operations.  Exact (the
    sum equals ``c``), and bounded in cost."""
    sub = {}
    for term in sp.Add.make_args(expand_mul(c)):
        scal, point = [], []
        for f in sp.Mul.make_args(_pull_common(term)):
            (point if is_field(f) else scal).append(f)
        key = sp.Mul(*point)
        sub.setdefault(key, []).append(sp.Mul(*scal))
    out = []
    for key, s in ((key, sp.Add(*parts)) for key, parts in sub.items()):
        closed = [t for t in sp.Add.make_args(s) if not t.has(sp.Sum)]
        sums = [t for t in sp.Add.make_args(s) if t.has(sp.Sum)]
        closed = sp.Add(*closed)
        if sp.count_ops(closed) <= max_ops:
            closed = _factor(closed, factored)
        s = closed + sp.Add(*sums)
        if s != 0:
            out.append(sp.Mul(s, key, evaluate=False) if key != 1 else s)
    return sp.Add(*out)


def _pull_common(term):
    """``term`` with the content and common point factors of its sums pulled out
    (``2*b*s - 2*s -> 2*s*(b - 1)``), so that scalar and point factors separate."""
    return sp.Mul(*[sp.Pow(_content_pulled(f.base), f.exp) if isinstance(f, sp.Pow)
                    and isinstance(f.base, sp.Add) and is_field(f.base) else f
                    for f in sp.Mul.make_args(term)])


@lru_cache(maxsize=1 << 12)
def _content_pulled(e):
    """``factor_terms(e)``, once per distinct sum (the terms of a coefficient share few)."""
    return sp.factor_terms(e)


def _variant(batch, stationary):
    if batch == "mini":
        return "mini batch, exact in the step index n"
    return "full batch, stationary (n -> oo)" if stationary else "full batch, exact in n"


def flow_text(flow, batch="full", stationary=False):
    """The flow as text: the recursion, notes, and each ``F_r`` grouped by structure."""
    return cache.cached("display", flow.optimizer, lambda: _flow_text(flow, batch, stationary),
                        order=flow.order, batch=batch, stationary=bool(stationary),
                        format="text")


def _flow_text(flow, batch, stationary):
    opt = flow.optimizer
    lines = [f"{opt.name}: modified flow of order {flow.order} ({_variant(batch, stationary)})",
             "  recursion: theta <- theta - h*(" + sp.sstr(opt.step) + ")"]
    for s in opt.states:
        lines.append("    " + s.describe())
    for note in flow.notes(batch, stationary):
        lines.append(f"  note: {note}")
    named = named_terms(flow, batch, stationary)
    rhs = " + ".join(["F0"] + [f"h{'^' + str(r) if r > 1 else ''} F{r}"
                                for r in range(1, len(named.terms))])
    lines.append(f"  d theta_j/dt = -({rhs})")
    lines += formula_lines(named)
    where = "  where " + (f"s = {sp.sstr(named.s)};  " if named.s is not None else "")
    lines.append(where + NOTATION + (MINI_NOTATION if batch == "mini" else ""))
    return "\n".join(lines)


def formula_lines(named, indent="  ", orders=None):
    """``F_r = ...`` per term (one line per operator structure where there are several), each
    followed by the names it uses first: the lines ``modeq derive`` prints.  ``orders``: the
    ``r`` to print (default all)."""
    lines = []
    for r, groups in enumerate(named.groups):
        if orders is not None and r not in orders:
            continue
        groups = [_text(factors) for factors in groups]
        if len(groups) == 1:
            lines.append(f"{indent}F{r} = {groups[0]}")
        else:
            lines.append(f"{indent}F{r} = sum of {len(groups)} terms:")
            lines.extend(f"{indent}    + {g}" for g in groups)
        lines.extend(f"{indent}  {name} = {sp.sstr(a)}" for name, a in named.defined[r])
    if orders is None or len(named.terms) - 1 in orders:
        lines.extend(f"{indent}  {c}(n) = {sp.sstr(a)}" for c, a in named.functions)
    if named.shift is not None:
        c, loss = named.shift, sp.Symbol("E") + named.shift * sp.Symbol("|theta|**2") / 2
        lines.append(f"{indent}every F_r above on the loss {sp.sstr(loss)} (in mini batch each "
                     f"E_k alike): g -> {sp.sstr(g + c * theta)}, (H.(u)) -> "
                     f"{sp.sstr(sp.Symbol('(H.(u))') + c * sp.Symbol('u'))}, T unchanged")
    return lines


@dataclass(frozen=True)
class NamedTerms:
    """The terms ``F_r`` the way the math reads: memory coefficients named once (``a_n``,
    ``b_n``, ... where they depend on ``n``; ``a``, ``b``, ... otherwise) and the one point
    denominator ``s`` where the terms have exactly one (``sqrt(eps + g**2)``, or
    ``eps + sqrt(g**2)`` with eps outside the root).

    ``terms[r]`` is ``F_r`` in those names; ``coefficients`` the ``[(name, value)]`` in order of
    first use (``defined[r]``: those first used by ``F_r``); ``s`` the value of ``s`` or
    ``None``; ``groups[r]`` the factor lists of ``F_r``'s terms (what the text and LaTeX
    displays print); ``functions`` the ``[(c_i, definition in n)]`` of the step-index
    coefficients the last term reads opaque, ``c_i(k)`` (where they were held opaque in its
    derivation, :mod:`.coefficients`: NAdam's at order 2); ``shift`` the ``c`` of a flow
    derived on the loss ``E + c |theta|^2 / 2`` (:mod:`.coupled_decay`), whose terms are
    the plain declaration's read with ``g -> g + c theta``, ``H.u -> H.u + c u``, else
    ``None``.  :meth:`substituted` gives back ``flow.terms()`` exactly."""
    terms: tuple
    coefficients: tuple
    defined: tuple
    s: object
    groups: tuple
    functions: tuple = ()
    shift: object = None

    def definitions(self):
        """``{symbol: value}`` of every name, ``s`` included."""
        out = dict(self.coefficients)
        if self.s is not None:
            out[S_SYMBOL] = self.s
        return out

    def substituted(self):
        """``[F_r]`` with every name replaced by its value (equal to ``flow.terms()``)."""
        values, functions = self.definitions(), dict(self.functions)
        terms = [reveal(t.xreplace(values), functions) for t in self.terms]
        return terms if self.shift is None else [shifted(t, self.shift) for t in terms]


def named_terms(flow, batch="full", stationary=False):
    """:class:`NamedTerms` of ``flow`` (cached on disk per declaration and variant); the
    names are the ones ``modeq derive`` prints, ``flow_latex`` typesets and the generated
    modules use.  A flow derived on a shifted loss (:mod:`.coupled_decay`: NAdam's coupled
    weight decay) is named as its plain declaration's, with the shift: its own terms,
    ``lam`` in every coefficient, do not group in any budget worth spending (minutes at
    order 2)."""
    derived = flow.derivation(batch, stationary)
    if derived.shift is None:
        return _cached_named(flow.optimizer, flow.order, batch, stationary)
    plain, c = plain_of_coupled(flow.optimizer)
    return replace(_cached_named(plain, flow.order, batch, stationary), shift=c)


def _cached_named(optimizer, order, batch, stationary):
    return cache.cached("display", optimizer,
                        lambda: _named_terms(optimizer, order, batch, stationary),
                        order=order, batch=batch, stationary=bool(stationary), format="named")


def _named_terms(optimizer, order, batch, stationary):
    names = _Names(optimizer)
    terms, groups, defined = [], [], []
    derived = derivation(optimizer, order, batch, stationary)
    last = derived.F[-1] if derived.F_opaque is None else derived.F_opaque
    for F in derived.F[:-1] + [last]:
        parts = [names.rewrite(k, c) for k, c in grouped_terms(F)]
        groups.append(tuple(tuple(p) for p in parts))
        terms.append(sp.Add(*[sp.Mul(*p) for p in parts]))
        defined.append(tuple(names.take()))
    coefficients = tuple(x for d in defined for x in d)
    return NamedTerms(tuple(terms), coefficients, tuple(defined),
                      names.s if names.used_s else None, tuple(groups),
                      tuple(derived.coefficients.items()))


class _Names:
    """Names for the memory coefficients of a display (``a_n``, ``b_n``, ... for those that
    depend on ``n``, ``a``, ``b``, ... otherwise, never a state's or hyperparameter's name;
    numbers and short coefficients stay inline), and ``s`` for the one
    root ``sqrt(eps + g**2)`` when the point factors have exactly one such root (else
    ``eps + sqrt(g**2)`` when it is their one denominator with ``eps``)."""
    LETTERS = "abcdfmpqrxyz"   # not e (Euler), s, g, h, n, u, w (the notation), i, j, k, l
    #                            (summation indices, :data:`INDEX_NAMES`)

    def __init__(self, optimizer):
        self.memory, self.count, self.pending = memory_symbols(optimizer, n), 0, []
        self.s, self.used_s = None, False
        taken = {str(x) for x in optimizer.states} | {str(x) for x in optimizer.hyperparameters}
        self.letters = [c for c in self.LETTERS if c not in taken]

    def take(self):
        out, self.pending = self.pending, []
        return out

    def _name(self, a):
        if a.is_Number or sp.count_ops(a) <= 2:
            return a
        q, r = divmod(self.count, len(self.letters))
        letter = self.letters[r] + (str(q) if q else "")
        self.count += 1
        name = sp.Symbol(letter + ("_n" if n in a.free_symbols else ""))
        self.pending.append((name, a))
        return name

    def _with_s(self, exprs):
        """``exprs`` with the one point denominator written ``s``: the root
        ``sqrt(eps + g**2)`` where the point factors have exactly one root of a sum with
        ``eps`` (eps inside the root), else the one sum with ``eps`` and nonnegative terms
        (``eps + sqrt(g**2)``, eps outside the root) they divide by; unchanged where there is
        none, several, or another than the ``s`` of the terms before."""
        roots = {e.base for x in exprs for e in sp.preorder_traversal(x)
                 if isinstance(e, sp.Pow) and e.exp.is_Rational and e.exp.q == 2
                 and isinstance(e.base, sp.Add) and e.base.has(eps)}
        if roots:
            if len(roots) != 1 or self.s not in (None, sp.sqrt(next(iter(roots)))):
                return exprs
            base = next(iter(roots))
            self.s, self.used_s, S = sp.sqrt(base), True, S_SYMBOL
            return [x.replace(lambda e: isinstance(e, sp.Pow) and e.base == base
                              and e.exp.is_Rational and e.exp.q == 2,
                              lambda e: S ** (2 * e.exp)) for x in exprs]
        sums = {e.base for x in exprs for e in sp.preorder_traversal(x)
                if isinstance(e, sp.Pow) and e.exp.is_Integer and e.exp < 0
                and isinstance(e.base, sp.Add) and e.base.has(eps)}
        if len(sums) != 1 or self.s not in (None, next(iter(sums))):
            return exprs
        base = next(iter(sums))
        if not all(t.is_nonnegative or _root_of_square(t) for t in base.args):
            return exprs
        self.s, self.used_s, S = base, True, S_SYMBOL
        return [x.replace(lambda e: isinstance(e, sp.Pow) and e.base == base
                          and e.exp.is_Integer, lambda e: S ** e.exp) for x in exprs]

    def rewrite(self, k, c):
        """``[operator, point prefactor, sum of named coefficient x point monomial]`` for
        ``c * k`` (:func:`.named.split_coefficient`; ``1`` factors dropped), or ``[k, c]``
        with only ``s`` substituted when ``c`` does not split."""
        split = split_coefficient(c, self.memory)
        if split is None:
            return [x for x in self._with_s([k, c]) if x != 1] or [sp.S.One]
        monos = [m for m, _ in split.terms]
        k, pre, *monos = self._with_s([k, split.prefactor, *monos])
        inner = sp.Add(*[self._name(a) * m for m, (_, a) in zip(monos, split.terms)])
        if inner.is_Number:
            return [inner * k * pre]
        order = (inner, k, pre) if inner.is_Atom else (k, pre, inner)
        return [x for x in order if x != 1] or [sp.S.One]


INDEX_NAMES = tuple(f"{c}{q or ''}" for q in range(4) for c in "klij")


def readable_indices(e, depth=0, taken=None):
    """``e`` with the summation indices of its sums (``Dummy`` objects, all printed ``_k``)
    renamed for reading: ``k`` for an outermost sum, ``l`` for a sum inside it, then ``i``,
    ``j``, ``k1``, ...; sums side by side reuse names, nested ones never share one."""
    taken = {str(s) for s in e.free_symbols} if taken is None else taken
    if isinstance(e, sp.Sum):
        names = [nm for nm in INDEX_NAMES if nm not in taken]
        rename = {}
        for v, *_ in reversed(e.limits):              # the last limit is the outermost
            if isinstance(v, sp.Dummy) and depth < len(names):
                rename[v] = sp.Symbol(names[depth], integer=True)
            depth += 1
        e = e.xreplace(rename)
        return sp.Sum(readable_indices(e.function, depth, taken), *e.limits)
    if not e.args:
        return e
    return e.func(*[readable_indices(a, depth, taken) for a in e.args])


def _text(factors):
    factors = [readable_indices(f) for f in factors]
    return " * ".join(f"({sp.sstr(f)})" if isinstance(f, sp.Add) and len(factors) > 1
                      else sp.sstr(f) for f in factors)


def _latex(factors):
    factors = [readable_indices(f) for f in factors]
    return r"\,".join(rf"\left({sp.latex(f)}\right)" if isinstance(f, sp.Add)
                      and len(factors) > 1 else sp.latex(f) for f in factors)


def flow_latex(flow, batch="full", stationary=False):
    """The terms ``F_r`` as a LaTeX ``align*`` block, grouped by structure."""
    return cache.cached("display", flow.optimizer, lambda: _flow_latex(flow, batch, stationary),
                        order=flow.order, batch=batch, stationary=bool(stationary),
                        format="latex")


def _flow_latex(flow, batch, stationary):
    named = named_terms(flow, batch, stationary)
    rows = []
    for r, groups in enumerate(named.groups):
        parts = [_latex(factors) for factors in groups]
        rows.append(f"F_{{{r}}} &= " + r" \\ &\quad + ".join(parts) if parts
                    else f"F_{{{r}}} &= 0")
        rows.extend(f"{sp.latex(name)} &= {sp.latex(a)}" for name, a in named.defined[r])
    rows.extend(f"{sp.latex(c(n))} &= {sp.latex(a)}" for c, a in named.functions)
    if named.shift is not None:
        c = named.shift
        sign, a = ("-", -c) if c.could_extract_minus_sign() else ("+", c)
        rows.append(rf"&\text{{on the loss }} E {sign} \tfrac{{{sp.latex(a)}}}{{2}}"
                    rf"\lVert\theta\rVert^2\text{{: }} g \to {sp.latex(g + c * theta)},\ "
                    rf"H u \to H u {sign} {sp.latex(a)}\,u")
    if named.s is not None:
        rows.append(f"s &= {sp.latex(named.s)}")
    return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}"

"""Lowering nested memory sums to prefix nodes (the rewrite :mod:`.nested_sums` evaluates).

A node is ``P(U) = sum_{j=base}^{U} s(U, j)`` with ``s(U+1, j) = r s(U, j)``,
so that ``P(U) = r P(U-1) + s(U, U)`` fills a node's table for ``U = base, base+1, ...`` with
one evaluation of the summand per step.  Lowering one ``sum_{j=lo}^{hi} f`` (inner sums first):

1. **Lower limit.**  ``sum_{j=lo}^{hi} f = P(hi) - P(lo - 1)`` with ``base`` the least value
   ``lo`` takes over the enclosing index ranges; both are proved on the (affine) limits:
   ``lo >= base`` and ``hi >= lo - 1`` wherever the sum is evaluated (SymPy's ``Sum`` with
   ``hi < lo - 1`` would follow Karr's convention, a loop would give 0: the rewrite is only made
   where the two agree).
2. **Separation.**  The summand is multiplied out over the factors that depend both on ``j`` and
   on an enclosing index, and for the periodic closed form (``split_n_weights``) on ``n``
   too (a sum of terms each with its own weight ``beta^(n-j)``, ``rho^(n-j)``, as NAdam's
   order-2 terms arrive, is split so that every weight is shifted by step 3; kept whole, its
   table has the ratio 1 and summands growing like ``beta^(-j)``, which no periodic closed
   form fits); each term's factors free of ``j`` but depending on an enclosing index (an
   inner node's value at an outer index, such as ``P_B(k - 1)``) leave the sum.
3. **Geometric weights.**  A factor ``r^(alpha j + beta.v + gamma)`` (``v`` the enclosing
   indices) is written ``r^(beta.(v - U)) * r^(alpha j + |beta| U + gamma)``, ``U`` the node's
   argument: the first factor leaves the sum, the second makes the summand geometric in ``U``
   (and keeps the table bounded: ``mu^(U-j)``, not ``mu^(-j)``).  A weight of ``j`` alone that
   grows with ``j`` (``rho^(-j)``, where the derivation wrote ``rho^l sum_j rho^(-j) c_j``) is
   written ``rho^(-U) rho^(U-j)`` the same way.  A factor that mixes ``j`` and an enclosing
   index otherwise is factored first (a bias correction arrives multiplied out), and the
   factors it gives for each index are balanced against each other (:mod:`.growth`: factoring
   clears denominators into powers past the float range whose product is of order one); a
   sum whose inner range would run backwards only at its last index has that term peeled off.

Terms are grouped by the factor that left and by the ratio ``r`` (checked symbolically,
:func:`~.running_sums.geometric_ratio`); a summand that is not geometric in ``U`` is summed out
per argument (memoized).  A ratio ``|r| > 1`` comes from a weight that decays away from the
lower limit, ``sum_{l=k}^{n-1} beta^(l-k) f_l`` (AdaBelief's order 2): its prefix table would
grow like ``r^U`` (past float64 after ``1024 / log2 r`` steps) and take the sum as a difference
of two such values; where the upper limit is the same for every enclosing index (``n - 1``)
it becomes a *suffix node* ``S(L) = sum_{j=L}^{hi} s(L, j) = s(L, L) + S(L+1) / r``, filled
backwards from ``hi``, of terms at most those of the sum, and read at the lower limit.  A sum
that does not fit (a limit that is not affine, a factor mixing ``j`` and an enclosing index
otherwise) keeps its printed nested loops, which are always right.  The step index ``n``, the
point and per-step data ``_D<slot>(j)`` are factors like any other.
"""
from __future__ import annotations

import functools

import sympy as sp

from .. import dag
from ..dag import free_symbols
from .growth import balance_growth
from .running_sums import geometric_ratio

__all__ = ["Lowering"]


def _affine(e, symbols):
    """``({symbol: int}, int)`` with ``e = sum c_v v + c``, or ``None``."""
    coeffs, const = {}, 0
    for term in sp.Add.make_args(sp.expand(e)):
        if term.is_Integer:
            const += int(term)
            continue
        c, rest = term.as_coeff_Mul()
        if not (c.is_Integer and rest in symbols):
            return None
        coeffs[rest] = coeffs.get(rest, 0) + int(c)
    return coeffs, const


def _least(e, scope, n):
    """The least value of the affine ``e`` over the enclosing index ranges ``scope`` (outer
    first, ``[(v, lo, hi)]``) and ``n >= 0``, as an integer, or ``None`` (not affine, or
    unbounded below)."""
    names = [v for v, _, _ in scope]
    for v, lo, hi in reversed(scope):
        form = _affine(e, names + [n])
        if form is None:
            return None
        c = form[0].get(v, 0)
        if c:
            e = sp.expand(dag.xreplace(e, {v: lo if c > 0 else hi}))
    form = _affine(e, [n])
    if form is None or form[0].get(n, 0) < 0:
        return None
    return form[1]


class _Node:
    """``P(U) = sum_{j=base}^{U} summand(U, j)``; ``ratio``: ``summand(U+1, j) / summand(U, j)``
    (``None``: summed out per ``U``).  A suffix node (``last``, an expression in ``n``) is
    ``S(U) = sum_{j=U}^{last} summand(U, j)``, ``S(U) = summand(U, U) + S(U+1) / ratio``."""

    def __init__(self, summand, base, ratio, last=None):
        self.summand, self.base, self.ratio, self.last = summand, base, ratio, last


class Lowering:
    """The symbolic rewrite of the module docstring; ``nodes`` inner before outer.
    ``split_n_weights``: factors that depend on ``j`` and ``n`` are multiplied out too (step 2),
    for tables whose periodic closed form needs every weight shifted; it costs more nodes
    (NAdam's order 2: 1.6x per step), so the tables filled from the first step do without."""

    def __init__(self, n, U, J, split_n_weights=False):
        self.n, self.U, self.J = n, U, J
        self.split_n_weights = split_n_weights
        self.nodes = []
        self._ids = {}
        # the same inner sums recur in many sums: each (expression, scope) lowered once;
        # ``_made`` holds (key, node count before it) to undo with the nodes of a failed sum
        self._memo, self._made = {}, []
        self._renamed = {}

    def lower(self, e, scope=()):
        if not e.args or not dag.contains(e, sp.Sum):
            return e
        key = (e, tuple(scope))
        if key not in self._memo:
            mark = len(self.nodes)
            self._memo[key] = self._lower(e, list(scope))
            self._made.append((key, mark))
        return self._memo[key]

    def _lower(self, e, scope):
        if not isinstance(e, sp.Sum):
            return e.func(*[self.lower(a, scope) for a in e.args])
        f, limits = e.function, list(e.limits)
        if len(limits) > 1:               # the outermost limit first, the rest inside it
            f = dag.make_sum(f, *limits[:-1])
        j, lo, hi = limits[-1]
        if _always_empty(lo, hi):
            return sp.S.Zero
        mark = len(self.nodes)
        out = self._lower_sum(f, j, lo, hi, scope)
        if out is not None:
            return out
        # printed as loops: the nodes of its inner sums are unused
        del self.nodes[mark:]
        self._ids = {key: i for key, i in self._ids.items() if i < mark}
        while self._made and self._made[-1][1] >= mark:
            del self._memo[self._made.pop()[0]]
        if _shadows(j, scope, self.n):
            # its own index, renamed: the enclosing one is renamed to the nodes' common
            # index later, and the per-step data it reads must not be taken for its own
            D = self._rename(j, scope)
            return dag.make_sum(dag.xreplace(f, {j: D}), (D, lo, hi))
        return e

    def _rename(self, j, scope):
        """A new index for ``j``, which shadows an enclosing index: one per ``(j, scope)``, so
        that the same sum in the same scope is lowered to the same expression."""
        key = (j, tuple(scope))
        if key not in self._renamed:
            self._renamed[key] = sp.Dummy("j", integer=True)
        return self._renamed[key]

    def _node(self, summand, base, ratio, last=None):
        key = (summand, base, ratio, last)
        if key not in self._ids:
            self._ids[key] = len(self.nodes)
            self.nodes.append(_Node(summand, base, ratio, last))
        return sp.Function(f"_P{self._ids[key]}")

    def _lower_sum(self, f, j, lo, hi, scope):
        others = {v for v, _, _ in scope}
        J = j
        if _shadows(j, scope, self.n):
            # the index shadows an enclosing one: renamed (SymPy rebuilds and re-evaluates the
            # whole summand, so only where it must be)
            J = self._rename(j, scope)
            f = dag.xreplace(f, {j: J})
        if _peel(f, J, lo, hi, scope, self.n):
            rest = self._lower_sum(f, J, lo, hi - 1, scope)
            if rest is None:
                return None
            return rest + self.lower(dag.substitute_free(f, J, hi), scope)
        f = self.lower(f, scope + [(J, lo, hi)])
        base = _least(lo, scope, self.n)
        if base is None or _affine(hi, list(others) + [self.n]) is None:
            return None
        if lo == base:
            pieces = [(1, hi)]
        else:
            width = _least(hi - lo + 1, scope, self.n)
            if width is None or width < 0:
                return None
            pieces = [(1, hi), (-1, lo - 1)]
        groups = {}
        split = others | {self.n} if self.split_n_weights else others
        for term in _terms(f, J, split):
            if term == 0:
                continue
            split = _separate(term, J, others, self.U, self.n)
            if split is None:
                return None
            outside, inside = split
            inside = dag.xreplace(inside, {J: self.J})
            ratio = _ratio(inside, self.U, self.J, self.n)
            groups.setdefault((outside, ratio), []).append(inside)
        out, hi_in_n = [], _affine(hi, [self.n]) is not None
        for (outside, ratio), insides in groups.items():
            if ratio is not None and ratio.is_number and abs(ratio) > 1 and hi_in_n:
                S = self._node(sp.Add(*insides), base, ratio, last=hi)
                out.append(dag.xreplace(outside, {self.U: lo}) * S(lo))
                continue
            P = self._node(sp.Add(*insides), base, ratio)
            out += [sign * dag.xreplace(outside, {self.U: arg}) * P(arg) for sign, arg in pieces]
        return sp.Add(*out)


def _always_empty(lo, hi):
    """Whether ``sum_{lo}^{hi}`` has no term for any index values (``hi - lo + 1`` a constant
    ``<= 0``): a loop gives 0."""
    width = sp.expand(hi - lo + 1)
    return width.is_Integer and width <= 0


def _peel(f, J, lo, hi, scope, n):
    """Whether ``sum_{J=lo}^{hi} f`` should be written ``sum_{J=lo}^{hi-1} f + f(hi)``: it has
    at least one term everywhere, and an inner sum of ``f`` whose limits may cross
    (``hi' < lo' - 1``, which the node tables cannot follow; a loop gives 0 there) only at
    ``J = hi`` (``sum_{l=k+1}^{n-1}`` inside ``sum_{k=0}^{n}``).  The last term then has an
    inner sum without terms."""
    least = _least(hi - lo, scope, n)
    if least is None or least < 0:
        return False
    names = {v for v, _, _ in scope} | {J, n}
    whole, shorter = [*scope, (J, lo, hi)], [*scope, (J, lo, hi - 1)]
    for inner in dag.sums_in(f):
        for _, a, b in inner.limits:
            if not free_symbols(a) | free_symbols(b) <= names:
                continue
            width, after = _least(b - a + 1, whole, n), _least(b - a + 1, shorter, n)
            if width is not None and after is not None and width < 0 <= after:
                return True
    return False


def _shadows(j, scope, n):
    """Whether the summation index ``j`` is also an enclosing index (or ``n``)."""
    return j == n or any(j == v for v, _, _ in scope)


def _ratio(inside, U, J, n):
    """``inside(U+1, j) / inside(U, j)`` of a separated summand, which depends on ``U`` only
    through geometric weights ``r^(c U + ...)``: the product of their ``r^c``, read off the
    factors; :func:`~.running_sums.geometric_ratio` (which divides and simplifies the whole
    summand) where a factor has another form; ``None`` for a summand that keeps a loop."""
    if dag.contains(inside, sp.Sum):
        return None
    ratio = sp.S.One
    for factor in sp.Mul.make_args(inside):
        if U not in free_symbols(factor):
            continue
        form = (_affine(factor.exp, [U, J, n])
                if factor.is_Pow and U not in free_symbols(factor.base) else None)
        if form is None:
            return geometric_ratio(inside, U, J, U)
        ratio *= factor.base ** form[0].get(U, 0)
    return ratio


def _depends(e, J, others):
    fs = free_symbols(e)
    return J in fs, bool(fs & others)


def _terms(e, J, others):
    """The additive terms of ``e``, multiplied out only over factors that depend both on ``J``
    and on one of ``others`` (the enclosing indices and ``n``: the separation of the module
    docstring)."""
    if e.is_Add:
        return [t for a in e.args for t in _terms(a, J, others)]
    if e.is_Mul:
        out = [sp.S.One]
        for factor in e.args:
            parts = _terms(factor, J, others) if all(_depends(factor, J, others)) else [factor]
            out = [a * b for a in out for b in parts]
        return out
    if (e.is_Pow and e.exp.is_Integer and 1 < e.exp <= 4 and e.base.is_Add
            and all(_depends(e.base, J, others))):
        return _terms(sp.Mul(*[e.base] * int(e.exp), evaluate=False), J, others)
    return [e]


def _factors(term):
    """The factors of ``term``, an integer power of a product split into the factors' powers
    (``1/(a(j) b(k))`` is ``a(j)^-1 b(k)^-1``, exact for integer exponents)."""
    out = []
    for factor in sp.Mul.make_args(term):
        if factor.is_Pow and factor.exp.is_Integer and factor.base.is_Mul:
            out += [f for a in factor.base.args for f in _factors(a ** factor.exp)]
        else:
            out.append(factor)
    return out


def _separate(term, J, others, U, n):
    """``(outside, inside)`` with ``term = outside * inside``, ``inside`` free of the enclosing
    indices (depending on ``U`` only through geometric weights), ``outside`` free of ``J``;
    ``None`` where a factor mixes ``J`` and an enclosing index otherwise.  A geometric weight
    in ``n - J`` is shifted like one in an enclosing index (``mu^(n-J) = mu^(n-U) mu^(U-J)``):
    the table then has the ratio ``mu`` and stays bounded."""
    outside, inside, tried = [], [], set()
    pending = _factors(term)
    while pending:
        factor = pending.pop()
        has_j, has_other = _depends(factor, J, others)
        geometric = (factor.is_Pow and has_j and factor.exp.has(J)
                     and not factor.base.free_symbols & (others | {J, n}))
        if geometric and (has_other or factor.exp.has(n)):
            form = _affine(factor.exp, list(others) + [J, n])
            if form is None:
                if has_other:
                    return None
                inside.append(factor)
                continue
            shift = sum(c * (v - U) for v, c in form[0].items() if v != J)
            outside.append(factor.base ** shift)
            inside.append(factor.base ** sp.expand(factor.exp - shift))
        elif geometric and (a := _growth(factor, J)):
            # r^(a J) growing in J (rho^(-k), as in rho^l sum_k rho^(-k) c_k): written
            # r^(a U) r^(a (J - U)), the table's terms at most 1 and its ratio r^(-a); the
            # enclosing r^l then meets r^(a U) at U = l and cancels
            outside.append(factor.base ** (a * U))
            inside.append(factor.base ** sp.expand(factor.exp - a * U))
        elif not has_other:
            inside.append(factor)
        elif not has_j:
            outside.append(factor)
        else:
            factored = None if factor in tried else _factored(factor)
            if factored is None:
                return None
            tried.add(factor)
            pending += _balanced(_factors(factored), J, others)
    return sp.Mul(*outside), sp.Mul(*inside)


def _balanced(factors, J, others):
    """``factors`` of a factored expression with those of ``J`` alone and those of the
    enclosing indices alone each multiplied together and their growth balanced
    (:func:`~.growth.balance_growth`), a power ``r^(a J + b k)`` split between the two:
    factoring clears denominators, and a bias correction ``(1 - beta^(k+1))^-2 (1 -
    beta^(l+1))`` comes back as ``4^(-2k-l) (4^(k+1) - 1)^2 (4^(l+1) - 1)`` (``beta = 1/4``),
    factors past the float range from ``k = 256`` whose products per index are of order one."""
    groups, out = {True: [], False: []}, []
    for factor in (part for f in factors for part in _split_power(f, J, others)):
        has_j, has_other = _depends(factor, J, others)
        if has_j != has_other:
            groups[has_j].append(factor)
        else:
            out.append(factor)
    for group in groups.values():
        if len(group) > 1 and any(_grows(f) for f in group):
            [group] = balance_growth([sp.Mul(*group)], {J, *others})
            group = _factors(group)
        out += group
    return out


def _split_power(factor, J, others):
    """``r^(a J + b.v + c)`` (``r`` a number) as ``[r^(a J), r^(b.v + c)]``; else ``[factor]``."""
    if not (factor.is_Pow and factor.base.is_number) or not all(_depends(factor, J, others)):
        return [factor]
    form = _affine(factor.exp, [J, *others])
    if form is None:
        return [factor]
    a = form[0].get(J, 0)
    return [factor.base ** (a * J), factor.base ** sp.expand(factor.exp - a * J)]


def _grows(factor):
    """Whether ``factor`` holds a power of a number with a symbolic exponent."""
    return any(p.base.is_number and not p.exp.is_number for p in factor.atoms(sp.Pow))


def _growth(factor, J):
    """``a`` if ``factor = r^(a J + c)`` (``r`` a number) grows with ``J`` (``|r^a| > 1``),
    else 0."""
    form = _affine(factor.exp, [J])
    if form is None or not factor.base.is_number or not form[0].get(J):
        return 0
    a = form[0][J]
    return a if abs(factor.base ** a) > 1 else 0


@functools.lru_cache(maxsize=4096)
def _factored(factor):
    """``factor`` written as a product of more factors (common factors of a sum taken out,
    else a rational function factored), or ``None`` if it stays one factor: a bias
    correction's ``a(k)^2 (b(l) - 1)`` arrives multiplied out, mixing ``k`` and ``l``."""
    for way in (_common_factors, sp.factor):
        out = way(factor)
        if out is not None and len(_factors(out)) > 1:
            return out
    return None


def _common_factors(e):
    """The sum ``e`` (or an integer power of one) with the powers common to all its terms
    taken out, ``a^2 b - a^2 = a^2 (b - 1)``; ``None`` if there are none.  (SymPy's
    ``factor_terms`` does this too, but walks every term's subexpressions.)"""
    if e.is_Pow and e.exp.is_Integer:
        inner = _common_factors(e.base)
        return None if inner is None else inner ** e.exp
    if not e.is_Add:
        return None
    powers = [t.as_powers_dict() for t in e.args]
    common = {}
    for base, x in powers[0].items():
        xs = [sp.sympify(p.get(base, 0)) for p in powers]
        if base.is_number or not all(v.is_Integer for v in xs):
            continue
        if all(v > 0 for v in xs):
            common[base] = min(xs)
        elif all(v < 0 for v in xs):
            common[base] = max(xs)
    if not common:
        return None
    out = [b ** x for b, x in common.items()]
    c = sp.Mul(*out)
    return sp.Mul(*out, sp.Add(*[t / c for t in e.args]), evaluate=False)

"""The exact prover shared by :mod:`recognize` and the derivation documents (pure SymPy).

Conventions: expressions are component expressions of :mod:`operators` (``Grad``, ``Hess``,
``D3`` of the dimension-free algebra, ``(H u)_j = sum_i H_ji u_i``), or their lowerings to
generic components ``g_i, H_ij, T_ijk`` (:mod:`components`); the step index is ``n`` and
decays ``d`` enter through powers ``d**(a n + b)``.  Every answer is exact and sound: ``True``
means the difference is identically ``0``.

* :func:`powers_of_step` — ``d**(a n + b)`` as ``P_d**a * d**b`` with a fresh symbol ``P_d``
  for ``d**n`` (so expressions exact in ``n`` become rational functions);
* :func:`is_zero` — a scalar vanishes identically: powers of the step as above, each square
  root ``sqrt(B)`` a positive symbol ``r`` with ``r**2 = B``; the numerator, reduced modulo
  these relations, must expand to ``0`` (complete when the roots are independent, as for
  distinct ``sqrt(g_i**2 + eps)``);
* :func:`is_zero_linear` — the same, coefficient by coefficient in derivative symbols;
* :func:`operator_symbols` — operator atoms as opaque symbols (any dimension);
* :func:`same_in_algebra`, :func:`components_agree`, :func:`prove_equal` — equality in the
  operator algebra and for generic components in dimension ``p``.
"""
from __future__ import annotations

import sympy as sp

from .components import SymbolProvider, lower_vector
from .family import n
from .operators import D3, Hess, factored, linearize

__all__ = ["powers_of_step", "is_zero", "is_zero_linear", "operator_symbols",
           "same_in_algebra", "components_agree", "prove_equal", "agree_at_random_points",
           "agree_exactly_at_points", "component_verdict", "Check"]


def powers_of_step(e, step=n):
    """Replace ``d**(a*step + b)`` by ``P_d**a * d**b`` (``P_d`` a fresh positive symbol for
    ``d**step``, named ``P``); ``ValueError`` for an exponent not affine in ``step``.

    >>> from modeq.symbolic.family import beta, n
    >>> from modeq.symbolic.prove import powers_of_step
    >>> powers_of_step(beta ** (2 * n + 1))
    _P**2*beta
    """
    e = sp.expand_power_exp(sp.sympify(e))
    table = {}

    def sym(base):
        if base not in table:
            table[base] = sp.Dummy("P", positive=True)
        return table[base]

    def rep(p):
        a = sp.expand(p.exp)
        coeff = a.coeff(step)
        rest = sp.expand(a - coeff * step)
        if not coeff.is_Integer or step in rest.free_symbols:
            raise ValueError(f"exponent {p.exp} is not affine in {step} with integer slope")
        return sym(p.base) ** int(coeff) * p.base ** rest

    return e.replace(lambda x: isinstance(x, sp.Pow) and step in x.exp.free_symbols
                     and step not in x.base.free_symbols, rep)


def is_zero(d):
    """Exact test that the scalar ``d`` vanishes identically (see module docstring).

    >>> import sympy as sp
    >>> from modeq.symbolic.family import beta, eps, n
    >>> from modeq.symbolic.prove import is_zero
    >>> x = sp.Symbol("x", real=True)
    >>> is_zero(sp.sqrt(x**2 + eps) ** 3 / (x**2 + eps) - sp.sqrt(x**2 + eps))
    True
    >>> is_zero(beta ** (n + 1) - beta * beta ** n), is_zero(sp.sqrt(x**2 + eps) - x)
    (True, False)
    """
    d = powers_of_step(d)
    if d == 0:
        return True
    roots, seen = {}, {}

    def sym(raw):
        if raw not in seen:                       # the same base recurs in many terms
            base = sp.cancel(sp.together(raw))
            if base not in roots:
                roots[base] = sp.Dummy("r", positive=True)
            seen[raw] = roots[base]
        return seen[raw]

    d = d.replace(lambda e: isinstance(e, sp.Pow) and e.exp.is_Rational and e.exp.q == 2,
                  lambda e: sym(e.base) ** e.exp.p)
    # factored terms share their denominators' factors: a far smaller common numerator
    d = sp.Add(*[sp.factor(t) for t in sp.Add.make_args(d)])
    num = sp.expand(sp.numer(sp.together(d)))
    for _ in range(4):
        if num == 0:
            return True
        for base, r in roots.items():
            num = num.replace(
                lambda e: isinstance(e, sp.Pow) and e.base == r and e.exp.is_Integer
                and e.exp >= 2,
                lambda e: base ** (int(e.exp) // 2) * r ** (int(e.exp) % 2))
        num = sp.expand(sp.numer(sp.together(num)))
        if num != 0 and len(roots) == 1:
            # one root: num = a + b r with a, b free of r; zero iff a = b = 0 (r irrational)
            (base, r), = roots.items()
            a_, b_ = num.coeff(r, 0), num.coeff(r, 1)
            if sp.expand(num - a_ - b_ * r) == 0:
                return sp.expand(sp.numer(sp.together(a_))) == 0 and \
                    sp.expand(sp.numer(sp.together(b_))) == 0
    if num == 0:
        return True
    # a reduced polynomial that does not expand to 0 is not 0; anything else (functions,
    # unevaluated sums) gets SymPy's simplification as a last, sound resort
    return not num.is_polynomial(*num.free_symbols) and sp.simplify(num) == 0


def is_zero_linear(d, ops):
    """Zero test for an expression polynomial in the derivative symbols ``ops``: every Taylor
    coefficient in ``ops`` (taken by differentiation, no expansion) must vanish.

    >>> import sympy as sp
    >>> from modeq.symbolic.prove import is_zero_linear
    >>> a, H = sp.symbols("a H")
    >>> is_zero_linear(H * (a + 1) ** 2 - H * (a**2 + 2 * a + 1), [H])
    True
    """
    ops = [o for o in ops if d.has(o)]
    if not ops:
        return is_zero(d)
    op, rest = ops[0], ops[1:]
    k, cur = 0, d
    while True:
        if not is_zero_linear(cur.subs(op, 0), rest):
            return False
        k += 1
        cur = cur.diff(op) / k
        if cur == 0 or not cur.has(op):
            return cur == 0 or is_zero_linear(cur, rest)


def operator_symbols(exprs):
    """Replace operator atoms by symbols consistently across ``exprs`` (operators made linear,
    arguments cancelled and factored); the results are ordinary scalar expressions."""
    table = {}
    out = []
    for e in exprs:
        e = linearize(e)
        rep = {}
        for a in sorted(e.atoms(Hess, D3), key=sp.default_sort_key):
            key = a.func(a.args[0], *[factored(x) for x in a.args[1:]])
            table.setdefault(key, sp.Dummy("op"))
            rep[a] = table[key]
        out.append(e.xreplace(rep))
    return out


def same_in_algebra(a, b):
    """``a == b`` in the operator algebra: operators are opaque symbols (any dimension).

    >>> from modeq.symbolic.operators import FULL, Grad, Hess
    >>> from modeq.symbolic.prove import same_in_algebra
    >>> g = Grad(FULL)
    >>> same_in_algebra(Hess(FULL, 2 * g) / 4, Hess(FULL, g) / 2)
    True
    """
    x, y = operator_symbols([a, b])
    return is_zero(x - y)


def components_agree(a, b, p):
    """``a == b`` component by component for generic ``g_i, H_ij, T_ijk`` in dimension ``p``
    (each component compared coefficient by coefficient in the derivative symbols)."""
    P = SymbolProvider(p)
    va, vb = lower_vector(a, P), lower_vector(b, P)
    ops = sorted(set(P._H.values()) | set(P._T.values()), key=str)
    return all(is_zero_linear(u - v, ops) for u, v in zip(va, vb))


class Check(tuple):
    """One check: a ``(description, ok)`` pair (unpacks as such) with its ``kind``:
    ``"proof"`` (exact, decides the claim) or ``"evidence"`` (exact arithmetic at random
    rational points: a disagreement refutes soundly, an agreement is evidence, not a proof)."""

    def __new__(cls, description, ok, kind="proof"):
        obj = super().__new__(cls, (description, bool(ok)))
        obj.kind = kind
        return obj

    def __reduce__(self):
        return (Check, (self[0], self[1], self.kind))

    @property
    def label(self):
        """``proved`` / ``checked`` / ``FAILED``, as the command line prints it."""
        if not self[1]:
            return "FAILED"
        return "proved" if self.kind == "proof" else "checked"


def prove_equal(a, b, dims=(1, 2, 3, 4), components="fast"):
    """Checks that the component expressions ``a`` and ``b`` are equal.  Returns a list of
    :class:`Check` (``(description, ok)`` pairs).

    Each proof costs what it decides: first the components for ``p = dims[0]`` are compared
    exactly at random rational points (:func:`agree_exactly_at_points`; a difference there
    refutes the claim soundly and ends the work); then the exact dimension-free proof (operators
    as opaque symbols: valid for every ``p``).  The components for each ``p`` in ``dims`` are
    then, with ``components="fast"`` (default), compared exactly at random rational points
    (evidence: the dimension-free proof already covers them); with ``components="prove"``
    each is proved exactly (slow for flows exact in ``n``).

    >>> from modeq.symbolic.operators import FULL, Grad, Hess
    >>> from modeq.symbolic.prove import prove_equal
    >>> g = Grad(FULL)
    >>> [c.label for c in prove_equal(Hess(FULL, g + g) / 4, Hess(FULL, g) / 2, dims=(1, 2))]
    ['proved', 'checked', 'checked']
    >>> [c.label for c in prove_equal(Hess(FULL, g) / 3, Hess(FULL, g) / 2, dims=(1, 2))]
    ['FAILED']
    """
    if components not in ("fast", "prove"):
        raise ValueError(f"components must be 'fast' or 'prove', got {components!r}")
    first = dims[0] if dims else 1
    # the fast components check of the first p doubles as the early refutation
    early = agree_exactly_at_points(a, b, first,
                                    trials=1 if components == "prove" else FAST_TRIALS)
    if early is False:
        return [Check(f"components differ at a random rational point for p = {first} "
                      f"(exact arithmetic: the claim is false)", False)]
    checks = [Check("difference simplifies to 0 in the operator algebra (any dimension)",
                    same_in_algebra(a, b))]
    for p in dims:
        if components == "prove":
            checks.append(Check(f"components agree for p = {p} (generic g_i, H_ij, T_ijk)",
                                components_agree(a, b, p)))
            continue
        ok, exact = component_verdict(a, b, p, _agree_to_60_digits,
                                      known=early if p == first else None)
        how = (f"exactly at {FAST_TRIALS} random rational points" if exact
               else "at random points to 60 digits")
        checks.append(Check(f"components agree {how} for p = {p} (generic g_i, H_ij, T_ijk)",
                            ok, "evidence"))
    return checks


#: random rational points per dimension in the fast component checks
FAST_TRIALS = 2


def component_verdict(a, b, p, otherwise, known=None):
    """``(verdict, exact)``: the components of ``a`` and ``b`` for dimension ``p`` compared in
    exact arithmetic at :data:`FAST_TRIALS` random rational points
    (:func:`agree_exactly_at_points`; ``known``: its verdict, already computed), or, where a
    side is not exactly evaluable, by ``otherwise(a, b, p)`` (``exact`` is then ``False``)."""
    ok = agree_exactly_at_points(a, b, p, trials=FAST_TRIALS) if known is None else known
    if ok is None:
        return otherwise(a, b, p), False
    return ok, True


def _agree_to_60_digits(a, b, p):
    P = SymbolProvider(p)
    return agree_at_random_points(list(lower_vector(a, P)), list(lower_vector(b, P)))


def agree_exactly_at_points(a, b, p, trials=2, seed=0):
    """``a == b`` for generic components in dimension ``p``, tested in exact arithmetic at
    ``trials`` random rational points: ``False`` — they differ at a point (a sound
    refutation), ``True`` — equal at every point tried (evidence), ``None`` — not exactly
    evaluable (functions other than powers, roots other than square roots).

    Square roots: each ``sqrt(B)`` becomes a positive symbol ``r`` whose value at the point is
    ``sqrt(b)``, ``b`` the (positive rational) value of ``B``; the numerator of the difference,
    a polynomial in the ``r`` with rational coefficients, is expanded at ``r = sqrt(b)``:
    SymPy reduces products of square roots of rationals to ``c sqrt(k)``, ``k`` square-free,
    and these are linearly independent over the rationals, so the result is ``0`` exactly when
    the difference vanishes.  Points where a radicand is not positive or a denominator
    vanishes are redrawn.

    >>> from modeq.symbolic.operators import FULL, Grad, Hess
    >>> g = Grad(FULL)
    >>> agree_exactly_at_points(Hess(FULL, g / sp.sqrt(g**2 + 1)), Hess(FULL, g) / 2, 2)
    False
    """
    import random
    P = SymbolProvider(p)
    d = [sp.sympify(x - y) for x, y in zip(lower_vector(a, P), lower_vector(b, P))]
    roots = {}

    def root(e):
        base = e.base
        if base not in roots:
            roots[base] = sp.Dummy("r", positive=True)
        return roots[base] ** e.exp.p

    d = [x.replace(lambda e: isinstance(e, sp.Pow) and e.exp.is_Rational and e.exp.q == 2
                   and not e.base.is_number, root) for x in d]
    allowed = (sp.Add, sp.Mul, sp.Pow, sp.Symbol, sp.Number, sp.Sum, sp.Tuple)
    for x in d:
        for e in sp.preorder_traversal(x):
            if not isinstance(e, allowed) or (isinstance(e, sp.Pow) and not (
                    e.exp.is_Integer or n in e.exp.free_symbols)):
                return None
    syms = sorted(set().union(*(x.free_symbols for x in d), *(
        B.free_symbols for B in roots)) - set(roots.values()), key=str)
    rng = random.Random(seed)
    done = 0
    for _ in range(10 * trials):
        point = _random_point(syms, rng)
        values, ok = {}, True
        for B, r in roots.items():
            bv = B.xreplace(point).doit()
            if not (bv.is_Rational and bv > 0):
                ok = False
                break
            values[r] = sp.sqrt(bv)
        if not ok:
            continue
        verdict = _vanishes_at(d, point, values)
        if verdict is None:
            continue
        if not verdict:
            return False
        done += 1
        if done == trials:
            return True
    return None


def _random_point(syms, rng, n_max=7, positive=(1, 999), real=(1, 3000), denominator=1000):
    """A random rational point: ``n`` and integer symbols in ``[1, n_max]``, positive symbols
    ``randint(*positive) / denominator``, others ``+-randint(*real) / denominator``."""
    point = {}
    for s in syms:
        if s == n or s.is_integer:
            point[s] = sp.Integer(rng.randint(1, n_max))
        elif s.is_positive:
            point[s] = sp.Rational(rng.randint(*positive), denominator)
        else:
            point[s] = sp.Rational(rng.choice([-1, 1]) * rng.randint(*real), denominator)
    return point


def _vanishes_at(d, point, values):
    """Whether every ``x`` in ``d`` is 0 at ``point`` (roots ``r`` at ``values``); ``None`` at a
    pole."""
    for x in d:
        x = x.xreplace(point).doit()
        num, den = sp.fraction(sp.together(x))
        if sp.expand(den.xreplace(values)) == 0:
            return None
        v = sp.expand(sp.expand(num).xreplace(values))
        if v != 0:
            if not v.is_number:
                raise ValueError(f"not a number after substitution: {v}")
            return False
    return True


def agree_at_random_points(a, b, trials=3, seed=0, digits=60):
    """The fast check for expressions too large to simplify: the lists ``a`` and ``b`` agree at
    ``trials`` random rational points (every free symbol drawn; the step index ``n`` a small
    integer, positive symbols in ``(1/10, 9/10)``, real ones in ``[-2, 2]``), evaluated to
    ``digits`` significant digits.  A wrong coefficient is caught with probability ~1; an
    agreement is evidence, not a proof, and is reported as such by the callers.

    >>> from modeq.symbolic.family import beta, n
    >>> agree_at_random_points([beta ** (n + 1)], [beta * beta ** n])
    True
    >>> agree_at_random_points([beta ** (n + 1)], [beta ** n])
    False
    """
    import random
    rng = random.Random(seed)
    a, b = [sp.sympify(x) for x in a], [sp.sympify(x) for x in b]
    if len(a) != len(b):
        return False
    syms = sorted(set().union(*(e.free_symbols for e in a + b)), key=str)
    for _ in range(trials):
        point = _random_point(syms, rng, 6, (10, 90), (10, 200), 100)
        for x, y in zip(a, b):
            vx = sp.N(x.xreplace(point).doit(), digits)
            vy = sp.N(y.xreplace(point).doit(), digits)
            scale = max(abs(vx), abs(vy), 1)
            if not abs(vx - vy) <= scale * sp.Float(10) ** (10 - digits):
                return False
    return True

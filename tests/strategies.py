"""Hypothesis strategies for what users give modeq: declarations, losses, batches, values.

* :func:`declarations` — optimizers from the family's grammar (``docs/conventions.md`` §2.3):
  0–3 EMA states (normalised or not, bias-corrected or not, decays as symbols or rationals),
  inputs built from ``g``, ``theta``, ``g**2``, products and smooth functions (a state's input
  never reads another state: the family does not allow it), and a smooth step.  Equal specs
  give the *same* :class:`Optimizer` object, so the derivation cache (keyed by object) is
  shared between examples.
* :func:`losses` — smooth losses in 1–3 parameters (polynomials, ``log cosh``, ``exp``,
  products); :func:`batches` — 2–4 of them with a schedule (cyclic, a permutation repeated,
  or arbitrary with repeats).
* :func:`values_for` — a value for every hyperparameter inside its range, edges included
  (``rho = 999/1000``, ``eps = 10^-8``, ``beta = 0``); :func:`points` — rational points.

Everything is exact (SymPy rationals), so oracles can compare exactly or at any precision.
"""
from __future__ import annotations

import sympy as sp
from hypothesis import strategies as st

from modeq.symbolic import EMA, Optimizer, beta, eps, g, rho, theta

X = sp.symbols("x1:4", real=True)          # parameters, up to p = 3
D1, D2 = sp.symbols("d1 d2", positive=True)  # user decays (ranges: [0, 1))
LAM = sp.Symbol("lam", positive=True)      # a user coefficient (any positive value)
USER_DECAYS = (D1, D2)

# ------------------------------------------------------------------------- numbers
small_rationals = st.builds(sp.Rational, st.integers(-4, 4), st.sampled_from([1, 2, 3, 4]))
nonzero_rationals = small_rationals.filter(lambda q: q != 0)

DECAY_EDGES = [sp.Integer(0), sp.Rational(1, 2), sp.Rational(9, 10), sp.Rational(99, 100),
               sp.Rational(999, 1000)]
RHO_EDGES = [sp.Rational(1, 1000), sp.Rational(1, 2), sp.Rational(9, 10),
             sp.Rational(99, 100), sp.Rational(999, 1000)]
EPS_EDGES = [sp.Rational(1, 10**8), sp.Rational(1, 1000), sp.Rational(1, 10), sp.Integer(1),
             sp.Integer(4)]
H_EDGES = [sp.Rational(1, 10**3), sp.Rational(1, 64), sp.Rational(1, 16), sp.Rational(1, 8)]


def _in_unit(closed_low):
    """Rationals in [0, 1) (or (0, 1)), edges first."""
    inner = st.builds(sp.Rational, st.integers(1, 99), st.just(100))
    edges = DECAY_EDGES if closed_low else RHO_EDGES
    return st.one_of(st.sampled_from(edges), inner)


def value_strategy(sym):
    """Values of one hyperparameter inside its documented range."""
    name = str(sym)
    if name == "beta" or sym in USER_DECAYS:
        return _in_unit(True)
    if name == "rho":
        return _in_unit(False)
    if name == "eps":
        return st.one_of(st.sampled_from(EPS_EDGES),
                         st.builds(sp.Rational, st.integers(1, 50), st.just(100)))
    if name == "h":
        return st.one_of(st.sampled_from(H_EDGES),
                         st.builds(sp.Rational, st.just(1), st.integers(4, 100)))
    return st.builds(sp.Rational, st.integers(1, 20), st.just(10))       # lam and the like


@st.composite
def values_for(draw, optimizer, with_h=True):
    """``{symbol: exact value}`` for every hyperparameter of ``optimizer`` (and ``h``)."""
    from modeq.symbolic import h
    syms = list(optimizer.hyperparameters) + ([h] if with_h else [])
    return {s: draw(value_strategy(s)) for s in syms}


def by_name(values):
    return {str(k): v for k, v in values.items()}


@st.composite
def points(draw, p, lo=-3, hi=3):
    """A rational point with ``p`` components in [lo/2, hi/2]."""
    return [sp.Rational(draw(st.integers(lo, hi)), draw(st.sampled_from([2, 3, 4])))
            for _ in range(p)]


# ------------------------------------------------------------------------- declarations
#: inputs of a state: functions of g and theta (never of another state)
INPUTS = [g, g**2, theta, g * theta, g**2 + theta**2, sp.sqrt(1 + g**2), sp.exp(g / 2),
          sp.log(1 + g**2), g * sp.exp(-theta**2), g**3]
#: inputs that keep every derivation cheap (used at order 2)
SIMPLE_INPUTS = [g, g**2, g * theta]


def _phi(kind, x):
    """A smooth function of ``x`` on all of R."""
    return {"id": x, "exp": sp.exp(x / 2), "sqrt1p": sp.sqrt(1 + x**2),
            "log1p": sp.log(1 + x**2), "square": x**2, "rational": x / (1 + x**2)}[kind]


_OPTIMIZERS = {}


def make_optimizer(states_spec, step_spec, name="generated"):
    """The (cached) Optimizer of a spec: ``states_spec`` a tuple of
    ``(decay, input, normalized, bias_correction)``, ``step_spec`` a tuple of terms
    ``(kind, a, b, coefficient)`` with atoms ``a``, ``b`` (state indices, ``"g"``,
    ``"theta"``, ``"one"``) and ``kind`` a smooth function applied to ``a``; a term with a
    positive atom ``b`` of kind ``"root"`` is ``a / sqrt(b + eps)`` (Adam-like)."""
    key = (states_spec, step_spec)
    if key not in _OPTIMIZERS:
        # distinct names per spec, so that equal states of two specs never meet (see
        # test_properties_regressions::test_two_equal_ema_declarations_in_one_expression)
        tag = len(_OPTIMIZERS)
        states = [EMA(f"s{i}_{tag}", decay=d, of=of, normalized=nz, bias_correction=bc)
                  for i, (d, of, nz, bc) in enumerate(states_spec)]

        def atom(a):
            if isinstance(a, int):
                return states[a]
            return {"g": g, "theta": theta, "one": sp.Integer(1)}[a]

        step = sp.Integer(0)
        for kind, a, b, c in step_spec:
            if kind == "root":
                step += c * atom(a) / sp.sqrt(atom(b) + eps)
            else:
                step += c * _phi(kind, atom(a)) * atom(b)
        _OPTIMIZERS[key] = Optimizer(name, states, step)
    return _OPTIMIZERS[key]


def _nonnegative(of):
    """Inputs whose EMA is >= 0 along any run (for ``sqrt(state + eps)``)."""
    return of in (g**2, g**2 + theta**2, sp.sqrt(1 + g**2), sp.exp(g / 2), sp.log(1 + g**2))


@st.composite
def declarations(draw, max_states=3, simple=False, rational_decays=True):
    """An :class:`Optimizer` of the EMA family (module docstring).  ``simple``: inputs from
    :data:`SIMPLE_INPUTS`, symbolic decays and polynomial steps (cheap at order 2)."""
    k = draw(st.integers(0, max_states))
    decay_pool = [beta, rho, D1, D2]
    specs = []
    for i in range(k):
        if not simple and rational_decays and draw(st.booleans()):
            d = draw(st.sampled_from([sp.Rational(1, 2), sp.Rational(9, 10), sp.Integer(0)]))
        else:
            d = decay_pool[i]
        of = draw(st.sampled_from(SIMPLE_INPUTS if simple else INPUTS))
        specs.append((d, of, draw(st.booleans()), draw(st.booleans())))
    atoms = list(range(k)) + ["g", "theta"]
    kinds = ["id", "square"] if simple else ["id", "exp", "sqrt1p", "log1p", "square",
                                            "rational"]
    terms = []
    for _ in range(draw(st.integers(1, 2))):
        roots = [i for i in range(k) if _nonnegative(specs[i][1])]
        if roots and not simple and draw(st.booleans()):
            a = draw(st.sampled_from(atoms))
            terms.append(("root", a, draw(st.sampled_from(roots)), sp.Integer(1)))
        else:
            terms.append((draw(st.sampled_from(kinds)), draw(st.sampled_from(atoms)),
                          draw(st.sampled_from(atoms + ["one"])),
                          draw(st.sampled_from([1, -1, sp.Rational(1, 2), LAM]))))
    # the step reads the gradient (directly or through a state), so it is not a constant field
    if not any(t[1] == "g" or isinstance(t[1], int) for t in terms):
        terms.append(("id", "g", "one", sp.Integer(1)))
    opt = make_optimizer(tuple(specs), tuple(terms))
    if opt.step.is_constant() or not (opt.step.has(g) or any(s in opt.step.free_symbols
                                                               for s in opt.states)):
        return make_optimizer((), (("id", "g", "one", sp.Integer(1)),))
    return opt


# ------------------------------------------------------------------------- losses
@st.composite
def losses(draw, p, transcendental=True):
    """A smooth loss in ``X[:p]``: a sum of 2–4 terms — monomials of degree 1–4 with small
    rational coefficients, ``log cosh(a x_i + b)``, ``exp(c x_i)``, products
    ``x_i * exp(c x_j)`` — always with a quadratic part so every parameter is used."""
    xs = X[:p]
    E = sum(draw(st.sampled_from([sp.Rational(1, 2), sp.Integer(1), sp.Rational(3, 4)])) * x**2
            for x in xs)
    for _ in range(draw(st.integers(1, 3))):
        kinds = ["mono", "cross"] + (["logcosh", "exp", "prodexp"] if transcendental else [])
        kind = draw(st.sampled_from(kinds))
        i = draw(st.integers(0, p - 1))
        j = draw(st.integers(0, p - 1))
        c = draw(nonzero_rationals)
        if kind == "mono":
            E += c * xs[i] ** draw(st.integers(1, 4)) / 4
        elif kind == "cross":
            E += c * xs[i] * xs[j] ** draw(st.integers(1, 2)) / 3
        elif kind == "logcosh":
            E += sp.log(sp.cosh(c * xs[i] + draw(small_rationals)))
        elif kind == "exp":
            E += sp.exp(c * xs[i] / 2) / 2
        else:
            E += xs[i] * sp.exp(c * xs[j] / 4) / 4
    return E


@st.composite
def schedules(draw, m, length):
    """A schedule of ``length`` loss indices in [0, m): cyclic, a permutation repeated, or
    arbitrary with repeats; ``None`` stands for the default cyclic order."""
    kind = draw(st.sampled_from(["default", "cyclic", "permuted", "arbitrary"]))
    if kind == "default":
        return None
    if kind == "cyclic":
        return [k % m for k in range(length)]
    if kind == "permuted":
        perm = draw(st.permutations(list(range(m))))
        return [perm[k % m] for k in range(length)]
    return draw(st.lists(st.integers(0, m - 1), min_size=length, max_size=length))


@st.composite
def batches(draw, p, length, transcendental=True):
    """``(losses, schedule)``: 2–4 smooth losses and a schedule for ``length`` steps."""
    m = draw(st.integers(2, 4))
    Es = [draw(losses(p, transcendental)) for _ in range(m)]
    return Es, draw(schedules(m, length))

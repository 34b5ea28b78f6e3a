"""The wider family (torch's update rules) against the series oracle, independent of the
derivation: states reading earlier states, coupled and decoupled weight decay, dampened and
Nesterov momentum, NAdam's step-index schedule, and user declarations outside the built-ins
(AdaBelief, Lion with a smooth sign).  Iterates and flow agree through h^(r+1), differ at
h^(r+2); a declaration without a smooth flow is refused with its reason.
"""
from fractions import Fraction

import mpmath
import pytest
import sympy as sp

from series_oracle import TPS, _compile, _number, compare, flow_series
from modeq.symbolic import EMA, Optimizer, beta, derive, eps, g, h, n, rho, theta
from modeq.symbolic import optimizers as O
from modeq.symbolic.family import Refused

x, y = sp.symbols("x y")
E = (sp.Rational(3, 4) * x + sp.Rational(4, 3) * y + x**2 / 2 + x * y / 3 + y**2
     + x**3 / 5 + x * y**2 / 7 + y**4 / 4)
VALUES = {beta: sp.Rational(1, 2), rho: sp.Rational(3, 4), eps: sp.Integer(1),
          O.mu: sp.Rational(2, 5), O.tau: sp.Rational(1, 3), O.lam: sp.Rational(1, 5),
          O.psi: sp.Integer(1)}
delta = sp.Symbol("delta", positive=True)
VALUES[delta] = sp.Integer(1)


def plain_iterates(opt, steps, D, values, exact, losses=(E,), schedule=(0, 0, 0)):
    """A plain loop over the declaration, written from torch's description of the update:
    states in dependency order, each reading the others' values of this step; a state that
    starts at its input stores it on the first update; the step reads ``n = k``; step ``k``
    uses the loss ``losses[schedule[k]]`` (mini batch)."""
    from modeq.symbolic import g as G, theta as TH
    sub = dict(values)
    grads = [_compile([x, y], [sp.diff(L, p) for p in (x, y)], exact) for L in losses]
    hs = TPS([0, 1], D)
    th = [TPS([_number(0, exact)], D) for _ in range(2)]
    acc = {s.name: None for s in opt.states}
    out = []
    for k in range(steps):
        gk = grads[schedule[k]](*th)
        hats = {}
        for s in opt.states:
            reads = list(s.reads)
            of = _compile([G, TH] + reads, s.of.xreplace(sub), exact)
            d = _number(s.decay.xreplace(sub), exact)
            c = _number(s.scale.xreplace(sub), exact)
            ins = [of(gk[j], th[j], *[hats[t.name][j] for t in reads]) for j in range(2)]
            if acc[s.name] is None:
                acc[s.name] = ins if s.start == "input" else [c * a for a in ins]
            else:
                acc[s.name] = [d * a + c * b for a, b in zip(acc[s.name], ins)]
            hats[s.name] = [a / (1 - d ** (k + 1)) if s.bias_correction else a
                            for a in acc[s.name]]
        stepk = opt.step.xreplace(sub).xreplace({n: k}).doit()
        step = _compile(list(opt.states) + [G, TH], stepk, exact)
        th = [th[j] - hs * step(*[hats[s.name][j] for s in opt.states], gk[j], th[j])
              for j in range(2)]
        out.append(th)
    return out


def first_difference(opt, order, exact):
    vals = {k: v for k, v in VALUES.items() if k in opt.hyperparameters}
    D = order + 2
    it = plain_iterates(opt, 3, D, vals, exact)
    fs = flow_series(derive(opt, order), E, [x, y], [0, 0], 3, D, vals, h, exact=exact)
    return compare(it, fs, tol=0 if exact else mpmath.mpf(10) ** -45)


def adabelief():
    m = EMA("m", decay=beta, of=g, bias_correction=True)
    s = EMA("s", decay=rho, of=(g - m) ** 2, bias_correction=True)
    return Optimizer("adabelief", [s, m], m / sp.sqrt(s + eps))


def lion():
    """Lion with a smooth sign: c = b1 m_old + (1-b1) g, m_new = b2 m_old + (1-b2) g."""
    b1, b2 = beta, rho
    m = EMA("m", decay=b2, of=g, normalized=True)
    c = b1 * (m - (1 - b2) * g) / b2 + (1 - b1) * g
    return Optimizer("lion_smooth", [m], c / sp.sqrt(c**2 + delta))


CASES = [  # (name, factory, order, exact)
    ("adabelief-1", adabelief, 1, True),
    ("adabelief-2", adabelief, 2, True),
    ("lion-smooth-1", lion, 1, False),
    ("sgd-dampened-l2-1", lambda: O.torch_sgd(True, True, False, "coupled"), 1, True),
    ("sgd-dampened-l2-2", lambda: O.torch_sgd(True, True, False, "coupled"), 2, True),
    ("sgd-nesterov-max-1", lambda: O.torch_sgd(True, False, True, "coupled", True), 1, True),
    ("adam-l2-1", lambda: O.torch_adam("coupled"), 1, True),
    ("rmsprop-centered-1", lambda: O.torch_rmsprop(centered=True), 1, False),
    ("adamw-1", lambda: O.torch_adam("decoupled"), 1, True),
    ("nadam-decoupled-1", lambda: O.torch_nadam("decoupled"), 1, True),
    ("nadam-2", O.torch_nadam, 2, True),
    ("user-decay-on-adabelief-1", lambda: O.with_weight_decay(adabelief(), "decoupled"), 1,
     True),
]


@pytest.fixture
def irrational_roots(monkeypatch):
    """High-precision mode: numeric square roots in mpmath (the memory factors
    ``1 - rho^(n+1)`` of an optimizer without bias correction are not squares)."""
    import series_oracle
    monkeypatch.setattr(series_oracle._MpNamespace, "sqrt", staticmethod(
        lambda v: v ** Fraction(1, 2) if isinstance(v, TPS) else mpmath.sqrt(v)))


@pytest.mark.parametrize("name, make, order, exact", CASES, ids=[c[0] for c in CASES])
def test_wider_family_agrees_through_h_to_order_plus_one(name, make, order, exact,
                                                        irrational_roots):
    mpmath.mp.dps = 60
    assert first_difference(make(), order, exact) == order + 2


def test_the_first_input_start_matters():
    """The dampened buffer without torch's first-step rule is another optimizer: the flow of
    one, checked against the iterates of the other, fails at h^2 (the check can fail)."""
    mpmath.mp.dps = 60
    right = O.torch_sgd(True, True)
    b = EMA("b", decay=O.mu, of=g, normalized=False, scale=1 - O.tau)
    wrong = Optimizer("sgd_zero_start", [b], b)
    vals = {k: v for k, v in VALUES.items() if k in right.hyperparameters}
    it = plain_iterates(right, 3, 3, vals, True)
    fs = flow_series(derive(wrong, 1), E, [x, y], [0, 0], 3, 3, vals, h)
    assert compare(it, fs) == 1


def test_cycle_and_order():
    b0 = EMA("b", rho, g)
    a = EMA("a", beta, b0)
    b = EMA("b", rho, a)
    with pytest.raises(ValueError, match="cycle a -> b -> a"):
        Optimizer("c", [a, b], a)
    m = EMA("m", beta, g)
    s = EMA("s", rho, (g - m) ** 2)
    assert [t.name for t in Optimizer("ok", [s, m], m + s).states] == ["m", "s"]
    with pytest.raises(ValueError, match="not listed"):
        Optimizer("missing", [s], s)


@pytest.mark.parametrize("step, word", [
    (sp.sign(g), "sign-based"), (sp.Max(g, theta), "running max"), (sp.Abs(g), "not differ")])
def test_non_smooth_steps_are_refused_with_the_reason(step, word):
    with pytest.raises(Refused, match=word):
        Optimizer("bad", [], step)


def test_adagrad_and_centered_stationary_are_refused():
    with pytest.raises(Refused, match="Adagrad"):
        EMA("G", decay=1, of=g**2, normalized=False)
    with pytest.raises(Refused, match="not smooth at the states' limiting values"):
        derive(O.torch_rmsprop(centered=True), 1).terms(stationary=True)


def test_nadam_stationary_is_the_limit_of_the_schedule():
    F0 = derive(O.torch_nadam(), 0).terms(stationary=True)[0]
    from modeq.symbolic.operators import Grad, FULL
    gg = Grad(FULL)
    assert sp.simplify(F0 - gg / (sp.sqrt(gg**2) + eps)) == 0
    assert n not in F0.free_symbols


def test_nadam_order_2_exact_in_n_is_derived_in_the_declared_terms():
    """Order 2 exact in ``n`` of a step with a step product is derived with the step's
    coefficients held opaque (:mod:`modeq.symbolic.coefficients`) and revealed: ``F2`` reads
    the products ``mu_1 ... mu_t`` again, no ``c_i`` is left, and ``F0, F1`` are the order-1
    flow's (its display, in the opaque ``c_i``: ``test_display_named``)."""
    from sympy.core.function import AppliedUndef

    opt = O.torch_nadam("decoupled")
    F = derive(opt, 2).terms()
    assert F[2].has(sp.Product) and not F[2].atoms(AppliedUndef)
    assert n in F[2].free_symbols and O.psi in F[2].free_symbols
    assert F[:2] == derive(opt, 1).terms()
    assert n not in derive(opt, 2).terms(stationary=True)[2].free_symbols

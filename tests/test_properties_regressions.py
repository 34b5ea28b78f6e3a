"""Regression tests: every failure the property-based tests (tests/test_properties_*.py) found,
pinned as a plain test with the shrunk example."""
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from modeq.symbolic import EMA, beta, g, rho, theta


def test_two_equal_ema_declarations_in_one_expression():
    """Found by test_series_full_batch_orders_0_and_1: two separately created, equal EMA
    declarations (same name, decay, input, flags) in one SymPy expression.  SymPy's canonical
    ordering compares their hashable content element by element; a ``None`` in it (``scale``
    left at its default) made ``None > None`` raise TypeError from inside SymPy while the step
    was being built."""
    m1 = EMA("m", decay=beta, of=g)
    m2 = EMA("m", decay=beta, of=g)
    assert m1 == m2
    step = sp.exp(theta) * m1 + sp.exp(g) * m2
    assert step == sp.exp(theta) * m1 + sp.exp(g) * m1


def test_ema_with_decay_zero_is_its_input():
    """Found by test_series_full_batch_orders_0_and_1 (shrunk): an EMA with the rational decay
    0 holds the current input, so ``step = s**2`` with ``s = EMA[0](g)`` is ``g**2`` and
    ``F0 = g**2`` (exact in n as in the stationary limit).  Got ``F0 = 0`` exact in n: the
    memory sum ``sum_{k=0}^{n} 0**(n-k) g`` is closed by ``sympy.summation`` as 0 (it drops the
    ``k = n`` term ``0**0 = 1``).  Iterates: theta^(1) = -h/16 for E = x**2/2 + x/4 at 0."""
    from modeq.symbolic import Optimizer, derive
    from modeq.symbolic.operators import FULL, Grad
    x = sp.Symbol("x")
    gg = Grad(FULL)
    for normalized in (False, True):
        for bias_correction in (False, True):
            s = EMA("s", decay=0, of=g, normalized=normalized, bias_correction=bias_correction)
            flow = derive(Optimizer("o", [s], s**2), 0)
            assert flow.terms(stationary=True)[0] == gg**2
            assert sp.simplify(flow.terms()[0] - gg**2) == 0
            assert flow.field(x**2 / 2 + x / 4, [x], n=0)[0].subs(x, 0) == -sp.Rational(1, 16)



def test_two_decays_whose_ratio_is_one(monkeypatch):
    """Found by test_series_full_batch_orders_0_and_1 in the long profile (shrunk): step
    ``s0 * s1`` with ``s0 = EMA[1/2](theta)``, ``s1 = EMA[rho](theta)`` (normalised) at
    ``rho = 1/2``.  The h term's memory sum ``sum_k (2 rho)^k ...`` was closed for generic
    decays only, ``(1 - (2 rho)^(n+1)) / (1 - 2 rho)``, so the field was ``nan`` at
    ``rho = 1/2`` (and the lambdified field raised).  Oracle: the recursion's own iterates as
    series in h (tests/test_properties_series.py)."""
    from strategies import X, make_optimizer
    import test_properties_series
    monkeypatch.setattr(test_properties_series, "event", lambda *_: None)   # outside @given
    half = sp.Rational(1, 2)
    opt = make_optimizer(((half, theta, True, False), (rho, theta, True, False)),
                         (("id", 0, 1, sp.Integer(1)),))
    x1, x2 = X[:2]
    E = -x1**3 / 2 + x1**2 + 3 * x2**2 / 4
    for order in (0, 1):
        test_properties_series.check_order(opt, order, E, [x1, x2], [1, half], None, {rho: half})


@settings(max_examples=examples(40))
@given(st.lists(st.sampled_from([sp.Rational(1, 2), sp.Rational(9, 10), beta, rho, 1 / beta,
                                 1 / rho, beta**2, sp.Integer(2)]), min_size=1, max_size=3),
       st.integers(0, 2), st.sampled_from([sp.Rational(1, 2), sp.Rational(9, 10),
                                           sp.Rational(1, 4)]),
       st.sampled_from(["beta", sp.Rational(1, 2), sp.Rational(9, 10), sp.Rational(3, 10)]),
       st.integers(0, 2), st.integers(-1, 4))
def test_closed_memory_sums_equal_the_sum_at_every_decay(bases, power, b, r, lo, length):
    """``memory.closed_sum`` of a polynomial-geometric ``k^power * prod(bases)^k`` over
    ``lo <= k <= n`` equals the sum written out term by term (empty when ``n = lo - 1``), at
    decays that make the ratio 1 (``rho = beta``, ``rho = 1/2``) as well as generic ones."""
    from modeq.symbolic.memory import closed_sum
    k = sp.Symbol("k", integer=True, nonnegative=True)
    n = sp.Symbol("n", integer=True, nonnegative=True)
    c = k**power * sp.Mul(*[q**k for q in bases])
    closed = closed_sum(c, k, lo, n)
    top = max(lo + length, lo - 1)
    at = {beta: b, rho: b if r == "beta" else r, n: top}
    brute = sum(c.xreplace({**at, k: j}) for j in range(lo, top + 1))
    assert sp.simplify(closed.xreplace(at) - brute) == 0


@settings(max_examples=examples(40))
@given(st.lists(st.sampled_from([sp.Rational(1, 2), beta, rho, beta**2, sp.Integer(2)]),
                min_size=1, max_size=3),
       st.integers(0, 3), st.integers(0, 3),
       st.sampled_from([sp.Rational(1, 3), sp.Rational(9, 10), sp.Rational(1, 10)]),
       st.sampled_from([sp.Rational(1, 5), sp.Rational(7, 10), sp.Rational(99, 100)]))
def test_closed_memory_tails_equal_sympys_sum_of_the_series(bases, power, lo, b, r):
    """The stationary tails ``sum_{k=lo}^{oo} k^power prod(bases)^k`` in closed form equal
    SymPy's summation of the series at the given rational decays (an independent evaluation);
    a tail whose ratio is not below 1 for generic decays has no closed form (``None``)."""
    from modeq.symbolic.memory import closed_sum
    k = sp.Symbol("k", integer=True, nonnegative=True)
    c = k**power * sp.Mul(*[q**k for q in bases])
    closed = closed_sum(c, k, lo, sp.oo)
    ratio = sp.Mul(*bases).xreplace({beta: sp.Rational(1, 3), rho: sp.Rational(1, 4)})
    if ratio >= 1:
        assert closed is None
        return
    at = {beta: b, rho: r}
    if sp.Mul(*bases).xreplace(at) >= 1:
        return                               # generic decays converge, these do not
    exact = sp.summation(c.xreplace(at), (k, lo, sp.oo))
    assert sp.simplify(closed.xreplace(at) - exact) == 0



def test_a_root_inside_a_root_in_a_matrix_free_form():
    """Found by test_generated_modules_equal_the_exact_field in the long profile (shrunk): the
    state ``s = EMA[1/2](sqrt(g**2 + 1))`` (not normalised), step ``s / sqrt(s + eps)``, so
    ``F0 = 2 sqrt(g^2+1) / sqrt(2 sqrt(g^2+1) + eps)`` (the stationary sum is ``2 x``).  The
    coefficient simplifier held each root as a symbol and mapped them back in one simultaneous
    substitution, so the outer root kept the inner root's placeholder: the matrix-free form
    failed its own checks and no module could be generated."""
    from strategies import make_optimizer
    from modeq.symbolic import derive, eps
    from modeq.symbolic.emit.forms import flow_forms, verify
    opt = make_optimizer(((sp.Rational(1, 2), sp.sqrt(g**2 + 1), False, False),),
                         (("root", 0, 0, sp.Integer(1)),))
    form = flow_forms(derive(opt, 0), stationary=True)[0]
    assert all(ok for _, ok in verify(form, (1, 2))), verify(form, (1, 2))
    G = sp.Rational(3, 4)
    want = 2 * sp.sqrt(G**2 + 1) / sp.sqrt(2 * sp.sqrt(G**2 + 1) + sp.Rational(1, 100))
    (value,) = form.lower([G], [[0]])
    assert sp.simplify(value.xreplace({eps: sp.Rational(1, 100)}) - want) == 0


# ---------------------------------------------------------------- bad input (test_properties_inputs)
def test_a_negative_mpmath_value_keeps_its_sign():
    """Found by test_invalid_hyperparameters_are_refused_by_name (shrunk: heavy-ball, order 0,
    ``h = mpf(-1)``): mpmath's ``man_exp`` gives the mantissa without its sign, so
    ``exact_value`` read ``mpf(-1)`` as ``1`` and a negative ``h`` or ``beta`` given as an
    mpmath number was accepted as its absolute value (a wrong field, no error)."""
    import mpmath
    import pytest
    from modeq.symbolic import derive, optimizers
    from modeq.symbolic.emit.values import exact_value
    assert exact_value("h", mpmath.mpf(-1)) == -1
    assert exact_value("beta", mpmath.mpf("-0.75")) == sp.Rational(-3, 4)
    x = sp.Symbol("x")
    with pytest.raises(ValueError, match="h must be > 0"):
        derive(optimizers.heavy_ball(), 0).lambdify(x**2, [x], h=mpmath.mpf(-1), beta=0)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        derive(optimizers.heavy_ball(), 0).lambdify(x**2, [x], beta=mpmath.mpf("-0.5"))


def test_mpmath_nan_and_inf_are_not_zero():
    """Found by test_invalid_hyperparameters_are_refused_by_name: ``mpf('nan')`` and
    ``mpf('inf')`` have mantissa 0, so they were read as the number 0 — ``beta = mpf('nan')``
    was accepted as ``beta = 0`` (Adam silently became RMSProp) and ``eps = mpf('inf')`` was
    refused as "eps must be > 0, got 0"."""
    import mpmath
    import pytest
    from modeq.symbolic import derive, optimizers
    x = sp.Symbol("x")
    flow = derive(optimizers.adam(), 1)
    for name, bad in (("beta", mpmath.mpf("nan")), ("eps", mpmath.mpf("inf")),
                      ("rho", mpmath.mpf("-inf"))):
        values = dict(h=0.1, beta=0.9, rho=0.99, eps=1e-8)
        values[name] = bad
        with pytest.raises(ValueError, match=f"{name} must be finite"):
            flow.lambdify(x**2, [x], **values)


def test_infinite_values_are_refused():
    """Found by test_invalid_hyperparameters_are_refused_by_name (shrunk: RMSProp,
    ``eps = inf``): the ranges ``eps > 0``, ``h > 0`` were checked by comparison only, so
    ``Optimizer.check_values`` (the iterates, order studies) accepted ``eps = inf`` and
    ``lambdify`` accepted SymPy's ``oo``; a number beyond float range stays valid."""
    import pytest
    from modeq.symbolic import derive, optimizers
    x = sp.Symbol("x")
    with pytest.raises(ValueError, match="eps must be finite"):
        optimizers.rmsprop().check_values({"rho": 0.5, "eps": float("inf")})
    with pytest.raises(ValueError, match="h must be finite"):
        derive(optimizers.gd(), 1).lambdify(x**2, [x], h=sp.oo)
    with pytest.raises(ValueError, match="eps must be finite"):
        derive(optimizers.rmsprop(), 0).lambdify(x**2, [x], rho=0.5, eps=sp.oo)
    optimizers.rmsprop().check_values({"rho": 0.5, "eps": sp.Integer(10) ** 400})


def test_unreadable_values_name_the_parameter():
    """Found by test_invalid_hyperparameters_are_refused_by_name: ``"1/0"`` raised
    ``ZeroDivisionError`` from inside ``fractions``; NumPy ``longdouble`` NaN/inf raised NumPy's
    own ``ValueError``/``OverflowError`` and an array of values NumPy's ``TypeError``, none
    naming the parameter; ``Optimizer.check_values`` called ``"-1/2"`` not a real number while
    it read ``"0.5"``."""
    import numpy as np
    import pytest
    from modeq.numeric.iterate import iterates
    from modeq.symbolic import derive, optimizers
    x = sp.Symbol("x")
    flow = derive(optimizers.adam(), 1)
    base = dict(h=0.1, beta=0.9, rho=0.99, eps=1e-8)
    for name, bad, exc in (("beta", "1/0", ValueError), ("eps", np.longdouble("nan"), ValueError),
                           ("eps", np.longdouble("inf"), ValueError),
                           ("rho", np.array([0.5, 0.5]), TypeError)):
        with pytest.raises(exc, match=name):
            flow.lambdify(x**2, [x], **dict(base, **{name: bad}))
    with pytest.raises(ValueError, match="h: cannot read '1/0'"):
        iterates(optimizers.gd(), x**2, [x], [1], "1/0", 2)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\), got -1/2"):
        optimizers.heavy_ball().check_values({"beta": "-1/2"})


def test_the_iterates_check_the_step_size():
    """Found by test_invalid_hyperparameters_are_refused_by_name (shrunk: heavy-ball,
    ``h = 0``): ``iterates`` checked every hyperparameter but ``h``, so ``h = 0`` returned a
    constant run and ``h = -1`` ran gradient ascent, without an error."""
    import pytest
    from modeq.numeric.iterate import iterates
    from modeq.symbolic import optimizers
    x = sp.Symbol("x")
    for bad in (0, -1, "-1/16", float("inf")):
        with pytest.raises(ValueError, match="h must be"):
            iterates(optimizers.heavy_ball(), x**2, [x], [1], bad, 2, beta=0.5)


def test_declarations_that_are_not_expressions_are_a_type_error():
    """Found by the bad-input properties' probes: ``EMA(decay=None)``, ``EMA(of=None)`` and
    ``Optimizer(step=None or [g])`` raised ``AttributeError`` from deep inside the
    declaration ('NoneType' object has no attribute 'free_symbols')."""
    import pytest
    from modeq.symbolic import Optimizer
    with pytest.raises(TypeError, match="decay"):
        EMA("m", decay=None, of=g)
    with pytest.raises(TypeError, match="'of'"):
        EMA("m", decay=beta, of=None)
    for step in (None, [g]):
        with pytest.raises(TypeError, match="step"):
            Optimizer("o", [], step)


def test_malformed_schedules_name_the_schedule():
    """Found by test_malformed_schedules_are_refused (shrunk: ``schedule=[[0]]``, ``"0101"``,
    ``0``, ``[]``): the iterates read a schedule with ``int(i)`` — ``[0.5, 1.7]`` ran losses
    0 and 1 without an error, ``[[0]]`` raised ``int()``'s TypeError; the field accepted
    ``[True, False]`` as indices, checked a dict's keys but used its values, accepted an empty
    schedule until a step needed it, and a number raised "'int' object is not iterable"."""
    import pytest
    from modeq.numeric.iterate import iterates
    from modeq.symbolic import derive, optimizers
    x = sp.Symbol("x")
    Es = [x**2, (x - 1)**2]
    flow = derive(optimizers.sgd(), 1)
    for bad, exc in (([0.5, 1.7], ValueError), ([[0]], ValueError), ([True, False], ValueError),
                     ([], ValueError), ({0: 5}, TypeError), ("01", TypeError), (0, TypeError)):
        with pytest.raises(exc, match="schedule"):
            flow.field(Es, [x], n=0, schedule=bad)
        with pytest.raises(exc, match="schedule"):
            iterates(optimizers.sgd(), Es, [x], [1], "1/8", 1, schedule=bad)
    # indices of any integer type are read as ints
    assert flow.field(Es, [x], n=1, schedule=(sp.Integer(1), 0)) == \
        flow.field(Es, [x], n=1, schedule=[1, 0])


def test_a_boolean_is_not_a_hyperparameter_value():
    """Found by test_invalid_hyperparameters_are_refused_by_name in the long profile (shrunk:
    a user EMA decay ``d1 = False``): ``Optimizer.check_values`` read ``False`` as ``0`` and
    ``True`` as ``1`` (``float(False)``), so the iterates ran with ``d1 = 0``; lambdify
    already refused booleans."""
    import pytest
    d1 = sp.Symbol("d1", positive=True)
    from modeq.symbolic import Optimizer
    s = EMA("s", decay=d1, of=g)
    for bad in (False, True):
        with pytest.raises(TypeError, match="d1 must be a real number"):
            Optimizer("o", [s], s).check_values({"d1": bad})


def test_differentiating_a_sum_keeps_its_inner_bounds_bound():
    """Found while lowering the symbolic mini-batch h^2 term: SymPy lists a sum's limits
    innermost first, and renaming the bound variables one limit at a time left an inner bound
    naming the outer variable's old name (``Sum(f, (k, 0, l), (l, 0, n))`` became
    ``Sum(f', (k', 0, l), (l', 0, n))`` with ``l`` free)."""
    from modeq.symbolic import n
    from modeq.symbolic.operators import FULL, Grad, lie
    k = sp.Dummy("k", integer=True, nonnegative=True)
    l = sp.Dummy("l", integer=True, nonnegative=True)
    s = sp.Sum(beta ** (l - k) * Grad(k) ** 2, (k, 0, l), (l, 0, n))
    d = lie(s, Grad(FULL))
    assert d.free_symbols == s.free_symbols | {sp.Symbol("FULL")} - {k, l}
    assert not any(isinstance(v, sp.Dummy) for v in d.free_symbols)


def _decay_zero_case():
    from modeq.symbolic import Optimizer, eps
    x1 = sp.Symbol("x1")
    s0 = EMA("s0_dz", decay=beta, of=g ** 2, normalized=True)
    s1 = EMA("s1_dz", decay=sp.Rational(1, 2), of=g ** 2, normalized=True)
    opt = Optimizer("decay-zero", [s0, s1], s0 / sp.sqrt(s0 + eps) + s1 * sp.sqrt(theta ** 2 + 1) / 2)
    losses = [-5 * x1 ** 2 / 6 + sp.log(sp.cosh(2 * x1 / 3 - 2)) + sp.exp(-2 * x1) / 2,
              8 * x1 ** 3 / 3 + x1 ** 2 / 2 + sp.log(sp.cosh(4 * x1 / 3 + sp.Rational(1, 3))),
              x1 ** 2 / 2 + x1 * sp.exp(x1 / 4) / 4 + sp.exp(x1) / 2 + sp.exp(-x1 / 6) / 2,
              x1 ** 2 / 2 + sp.log(sp.cosh(x1 / 2 - sp.Rational(1, 2))) + sp.log(sp.cosh(x1 + 2))]
    return opt, losses, x1, eps


def test_a_mini_batch_field_at_decay_zero(monkeypatch):
    """Found by the long profile of test_series_mini_batch_orders_0_and_1 (shrunk): with
    ``beta = 0`` given as a value, ``flow.field`` (mini batch) set ``beta**n * beta**(-k)``
    to ``0 * zoo`` inside the memory sums, and its ``F1`` was wrong (the series check: flow
    and iterates differed at ``h^2``).  Oracle: the recursion run as power series in ``h``."""
    import test_properties_series
    monkeypatch.setattr(test_properties_series, "event", lambda *_: None)   # outside @given
    check_order = test_properties_series.check_order
    opt, losses, x1, eps = _decay_zero_case()
    check_order(opt, 1, losses, [x1], [sp.Rational(1, 4)], [2, 3, 1],
                {beta: sp.Integer(0), eps: sp.Integer(1)})


def test_a_mini_batch_field_at_decay_zero_does_not_crash_in_sympy(monkeypatch):
    """Found by the same run (shrunk): step ``s exp(s/2)/2``, ``s = EMA[beta](g^2)``, two
    batches, ``beta = 0``: SymPy raised from inside ``exp(Sum(...))`` while the value was
    substituted.  Oracle: the series check, as above."""
    from modeq.symbolic import Optimizer
    import test_properties_series
    monkeypatch.setattr(test_properties_series, "event", lambda *_: None)
    check_order = test_properties_series.check_order
    x1 = sp.Symbol("x1")
    s = EMA("s_dz2", decay=beta, of=g ** 2, normalized=True)
    opt = Optimizer("decay-zero-exp", [s], s * sp.exp(s / 2) / 2)
    losses = [3 * x1 ** 2 / 4 + sp.exp(-2 * x1) / 2, 7 * x1 ** 2 / 12]
    check_order(opt, 1, losses, [x1], [sp.Integer(0)], None, {beta: sp.Integer(0)})


def test_a_power_of_a_memory_sum_at_order_2(monkeypatch):
    """Found by the long profile of test_series_full_batch_order_2 (case 48): step
    ``s0^3 lam + theta^3/2`` with ``s0`` an unnormalised EMA of ``g theta``.  The ``h^2`` term's
    memory sums (a power of a memory sum, then sums over pairs of past steps) were closed term
    by term, each closed form factored whole: that derivation had not finished after 20
    minutes.  Now the terms are gathered by field monomial and large coefficients kept as
    polynomials in the index powers (``operators.index_polynomial``).  Pinned with the square,
    which takes the same path at a CI-sized cost (the check took 218 s of CPU before, 28 s
    after; the cube about 100 s of derive alone).  Oracle: the series check."""
    from modeq.symbolic import Optimizer
    import test_properties_series
    monkeypatch.setattr(test_properties_series, "event", lambda *_: None)
    x1 = sp.Symbol("x1")
    lam = sp.Symbol("lam", positive=True)
    s0 = EMA("s0_power", decay=beta, of=g * theta, normalized=False)
    opt = Optimizer("power", [s0], s0 ** 2 * lam + theta ** 3 / 2)
    E = -x1 ** 3 / 3 + x1 ** 2 + sp.exp(-2 * x1 / 3) / 2
    test_properties_series.check_order(opt, 2, E, [x1], [-sp.Rational(1, 3)], None,
                                       {beta: sp.Rational(2, 25), lam: sp.Integer(1)})

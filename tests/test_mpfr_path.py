"""The full-batch mpmath field run in MPFR arithmetic (gmpy2): same numbers as the exact field.

Oracle: the exact SymPy field (``flow.field``) with the hyperparameters and the point substituted
as rationals, evaluated by ``sympy.N`` at 60 digits -- no emit code runs.  The MPFR path and the
mpmath path (the MPFR path switched off) must both agree with it to a few ulps at random working
precisions; the fixed-point calls of the integrator must give the path of the plain calls; an
input where MPFR would produce a NaN (a root of a negative number) gives mpmath's answer.
"""
import gmpy2
import mpmath
import pytest
import sympy as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import examples
from strategies import by_name
from test_properties_emit import exact_field, full_batch_case, needed
from modeq.numeric.integrate import integrate
from modeq.symbolic import EMA, Optimizer, derive, g, optimizers, theta
from modeq.symbolic.emit import FullBatchField, mpfr

x, y = sp.symbols("x y")


def _without_mpfr(field):
    slow = object.__new__(type(field))
    slow.__dict__.update(field.__dict__)
    slow._fast, slow._fast_kernel, slow._memo = None, None, {}
    return slow


def test_gmpy2_is_installed_so_the_mpfr_path_is_what_runs():
    assert mpfr.available()
    f = derive(optimizers.adam(), 1).lambdify(sp.log(sp.cosh(x - y)) + x**2, [x, y],
                                              beta=sp.Rational(1, 4), rho=sp.Rational(1, 3),
                                              eps=sp.Rational(1, 100), h=sp.Rational(1, 64))
    assert isinstance(f, FullBatchField) and f._fast is not None


@settings(max_examples=examples(10))
@given(case=full_batch_case(orders=(0, 1, 2)), dps=st.integers(15, 50))  # oracle: 60 digits
def test_mpfr_and_mpmath_paths_equal_the_exact_field(case, dps):
    flow, values = case["flow"], needed(case["flow"], case["values"])
    exact = exact_field(flow, case["E"], case["params"], case["point"], values, case["n"],
                        case["stationary"])
    f = flow.lambdify(case["E"], case["params"], backend="mpmath",
                      stationary=case["stationary"], **by_name(values))
    if not isinstance(f, FullBatchField):
        return                                  # the one-batch route: not an MPFR kernel
    with mpmath.workdps(dps):
        point = [mpmath.mpf(q.p) / q.q for q in case["point"]]
        scale = max([1] + [abs(mpmath.mpf(str(b))) for b in exact])
        # 2^-prec per operation, amplified by the cancellations of the memory coefficients
        tol = scale * mpmath.ldexp(1, -mpmath.mp.prec + 24)
        for field in (f, _without_mpfr(f)):
            for a, b in zip(field(case["n"], point), exact):
                assert isinstance(a, mpmath.mpf)
                assert abs(a - mpmath.mpf(str(b))) <= tol, (field._fast, a, b)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_the_integrator_gives_the_same_path_through_the_fixed_point_calls(order):
    flow = derive(optimizers.adam(), order)
    values = dict(beta=sp.Rational(3, 10), rho=sp.Rational(1, 2), eps=sp.Rational(1, 10))
    if order:
        values["h"] = sp.Rational(1, 16)
    f = flow.lambdify(sp.log(sp.cosh(x - y)) + (x + 2 * y) ** 2 / 4, [x, y], **values)
    assert f._fast is not None
    with mpmath.workdps(30):
        fast = integrate(f, [1, -1], mpmath.mpf(1) / 16, 12, "ck45")
        plain = integrate(lambda n, th: _without_mpfr(f)(n, th), [1, -1],
                          mpmath.mpf(1) / 16, 12, "ck45")
        for p, q in zip(fast.path, plain.path):
            for a, b in zip(p, q):
                assert abs(a - b) <= mpmath.ldexp(1, -mpmath.mp.prec + 8)
        # and both follow the exact solution of a linear flow (GD: F = (1 + h a / 2) a x)
        gd = derive(optimizers.gd(), 1).lambdify(3 * x**2 / 2, [x], h=sp.Rational(1, 8))
        run = integrate(gd, [1], mpmath.mpf(1) / 8, 8, "ck45")
        rate = 3 * (1 + mpmath.mpf(3) / 16)
        assert abs(run.path[-1][0] - mpmath.exp(-rate)) <= 4 * run.error_estimate


def test_a_nan_under_mpfr_gives_the_answer_of_mpmath():
    # step g / sqrt(theta): at theta < 0 mpmath returns a complex number, MPFR a NaN
    state = EMA("m_rs", decay=sp.Rational(1, 2), of=g)
    opt = Optimizer("rootstep", [state], state / sp.sqrt(theta))
    f = derive(opt, 0).lambdify(x**2 / 2, [x], stationary=True)
    assert f._fast is not None
    with mpmath.workdps(30):
        got = f(None, [mpmath.mpf(-4)])
        assert isinstance(got[0], mpmath.mpc)
        assert f.fixed(None, [-4 << 10], 10, 10) is None
        assert mpmath.almosteq(f(None, [mpmath.mpf(4)])[0], -2)


def test_without_gmpy2_no_mpfr_kernel_is_built(monkeypatch):
    monkeypatch.setattr(mpfr, "gmpy2", None)
    f = derive(optimizers.gd(), 1).lambdify(x**2 / 2, [x], h=sp.Rational(1, 8))
    assert f._fast is None and f.fixed(0, [1 << 10], 10, 10) is None
    with mpmath.workdps(30):
        assert mpmath.almosteq(f(0, [1])[0], -(1 + mpmath.mpf(1) / 16))


def test_conversions_are_exact_at_the_working_precision():
    with mpmath.workdps(40):
        v = mpmath.mpf(1) / 3
        prec = mpmath.mp.prec
        with mpfr.context(prec):
            r = mpfr.from_mpf(v)
            assert r == gmpy2.mpfr(1) / 3
            assert mpfr.to_mpf(r, prec) == v
            assert mpfr.to_fixed(mpfr.from_fixed(-7 << 50, 50), 50) == -7 << 50


_NADAM = {}


def _nadam_field():
    """torch's NAdam, order 1: its momentum products mu_1 ... mu_t are running products."""
    if not _NADAM:
        from modeq.symbolic import optimizers as O
        flow = derive(O.torch_nadam(), 1)
        _NADAM["field"] = flow.lambdify((x - 1) ** 2 / 2 + x * y / 3 + y ** 4 / 4, [x, y],
                                        beta="2/5", rho="3/5", eps="1/10", psi=4, h="1/32")
    return _NADAM["field"]


def _gradient_nonzero(px, py):
    """Both components of the gradient of ``(x-1)^2/2 + x y/3 + y^4/4`` at ``(px, py)/4`` are
    nonzero: with eps outside the root, ``|g|`` is not smooth at 0."""
    px4, py4 = sp.Rational(px, 4), sp.Rational(py, 4)
    return px4 - 1 + py4 / 3 != 0 and px4 / 3 + py4 ** 3 != 0


def _both_paths(f, n, px, py, dps):
    """Whether ``f(n, (px, py)/4)`` at ``dps`` digits is the same in MPFR as with every MPFR
    kernel (the node tables' and the field's) switched off."""
    tables = f.sums.tables
    with mpmath.workdps(dps):
        theta0 = [mpmath.mpf(px) / 4, mpmath.mpf(py) / 4]
        fast = f(n, theta0)
        saved, tables._fast = tables._fast, None
        try:
            slow = _without_mpfr(f)(n, theta0)
        finally:
            tables._fast = saved
    return fast == slow


@settings(max_examples=examples(10))
@given(n=st.integers(0, 12), px=st.integers(-8, 8), py=st.integers(-8, 8),
       dps=st.integers(15, 50))
def test_nadam_running_products_run_in_mpfr_bit_for_bit(n, px, py, dps):
    """The running products (NAdam's mu_1 ... mu_t) no longer send its node tables back to
    mpmath: the MPFR path runs and gives the mpmath path's numbers exactly (the same
    multiplications in the same order, each correctly rounded at the same precision)."""
    assume(_gradient_nonzero(px, py))
    f = _nadam_field()
    assert f.sums.tables.has_fast and f._fast_kernel is not None
    assert _both_paths(f, n, px, py, dps)


_RMS = {}


@settings(max_examples=examples(10))
@given(n=st.integers(0, 12), px=st.integers(-8, 8), py=st.integers(-8, 8),
       dps=st.integers(15, 50))
def test_the_kernel_over_past_sums_runs_in_mpfr_bit_for_bit(n, px, py, dps):
    """torch's RMSprop with momentum, order 1: its field reads sums over past steps (the
    momentum buffer reads v).  The kernel that combines their values runs in MPFR and gives
    the all-mpmath path's numbers exactly (+, -, *, / and square roots, each correctly
    rounded at the same precision in both)."""
    if not _RMS:
        flow = derive(optimizers.torch_rmsprop(momentum=True), 1)
        _RMS["f"] = flow.lambdify((x - 1) ** 2 / 2 + x * y / 3 + y ** 4 / 4, [x, y],
                                  rho="3/5", eps="1/10", mu="3/10", h="1/32")
    assume(_gradient_nonzero(px, py))
    f = _RMS["f"]
    assert f.sums and f._fast_kernel is not None
    assert _both_paths(f, n, px, py, dps)


# -- the mini-batch field (orders 0 and 1) in MPFR ------------------------------------------
BATCHES = [(x - 1) ** 2 / 2 + x * y / 3 + y ** 4 / 4, x ** 2 / 3 + sp.sin(y) / 2 - x * y / 5,
           (x + y) ** 2 / 4 + y / 3]
_MINI = {}


def _mini_field(order, schedule):
    key = (order, tuple(schedule))
    if key not in _MINI:
        flow = derive(optimizers.adam(), order)
        vals = dict(beta=sp.Rational(1, 4), rho=sp.Rational(3, 5), eps=sp.Rational(1, 10),
                    h=sp.Rational(1, 16))
        _MINI[key] = (flow, vals, flow.lambdify(BATCHES, [x, y], schedule=list(schedule) or None,
                                                **{str(k): v for k, v in vals.items()}))
    return _MINI[key]


@settings(max_examples=examples(10))
@given(order=st.sampled_from([0, 1]),
       schedule=st.lists(st.integers(0, 2), min_size=10, max_size=10),
       n=st.integers(0, 9), px=st.integers(-6, 6), py=st.integers(-6, 6),
       dps=st.integers(15, 50))
def test_mini_batch_field_in_mpfr_equals_the_exact_field(order, schedule, n, px, py, dps):
    """Adam on three batches in a drawn order: the mpmath field runs in MPFR (every kernel of
    the point) and equals the exact field (SymPy, every past step added, 60 digits) to a few
    ulps of the working precision."""
    flow, vals, f = _mini_field(order, schedule)
    assert f._fast
    point = [sp.Rational(px, 4), sp.Rational(py, 4)]
    exact = [sp.N(e.xreplace({x: point[0], y: point[1]}), 60)
             for e in flow.field(BATCHES, [x, y], n=n, schedule=list(schedule),
                                 **{str(k): v for k, v in vals.items()})]
    with mpmath.workdps(dps):
        got = f(n, [mpmath.mpf(q.p) / q.q for q in point])
        scale = max([1] + [abs(mpmath.mpf(str(b))) for b in exact])
        tol = scale * mpmath.ldexp(1, -mpmath.mp.prec + 16)
        for a, b in zip(got, exact):
            assert isinstance(a, mpmath.mpf)
            assert abs(a - mpmath.mpf(str(b))) <= tol, (a, b)


@settings(max_examples=examples(10), deadline=None)
@given(schedule=st.one_of(st.none(), st.lists(st.integers(0, 2), min_size=10, max_size=10)),
       n=st.integers(0, 500), px=st.integers(-6, 6), py=st.integers(-6, 6),
       dps=st.integers(15, 35))
def test_mini_batch_order_2_in_mpfr_equals_mpmath_at_15_more_digits(schedule, n, px, py, dps):
    """Adam's order-2 mini-batch field (the sweep over past steps, and past the cyclic tail's
    start its closed-form stationary part) runs in MPFR at the working precision and equals
    the same field in mpmath at 15 more digits (its MPFR kernels switched off) to a few ulps
    (dps 15..35, n up to 500: past the tail's switch ``2 start + m``, 193..~400 steps).  (The
    sweep itself is checked against the exact field in test_minibatch_order2.)"""
    if schedule is not None:
        n %= len(schedule)
    flow, vals, f = _mini_field(2, schedule or ())
    sweep = f._order2
    assert sweep.fast
    with mpmath.workdps(dps):
        got = f(n, [mpmath.mpf(px) / 4, mpmath.mpf(py) / 4])
        tol = mpmath.ldexp(1, -mpmath.mp.prec + 16)
    sweep.fast = False
    try:
        with mpmath.workdps(dps + 15):
            want = f(n, [mpmath.mpf(px) / 4, mpmath.mpf(py) / 4])
    finally:
        sweep.fast = True
    for a, b in zip(got, want):
        assert isinstance(a, mpmath.mpf)
        assert abs(a - b) <= tol * max(1, abs(b)), (a, b)

"""Full batch through the one-batch route (symbolic/emit/field.py, ``OneBatchField``): a
full-batch flow whose memory sums have no closed form in n (no bias correction) is evaluated as
the mini-batch flow of ``[E]``, flat in n thanks to the cyclic tail.

Oracle: the exact SymPy field ``flow.field(E, params, **values)`` at a rational point, its
finite sums over past steps added term by term in mpmath by SymPy's own printer at 20 more
digits (not modeq's kernels).  Small decays put the tail start a few dozen steps in; every
case asserts that the closed-form tail was used (order 1: ``n >= tail.start``; order 2:
``n >= 2 tail.start + 1``, where the sweep switches to it)."""
import mpmath
import numpy as np
import pytest
import sympy as sp
import torch
from sympy.printing.pycode import MpmathPrinter
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from modeq.symbolic import derive, optimizers
from modeq.symbolic.emit.field import FullBatchField, OneBatchField
from modeq.symbolic.family import n as n_sym

x, y = sp.symbols("x y")
E = (x - 1) ** 2 / 2 + x * y / 3 + y ** 4 / 4 + sp.sin(x) / 5
MAKERS = {
    "rmsprop": lambda: optimizers.rmsprop(bias_correction=False),
    "adam": lambda: optimizers.adam(bias_correction=False),
    "adam, eps outside": lambda: optimizers.adam(eps_placement="outside",
                                                 bias_correction=False),
}
_FLOWS = {}


def _flow(name, order):
    if (name, order) not in _FLOWS:
        _FLOWS[name, order] = derive(MAKERS[name](), order)
    return _FLOWS[name, order]


def _values(flow, beta, rho):
    need = {str(s) for s in flow.optimizer.hyperparameters}
    every = dict(h=sp.Rational(1, 16), beta=beta, rho=rho, eps=sp.Rational(1, 100))
    return {k: v for k, v in every.items() if k in need or k == "h"}


def _oracle(flow, values, n, point, dps):
    """``flow.field`` (exact, ``n`` a symbol) at the rational ``point`` and step ``n``, its sums
    added term by term by SymPy's mpmath printer at ``dps`` digits.  Integer bases of powers
    with a symbolic exponent (``4**(-n)``) are passed as ``mpf`` arguments: printed as Python
    integers, ``4**(-49)`` would be a float."""
    exprs = [e.xreplace(point) for e in flow.field(E, [x, y], **values)]
    dummies = set().union(*[e.atoms(sp.Dummy) for e in exprs])
    names = {d: sp.Symbol(f"i{k}", integer=True) for k, d in enumerate(dummies)}  # l' -> i1
    bases = {p.base for e in exprs for p in e.atoms(sp.Pow)
             if p.base.is_Integer and not p.exp.is_number}
    names.update({b: sp.Symbol(f"base{b}") for b in bases})
    printer = MpmathPrinter({"fully_qualified_modules": False, "inline": True, "order": "none",
                             "allow_unknown_functions": True, "user_functions": {}})
    fn = sp.lambdify([n_sym, *(names[b] for b in bases)],
                     [e.xreplace(names) for e in exprs], modules="mpmath", printer=printer)
    with mpmath.workdps(dps):
        return fn(n, *(mpmath.mpf(int(b)) for b in bases))


def _tail_start(f, order):
    """The first step summed in closed form by the one-batch field ``f`` (after a call)."""
    field = f.batch_field
    if order >= 2:
        table = next(iter(field._tables.values()))
        return 2 * table.tail.start + 1
    return field._u_table(0).tail.start


def _check(name, order, beta, rho, px, py, past, dps):
    flow = _flow(name, order)
    values = _values(flow, beta, rho)
    f = flow.lambdify(E, [x, y], **values)
    assert isinstance(f, OneBatchField)
    with mpmath.workdps(dps):
        theta = [mpmath.mpf(px) / 8, mpmath.mpf(py) / 8]
        f(0, theta)
        n = _tail_start(f, order) + past
        got = f(n, theta)
        assert n >= _tail_start(f, order)                   # the closed-form tail was used
    exact = _oracle(flow, values, n, {x: sp.Rational(px, 8), y: sp.Rational(py, 8)}, dps + 20)
    with mpmath.workdps(dps + 20):
        scale = max(abs(v) for v in exact)
        err = max(abs(a - b) for a, b in zip(got, exact))
        assert err <= mpmath.mpf(10) ** -(dps - 3) * scale, (name, order, n, err, got, exact)


decays = st.sampled_from([sp.Rational(1, 8), sp.Rational(1, 5), sp.Rational(1, 4),
                          sp.Rational(1, 3)])
coordinate = st.integers(-8, 8)
nonzero = coordinate.filter(lambda v: v != 0)      # eps outside: g_y = y^3 + x/3 kept away from 0


@settings(max_examples=examples(8))
@given(name=st.sampled_from(sorted(MAKERS)), beta=decays, rho=decays, px=coordinate, py=nonzero,
       past=st.integers(0, 40), dps=st.sampled_from([15, 30]))
def test_order_1_equals_the_exact_field_past_the_tail_start(name, beta, rho, px, py, past, dps):
    _check(name, 1, beta, rho, px, py, past, dps)


@settings(max_examples=examples(2))
@given(rho=st.sampled_from([sp.Rational(1, 16), sp.Rational(1, 8)]), px=coordinate, py=nonzero,
       past=st.integers(0, 3))
def test_order_2_rmsprop_equals_the_exact_field_past_the_tail_start(rho, px, py, past):
    _check("rmsprop", 2, None, rho, px, py, past, 15)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adam", "adam, eps outside"])
def test_order_2_adam_equals_the_exact_field_past_the_tail_start(name):
    """Small decays: the oracle's double sums cost ``O(n^2)`` term by term."""
    _check(name, 2, sp.Rational(1, 64), sp.Rational(1, 32), 3, -5, 0, 15)


@pytest.mark.parametrize("order", [1, 2])
def test_bias_correction_and_stationary_keep_the_compiled_field(order):
    """Closed-form memory (bias correction; its h^2 sums are windowed) and stationary flows
    stay on the compiled full-batch field; so does a dtype other than float64."""
    vals = dict(h="1/16", beta="1/4", rho="1/4", eps="1/100")
    assert isinstance(derive(optimizers.adam(), order).lambdify(E, [x, y], **vals),
                      FullBatchField)
    flow = _flow("adam", order)
    assert isinstance(flow.lambdify(E, [x, y], stationary=True, **vals), FullBatchField)
    assert isinstance(flow.lambdify(E, [x, y], backend="numpy", dtype="float32", **vals),
                      FullBatchField)
    assert isinstance(flow.lambdify(E, [x, y], backend="numpy", dtype="float64", **vals),
                      OneBatchField)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("name", ["rmsprop", "adam, eps outside"])
def test_numpy_and_torch_equal_mpmath_in_the_full_batch_shapes(name, order):
    flow = _flow(name, order)
    values = _values(flow, sp.Rational(1, 4), sp.Rational(1, 5))
    fm = flow.lambdify(E, [x, y], **values)
    fn = flow.lambdify(E, [x, y], backend="numpy", **values)
    ft = flow.lambdify(E, [x, y], backend="torch", **values)
    points = np.array([[0.375, -0.25, 1.0], [-0.625, 0.5, 0.75]])
    with mpmath.workdps(30):
        fm(0, [0, 1])
        n = _tail_start(fm, order) + 7
        ref = np.array([[float(v) for v in fm(n, [mpmath.mpf(a), mpmath.mpf(b)])]
                        for a, b in points.T]).T
        out = fm(n, [mpmath.mpf(a) for a in points[:, 0]])
        assert isinstance(out, list) and all(isinstance(v, mpmath.mpf) for v in out)
    one = fn(n, points[:, 0])
    many = fn(n, points)
    tmany = ft(n, torch.tensor(points))
    assert one.shape == (2,) and many.shape == (2, 3) and tuple(tmany.shape) == (2, 3)
    assert ft(n, torch.tensor(points[:, 0])).shape == (2,)
    assert np.allclose(many, ref, rtol=1e-12, atol=0)
    assert np.allclose(one, ref[:, 0], rtol=1e-12, atol=0)
    assert np.allclose(tmany.numpy(), ref, rtol=1e-12, atol=0)


def test_late_bound_step_size_equals_the_field_built_with_it():
    """An order study's ``late=("h",)``: the mini-batch field is built at ``bind``."""
    flow = _flow("adam", 1)
    values = _values(flow, sp.Rational(1, 4), sp.Rational(1, 3))
    late = flow.lambdify(E, [x, y], late=("h",), **{k: v for k, v in values.items() if k != "h"})
    with pytest.raises(ValueError, match="bind"):
        late(3, [0.1, 0.2])
    direct = flow.lambdify(E, [x, y], **values)
    with mpmath.workdps(30):
        theta = [mpmath.mpf(3) / 8, mpmath.mpf(-5) / 8]
        for n in (2, 300):
            assert late.bind(h=values["h"])(n, theta) == direct(n, theta)


_NADAM_VALUES = dict(beta="1/4", rho="3/5", eps="1/10", psi="1", h="1/64")
_NADAM_LOSS = (x - 1) ** 2 / 2 + y ** 2 / 4 + x * y / 5 + x ** 4 / 24


@pytest.fixture(scope="module")
def nadam_order_2():
    """NAdam's order-2 flow and its compiled field on ``_NADAM_LOSS`` (compiled once: about
    10 s)."""
    flow = derive(optimizers.torch_nadam(), 2)
    return flow, flow.lambdify(_NADAM_LOSS, [x, y], **_NADAM_VALUES)


@settings(max_examples=examples(2), deadline=None)
@given(N=st.integers(0, 6), point=st.tuples(st.integers(-3, 3), st.integers(-3, 3)))
def test_order_2_of_a_step_reading_n_is_the_step_indexed_flow_of_one_batch(nadam_order_2, N,
                                                                           point):
    """NAdam exact in ``n`` at order 2 (full batch): ``lambdify`` evaluates it as the
    step-indexed mini-batch flow of ``[E]`` (node tables, ``O(n)`` per call where the
    full-batch sums cost ``O(n^2)``).  It equals the exact full-batch field -- the full-batch
    derivation, its sums and products added up by SymPy at 50 digits -- to 1e-35."""
    from modeq.symbolic.emit.step_indexed import StepIndexedField
    flow, field = nadam_order_2
    th = [sp.Rational(point[0] + 9, 8), sp.Rational(point[1] + 5, 8)]   # no vanishing gradient
    exact = flow.field(_NADAM_LOSS, [x, y], n=N, at=th, **_NADAM_VALUES)
    with mpmath.workdps(40):
        assert isinstance(field, StepIndexedField)
        got = field(N, [mpmath.mpf(t.p) / t.q for t in th])
        for a, e in zip(got, exact):
            want = mpmath.mpf(str(sp.N(e, 50)))
            assert abs(a - want) <= mpmath.mpf(10) ** -35 * (1 + abs(want)), (N, a, want)

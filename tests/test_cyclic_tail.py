"""The closed-form stationary tail of cyclic mini-batch memory sums (symbolic/emit/cyclic_tail.py).

Oracles: the moment sums written out term by term in exact rationals, and the mini-batch field
with every step of its window added one by one (the tail switched off; that path is checked
against the exact ``flow.field`` in test_minibatch*.py).  The tail must agree to the working
precision, be taken where the decays allow it (then a call costs the same at ``n = 5 10^4`` and
``10^5``), and never be taken for an explicit schedule."""
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from counting import Counted
from conftest import examples
from modeq.symbolic import derive, optimizers
from modeq.symbolic.emit.cyclic_tail import period_moments

x, y = sp.symbols("x y")
LOSSES = [(x - 1) ** 2 / 2 + y ** 4 / 4 + sp.sin(x) / 5, x * y / 3 + (y + 1) ** 2 / 2,
          (x + y) ** 2 / 4 + x ** 4 / 8, x ** 2 / 3 + sp.cos(y) / 4 + y / 5]
MAKERS = {
    "adam": lambda: optimizers.adam(),
    "adam, no bias correction": lambda: optimizers.adam(bias_correction=False),
    "adam, eps outside": lambda: optimizers.adam(eps_placement="outside"),
    "rmsprop": lambda: optimizers.rmsprop(),
    "heavy_ball": lambda: optimizers.heavy_ball(),
}
_FLOWS = {}


def _flow(name, order):
    if (name, order) not in _FLOWS:
        _FLOWS[name, order] = derive(MAKERS[name](), order)
    return _FLOWS[name, order]


@settings(max_examples=examples(40))
@given(num=st.integers(0, 99), den=st.sampled_from([1, 2, 3, 10, 100]), T=st.integers(0, 400),
       prec=st.sampled_from([53, 103, 200]))
def test_period_moments_equal_the_sums_written_out(num, den, T, prec):
    z = Fraction(num % (den * 100), den * 100) if den > 1 else Fraction(num, 100)
    with mpmath.workprec(prec):
        zp = mpmath.mpf(z.numerator) / z.denominator
        got = period_moments(zp, T, prec)
    man, exp = zp.man_exp                       # the sums of the rounded input, exactly
    zq = Fraction(int(man)) * Fraction(2) ** int(exp) if man else Fraction(0)
    exact = [sum(Fraction(t) ** k * zq ** t for t in range(T + 1)) for k in range(3)]
    with mpmath.workprec(prec):
        for g, e in zip(got, exact):
            ref = mpmath.mpf(e.numerator) / e.denominator
            assert abs(g - ref) <= mpmath.mpf(2) ** -(prec - 4) * max(abs(ref), 1), (z, T, prec)


def _field(name, order, m, beta, rho, backend):
    opt = MAKERS[name]()
    need = {str(s) for s in opt.hyperparameters}
    values = dict(h=sp.Rational(1, 16), beta=beta, rho=rho, eps=sp.Rational(1, 100))
    return _flow(name, order).lambdify(LOSSES[:m], [x, y], backend=backend,
                                       **{k: v for k, v in values.items() if k in need or k == "h"})


def _tail_of(f):
    """The tail object the field uses at the current precision (and a setter for it)."""
    if f.flow.order >= 2:
        table = next(iter(f._tables.values()))
        return table.tail, lambda t: setattr(table, "tail", t)
    tab = f._u_table(0)
    return tab.tail, lambda t: setattr(tab, "tail", t)


def _point(px, py, backend):
    if backend == "mpmath":
        return [mpmath.mpf(px) / 8, mpmath.mpf(py) / 8]
    if backend == "torch":
        return torch.tensor([px / 8, py / 8], dtype=torch.float64)
    return np.array([px / 8, py / 8])


def _compare(f, n, point, backend, prec):
    with_tail = f(n, point)
    tail, put = _tail_of(f)
    put(None)
    try:
        every_step = f(n, point)
    finally:
        put(tail)
    a = [v if backend == "mpmath" else float(v) for v in with_tail]
    b = [v if backend == "mpmath" else float(v) for v in every_step]
    scale = max(1, max(abs(v) for v in b))
    err = max(abs(u - v) for u, v in zip(a, b))
    assert err <= 2.0 ** -(prec - 10) * scale, (n, err, a, b)


decays = st.sampled_from([sp.Rational(1, 4), sp.Rational(1, 2), sp.Rational(3, 5)])
# steps past the tail start: the first periods (the direct part still adds the older steps)
# as often as long tails
past_steps = st.one_of(st.integers(0, 10), st.integers(0, 400))
# y != 0: the first batch's y-gradient is y^3, and with eps outside the root the field is
# singular where a second moment vanishes (at step 0 only the first batch has been seen)
coordinate = st.integers(-8, 8)
nonzero_coordinate = coordinate.filter(lambda v: v != 0)


@settings(max_examples=examples(12))
@given(name=st.sampled_from(sorted(MAKERS)), m=st.integers(2, 4), beta=st.sampled_from(
       [sp.S.Zero, sp.Rational(1, 4), sp.Rational(1, 2), sp.Rational(3, 5)]), rho=decays,
       past=past_steps, backend=st.sampled_from(["mpmath", "numpy", "torch"]),
       dps=st.sampled_from([15, 30]), px=coordinate, py=nonzero_coordinate)
def test_order_1_tail_equals_every_step_added(name, m, beta, rho, past, backend, dps, px, py):
    f = _field(name, 1, m, beta, rho, backend)
    with mpmath.workdps(dps):
        point = _point(px, py, backend)
        prec = mpmath.mp.prec if backend == "mpmath" else 53
        f(0, point)
        tail, _ = _tail_of(f)
        assert tail is not None
        for n in range(tail.start + past, tail.start + past + m + 1):     # every residue
            _compare(f, n, point, backend, prec)


@pytest.mark.slow
@settings(max_examples=examples(6))
@given(name=st.sampled_from(sorted(MAKERS)), m=st.integers(2, 3), beta=st.sampled_from(
       [sp.S.Zero, sp.Rational(1, 4), sp.Rational(1, 2)]), rho=decays,
       past=past_steps, backend=st.sampled_from(["mpmath", "numpy", "torch"]),
       px=coordinate, py=nonzero_coordinate)
def test_order_2_tail_equals_every_step_added(name, m, beta, rho, past, backend, px, py):
    f = _field(name, 2, m, beta, rho, backend)
    with mpmath.workdps(15):
        point = _point(px, py, backend)
        f(0, point)
        tail, _ = _tail_of(f)
        assert tail is not None
        first = 2 * tail.start + m + past
        for n in range(first, first + m + 1):                            # every residue
            _compare(f, n, point, backend, 53)


@pytest.mark.parametrize("order", [1, 2])
def test_a_call_costs_the_same_at_n_fifty_thousand_and_a_hundred_thousand(order):
    """Counted kernel calls, not time: the stationary part is one call per residue."""
    f = _field("adam", order, 3, sp.Rational(9, 10), sp.Rational(99, 100), "mpmath")
    kernels = f._order2._F0 if order >= 2 else f._F0
    calls = [0]
    kernels[:] = [Counted(k, calls, 0) for k in kernels]
    with mpmath.workdps(30):
        point = [mpmath.mpf(1) / 3, mpmath.mpf(-1) / 5]
        counts = []
        for n in (5 * 10 ** 4, 10 ** 5):
            calls[0] = 0
            f(n, point)
            counts.append(calls[0])
    assert counts[0] == counts[1] <= 2 * 3 + 1, counts


def test_an_explicit_schedule_adds_every_step_of_its_window():
    """A schedule the user wrote is not assumed periodic, even where it is."""
    f = _flow("adam", 1).lambdify(LOSSES[:3], [x, y], schedule=[0, 1, 2] * 400,
                                  h=sp.Rational(1, 16), beta=sp.Rational(1, 2),
                                  rho=sp.Rational(1, 2), eps=sp.Rational(1, 100))
    f(1000, [mpmath.mpf(1) / 3, mpmath.mpf(-1) / 5])
    assert f._u_table(0).tail is None

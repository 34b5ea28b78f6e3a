"""Regression tests: every failure the property-based tests (tests/test_properties_*.py) found,
pinned as a plain test with the shrunk example."""
import sympy as sp

from modeq.symbolic import EMA, beta, g, theta


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

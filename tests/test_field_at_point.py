"""``flow.field(..., at=point)``: the field's value at a point, the loss's derivatives taken
there before any sum is written out, equals the field as an expression in the parameters
evaluated at the point afterwards (50 digits)."""
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import mpmath

from conftest import examples
from modeq.symbolic import EMA, Optimizer, derive, g, optimizers, theta

x, y = sp.symbols("x y")
E = (x - 1) ** 2 / 2 + sp.sin(y) * x / 3 + y ** 2 + x * y ** 3 / 7
BATCHES = [E + (x + y) / 4, E - x / 4 + y ** 2 / 8, E - y / 4 + x * y / 8]
# losses with rational derivatives: the exact field at a rational point is then algebraic, and
# SymPy's evalf of it is quick and sure (sin(2/3) inside deep cancellations is neither)
C = (x - 1) ** 2 / 2 + y ** 4 / 4 + x * y / 3
POLYNOMIAL = [C + (x + y) / 4, C - x / 4 + y ** 2 / 8, C - y / 4 + x * y / 8]
VALUES = {"h": "1/16", "beta": "3/4", "rho": "9/10", "eps": "1/50", "lam": "1/5"}


def adamw_like():
    """The parameter in the step (decoupled decay): the field reads theta itself."""
    b, r, e, lam = sp.symbols("beta rho eps lam", positive=True)
    m = EMA("m", decay=b, of=g, normalized=True, bias_correction=True)
    v = EMA("v", decay=r, of=g ** 2, normalized=True, bias_correction=True)
    return Optimizer("adamw_like_at", states=[m, v], step=m / sp.sqrt(v + e) + lam * theta)


FLOWS = {
    "gd-2": lambda: derive(optimizers.gd(), 2),
    "heavy_ball-1": lambda: derive(optimizers.heavy_ball(), 1),
    "adam-1": lambda: derive(optimizers.adam(), 1),
    "adam-2": lambda: derive(optimizers.adam(), 2),
    "rmsprop-1": lambda: derive(optimizers.rmsprop(), 1),
    "adamw_like-1": lambda: derive(adamw_like(), 1),
    "adamw_like-2": lambda: derive(adamw_like(), 2),
}
_MADE = {}


def _flow(name):
    if name not in _MADE:
        _MADE[name] = FLOWS[name]()
    return _MADE[name]


def _values(flow):
    names = {str(s) for s in flow.optimizer.hyperparameters} | {"h"}
    return {k: v for k, v in VALUES.items() if k in names}


coordinate = st.fractions(min_value=-3, max_value=3, max_denominator=12)


@settings(max_examples=examples(6), deadline=None)
@given(name=st.sampled_from(sorted(FLOWS)), mini=st.booleans(), n=st.integers(0, 4),
       point=st.tuples(coordinate, coordinate), as_text=st.booleans())
def test_the_field_at_a_point_is_the_field_evaluated_there(name, mini, n, point, as_text):
    flow = _flow(name)
    if mini and flow.order >= 2 and flow.optimizer.states:
        n = min(n, 2)                  # the exact order-2 mini-batch sums grow fast with n
    losses = BATCHES if mini else E
    values = _values(flow)
    at = [f"{p.numerator}/{p.denominator}" if as_text else sp.Rational(p.numerator, p.denominator)
          for p in point]
    got = flow.field(losses, [x, y], n=n, at=at, **values)
    pt = {x: sp.Rational(point[0].numerator, point[0].denominator),
          y: sp.Rational(point[1].numerator, point[1].denominator)}
    want = flow.field(losses, [x, y], n=n, **values).xreplace(pt)
    assert not any(e.free_symbols for e in got)
    for a, b in zip(got, want):
        assert abs(sp.N(a - b, 50)) <= sp.Float(10) ** -40 * (1 + abs(sp.N(b, 50)))


def test_a_point_leaves_the_compiled_fields_of_the_same_losses_alone():
    """The order-2 mini-batch field at a point goes through the compiled sweep of its losses;
    a field compiled afterwards for the same losses is still a function of the point."""
    flow = _flow("adamw_like-2")
    values = _values(flow)
    a, b = [sp.Rational(1, 2), sp.Rational(-1, 3)], [sp.Rational(-5, 4), sp.Rational(2, 3)]
    flow.field(POLYNOMIAL, [x, y], n=3, at=a, **values)
    f = flow.lambdify(POLYNOMIAL, [x, y], **values)
    want = flow.field(POLYNOMIAL, [x, y], n=3, at=b, **values)
    with mpmath.workdps(40):
        got = f(3, [mpmath.mpf(t.p) / t.q for t in b])
        for u, w in zip(got, want):
            assert abs(u - mpmath.mpf(str(sp.N(w, 50)))) < mpmath.mpf(10) ** -30


@pytest.mark.parametrize("at, message", [
    ([1], "one value per parameter"),
    (3, "one value per parameter"),
    ([1, float("inf")], "not a finite rational"),
    ([1, float("nan")], "not a finite rational"),
    ([True, 1], "not a finite rational"),
    ([1, "x"], "not a finite rational"),
    ([1, sp.sqrt(2)], "not a finite rational"),
])
def test_a_bad_point_is_refused_naming_at(at, message):
    with pytest.raises(ValueError, match=f"at.*{message}"):
        derive(optimizers.gd(), 1).field(E, [x, y], at=at)


@settings(max_examples=examples(10), deadline=None)
@given(point=st.tuples(st.integers(-2, 2), st.integers(-2, 2)))
def test_a_factor_zero_at_the_point_gives_zero_unless_another_is_infinite(point):
    """Lowering at a point gives 0 for a product with a factor 0 there (a Hessian or
    third-derivative entry 0 included): against SymPy's own arithmetic on the same components,
    which gives 0, or ``nan`` where another factor is infinite (``0 * zoo``), kept."""
    from modeq.symbolic.components import LossProvider, lower_vector
    from modeq.symbolic.operators import D3, FULL, Grad, Hess
    loss = x ** 2 / 2 + y ** 3 / 3            # H_xy = 0 everywhere, g = 0 at points of the axes
    at = dict(zip((x, y), point))
    grad = [sp.diff(loss, v).subs(at) for v in (x, y)]
    hess = [[sp.diff(loss, a, b).subs(at) for b in (x, y)] for a in (x, y)]
    d3 = [[[sp.diff(loss, a, b, c).subs(at) for c in (x, y)] for b in (x, y)] for a in (x, y)]
    provider = LossProvider(loss, [x, y], None, list(point))
    G = Grad(FULL)
    cases = [
        (G * (1 + 1 / (G - theta)),
         [grad[j] * (1 + 1 / (grad[j] - point[j])) for j in range(2)]),
        (Hess(FULL, G), [sum(hess[j][i] * grad[i] for i in range(2)) for j in range(2)]),
        (Hess(FULL, G * (1 + 1 / (G - theta))),        # an entry 0 times an infinity: nan
         [sum(hess[j][i] * grad[i] * (1 + 1 / (grad[i] - point[i])) for i in range(2))
          for j in range(2)]),
        (D3(FULL, G, G) * theta,
         [sum(d3[j][i][k] * grad[i] * grad[k] for i in range(2) for k in range(2)) * point[j]
          for j in range(2)])]
    for expr, want in cases:
        got = list(lower_vector(expr, provider))
        assert [str(v) for v in got] == [str(sp.sympify(w)) for w in want], (expr, got, want)

"""Regressions of the emit layer, each against the exact symbolic field (an independent path:
SymPy lowering with the memory sums unrolled, no compiled code)."""
import mpmath
import pytest
import sympy as sp

from modeq.symbolic import derive, optimizers
from modeq.symbolic.emit.kernel import Kernel

x, y = sp.symbols("x y")
E = x**2 / 2 + y**4 / 4 + x * y / 3
POINT = {x: sp.Rational(1, 2), y: sp.Rational(1, 5)}


def _exact(flow, n, values):
    F = flow.field(E, [x, y], n=n, **values)
    return [sp.N(e.xreplace(POINT).doit(), 40) for e in F]


@pytest.mark.parametrize("n", [1, 4])
def test_nested_memory_products_inside_sums(n):
    """NAdam's momentum product inside a memory sum: the product was hoisted out of the sum's
    loop and raised NameError."""
    opt = optimizers.torch_nadam()
    flow = derive(opt, 1)
    values = {str(s): sp.Rational(1, 2) for s in opt.hyperparameters}
    values["h"] = sp.Rational(1, 16)
    with mpmath.workdps(40):
        got = flow.lambdify(E, [x, y], **values)(n, [POINT[x], POINT[y]])
        ref = _exact(flow, n, values)
        assert max(abs(sp.Float(a, 40) - b) for a, b in zip(got, ref)) < 1e-30


def _adabelief():
    from modeq.symbolic import EMA, Optimizer, g
    b, r, e = sp.symbols("beta rho eps", positive=True)
    m = EMA("m", decay=b, of=g)
    s = EMA("s", decay=r, of=(g - m) ** 2)
    return Optimizer("adabelief", [m, s], m / (sp.sqrt(s) + e))


@pytest.mark.parametrize("make", [_adabelief,
                                  lambda: optimizers.torch_sgd(momentum=True, dampening=True)])
def test_mini_batch_refuses_what_its_grouping_does_not_cover(make):
    """A state reading another state, or started at its first input, would be grouped wrongly:
    it must be refused, not evaluated."""
    flow = derive(make(), 1)
    with pytest.raises(NotImplementedError, match="mini batch"):
        flow.grouped_terms(2)


def test_a_power_of_a_sum_of_contractions_has_a_matrix_free_form():
    """Found by the emitted-form property: (H.g + H.theta)**2 in an F2 was refused as 'a
    contraction enters non-polynomially'."""
    from modeq.symbolic.emit import matrix_free, verify
    from modeq.symbolic.family import theta
    from modeq.symbolic.operators import FULL, Grad, Hess
    g = Grad(FULL)
    expr = g ** 4 / 3 - (Hess(FULL, g) + Hess(FULL, theta)) ** 2 / 3
    form = matrix_free(expr, "F2")
    assert form.n_hvp == 2
    assert all(ok for _, ok in verify(form, (1, 2)))



def test_sums_bound_by_primed_indices_compile():
    """Adam without bias correction, order 2, keeps nested memory sums bound by an index named
    ``l'``, which was printed as is (not a Python name): its lambdified field was a
    SyntaxError.  Here the smallest such sum, against its value by hand."""
    from modeq.symbolic.emit.kernel import Kernel
    from modeq.symbolic.family import n
    l2 = sp.Dummy("l'", integer=True, nonnegative=True)
    k = sp.Dummy("k", integer=True, nonnegative=True)
    expr = sp.Sum(sp.Sum(l2 ** 2 * x, (l2, k, n - 1)), (k, 0, n))
    with mpmath.workdps(30):
        got = Kernel([expr], [n, x], "mpmath", None, True)(5, mpmath.mpf(2))[0]
    assert got == 2 * sum(j ** 2 for kk in range(6) for j in range(kk, 5))


def test_step_products_are_the_direct_products_at_every_limit_and_precision():
    """Products over a step index are kept as running products (emit.products): every value,
    asked in any order of upper limits and at two precisions, is the left-to-right product of
    its factors (mpmath.fprod, bit for bit) and equals the exact product to the precision."""
    from modeq.symbolic.emit import Kernel
    i, n = sp.Symbol("i", integer=True, positive=True), sp.Symbol("n", integer=True)
    a = sp.Symbol("a", positive=True)
    factor = a * (1 - sp.Rational(24, 25) ** (i * sp.Rational(1, 250)) / 2)
    kernel = Kernel([sp.Product(factor, (i, 1, n + 1))], [n, a], "mpmath")
    for dps in (15, 40):
        with mpmath.workdps(dps):
            for N in (7, 3, 30, 0, 12, 30):
                av = mpmath.mpf(9) / 10
                direct = mpmath.fprod(av *
                                      (1 - (mpmath.mpf(24) / 25) ** (mpmath.mpf(k) / 250) / 2)
                                      for k in range(1, N + 2))
                got = kernel(N, av)[0]
                assert got == direct, (dps, N)
                exact = sp.Product(factor.subs(a, sp.Rational(9, 10)), (i, 1, N + 1)).doit()
                assert abs(got - mpmath.mpf(sp.N(exact, dps + 10))) <= abs(got) * 2 ** (
                    8 - mpmath.mp.prec)



@pytest.mark.parametrize("backend", ["mpmath", "numpy", "torch", "exact"])
def test_a_sum_of_thousands_of_terms_compiles(backend):
    """Python's compiler nests ``a + b + ...`` (an order-2 field with weight decay had a sum
    too long for it: RecursionError); the printed sum is a tuple summed.  Value: the series of
    ``log 2`` at ``x = 1/2``, against SymPy's exact sum of the same terms."""
    x = sp.Symbol("x")
    e = sp.Add(*[x ** k / k for k in range(1, 3001)])
    kernel = Kernel([e], [x], backend)
    half = sp.Rational(1, 2)
    if backend == "torch":
        import torch
        got = float(kernel(torch.tensor(0.5, dtype=torch.float64))[0])
    else:
        got = float(kernel(half if backend == "exact" else 0.5)[0])
    assert abs(got - float(e.subs(x, half))) < 1e-14


@pytest.mark.parametrize("inner, outer", [("k'", "l'"), ("k", "l'"), ("k'", "l")])
@pytest.mark.parametrize("shape", ["product", "power", "difference"])
def test_renamed_outer_index_in_an_inner_limit(inner, outer, shape):
    """A double sum whose inner limit reads the outer index, the indices named as no Python
    identifier (``l'``, as the derivation names them): renamed for printing, the outer one
    was renamed in the summand but not in the inner limit (AdaBelief's order-2 kernel read an
    unbound ``l'``).  Against SymPy's sum written out, ``n = 0..4``."""
    n = sp.Symbol("n", integer=True, nonnegative=True)
    k, l = sp.Dummy(inner, integer=True), sp.Dummy(outer, integer=True)
    f = {"product": k * l + 1, "power": sp.Rational(1, 2) ** (l - k), "difference": l - k}[shape]
    e = sp.Sum(f, (k, 0, l - 1), (l, 0, n))
    kernel = Kernel([e], [n], "exact")
    for N in range(5):
        assert kernel(N)[0] == e.xreplace({n: N}).doit(), (N, e)


@pytest.mark.parametrize("backend", ["mpmath", "numpy", "torch"])
@pytest.mark.parametrize("stationary", [True, False])
def test_a_gradient_component_zero_gives_a_finite_order_1_field(backend, stationary):
    """Adam with eps outside the root: ``F1`` holds ``|g|`` as ``g**2/sqrt(g**2)``, which read
    0/0 at a point where a gradient component is 0 (here ``dE/dy = 0`` on ``y = 0``).  The
    field is finite there and equals its limit from both sides (mpmath at ``y = +-1e-30``);
    order 2, whose ``F2`` holds ``g/|g|``, says so by name instead of a bare
    ZeroDivisionError."""
    x, y = sp.symbols("x y")
    E = (x - 1) ** 2 / 2 + y ** 2 / 2 + x ** 4 / 24 + y ** 4 / 12 + x * y ** 2 / 5
    opt = optimizers.adam(eps_placement="outside")
    vals = dict(beta="1/4", rho="1/3", eps="1/100", h="1/10")
    n = None if stationary else 3
    with mpmath.workdps(40):
        ref = derive(opt, 1).lambdify(E, [x, y], backend="mpmath", stationary=stationary,
                                      **vals)
        sides = [ref(n, [sp.Rational(1, 2), mpmath.mpf(s) * 10 ** -30]) for s in (1, -1)]
        f = derive(opt, 1).lambdify(E, [x, y], backend=backend, stationary=stationary, **vals)
        got = [float(v) for v in f(n, [0.5, 0.0])]
    for side in sides:
        assert got == pytest.approx([float(v) for v in side], rel=1e-12, abs=1e-15)
    if backend == "mpmath" and stationary:
        f2 = derive(opt, 2).lambdify(E, [x, y], backend="mpmath", stationary=True, **vals)
        with pytest.raises(ValueError, match="divides by zero .* g/\\|g\\|"):
            f2(None, [sp.Rational(1, 2), 0])

"""Nested memory sums by node tables (symbolic/emit/nested_sums.py) against brute-force loops.

The oracle adds every term of every sum one by one in exact rationals (a loop over
``range(lo, hi + 1)``, the meaning the printed code gives a sum); the node tables must give the
same rational exactly, for sums generated at random in the shapes the derivation produces:
geometric weights in enclosing indices, lower limits at an enclosing index, products of inner
sums, limits that are not affine or ranges that may run backwards (those keep their loops).
"""
from fractions import Fraction

import mpmath
import pytest
import sympy as sp
from hypothesis import example, given, settings, strategies as st

from conftest import examples
from modeq.symbolic.emit.nested_sums import NestedSums, _Step

n = sp.Symbol("n", integer=True)
x = sp.Symbol("x")
RATES = [sp.Rational(1, 2), sp.Rational(2, 3), sp.Rational(3, 10), sp.Rational(5, 4)]


def brute(e, env):
    """``e`` with every sum added term by term (exact)."""
    if isinstance(e, sp.Sum):
        f, limits = e.function, list(e.limits)
        if len(limits) > 1:
            f = sp.Sum(f, *limits[:-1])
        j, lo, hi = limits[-1]
        lo, hi = int(brute(lo, env)), int(brute(hi, env))
        return sp.Add(*[brute(f, {**env, j: sp.Integer(v)}) for v in range(lo, hi + 1)])
    if e in env:
        return env[e]
    if not e.args:
        return e
    return e.func(*[brute(a, env) for a in e.args])


D0, D1 = sp.Function("_D0"), sp.Function("_D1")
# per-step data of the float-table tests: three batches in a fixed non-cyclic order
FLOAT_ROWS = [[0.5, -1.25], [1.5, 0.75], [-0.25, 2.0]]


def float_batch(i):
    return (7 * i) % 3


@st.composite
def nested_sum(draw, scope=(), depth=0, data=False):
    """A sum over ``j`` with limits from the enclosing indices ``scope`` (and ``n``), its summand
    a product of a function of ``j``, geometric weights and up to two inner sums (sometimes over
    the enclosing index's own symbol, which it then shadows); ``data``:
    also per-step data ``_D0(j)``, ``_D1(j)`` (a mini-batch flow's derivatives of step ``j``),
    alone or mixed with an enclosing index (a loop then reads them)."""
    j = sp.Dummy(f"j{depth}", integer=True)
    if scope and draw(st.integers(0, 4)) == 0:
        j = scope[-1]              # the enclosing index reused, shadowed inside this sum
    outer = list(scope) + [n]
    lo = draw(st.sampled_from([sp.Integer(0), sp.Integer(1)] + [v for v in scope]
                              + [v + 1 for v in scope]))
    top = draw(st.sampled_from(outer))
    hi = top + draw(st.integers(-2, 0))
    if draw(st.integers(0, 9)) == 0:
        hi = 2 * top                          # not affine with coefficient 1: still exact
    f = draw(st.sampled_from([1 / (2 + sp.Rational(1, 3) ** j),
                              (j + 1) * x, sp.Integer(1), 1 / (j + 3) + x]))
    if data:
        f *= draw(st.sampled_from([D0(j), D1(j) + x, D0(j) ** 2]
                                  + [1 / (3 + D1(j) ** 2 + v) for v in scope]))
    for _ in range(draw(st.integers(0, 2))):
        rate = draw(st.sampled_from(RATES))
        v = draw(st.sampled_from(outer))
        f *= rate ** (v - j) if draw(st.booleans()) else rate ** j
    if scope and draw(st.integers(0, 3)) == 0:
        # a product of a function of j and one of an enclosing index, multiplied out (as a bias
        # correction arrives): it separates once factored
        v = draw(st.sampled_from(scope))
        f *= 1 / sp.expand((2 + draw(st.sampled_from(RATES)) ** j)
                           * (3 + draw(st.sampled_from(RATES)) ** v))
    if depth < 2:
        for _ in range(draw(st.integers(0 if depth else 1, 2))):
            inner = draw(nested_sum(scope=tuple(scope) + (j,), depth=depth + 1, data=data))
            f = f * inner if draw(st.booleans()) else f + inner * x
    return sp.Sum(f, (j, lo, hi))


_K = sp.Dummy("j1", integer=True)
_J = sp.Dummy("j0", integer=True)


@settings(max_examples=examples(60), deadline=None)
@given(sums=st.lists(nested_sum(), min_size=1, max_size=2), N=st.integers(0, 7),
       X=st.fractions(-2, 2, max_denominator=5))
# found by the long profile: the peeled last term (k = n) reads n outside the limits, a float
# in exact arithmetic when n came as a Python int
@example(sums=[sp.Sum(1 / (_K + 3) + x * sp.Sum(1 / (2 + sp.Rational(1, 3) ** _J), (_J, _K, n - 2)),
                      (_K, 0, n))], N=0, X=Fraction(0))
# a sum mixing j and an enclosing index whose terms share a power in all but one term (no
# common factor: factoring must give up, not fail) and one where all share it
@example(sums=[sp.Sum(sp.Sum(x / ((2 + _J) ** 2 * (2 + _K) + _K)
                             + x / ((2 + _J) ** 2 * sp.Rational(1, 2) ** _K + (2 + _J) ** 2),
                             (_J, 0, _K)), (_K, 0, n))], N=4, X=Fraction(1, 2))
def test_node_tables_equal_the_loops_exactly(sums, N, X):
    X = sp.Rational(X.numerator, X.denominator)
    nested = NestedSums(sums, [n, x], n, "exact")
    assert nested(N, X) == [brute(s, {n: sp.Integer(N), x: X}) for s in sums]


def copied(e):
    """``e`` rebuilt with every symbol a new object, equal to the old one but not the same (as
    SymPy's cache hands them out once it has evicted a symbol): one leaf, one copy."""
    if isinstance(e, sp.Dummy):
        return sp.Dummy(e.name, dummy_index=e.dummy_index, **e.assumptions0)
    if isinstance(e, sp.Symbol):
        return sp.Symbol.__xnew__(sp.Symbol, e.name, **e.assumptions0)
    if not e.args:
        return e
    return e.func(*[copied(a) for a in e.args])


@settings(max_examples=examples(30), deadline=None)
@given(sums=st.lists(nested_sum(), min_size=1, max_size=2), N=st.integers(0, 7),
       X=st.fractions(-2, 2, max_denominator=5))
def test_an_index_is_known_by_equality_not_by_identity(sums, N, X):
    """Found by CI: a weight ``r^(n-k)`` whose ``k`` was equal to the sum's index but another
    object was shifted as if it were an enclosing index, leaving ``k`` free in the kernel."""
    X = sp.Rational(X.numerator, X.denominator)
    sp.core.cache.clear_cache()
    nested = NestedSums([copied(s) for s in sums], [n, x], n, "exact")
    assert nested(N, X) == [brute(s, {n: sp.Integer(N), x: X}) for s in sums]


_F = D0(_J) / (2 + sp.Rational(1, 3) ** _J)


@settings(max_examples=examples(40), deadline=None)
@given(sums=st.lists(nested_sum(data=True), min_size=1, max_size=2), N=st.integers(0, 7),
       schedule=st.lists(st.integers(0, 2), min_size=8, max_size=8),
       X=st.fractions(-2, 2, max_denominator=5))
# found by the long profile: a loop kept (its range may run backwards) over the symbol of the
# enclosing sum; its per-step data was read as the enclosing step's
@example(sums=[sp.Sum(_F * sp.Sum(_F, (_J, _J, n)), (_J, 0, 2 * n))], N=1,
         schedule=[0, 1, 0, 0, 0, 0, 0, 0], X=Fraction(0))
def test_node_tables_read_per_step_data_exactly(sums, N, schedule, X):
    """Per-step data (step ``k`` reads ``rows[batch(k)]``, the schedule repeated), in
    recurrences and in the loops that keep them, against every term added up with the data
    looked up (exact)."""
    X = sp.Rational(X.numerator, X.denominator)
    rows = [[sp.Rational(b + 1, 3), sp.Rational(1, b + 2) - X] for b in range(3)]
    nested = NestedSums(sums, [n, x], n, "exact")

    def batch(k):
        return schedule[k % len(schedule)]

    def look_up(e):
        return e.replace(lambda a: isinstance(a, sp.core.function.AppliedUndef),
                         lambda a: rows[batch(int(a.args[0]))][int(a.func.__name__[2:])])
    want = [look_up(brute(s, {n: sp.Integer(N), x: X})) for s in sums]
    assert nested(N, X, data=(rows, batch)) == want


def test_the_derivations_shape_is_lowered_to_prefix_nodes():
    """``sum_k mu^(n-k) A_k sum_{l=k}^{n-1} B_l``, ``B_l = sum_{j<=l} mu^(l-j) c_j``: every sum
    becomes a node with a recurrence (no loop is left), and the cost is linear in ``n``: the
    summands are evaluated O(n) times, not O(n^3)."""
    k, l, j = (sp.Dummy(s, integer=True) for s in "klj")
    mu, c = sp.Rational(3, 10), lambda i: 1 / (2 + sp.Rational(1, 3) ** i)
    B = sp.Sum(mu ** (l - j) * c(j), (j, 0, l))
    total = sp.Sum(mu ** (n - k) * c(k) * sp.Sum(B, (l, k, n - 1))
                   + sp.Sum(sp.Rational(1, 2) ** (k - j) * sp.Sum(B, (l, j, k - 1)), (j, 0, k)),
                   (k, 0, n))
    nested = NestedSums([total], [n], n, "exact")
    assert not any(group.direct for group in nested._groups)
    assert not any(e.has(sp.Sum) for group in nested._groups for e in group.kernel.exprs)
    calls = []
    for group in nested._groups:
        fn = group.kernel._fn
        group.kernel._fn = lambda *a, _fn=fn: (calls.append(1), _fn(*a))[1]
    N = 12
    assert nested(N) == [brute(total, {n: sp.Integer(N)})]
    assert len(calls) <= (N + 2) * len(nested._groups)


def test_crossing_ranges_and_multiplied_out_factors_are_lowered_too():
    """AdaBelief's shapes at order 2 in mini batch: ``sum_{l=k+1}^{n-1}`` inside
    ``sum_{k=0}^{n}`` (its range crosses, ``hi = lo - 2``, at ``k = n`` only: the last term is
    peeled off, where a loop gives 0) and a bias correction multiplied out,
    ``a(j)^2 b(k) - a(j)^2`` (factored, it separates).  Every sum becomes a node with a
    recurrence, the cost is linear in ``n``, and the value equals the loops'."""
    k, l, j = (sp.Dummy(s, integer=True) for s in "klj")
    mu, c = sp.Rational(3, 10), lambda i: 1 / (2 + sp.Rational(1, 3) ** i)
    a = lambda i: sp.Rational(1, 4) ** (i + 1) - 1
    mixed = 1 / sp.expand(a(j) ** 2 * sp.Rational(1, 5) ** (l + 1) - a(j) ** 2)
    B = sp.Sum(mu ** (l - j) * c(j) * D0(j) * mixed, (j, 0, l))
    total = sp.Sum(mu ** (n - k) * c(k) * D1(k) * sp.Sum(B, (l, k + 1, n - 1)), (k, 0, n))
    nested = NestedSums([total], [n], n, "exact")
    assert not any(group.direct for group in nested._groups)
    assert not any(e.has(sp.Sum) for group in nested._groups for e in group.kernel.exprs)
    assert not nested._kernel.exprs[0].has(sp.Sum)
    calls = []
    for group in nested._groups:
        fn = group.kernel._fn
        group.kernel._fn = lambda *a, _fn=fn: (calls.append(1), _fn(*a))[1]
    rows = [[sp.Rational(2, 3), sp.Rational(-1, 2)], [sp.Rational(1, 5), sp.Rational(3, 2)]]
    schedule = [1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0]

    def look_up(e):
        return e.replace(lambda a: isinstance(a, sp.core.function.AppliedUndef),
                         lambda a: rows[schedule[int(a.args[0])]][int(a.func.__name__[2:])])
    for N in (0, 1, 2, 12):
        calls.clear()
        got = nested(N, data=(rows, lambda i: schedule[i]))
        assert got == [look_up(brute(total, {n: sp.Integer(N)}))]
        assert len(calls) <= (N + 2) * len(nested._groups)


def test_bias_corrections_balanced_for_floats_still_separate():
    """The float path balances growth before the lowering (:mod:`modeq.symbolic.emit.growth`):
    a power of one base in two indices, ``4^(-2j-l)`` from AdaBelief's bias corrections
    multiplied out, keeps its form (written ``16^(-j-l/2)``, it no longer factored against
    ``4^(-j-l)``: the sum kept its printed loops, ``O(n^3)`` per call).  Every sum becomes a
    node with a recurrence, and the value equals the loops'."""
    from modeq.symbolic.emit.growth import balance_growth
    k, l, j = (sp.Dummy(s, integer=True) for s in "klj")
    mu, beta = sp.Rational(3, 10), sp.Rational(1, 4)
    a = lambda i: beta ** (i + 1) - 1
    mixed = 1 / sp.expand(a(j) ** 2 * beta ** (l + 1) - a(j) ** 2)
    B = sp.Sum(mu ** (l - j) * D0(j) * mixed, (j, 0, l))
    total = sp.Sum(mu ** (n - k) * D1(k) * sp.Sum(B, (l, k + 1, n - 1)), (k, 0, n))
    [balanced] = balance_growth([total], n)
    nested = NestedSums([balanced], [n], n, "exact")
    assert not any(group.direct for group in nested._groups)
    assert not nested._kernel.exprs[0].has(sp.Sum)
    rows = [[sp.Rational(2, 3), sp.Rational(-1, 2)], [sp.Rational(1, 5), sp.Rational(3, 2)]]
    schedule = [1, 0, 0, 1, 1, 0, 1, 0]

    def look_up(e):
        return e.replace(lambda a: isinstance(a, sp.core.function.AppliedUndef),
                         lambda a: rows[schedule[int(a.args[0])]][int(a.func.__name__[2:])])
    for N in (0, 1, 7):
        got = nested(N, data=(rows, lambda i: schedule[i]))
        assert got == [look_up(brute(total, {n: sp.Integer(N)}))]


@pytest.mark.parametrize("backend", ["numpy", "mpmath"])
def test_a_weight_growing_in_the_index_gives_a_bounded_table(backend):
    """``rho^l sum_{k<=l} rho^(-k) c_k`` (how the derivation writes ``rho^(l-k)`` when a bias
    correction splits it): the table's terms are ``rho^(U-k) c_k`` (ratio ``rho``), not
    ``rho^(-k) c_k``, which overflow float64 after about 440 steps for ``rho = 1/5`` (and have
    no periodic closed form).  Against the double loop in Python floats at ``n = 500``."""
    k, l = sp.Dummy("k", integer=True), sp.Dummy("l", integer=True)
    rho, mu = sp.Rational(1, 5), sp.Rational(1, 2)
    total = sp.Sum(mu ** (n - l) * rho ** l * D1(l)
                   * sp.Sum(rho ** (-k) * D0(k) ** 2, (k, 0, l)), (l, 0, n))
    rows, batch = FLOAT_ROWS, float_batch
    N = 500
    want = sum(0.5 ** (N - L) * rows[batch(L)][1]
               * sum(0.2 ** (L - K) * rows[batch(K)][0] ** 2 for K in range(L + 1))
               for L in range(N + 1))
    got = NestedSums([total], [n], n, backend)(N, data=(rows, batch))
    assert abs(float(got[0]) - want) <= 1e-12 * abs(want)


@pytest.mark.parametrize("backend", ["numpy", "torch", "mpmath"])
def test_a_bias_correction_multiplied_out_stays_in_the_float_range(backend):
    """AdaBelief's shape in mini batch: a bias correction ``a(k)^2 (b(l) - 1)`` arrives
    multiplied out, and factoring it clears denominators: ``4^(2k) (4^(k+1) - 1)^-2`` for
    ``beta = 1/4``, two factors past float64 from ``k = 256`` whose product is of order one.
    The lowering balances the factors of each index (:mod:`modeq.symbolic.emit.growth`);
    against the double loop in Python floats at ``n = 600`` (an overflow before)."""
    k, l = sp.Dummy("k", integer=True), sp.Dummy("l", integer=True)
    mu, beta, rho = sp.Rational(1, 2), sp.Rational(1, 4), sp.Rational(1, 5)
    mixed = 1 / sp.expand((beta ** (k + 1) - 1) ** 2 * (rho ** (l + 1) - 1))
    total = sp.Sum(mu ** (n - k) * D1(k) * sp.Sum(mixed * D0(l), (l, k, n - 1)), (k, 0, n))
    rows, batch = FLOAT_ROWS, float_batch
    N = 600
    want = sum(0.5 ** (N - K) * rows[batch(K)][1]
               * sum(rows[batch(L)][0] / ((0.25 ** (K + 1) - 1) ** 2 * (0.2 ** (L + 1) - 1))
                     for L in range(K, N))
               for K in range(N + 1))
    got = NestedSums([total], [n], n, backend)(N, data=(rows, batch))
    assert abs(float(got[0]) - want) <= 1e-12 * abs(want)


@pytest.mark.parametrize("backend", ["numpy", "torch", "mpmath"])
def test_a_weight_decaying_from_the_lower_limit_gives_a_suffix_table(backend):
    """``sum_{l=k}^{n-1} beta^(l-k) c_l`` inside ``sum_k`` (AdaBelief's order 2): as a prefix
    table its terms grow like ``beta^(-U)`` (``4^U``: past float64 after 512 steps, and the sum a
    difference of two such values); a suffix table filled backwards from ``n - 1`` has terms
    at most those of the sum.  Against the double loop in Python floats at ``n = 800``."""
    k, l = sp.Dummy("k", integer=True), sp.Dummy("l", integer=True)
    mu, beta = sp.Rational(1, 2), sp.Rational(1, 4)
    total = sp.Sum(mu ** (n - k) * D1(k) * sp.Sum(beta ** (l - k) * D0(l), (l, k, n - 1)),
                   (k, 0, n))
    rows, batch = FLOAT_ROWS, float_batch
    N = 800
    want = sum(0.5 ** (N - K) * rows[batch(K)][1]
               * sum(0.25 ** (L - K) * rows[batch(L)][0] for L in range(K, N))
               for K in range(N + 1))
    nested = NestedSums([total], [n], n, backend)
    assert [g.last is not None for g in nested._groups] == [True, False]   # inner first
    got = nested(N, data=(rows, batch))
    assert abs(float(got[0]) - want) <= 1e-12 * abs(want)


def test_a_sum_past_the_float_range_says_so():
    """A summand that grows in a form the lowering does not balance (``e^k``, a function of
    the index, not a power of a number) fills a table past float64 after 709 steps: the float
    evaluation raises an error naming the mpmath backend, which gives the value."""
    import numpy as np
    k = sp.Dummy("k", integer=True)
    total = sp.Sum(sp.exp(k) * sp.exp(-n) * D0(k), (k, 0, n))
    assert total.function.is_Mul
    rows = [[0.5], [1.5]]
    N = 800
    want = sum(mpmath.exp(K - N) * rows[K % 2][0] for K in range(N + 1))
    assert NestedSums([total], [n], n, "mpmath")(N, data=(rows, lambda i: i % 2))[0] \
        == pytest.approx(want, rel=1e-12)
    assert np.isfinite(float(NestedSums([total], [n], n, "numpy")(
        700, data=(rows, lambda i: i % 2))[0]))
    with pytest.raises(FloatingPointError, match="overflowed.*backend='mpmath'"):
        with np.errstate(over="ignore", invalid="ignore"):
            NestedSums([total], [n], n, "numpy")(N, data=(rows, lambda i: i % 2))


def test_rmsprop_momentum_field_equals_its_sums_added_up():
    """torch's RMSprop with momentum, order 1: the compiled field, its node tables in MPFR and
    in mpmath (as without gmpy2), against its own lowered expression with every sum added up
    term by term in SymPy at 50 digits (added up once for both)."""
    from modeq.symbolic import derive, optimizers as O
    from modeq.symbolic.family import n as n_sym
    y = sp.Symbol("y")
    E = sp.log(sp.cosh(x)) + (y - x / 2) ** 2 / 2
    vals = dict(rho=sp.Rational(3, 5), eps=sp.Rational(1, 10), mu=sp.Rational(3, 10),
                h=sp.Rational(1, 64))
    flow = derive(O.torch_rmsprop(momentum=True), 1)
    fields = {arithmetic: flow.lambdify(E, [x, y], **vals) for arithmetic in ("mpfr", "mpmath")}
    assert all(f.sums.nested and f.sums.tables.has_fast for f in fields.values())
    assert fields["mpfr"].sums.tables is not fields["mpmath"].sums.tables
    fields["mpmath"].sums.tables._fast = None
    point = {x: sp.Rational(1), y: sp.Rational(3, 10)}
    for N in (0, 3, 7):
        env = {n_sym: sp.Integer(N), **point}
        want = [brute(e, env).evalf(50) for e in fields["mpfr"].expressions]
        for arithmetic, field in fields.items():
            with mpmath.workdps(40):
                got = field(N, [mpmath.mpf(1), mpmath.mpf(3) / 10])
                for a, b in zip(got, want):
                    assert abs(a - mpmath.mpf(str(b))) <= mpmath.mpf(10) ** -36 * (1 + abs(a)), \
                        (arithmetic, N)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_rmsprop_momentum_float_backends_equal_mpmath(backend):
    """The node tables in float64 (NumPy, torch; a batch of points at once) agree with the
    mpmath field to rounding."""
    from modeq.symbolic import derive, optimizers as O
    y = sp.Symbol("y")
    E = sp.log(sp.cosh(x)) + (y - x / 2) ** 2 / 2
    vals = dict(rho=sp.Rational(3, 5), eps=sp.Rational(1, 10), mu=sp.Rational(3, 10),
                h=sp.Rational(1, 64))
    flow = derive(O.torch_rmsprop(momentum=True), 1)
    exact = flow.lambdify(E, [x, y], **vals)
    fast = flow.lambdify(E, [x, y], backend=backend, **vals)
    assert_float_field_agrees(fast, exact, backend, (0, 5, 40))


def assert_float_field_agrees(fast, exact, backend, steps):
    """``fast`` (float64, NumPy or torch, three points at once, shape (2, 3)) agrees with the
    mpmath field ``exact`` (30 digits) at each step of ``steps``, to 1e-12 relative."""
    import numpy as np
    points = np.array([[1.0, 0.5, -0.7], [0.3, -0.4, 0.9]])
    arg = points if backend == "numpy" else __import__("torch").tensor(points)
    for N in steps:
        got = np.asarray(fast(N, arg))
        assert got.shape == (2, 3)
        with mpmath.workdps(30):
            for c in range(3):
                want = exact(N, [mpmath.mpf(points[0, c]), mpmath.mpf(points[1, c])])
                assert np.allclose(got[:, c], [float(w) for w in want], rtol=1e-12, atol=0)


def test_single_sums_by_tables_equal_the_windowed_sums_and_every_term():
    """A field whose sums are not nested (Adam without bias correction, built directly as in
    test_windowed_sums) takes node tables up to ``tables_up_to`` and windowed sums beyond:
    at n = 40 the tables equal every term added by SymPy (50 digits); at n = 300 tables and
    windowed sums (two independent evaluations) agree to the working precision."""
    from modeq.symbolic import derive, optimizers
    from modeq.symbolic.components import LossProvider, lower
    from modeq.symbolic.emit.field import FullBatchField
    from modeq.symbolic.emit.values import resolve_values
    from modeq.symbolic.family import n as n_sym
    y = sp.Symbol("y")
    E = (x - 1) ** 2 / 2 + x * y / 3 + y ** 4 / 4
    flow = derive(optimizers.adam(bias_correction=False), 1)
    subs = resolve_values(flow, dict(h="1/20", beta="1/2", rho="3/5", eps="1/1000"))
    F, provider = flow.F("full"), LossProvider(E, [x, y])
    exprs = [(-lower(F, j, provider)).xreplace(subs) for j in range(2)]
    tables = FullBatchField(exprs, [x, y], "mpmath")
    windowed = FullBatchField(exprs, [x, y], "mpmath")
    windowed.sums.tables_up_to = -1
    point = [sp.Rational(3, 10), sp.Rational(-1, 5)]
    with mpmath.workdps(30):
        theta = [mpmath.mpf(3) / 10, -mpmath.mpf(1) / 5]
        got = tables(40, theta)
        assert tables.sums._tables is not None and windowed.sums._tables is None
        env = {n_sym: sp.Integer(40), x: point[0], y: point[1]}
        for a, e in zip(got, exprs):
            assert abs(a - mpmath.mpf(str(brute(e, env).evalf(50)))) <= 1e-28 * abs(a)
        for a, b in zip(tables(300, theta), windowed(300, theta)):
            assert abs(a - b) <= 1e-28 * abs(b)


@settings(max_examples=examples(100), deadline=None)
@given(sums=st.lists(nested_sum(data=True), min_size=1, max_size=3),
       product=st.booleans())
def test_memoized_free_symbols_equal_sympys(sums, product):
    """The memoized free symbols (symbolic.dag, no rebuilding of summands) equal SymPy's, for
    the generated nested sums (bound variables inside, inner bounds naming outer variables),
    their products and a Product over one of them."""
    from modeq.symbolic.dag import free_symbols
    e = sp.Mul(*sums) + x * sums[0]
    if product:
        i = sp.Dummy("i", integer=True)
        e = e * sp.Product(sums[-1] + i, (i, 1, n + 1))
    assert free_symbols(e) == e.free_symbols
    for s in sums:
        assert free_symbols(s) == s.free_symbols


@settings(max_examples=examples(40), deadline=None)
@given(coeffs=st.tuples(*[st.integers(-3, 3)] * 4), floor=st.booleans(),
       at=st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)))
def test_a_step_read_is_its_expression_at_the_indices(coeffs, floor, at):
    """The step a node application reads, ``a n + b U + c j + d`` by integer arithmetic (the
    tables' hot path) or, not affine, by its compiled expression: SymPy's value at the
    indices."""
    U, J = sp.symbols("U J", integer=True)
    a, b, c, d = coeffs
    expr = a * n + b * U + c * J + d + (sp.floor(U / 2) if floor else 0)
    step = _Step(expr, n, U, J)
    assert (step.linear is None) == floor
    assert step(*at) == expr.subs(dict(zip((n, U, J), at)))

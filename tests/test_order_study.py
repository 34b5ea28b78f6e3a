"""Order-of-accuracy studies: derived flows against iterates, with the safeguards.

Independent references: the iterates (the optimizer's recursion, checked against hand-written
recursions in test_numeric_iterate.py), hand-written flows from published formulas
(docs/conventions.md §3, §4: Adam's correction with the memory moments b_n, r_n; Hairer–Lubich–Wanner's second-order
modified equation of explicit Euler), and Runge–Kutta order conditions computed from rooted
trees.  Small dps and few step sizes keep CI time low; the full study is the benchmark.
"""
import json
import os
from fractions import Fraction as Fr

import mpmath
import pytest
import sympy as sp

from modeq.numeric import problems
from modeq.symbolic.emit import compile_exprs, to_number
from modeq.numeric.integrate import TABLEAUX, integrate
from modeq.numeric.study import FieldFactory, atomic_write, order_study
from modeq.symbolic import EMA, Optimizer, g, optimizers, theta

P2 = problems.get("logcosh2d")
P3 = problems.get("coupled3d")
PM = problems.get("leastsquares3")
H4_7 = [sp.Rational(1, 2 ** k) for k in range(4, 8)]
H5_7 = [sp.Rational(1, 2 ** k) for k in range(5, 8)]


def adamw_like():
    beta, rho, eps = sp.symbols("beta rho eps", positive=True)
    lam = sp.Symbol("lam", positive=True)
    m = EMA("m", decay=beta, of=g, normalized=True, bias_correction=True)
    v = EMA("v", decay=rho, of=g ** 2, normalized=True, bias_correction=True)
    return Optimizer("adamw_like", [m, v], m / sp.sqrt(v + eps) + lam * theta)


OPTIMIZERS = {
    "gd": optimizers.gd, "heavy_ball": optimizers.heavy_ball, "rmsprop": optimizers.rmsprop,
    "adam": optimizers.adam, "adam_outside": lambda: optimizers.adam("outside"),
    "adam_no_bc": lambda: optimizers.adam(bias_correction=False), "adamw_like": adamw_like,
}


def values(problem, opt):
    v = problem.values_for(opt)
    if opt.name == "adamw_like":
        v["lam"] = sp.Rational(1, 4)
    return v


def study(opt, problem, hs, stationary=False, orders=(0, 1), dps=20, **kw):
    return order_study(opt, problem.loss_or_losses, problem.params, problem.theta0, T=problem.T,
                       hs=hs, orders=orders, dps=dps, stationary=stationary,
                       **values(problem, opt), **kw)


def assert_pass(res, orders=(0, 1)):
    for r in orders:
        o = res.orders[r]
        assert o.verdict == "pass", res.table()
        assert abs(o.slope - (r + 1)) <= 0.1, res.table()


# -- slopes: the derived flows have the claimed order ---------------------------------------
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_full_batch_exact_n(name):
    res = study(OPTIMIZERS[name](), P2, H4_7)
    assert_pass(res)


@pytest.mark.parametrize("name", ["gd", "rmsprop", "adam", "adam_outside", "adamw_like"])
def test_full_batch_stationary(name):
    # F0 does not depend on n (bias-corrected normalised averages): O(h^2)-close
    res = study(OPTIMIZERS[name](), P2, H4_7, stationary=True)
    assert_pass(res)


@pytest.mark.parametrize("name", ["heavy_ball", "adam_no_bc"])
def test_stationary_flow_is_only_first_order_when_F0_depends_on_n(name):
    # docs/conventions.md §3: from zero momentum (or without bias correction) an initial layer
    # of a few memory lengths shifts the trajectory by O(h): the stationary order-1 flow is O(h)-close.
    res = study(OPTIMIZERS[name](), P2, H4_7, stationary=True, orders=(1,))
    o = res.orders[1]
    assert abs(o.slope - 1) <= 0.1, res.table()
    assert o.verdict == "fail" and "differs from 2" in o.reason


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_mini_batch(name):
    opt = OPTIMIZERS[name]()
    if name == "gd":
        opt = optimizers.sgd()
    res = study(opt, PM, H5_7)
    assert_pass(res)


def test_three_dimensional_coupled_problem():
    assert_pass(study(optimizers.adam(), P3, H4_7))


def test_default_trajectories_keep_every_gradient_component_away_from_zero():
    # required for Adam with eps outside (smooth only where no g_j vanishes)
    from modeq.numeric.iterate import iterates
    for prob in (P2, P3, PM):
        losses = prob.losses or [prob.loss]
        grads = [compile_exprs([sp.diff(E, p) for p in prob.params], prob.params)
                 for E in losses]
        for opt in (optimizers.adam(), optimizers.adam("outside"), optimizers.rmsprop(),
                    optimizers.gd(), optimizers.heavy_ball()):
            with mpmath.workdps(20):
                run = iterates(opt, prob.loss_or_losses, prob.params, prob.theta0,
                               sp.Rational(1, 16), int(prob.T * 16), dps=20,
                               **prob.values_for(opt))
                if not opt.name.startswith(("adam", "rmsprop")):
                    continue
                smallest = min(abs(c) for th in run for gr in grads for c in gr(*th))
            assert smallest > 0.05, (prob.name, opt.name, smallest)


# -- the engine's flow against hand-written published formulas ------------------------------
def hand_adam_field(E, params, order, h, beta, rho, eps, stationary=False):
    """docs/conventions.md §3 worked check: F0 = g/s, F1_j = (H F0)_j/s_j [b_n - r_n g_j^2/s_j^2 +
    eps/(2 s_j^2)], s = sqrt(g^2 + eps), b_n = sum_k w_k (n-k) in closed form."""
    p = len(params)
    gs = [sp.diff(E, v) for v in params]
    grad = compile_exprs(gs + [sp.diff(a, v) for a in gs for v in params], params)
    b, r, e, hh = (to_number(v) for v in (beta, rho, eps, h))

    def moment(d, n):
        if stationary:
            return d / (1 - d)
        return d * (1 - (n + 1) * d ** n + n * d ** (n + 1)) / ((1 - d) * (1 - d ** (n + 1)))

    def f(n, th):
        vals = grad(*th)
        gv, H = vals[:p], vals[p:]
        s = [mpmath.sqrt(x * x + e) for x in gv]
        F0 = [gv[j] / s[j] for j in range(p)]
        if order == 0:
            return [-x for x in F0]
        bn, rn = moment(b, n), moment(r, n)
        HF = [sum(H[j * p + i] * F0[i] for i in range(p)) for j in range(p)]
        F1 = [HF[j] / s[j] * (bn - rn * gv[j] ** 2 / s[j] ** 2 + e / (2 * s[j] ** 2))
              for j in range(p)]
        return [-(F0[j] + hh * F1[j]) for j in range(p)]
    return f


@pytest.mark.parametrize("stationary", [False, True])
def test_engine_adam_field_equals_hand_written_formula(stationary):
    vals = P2.values_for(optimizers.adam())
    h = sp.Rational(1, 32)
    with mpmath.workdps(40):
        ours = FieldFactory(optimizers.adam(), P2.loss, P2.params, stationary, **vals)(1, h)
        ref = hand_adam_field(P2.loss, P2.params, 1, h, stationary=stationary, **vals)
        for n in (0, 1, 5, 40):
            for th in ([mpmath.mpf(1), mpmath.mpf(1) / 2], [mpmath.mpf(-2) / 3, mpmath.mpf(3)]):
                d = max(abs(a - b) for a, b in zip(ours(n, th), ref(n, th)))
                assert d < mpmath.mpf(10) ** -36


def test_hand_written_adam_flow_passes_the_study():
    vals = P2.values_for(optimizers.adam())
    fields = {r: (lambda h, r=r: hand_adam_field(P2.loss, P2.params, r, h, **vals))
              for r in (0, 1)}
    res = study(optimizers.adam(), P2, H4_7, fields=fields)
    assert_pass(res)


def gd_field_order2(E, params, h):
    """Hairer–Lubich–Wanner IX: explicit Euler's modified field
    F = g + (h/2) H g + h^2 ((1/12) T[g,g] + (1/3) H^2 g)."""
    p = len(params)
    gs = [sp.diff(E, v) for v in params]
    Hs = [[sp.diff(a, v) for v in params] for a in gs]
    F = []
    for j in range(p):
        Hg = sum(Hs[j][i] * gs[i] for i in range(p))
        H2g = sum(Hs[j][k] * Hs[k][i] * gs[i] for k in range(p) for i in range(p))
        Tgg = sum(sp.diff(Hs[j][k], params[i]) * gs[k] * gs[i] for k in range(p)
                  for i in range(p))
        F.append(-(gs[j] + h * Hg / 2 + h ** 2 * (Tgg / 12 + H2g / 3)))
    fn = compile_exprs(F, params)
    return lambda n, th: fn(*th)


def test_order_two_with_a_published_field_passes_with_slope_three():
    fields = {2: lambda h: gd_field_order2(P2.loss, P2.params, h)}
    res = study(optimizers.gd(), P2, H4_7, orders=(0, 1, 2), fields=fields)
    assert_pass(res, orders=(0, 1))
    o = res.orders[2]
    assert o.verdict == "pass" and abs(o.slope - 3) <= 0.15, res.table()
    assert o.points[0].method == "ck45"


# -- safeguards ------------------------------------------------------------------------------
def test_flipped_correction_fails():
    vals = P2.values_for(optimizers.adam())
    base = FieldFactory(optimizers.adam(), P2.loss, P2.params, **vals)

    def flipped(h):
        f0, f1 = base(0, h), base(1, h)
        # f1 = -(F0 + h F1), f0 = -F0  ->  -(F0 - h F1) = 2 f0 - f1
        return lambda n, th: [2 * a - b for a, b in zip(f0(n, th), f1(n, th))]

    res = study(optimizers.adam(), P2, H4_7, orders=(1,), fields={1: flipped})
    o = res.orders[1]
    assert o.verdict == "fail", res.table()
    assert abs(o.slope - 1) < 0.2


def test_too_low_precision_is_unresolved_and_enough_precision_passes():
    # A loss scaled by 1e-9: discrepancies ~1e-12 h ... 1e-21 h^2, far below dps=15 rounding
    # times 1000 for the first-order correction, but resolved at dps=40.
    x, y = P2.params
    E = P2.loss / 10 ** 9
    kw = dict(hs=H4_7[:3], orders=(0, 1))
    low = order_study(optimizers.gd(), E, [x, y], P2.theta0, dps=15, **kw)
    assert low.orders[1].verdict == "unresolved", low.table()
    assert "rounding" in low.orders[1].reason
    high = order_study(optimizers.gd(), E, [x, y], P2.theta0, dps=40, **kw)
    assert_pass(high)


def test_too_coarse_integrator_is_unresolved():
    res = study(optimizers.adam(), P2, H4_7[:3], method="heun21", refine=False)
    o = res.orders[1]
    assert o.verdict == "unresolved", res.table()
    assert "integrator" in o.reason


def test_refinement_reaches_resolution_with_a_coarse_start():
    res = study(optimizers.gd(), P2, H4_7[:3], method="kutta32", refine=True)
    assert_pass(res)
    assert max(p.substeps for o in res.orders.values() for p in o.points) > 1


def test_exact_flow_is_unresolved_not_a_slope():
    # GD on a linear loss follows its flow exactly: no discrepancy to measure
    x, y = sp.symbols("x y", real=True)
    res = order_study(optimizers.gd(), 2 * x - y, [x, y], [0, 0], hs=H4_7[:3], dps=20)
    assert res.verdicts == {0: "unresolved", 1: "unresolved"}


@pytest.mark.parametrize("kw,match", [
    (dict(hs=[sp.Rational(1, 16), sp.Rational(1, 8)]), "strictly decreasing"),
    (dict(hs=[sp.Rational(1, 16), sp.Rational(1, 16)]), "strictly decreasing"),
    (dict(hs=[sp.Rational(1, 16), 0]), "> 0"),
    (dict(hs=[sp.Rational(-1, 16), sp.Rational(-1, 8)]), "> 0"),
    (dict(T=0), "T must be > 0"),
    (dict(T=-1), "T must be > 0"),
    (dict(dps=14), "dps must be an integer >= 15"),
    (dict(theta0=[1, 2, 3]), "theta0 has 3 components"),
    (dict(orders=(3,)), "orders"),
    (dict(method="rk99"), "unknown integration method"),
])
def test_bad_input(kw, match):
    args = dict(hs=H4_7[:2], theta0=P2.theta0)
    args.update(kw)
    theta0 = args.pop("theta0")
    with pytest.raises(ValueError, match=match):
        order_study(optimizers.gd(), P2.loss, P2.params, theta0, **args)


def test_divergent_run_is_a_clear_error():
    x, y = sp.symbols("x y", real=True)
    with pytest.raises(ValueError, match="diverges"):
        order_study(optimizers.gd(), x ** 4 + y ** 2, [x, y], [3, 1], hs=[1, sp.Rational(1, 2)],
                    T=20, dps=15)


# -- integrator: order conditions from rooted trees (independent of any ODE) -----------------
def _trees(order):
    """Rooted trees as sorted tuples of subtrees, up to ``order`` nodes."""
    by = {1: [()]}
    for n in range(2, order + 1):
        out = set()

        def parts(rem, min_t, acc):
            if rem == 0:
                out.add(tuple(sorted(acc)))
                return
            for m in range(1, rem + 1):
                for t in by[m]:
                    if (m, t) >= min_t:
                        parts(rem - m, (m, t), acc + [t])
        parts(n - 1, (0, ()), [])
        by[n] = sorted(out)
    return by


def _size(t):
    return 1 + sum(_size(s) for s in t)


def _gamma(t):
    out = _size(t)
    for s in t:
        out *= _gamma(s)
    return out


def _weights(tab, t):
    """Internal weights Phi_i(t) = prod over children of sum_j a_ij Phi_j(child)."""
    s = tab.stages
    a = [[Fr(row[j]) if j < len(row) else Fr(0) for j in range(s)] for row in tab.a]
    res = [Fr(1)] * s
    for child in t:
        w = _weights(tab, child)
        res = [res[i] * sum(a[i][j] * w[j] for j in range(s)) for i in range(s)]
    return res


@pytest.mark.parametrize("name", sorted(TABLEAUX))
def test_tableau_order_conditions(name):
    tab = TABLEAUX[name]
    trees = _trees(tab.order + 1)
    for b, order in ((tab.b, tab.order), (tab.bhat, tab.order_hat)):
        for n in range(1, order + 2):
            residues = [sum(Fr(bi) * w for bi, w in zip(b, _weights(tab, t))) - Fr(1, _gamma(t))
                        for t in trees[n]]
            if n <= order:
                assert all(r == 0 for r in residues), (name, n)
            else:
                assert any(r != 0 for r in residues), (name, n)  # exactly this order
    # row sums equal c
    for ci, row in zip(tab.c, tab.a):
        assert sum(Fr(q) for q in row) == Fr(ci)


def test_integrator_error_estimate_bounds_true_error_on_a_known_solution():
    # y' = -y^2 + cos(t)-free piecewise variant: on [nh,(n+1)h) y' = -(1 + n mod 2) y, exact
    # solution known in closed form.
    with mpmath.workdps(30):
        f = lambda n, th: [-(1 + n % 2) * th[0]]  # noqa: E731
        h = mpmath.mpf(1) / 8
        for method in TABLEAUX:
            run = integrate(f, [1], h, 8, method)
            exact = mpmath.exp(-h * sum(1 + n % 2 for n in range(8)))
            err = abs(run.path[-1][0] - exact)
            assert err <= run.error_estimate, method
            assert err > 0


# -- outputs -------------------------------------------------------------------------------
def test_table_json_plot(tmp_path):
    res = study(optimizers.gd(), P2, H4_7[:3])
    text, md = res.table(), res.table("markdown")
    assert "order 0: slope" in text and "PASS" in text and "| h |" in md
    data = json.loads(res.to_json(tmp_path / "r.json"))
    assert data["verdicts"] == {"0": "pass", "1": "pass"}
    assert json.loads((tmp_path / "r.json").read_text())["orders"]["1"]["slope"] == pytest.approx(
        res.orders[1].slope)
    res.plot(tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.png"]


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    """A write interrupted after 10 bytes leaves neither the target nor a temporary file."""
    import builtins
    import modeq.numeric.atomic as atomic_module

    target = tmp_path / "out.json"
    real_open = builtins.open

    def exploding_open(path, mode="r", *a, **k):
        fh = real_open(path, mode, *a, **k)

        class W:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                fh.close()

            def write(self, data):
                fh.write(data[:10])
                raise KeyboardInterrupt

        return W()

    monkeypatch.setattr(atomic_module, "open", exploding_open, raising=False)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, "x" * 1000)
    assert os.listdir(tmp_path) == []


def test_interrupted_study_leaves_no_output(tmp_path):
    def interrupt(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        res = study(optimizers.gd(), P2, H4_7, progress=interrupt)
        res.to_json(tmp_path / "r.json")
    assert os.listdir(tmp_path) == []


# -- order 2 ---------------------------------------------------------------------------------
def test_engine_gd_order_two_equals_hairer_lubich_wanner():
    h = sp.Rational(1, 32)
    with mpmath.workdps(40):
        ours = FieldFactory(optimizers.gd(), P2.loss, P2.params)(2, h)
        ref = gd_field_order2(P2.loss, P2.params, h)
        for th in ([mpmath.mpf(1), mpmath.mpf(1) / 2], [mpmath.mpf(-2) / 3, mpmath.mpf(3)]):
            assert max(abs(a - b) for a, b in zip(ours(7, th), ref(7, th))) < 1e-36


@pytest.mark.parametrize("name", ["gd", "heavy_ball", "rmsprop", "adam_outside"])
def test_derived_order_two_has_slope_three(name):
    res = study(OPTIMIZERS[name](), P2, H4_7, orders=(2,), dps=30)
    o = res.orders[2]
    assert o.verdict == "pass" and abs(o.slope - 3) <= 0.15, res.table()


@pytest.mark.slow
def test_gd_stationary_order_two_has_slope_three():
    res = study(optimizers.gd(), P2, H4_7, orders=(2,), dps=30, stationary=True)
    o = res.orders[2]
    assert o.verdict == "pass" and abs(o.slope - 3) <= 0.15, res.table()


@pytest.mark.slow
def test_adam_order_two_exact_n_has_slope_three_and_stationary_only_two():
    # No published result: the derived h^2 term of Adam, measured.  The stationary form keeps
    # b_oo, r_oo in F1, which differ from b_n, r_n by O(1) during the first memory lengths:
    # an O(h^2) shift, so the stationary order-2 flow is only O(h^2)-close.
    res = study(optimizers.adam(), P2, H4_7, orders=(2,), dps=30)
    o = res.orders[2]
    assert o.verdict == "pass" and abs(o.slope - 3) <= 0.15, res.table()
    res = study(optimizers.adam(), P2, H4_7, orders=(2,), dps=30, stationary=True)
    o = res.orders[2]
    assert o.verdict == "fail" and abs(o.slope - 2) <= 0.1, res.table()


@pytest.mark.parametrize("name", ["gd", "heavy_ball", "adam", "adamw_like"])
def test_compiled_field_equals_engine_lambdify(name):
    # The study compiles the engine's exact field itself (factored, constants bound once);
    # it must be the same function as flow.lambdify's.  Decays 1/4 and 1/2: their powers are
    # exact in binary, so the comparison is not blurred by how n enters the printed code.
    from modeq.symbolic import derive
    opt = OPTIMIZERS[name]()
    vals = values(P2, opt)
    vals.update({k: v for k, v in (("beta", sp.Rational(1, 4)), ("rho", sp.Rational(1, 2)))
                 if k in vals})
    h = sp.Rational(1, 32)
    with mpmath.workdps(40):
        for r in (0, 1):
            ours = FieldFactory(opt, P2.loss, P2.params, **vals)(r, h)
            ref = derive(opt, order=r).lambdify(P2.loss, P2.params, backend="mpmath", h=h,
                                                **vals)
            for n in (0, 3, 30):
                th = [mpmath.mpf(1) / 3, mpmath.mpf(-5) / 7]
                assert max(abs(a - b) for a, b in zip(ours(n, th), ref(n, th))) < 1e-35

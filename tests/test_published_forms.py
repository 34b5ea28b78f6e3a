"""Derived flows against literature formulas (docs/conventions.md §4), exactly, one line per case.

References are typed here from the papers, in generic components g_i, H_ij, T_ijk for
dimension p, and compared with the engine's lowering ``flow.generic(p, ...)``.
"""
import pytest
import sympy as sp

from modeq.symbolic import beta, derive, eps, h, n, optimizers, rho
from modeq.symbolic.components import SymbolProvider, lower_vector
from modeq.symbolic.operators import FULL
from modeq.symbolic.recognize import is_zero_linear


def gens(p):
    P = SymbolProvider(p)
    g = sp.Matrix(P.g)
    H = sp.Matrix(p, p, lambda i, j: P.hess(FULL, i, j))
    return P, g, H


def T3(P, u, w):
    p = P.p
    return sp.Matrix([sum(P.d3(FULL, j, i, k) * u[i] * w[k] for i in range(p) for k in range(p))
                      for j in range(p)])


def s_vec(g):
    return g.applyfunc(lambda x: sp.sqrt(x**2 + eps))


def paper_correction(P, g, H, b=beta):
    """Cattaneo, Klusowski, Shigida (2024), the seed's formula."""
    s = s_vec(g)
    dnorm = H * sp.Matrix([g[i] / s[i] for i in range(P.p)])   # d_j ||grad E||_{1,eps}
    return sp.Matrix([h / 2 * ((1 + b) / (1 - b) - (1 + rho) / (1 - rho)
                               + (1 + rho) / (1 - rho) * eps / (g[j]**2 + eps)) * dnorm[j]
                      for j in range(P.p)])


def b_n(d):   # sum_{k=0}^n w(n,k)(n-k), bias-corrected, by the textbook geometric sum
    return d * (1 - (n + 1) * d**n + n * d**(n + 1)) / ((1 - d) * (1 - d**(n + 1)))


def ref_gd_1(P, g, H):
    return g + h / 2 * H * g


def ref_gd_2(P, g, H):
    return g + h / 2 * H * g + h**2 * (T3(P, g, g) / 12 + H * H * g / 3)


def ref_hb_1(P, g, H):
    return g / (1 - beta) + h * (1 + beta) / (2 * (1 - beta)**3) * H * g


def ref_adam_stationary(P, g, H):
    s = s_vec(g)
    c = paper_correction(P, g, H)
    return sp.Matrix([(g[j] + c[j]) / s[j] for j in range(P.p)])


def ref_rmsprop_stationary(P, g, H):
    s = s_vec(g)
    c = paper_correction(P, g, H, b=0)
    return sp.Matrix([(g[j] + c[j]) / s[j] for j in range(P.p)])


def ref_adam_exact_n(P, g, H):
    """docs/conventions.md §3 worked check:
    F1_j = (H F0)_j/s_j [b_n - r_n g_j^2/s_j^2 + eps/(2 s_j^2)]."""
    s = s_vec(g)
    F0 = sp.Matrix([g[i] / s[i] for i in range(P.p)])
    HF0 = H * F0
    return sp.Matrix([F0[j] + h * HF0[j] / s[j] * (b_n(beta) - b_n(rho) * g[j]**2 / s[j]**2
                                                      + eps / (2 * s[j]**2))
                      for j in range(P.p)])


CASES = [  # (optimizer, order, stationary, reference, dimensions)
    (optimizers.gd, 1, False, ref_gd_1, (1, 2, 3, 4)),
    (optimizers.gd, 2, False, ref_gd_2, (1, 2, 3)),
    (optimizers.heavy_ball, 1, True, ref_hb_1, (1, 2, 3, 4)),
    (optimizers.adam, 1, True, ref_adam_stationary, (1, 2, 3, 4)),
    (optimizers.rmsprop, 1, True, ref_rmsprop_stationary, (1, 2, 3, 4)),
    (optimizers.adam, 1, False, ref_adam_exact_n, (1, 2)),
]


def ops(P):
    return sorted(set(P._H.values()) | set(P._T.values()), key=str)


@pytest.mark.parametrize("make, order, stationary, ref, dims", CASES,
                         ids=[f"{c[0]().name}-o{c[1]}-{'stat' if c[2] else 'n'}" for c in CASES])
def test_flow_equals_published_form(make, order, stationary, ref, dims):
    flow = derive(make(), order)
    for p in dims:
        P, g, H = gens(p)
        derived = -flow_generic(flow, P, stationary)
        expected = ref(P, g, H)
        for j in range(p):
            assert is_zero_linear(derived[j] - expected[j], ops(P)), (p, j)


def flow_generic(flow, P, stationary):
    return -lower_vector(flow.F("full", stationary), P)


def test_rmsprop_is_adam_at_beta_zero():
    a = derive(optimizers.adam(), 1).terms(stationary=False)
    r = derive(optimizers.rmsprop(), 1).terms(stationary=False)
    for fa, fr in zip(a, r):
        assert sp.simplify((fa.xreplace({beta: 0}) - fr).rewrite(sp.Pow)) == 0


def test_stationary_derivation_is_the_limit_of_the_exact_one():
    for make in (optimizers.adam, optimizers.heavy_ball, optimizers.gd):
        flow = derive(make(), 1)
        lim = flow.stationary_terms()
        st = flow.terms("full", stationary=True)
        assert all(sp.simplify(a - b) == 0 for a, b in zip(lim, st))


def test_a_wrong_reference_is_detected():
    """The comparison can fail: a flipped sign in the paper's bracket is not equal."""
    flow = derive(optimizers.adam(), 1)
    P, g, H = gens(2)
    derived = -flow_generic(flow, P, True)
    wrong = ref_adam_stationary(P, g, -H)
    assert not is_zero_linear(derived[0] - wrong[0], ops(P))


def test_regime_table_matches_the_paper():
    from modeq.symbolic.regimes import regime_table
    t = regime_table(derive(optimizers.adam(), 1))
    # small eps: (h/2){(1+b)/(1-b) - (1+r)/(1-r)}; large eps: (h/2)(1+b)/(1-b)
    assert sp.simplify(t.K_small - h / 2 * ((1 + beta) / (1 - beta) - (1 + rho) / (1 - rho))) == 0
    assert sp.simplify(t.K_large - h / 2 * (1 + beta) / (1 - beta)) == 0
    rows = {r[0]: r for r in t.rows}
    assert "anti" in rows["rho > beta"][1] and "anti" not in rows["beta > rho"][1]
    assert all("2^2 penalized" in r[2] for r in t.rows)

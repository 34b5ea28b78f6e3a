"""The fast checks for terms too large to simplify must still reject a wrong coefficient."""
import sympy as sp

from modeq.symbolic import derive, optimizers
from modeq.symbolic.emit.forms import MatrixFreeForm, matrix_free, verify
from modeq.symbolic.family import beta, n
from modeq.symbolic.operators import D3, FULL, Grad, Hess
from modeq.symbolic.prove import agree_at_random_points

g = Grad(FULL)


def test_random_points_reject_the_explicit_euler_term_with_a_wrong_coefficient():
    F2 = derive(optimizers.gd(), 2).terms("full", stationary=True)[2]
    published = D3(FULL, g, g) / 12 + Hess(FULL, Hess(FULL, g)) / 3      # Hairer-Lubich-Wanner
    wrong = D3(FULL, g, g) / 13 + Hess(FULL, Hess(FULL, g)) / 3
    from modeq.symbolic.components import SymbolProvider, lower_vector
    P = SymbolProvider(2)
    lo = lambda e: list(lower_vector(e, P))                                # noqa: E731
    assert agree_at_random_points(lo(F2), lo(published))
    assert not agree_at_random_points(lo(F2), lo(wrong))


def test_random_points_see_the_step_index():
    assert not agree_at_random_points([beta ** n], [beta ** (n + 1)])


def test_adam_order_two_exact_in_n_form_is_checked_and_a_perturbation_is_rejected():
    F2 = derive(optimizers.adam(), 2).terms()[2]
    form = matrix_free(F2, "F2")
    assert all(ok for _, ok in verify(form, (1,)))
    (c0, m0), *rest = form.monomials
    bad = MatrixFreeForm(form.expr, form.contractions,
                         [(c0 * (1 + sp.Rational(1, 10**6)), m0), *rest], "F2")
    checks = verify(bad, (1,))
    assert "random rational points" in checks[0][0]
    assert not all(ok for _, ok in checks)


def test_codegen_adam_order_two_exact_in_n_answers(tmp_path):
    """`modeq codegen adam --order 2` (exact in n) used to hang in exact simplification."""
    import subprocess
    import sys
    out = tmp_path / "adam2.py"
    r = subprocess.run([sys.executable, "-m", "modeq.proofs.cli", "codegen", "adam", "--backend",
                        "numpy", "--order", "2", "--out", str(out)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    src = out.read_text()
    assert "def F2(" in src and "random rational points" in " ".join(src.split())

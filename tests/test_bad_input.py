"""Bad input gets a clear error naming the culprit; the command line exits 2 with one line."""
import subprocess
import sys

import pytest
import sympy as sp

from modeq.proofs.cli import main
from modeq.symbolic import EMA, Optimizer, beta, derive, eps, g, optimizers, rho, theta

x, y = sp.symbols("x y")
E = (x - 1)**2 + x * y + y**4
ADAM = dict(h=0.1, beta=0.9, rho=0.99, eps=1e-8)


def lam(**over):
    vals = dict(ADAM, **over)
    return derive(optimizers.adam(), 1).lambdify(E, [x, y], **vals)


@pytest.mark.parametrize("over, match", [
    (dict(beta=1.0), r"beta must be in \[0, 1\)"),
    (dict(beta=-0.1), r"beta must be in \[0, 1\)"),
    (dict(rho=0.0), r"rho must be in \(0, 1\)"),
    (dict(rho=1.5), r"rho must be in \(0, 1\)"),
    (dict(eps=0.0), r"eps must be > 0"),
    (dict(eps=-1e-8), r"eps must be > 0"),
    (dict(h=0.0), r"h must be > 0"),
    (dict(h=-0.5), r"h must be > 0"),
])
def test_hyperparameters_out_of_range(over, match):
    with pytest.raises(ValueError, match=match):
        lam(**over)


def test_missing_and_unknown_hyperparameters():
    with pytest.raises(ValueError, match="eps"):
        derive(optimizers.adam(), 1).lambdify(E, [x, y], h=0.1, beta=0.9, rho=0.99)
    with pytest.raises(ValueError, match="gamma"):
        lam(gamma=0.3)


def test_params_must_match_the_loss():
    with pytest.raises(ValueError, match=r"\['y'\].*not in params"):
        derive(optimizers.gd(), 1).field(E, [x])
    with pytest.raises(TypeError, match="SymPy symbols"):
        derive(optimizers.gd(), 1).field(E, ["x", "y"])


@pytest.mark.parametrize("bad", [sp.Abs(x) + y**2, sp.sign(x) * y, sp.Max(x, y),
                                 sp.Piecewise((x, x > 0), (y, True))])
def test_non_smooth_losses_are_refused(bad):
    with pytest.raises(ValueError, match="non-smooth"):
        derive(optimizers.gd(), 1).field(bad, [x, y])


@pytest.mark.parametrize("decay", [1, sp.Rational(3, 2), -sp.Rational(1, 2)])
def test_ema_decay_outside_unit_interval(decay):
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        EMA("m", decay=decay, of=g)


def test_step_with_an_undeclared_symbol():
    m = EMA("m", decay=beta, of=g)
    mystery = sp.Symbol("mystery")
    with pytest.raises(ValueError, match="mystery"):
        Optimizer("o", [m], m + mystery * theta, hyperparameters=[beta])
    loose = Optimizer("o", [m], m + mystery * theta)
    with pytest.raises(ValueError, match="mystery"):
        derive(loose, 1).lambdify(E, [x, y], h=0.1, beta=0.5)


def test_step_using_a_state_not_listed():
    m = EMA("m", decay=beta, of=g)
    v = EMA("v", decay=rho, of=g**2)
    with pytest.raises(ValueError, match=r"\['v'\] not listed"):
        Optimizer("o", [m], m / sp.sqrt(v + eps))


def test_non_smooth_step_and_bad_order():
    m = EMA("m", decay=beta, of=g)
    with pytest.raises(ValueError, match="non-smooth"):
        Optimizer("o", [m], sp.sign(m))
    with pytest.raises(ValueError, match="order"):
        derive(optimizers.gd(), -1)
    with pytest.raises(NotImplementedError, match="order 3"):
        derive(optimizers.gd(), 3)


def test_theta_of_the_wrong_length():
    f = lam()
    with pytest.raises(ValueError, match="theta has 3 components"):
        f(0, [1, 2, 3])


@pytest.mark.parametrize("argv, match", [
    (["derive", "adamx"], "unknown optimizer 'adamx'"),
    (["derive", "adam", "--batch", "mini", "--stationary"], "--stationary"),
])
def test_cli_errors_exit_2_with_one_line(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0] and "Traceback" not in err[0]


def test_cli_usage_error_exits_2_without_traceback():
    r = subprocess.run([sys.executable, "-m", "modeq.proofs.cli", "derive", "adam",
                        "--order", "7"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "invalid choice" in r.stderr

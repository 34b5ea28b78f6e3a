"""The matrix-free torch path (nested HVPs) against the SymPy field of the same network."""
import mpmath
import numpy as np
import pytest
import sympy as sp
import torch

from modeq.numeric.torch_flow import flow_field, flow_terms
from modeq.symbolic import derive, optimizers

P = sp.symbols("p0:6")
X = [-1.0, 0.5, 1.5]
Y = [0.5, -1 / 3, 1.0]
THETA0 = [0.3, -0.7, 0.1, 0.2, 0.8, -0.5]
VALUES = dict(h=0.05, beta=0.9, rho=0.99, eps=1e-2)


def net(p, x, tanh):
    """A 1-2-1 tanh network, 6 parameters (written once for SymPy and torch)."""
    return p[4] * tanh(p[0] * x + p[2]) + p[5] * tanh(p[1] * x + p[3])


def sympy_loss():
    return sum((net(P, sp.Rational(x), sp.tanh) - sp.Rational(y).limit_denominator(100))**2
               for x, y in zip(X, Y)) / 3


def torch_loss(p):
    ys = [float(sp.Rational(y).limit_denominator(100)) for y in Y]
    return sum((net(p, x, torch.tanh) - y)**2 for x, y in zip(X, ys)) / 3


def reference(flow, values, stationary, n=None):
    """The component field of the network (exact derivatives of the SymPy loss, the flow's
    component expressions in g, H, T), evaluated in mpmath at 30 digits: no Hessian-vector
    product, no matrix-free form."""
    mpmath.mp.dps = 30
    f = flow.lambdify(sympy_loss(), list(P), backend="mpmath", stationary=stationary, **values)
    return np.array([float(v) for v in f(n, [mpmath.mpf(t) for t in THETA0])])


CASES = [(optimizers.adam, 1, True, None), (optimizers.adam, 2, True, None),
         (optimizers.adam, 1, False, 3), (optimizers.heavy_ball, 2, True, None),
         (optimizers.gd, 2, True, None), (lambda: optimizers.adam("outside"), 2, True, None),
         # NAdam at step 400: its coefficients' parts (600^(n psi), ...) are past the float
         # range, their growth balanced (modeq.symbolic.emit.growth); NaN before
         (optimizers.torch_nadam, 1, False, 400)]


@pytest.mark.parametrize("make, order, stationary, n", CASES,
                         ids=[f"{c[0]().name}-o{c[1]}-{'stat' if c[2] else f'n{c[3]}'}"
                              for c in CASES])
def test_torch_field_equals_sympy_field(make, order, stationary, n):
    flow = derive(make(), order)
    values = {k: v for k, v in {**VALUES, "psi": 1}.items()
              if k == "h" or k in {str(s) for s in flow.optimizer.hyperparameters}}
    ref = reference(flow, values, stationary, n)
    p = torch.tensor(THETA0, dtype=torch.float64, requires_grad=True)
    (got,) = flow_field(flow, torch_loss(p), [p], stationary=stationary, n=n, **values)
    got = got.numpy()
    assert np.max(np.abs(got - ref)) <= 1e-9 * np.max(np.abs(ref))


def test_second_order_term_is_not_negligible_here():
    """F2 changes the field by far more than the tolerance, so the test above can fail."""
    flow = derive(optimizers.adam(), 2)
    p = torch.tensor(THETA0, dtype=torch.float64, requires_grad=True)
    F = [t for (t,) in flow_terms(flow, torch_loss(p), [p], **VALUES)]
    assert float(VALUES["h"] ** 2 * F[2].abs().max()) > 1e-6


def test_bad_parameters():
    flow = derive(optimizers.adam(), 1)
    p = torch.tensor(THETA0, dtype=torch.float64)
    with pytest.raises(ValueError, match="does not require grad"):
        flow_field(flow, torch.tensor(0.0), [p], **VALUES)
    q = torch.tensor([1, 2, 3])
    with pytest.raises(TypeError, match="floating dtype"):
        flow_field(flow, torch.tensor(0.0), [q], **VALUES)
    r = torch.tensor(THETA0, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="step index n"):
        flow_field(flow, torch_loss(r), [r], stationary=False, **VALUES)

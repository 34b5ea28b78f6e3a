"""Named embedded problems for order studies (``modeq verify --problem NAME``).

Each problem fixes a loss (or a list of per-batch losses), its parameters, a starting point and
hyperparameters for which the step sizes ``h = 2^-4 ... 2^-9`` on the horizon ``T = 1`` lie in
the asymptotic regime of the modified-flow expansion.  That regime needs ``h`` small against
the time scales of the problem: curvature over gradient size (Adam moves at unit speed, so
``h |H| / |g|``), and the memory lengths ``1/(1-beta)``, ``1/(1-rho)`` in steps (the second-order
error terms carry moments such as ``rho (1+rho)/(1-rho)^2``).  Hence the short memories
``beta = 1/4``, ``rho = 1/3`` (still ``rho > beta``, the paper's anti-penalising regime) and
gradients large against curvature.  Along every default trajectory (Adam, RMSProp, GD,
heavy-ball, ``T = 1``) no gradient component vanishes, so Adam with ``eps`` outside the square
root (smooth only away from ``g_j = 0``) is valid there; ``tests/test_order_study.py`` checks it.
All numbers are exact rationals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import sympy as sp

__all__ = ["Problem", "PROBLEMS", "get", "names", "DEFAULT_HS", "DEFAULT_VALUES"]

#: The default step sizes: 2^-4 ... 2^-9.
DEFAULT_HS = tuple(sp.Rational(1, 2 ** k) for k in range(4, 10))

#: Default hyperparameters (used by the optimizers that have them).
DEFAULT_VALUES = {"beta": sp.Rational(1, 4), "rho": sp.Rational(1, 3), "eps": sp.Rational(1, 100)}


@dataclass(frozen=True)
class Problem:
    """A named problem: ``loss`` (an expression, full batch) or ``losses`` (mini batch).

    >>> import sympy as sp
    >>> x = sp.Symbol("x")
    >>> p = Problem("bowl", "a quadratic bowl", [x], [1], loss=x**2 / 2)
    >>> p.mini, p.loss_or_losses
    (False, x**2/2)
    """
    name: str
    description: str
    params: Sequence[sp.Symbol]
    theta0: Sequence
    loss: Optional[sp.Expr] = None
    losses: Optional[List[sp.Expr]] = None
    values: Dict[str, object] = field(default_factory=lambda: dict(DEFAULT_VALUES))
    T: object = 1

    @property
    def mini(self) -> bool:
        return self.losses is not None

    @property
    def loss_or_losses(self):
        """The loss for full batch, the list of per-batch losses for mini batch."""
        return list(self.losses) if self.mini else self.loss

    def full_batch_loss(self):
        """The full-batch loss: the loss itself, or the mean of the batch losses."""
        return self.loss if not self.mini else sp.Add(*self.losses) / len(self.losses)

    def values_for(self, optimizer, overrides=None):
        """This problem's hyperparameters restricted to the optimizer's, updated by
        ``overrides`` (a user value wins)."""
        vals = dict(self.values)
        vals.update(overrides or {})
        names_ = {str(s) for s in optimizer.hyperparameters}
        return {k: v for k, v in vals.items() if k in names_}


_x, _y, _z = sp.symbols("x y z", real=True)

_C4 = (_x - 1) ** 2 / 2 + _y ** 2 / 4 + _x * _y / 5 + _x ** 4 / 24

_ls_rows = [(sp.Integer(1), sp.Rational(1, 2), sp.Integer(-3)),
            (sp.Rational(3, 4), sp.Integer(1), sp.Integer(-3)),
            (sp.Integer(1), sp.Rational(3, 4), sp.Integer(-4))]

PROBLEMS = {p.name: p for p in [
    Problem(
        "logcosh2d",
        "2-D non-quadratic loss 2x + 3y + log cosh(x - y) + (x^2 + y^2)/4 from (1, 1/2)",
        [_x, _y], [sp.Integer(1), sp.Rational(1, 2)],
        loss=2 * _x + 3 * _y + sp.log(sp.cosh(_x - _y)) + (_x ** 2 + _y ** 2) / 4),
    Problem(
        "coupled3d",
        "3-D coupled loss 2x + 3y + 2z + (xy + yz + zx)/4 + log cosh(x - z) + y^4/24 "
        "from (1, 1/2, -1/2)",
        [_x, _y, _z], [sp.Integer(1), sp.Rational(1, 2), sp.Rational(-1, 2)],
        loss=2 * _x + 3 * _y + 2 * _z + (_x * _y + _y * _z + _z * _x) / 4
        + sp.log(sp.cosh(_x - _z)) + _y ** 4 / 24),
    Problem(
        "leastsquares3",
        "mini-batch least squares, 3 batches E_k = (a_k . theta - b_k)^2 / 2, "
        "a = (1, 1/2), (1/2, 1), (1, -1/2), b = -3, -4, -2, from (1, 1/2)",
        [_x, _y], [sp.Integer(1), sp.Rational(1, 2)],
        losses=[(a * _x + b * _y - c) ** 2 / 2 for a, b, c in _ls_rows], T=sp.Rational(3, 4)),
    Problem(
        "quartic3",
        "mini batch, 3 non-quadratic batches C + (x + y)/4, C - x/4 + y^2/8, C - y/4 + xy/8 "
        "with C = (x - 1)^2/2 + y^2/4 + xy/5 + x^4/24, from (1, 1/2) (third derivatives enter "
        "the h^2 term)",
        [_x, _y], [sp.Integer(1), sp.Rational(1, 2)],
        losses=[_C4 + (_x + _y) / 4, _C4 - _x / 4 + _y ** 2 / 8, _C4 - _y / 4 + _x * _y / 8],
        values={**DEFAULT_VALUES, "eps": sp.Rational(1, 10)}, T=sp.Rational(1, 2)),
]}


def names():
    """The problem names, sorted.

    >>> names()
    ['coupled3d', 'leastsquares3', 'logcosh2d', 'quartic3']
    """
    return sorted(PROBLEMS)


def get(name) -> Problem:
    """A problem by name; ``ValueError`` naming the known ones otherwise.

    >>> p = get("logcosh2d")
    >>> p.params, p.theta0, p.mini
    ([x, y], [1, 1/2], False)
    """
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; known: {', '.join(names())}")
    return PROBLEMS[name]

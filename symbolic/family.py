"""Declarations of optimizers in the exponential-moving-average family.

Convention (``docs/conventions.md`` §2).  Every operation is componentwise.  An optimizer keeps
states ``s_i``, each an exponential moving average of a componentwise function ``phi_i(g, theta)``
of the gradients seen so far; after step ``n`` (steps counted from 0)

    s_i^(n+1) = sum_{k=0}^{n} w_i(n, k) phi_i(g^(k), theta^(k)),
    w_i(n, k) = c_i * d_i^(n-k) / (1 - d_i^(n+1) if bias_correction else 1),
    c_i = 1 - d_i if normalized else 1,

with ``d_i`` the state's decay, ``g^(k) = grad E_k(theta^(k))``, and the update is

    theta^(n+1) = theta^(n) - h * step(s^(n+1), g^(n), theta^(n)).

``g`` and ``theta`` below are the componentwise current gradient and parameter; an :class:`EMA`
is a SymPy symbol and can be used inside SymPy expressions.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import sympy as sp

__all__ = [
    "g", "theta", "h", "n", "beta", "rho", "eps", "EMA", "Optimizer",
    "NON_SMOOTH", "check_smooth", "check_hyperparameter", "check_hyperparameter_values",
    "RESERVED", "RANGES",
]

g = sp.Symbol("g", real=True)
theta = sp.Symbol("theta", real=True)
h = sp.Symbol("h", positive=True)
n = sp.Symbol("n", integer=True, nonnegative=True)
beta, rho, eps = sp.symbols("beta rho eps", positive=True)

RESERVED = {"n", "h", "g", "theta"}

NON_SMOOTH = (sp.Abs, sp.sign, sp.Max, sp.Min, sp.Piecewise, sp.Heaviside, sp.floor,
              sp.ceiling, sp.frac, sp.DiracDelta)

# Allowed ranges of hyperparameters known by name: (low, high, low_closed, high_closed).
RANGES = {
    "beta": (0, 1, True, False),
    "rho": (0, 1, False, False),
    "eps": (0, None, False, False),
    "h": (0, None, False, False),
}


def _describe(lo, hi, lo_closed, hi_closed):
    if hi is None:
        return f"{'>=' if lo_closed else '>'} {lo}"
    return f"in {'[' if lo_closed else '('}{lo}, {hi}{']' if hi_closed else ')'}"


def _check_range(name, value, rng):
    lo, hi, lo_closed, hi_closed = rng
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if x != x:
        raise ValueError(f"{name} must be a real number, got NaN")
    bad = (x < lo) or (x == lo and not lo_closed)
    if hi is not None:
        bad = bad or (x > hi) or (x == hi and not hi_closed)
    if bad:
        raise ValueError(f"{name} must be {_describe(*rng)}, got {value}")


def check_hyperparameter(name, value):
    """Validate one numeric hyperparameter known by name (``RANGES``: beta in [0,1), rho in
    (0,1), eps > 0, h > 0); returns ``value``.  ``ValueError`` names the parameter and the
    allowed range; ``TypeError`` if it is not a real number."""
    if name in RANGES:
        _check_range(name, value, RANGES[name])
    return value


def check_smooth(expr, what: str):
    """Raise ``ValueError`` if ``expr`` uses a non-smooth function (Abs, sign, Max, ...)."""
    expr = sp.sympify(expr)
    for f in NON_SMOOTH:
        if expr.has(f):
            raise ValueError(
                f"{what} uses the non-smooth function {f.__name__}; backward error analysis "
                f"needs a smooth (C^infinity) expression")
    return expr


def check_hyperparameter_values(values: Mapping, decays: Iterable = ()):
    """Validate numeric hyperparameters: beta in [0,1), rho in (0,1), eps > 0, h > 0, and every
    EMA decay symbol in [0, 1)."""
    decay_names = {str(d) for d in decays if isinstance(d, sp.Symbol)}
    for name, value in values.items():
        if name in RANGES:
            _check_range(name, value, RANGES[name])
        elif name in decay_names:
            _check_range(name, value, (0, 1, True, False))


class EMA(sp.Symbol):
    """An exponential moving average state, usable as a SymPy symbol in a step expression.

    ``EMA(name, decay, of, normalized=True, bias_correction=False)``: after step ``n`` the state
    is ``sum_k w(n, k) of(g^(k), theta^(k))`` with ``w(n,k) = (1-decay) decay^(n-k)`` when
    ``normalized`` (Adam's ``m``, ``v``) or ``decay^(n-k)`` otherwise (heavy-ball), divided by
    ``1 - decay^(n+1)`` when ``bias_correction``.  ``of`` is a componentwise function of ``g``
    (the current gradient component) and ``theta``.

    >>> import sympy as sp
    >>> m = EMA("m", decay=sp.Symbol("beta", positive=True), of=g, bias_correction=True)
    >>> m.describe()
    'm = EMA[beta](g) (normalised, bias-corrected)'
    """

    def __new__(cls, name, decay, of, normalized=True, bias_correction=False):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"EMA name must be an identifier, got {name!r}")
        if name in RESERVED:
            raise ValueError(f"EMA name {name!r} is reserved (reserved: {sorted(RESERVED)})")
        decay = sp.sympify(decay)
        of = check_smooth(sp.sympify(of), f"EMA {name!r}: 'of'")
        if decay.free_symbols & {g, theta, h, n}:
            raise ValueError(f"EMA {name!r}: decay must be a constant or a hyperparameter symbol, "
                             f"got {decay}")
        if decay.is_number:
            _check_range(f"EMA {name!r} decay", decay, (0, 1, True, False))
        if any(isinstance(s, EMA) for s in of.free_symbols):
            raise ValueError(f"EMA {name!r}: 'of' must be a function of g and theta, "
                             f"not of another state")
        if n in of.free_symbols or h in of.free_symbols:
            raise ValueError(f"EMA {name!r}: 'of' may not use the step index n or the step size h")
        obj = sp.Symbol.__xnew__(cls, name, real=True)
        obj.decay = decay
        obj.of = of
        obj.normalized = bool(normalized)
        obj.bias_correction = bool(bias_correction)
        return obj

    def __getnewargs_ex__(self):
        return ((self.name, self.decay, self.of, self.normalized, self.bias_correction), {})

    def _hashable_content(self):
        return super()._hashable_content() + (self.decay, self.of, self.normalized,
                                              self.bias_correction)

    def weight(self, step, k):
        """Weight ``w(step, k)`` of ``of`` evaluated at iterate ``k`` in the state after ``step``."""
        d = self.decay
        w = (1 - d) * d ** (step - k) if self.normalized else d ** (step - k)
        if self.bias_correction:
            w = w / (1 - d ** (step + 1))
        return w

    def stationary_weight(self, lag):
        """The ``n -> infinity`` limit of the weight at lag ``n - k`` (bias correction -> 1)."""
        d = self.decay
        return (1 - d) * d ** lag if self.normalized else d ** lag

    def describe(self) -> str:
        kind = "normalised" if self.normalized else "unnormalised"
        bc = ", bias-corrected" if self.bias_correction else ""
        return f"{self.name} = EMA[{self.decay}]({self.of}) ({kind}{bc})"


class Optimizer:
    """An optimizer of the EMA family: ``theta <- theta - h * step(states, g, theta)``.

    Parameters
    ----------
    name : str
    states : list of :class:`EMA`
    step : SymPy expression in the states, ``g``, ``theta`` and hyperparameter symbols.
    hyperparameters : optional iterable of symbols.  When given, every other symbol in the step
        or in a state is an error; when omitted, the free symbols are taken as hyperparameters
        (values must then be given at ``lambdify`` time).
    notes : optional text shown with derived results (validity conditions and the like).

    >>> import sympy as sp
    >>> beta = sp.Symbol("beta", positive=True)
    >>> momentum = Optimizer("momentum", [EMA("m", decay=beta, of=g)], EMA("m", beta, g))
    >>> momentum.hyperparameters
    (beta,)
    """

    def __init__(self, name, states, step, hyperparameters=None, notes=""):
        if not isinstance(name, str) or not name:
            raise ValueError("Optimizer name must be a non-empty string")
        states = list(states)
        for s in states:
            if not isinstance(s, EMA):
                raise TypeError(f"Optimizer {name!r}: states must be EMA objects, got {s!r}")
        names = [s.name for s in states]
        if len(set(names)) != len(names):
            raise ValueError(f"Optimizer {name!r}: state names must be distinct, got {names}")
        step = check_smooth(sp.sympify(step), f"Optimizer {name!r}: step")
        if isinstance(step, sp.MatrixBase) or not isinstance(step, sp.Expr):
            raise TypeError(f"Optimizer {name!r}: step must be a scalar SymPy expression")
        used_states = {s for s in step.free_symbols if isinstance(s, EMA)}
        unknown_states = used_states - set(states)
        if unknown_states:
            raise ValueError(f"Optimizer {name!r}: step uses state(s) "
                             f"{sorted(map(str, unknown_states))} not listed in states")
        if n in step.free_symbols:
            raise ValueError(f"Optimizer {name!r}: step may not use the step index n")
        if h in step.free_symbols:
            raise ValueError(f"Optimizer {name!r}: step may not use the step size h "
                             f"(the update is theta - h*step)")
        free = set(step.free_symbols) - set(states) - {g, theta}
        for s in states:
            free |= (s.decay.free_symbols | s.of.free_symbols) - {g, theta}
        if hyperparameters is not None:
            declared = set(hyperparameters)
            undeclared = free - declared
            if undeclared:
                raise ValueError(f"Optimizer {name!r}: undeclared symbol(s) "
                                 f"{sorted(map(str, undeclared))}; known: states "
                                 f"{names}, g, theta and hyperparameters "
                                 f"{sorted(map(str, declared))}")
            free = declared
        self.name = name
        self.states = tuple(states)
        self.step = step
        self.hyperparameters = tuple(sorted(free, key=str))
        self.notes = notes

    @property
    def decays(self):
        return tuple(s.decay for s in self.states)

    def memoryless(self) -> bool:
        return not self.states

    def check_values(self, values: Mapping):
        """Validate given numeric hyperparameters; raise naming any symbol left without a value."""
        missing = [str(s) for s in self.hyperparameters if str(s) not in values]
        if missing:
            raise ValueError(f"optimizer {self.name!r}: no value given for hyperparameter(s) "
                             f"{missing} (pass them by name, e.g. {missing[0]}=...)")
        check_hyperparameter_values(values, self.decays)

    def __repr__(self):
        states = "; ".join(s.describe() for s in self.states) or "no state"
        return f"Optimizer({self.name!r}: step = {self.step}; {states})"

"""Default settings of the ρ and β sweeps and validation of every user-given setting.

Conventions: hyperparameters are Python floats; swept values lie in (0, 1) and are sorted
ascending; ``seeds`` is an int ``k`` (seeds ``0 … k-1``) or a list of distinct non-negative
ints; a sweep's *kind* is ``"rho"`` or ``"beta"`` (``"rho-sweep"`` etc. accepted).  Every check
raises ``ValueError`` naming the setting.
"""
from __future__ import annotations

import math
import numbers

__all__ = ["DEFAULTS", "check_number", "check_positive_int", "check_sweep_values",
           "check_seeds", "check_lr", "check_kind", "beta_rho"]

#: Default settings of the two sweeps (the paper's fixed values; swept values near them).
DEFAULTS = {
    "rho": {"fixed": {"beta": 0.99}, "values": (0.99, 0.995, 0.999, 0.9995, 0.9999)},
    "beta": {"fixed": {"rho": 0.999}, "values": (0.5, 0.8, 0.9, 0.95, 0.99)},
    "steps": 1000, "seeds": 3, "lr": 1e-3, "eps": 1e-8, "model": "mlp",
}


def check_number(name, value):
    """A finite real number as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_positive_int(name, value):
    """An integer ``>= 1``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def check_sweep_values(kind, values):
    """The swept values of a ``kind`` sweep, sorted (the defaults for ``None``).

    >>> check_sweep_values("rho", [0.999, 0.9])
    (0.9, 0.999)
    """
    if values is None:
        return tuple(DEFAULTS[kind]["values"])
    try:
        values = [check_number(f"{kind} value", v) for v in values]
    except TypeError:
        raise ValueError(f"values must be a sequence of numbers, got {values!r}") from None
    if not values:
        raise ValueError("no values to sweep")
    for v in values:
        if not 0.0 < v < 1.0:
            raise ValueError(f"{kind} value {v} is outside (0, 1)")
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate {kind} values in {values}")
    return tuple(sorted(values))


def check_seeds(seeds):
    """The seeds as a tuple of ints."""
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        return tuple(range(check_positive_int("seeds", seeds)))
    try:
        seeds = list(seeds)
    except TypeError:
        raise ValueError(f"seeds must be a positive integer or a list of integers, got {seeds!r}") \
            from None
    if not seeds:
        raise ValueError("seeds must not be empty")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"seed {s!r} is not a non-negative integer")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"duplicate seeds in {seeds}")
    return tuple(int(s) for s in seeds)


def check_lr(lr):
    """The learning rate (the step size ``h``), ``> 0``."""
    lr = check_number("lr", lr)
    if lr <= 0:
        raise ValueError(f"lr (the step size h) must be > 0, got {lr}")
    return lr


def check_kind(kind):
    """``"rho"`` or ``"beta"``."""
    k = str(kind).lower().replace("-sweep", "")
    if k not in ("rho", "beta"):
        raise ValueError(f"unknown sweep {kind!r}; choose rho-sweep or beta-sweep")
    return k


def beta_rho(kind, fixed, value):
    """``(β, ρ)`` of the run at the swept ``value`` of a ``kind`` sweep with ``fixed`` values."""
    return (fixed["beta"], value) if kind == "rho" else (value, fixed["rho"])

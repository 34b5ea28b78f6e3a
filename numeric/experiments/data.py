"""The experiment's inputs: default settings, their validation, the data (scikit-learn's bundled
8×8 digits) and two small networks.

Settings: hyperparameters are Python floats; swept values lie in (0, 1) and are sorted ascending;
``seeds`` is an int ``k`` (seeds ``0 … k-1``) or a list of distinct non-negative ints; a sweep's
*kind* is ``"rho"`` or ``"beta"`` (``"rho-sweep"`` etc. accepted); every check raises
``ValueError`` naming the setting. Data: inputs are rows of 64 pixels scaled to [0, 1] in float32,
targets int64 labels; the split is fixed (stratified, 1257/540). A *model* is ``"mlp"``, ``"cnn"``,
an ``nn.Module`` (deep-copied and re-initialised with ``reset_parameters()``) or a callable
returning a fresh one. torch and scikit-learn are imported only when called.
"""
import copy
import math
import numbers
from dataclasses import dataclass

import numpy as np


MODELS = ("mlp", "cnn")
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


@dataclass
class Data:
    """Full-batch training and test sets as tensors."""
    X_train: "object"
    y_train: "object"
    X_test: "object"
    y_test: "object"
    name: str = "custom"

    def __post_init__(self):
        import torch
        arrays = {}
        for key in ("X_train", "y_train", "X_test", "y_test"):
            v = getattr(self, key)
            if not isinstance(v, torch.Tensor):
                try:
                    v = torch.as_tensor(np.asarray(v))
                except Exception as exc:
                    raise TypeError(f"data {key} cannot be turned into a tensor: {exc}") from None
            arrays[key] = v
        for split in ("train", "test"):
            X, y = arrays[f"X_{split}"], arrays[f"y_{split}"]
            if X.dim() == 0 or y.dim() == 0 or X.shape[0] != y.shape[0]:
                raise ValueError(f"data: X_{split} and y_{split} must have the same number of rows, "
                                 f"got shapes {tuple(X.shape)} and {tuple(y.shape)}")
            if X.shape[0] == 0:
                raise ValueError(f"data: the {split} set is empty")
        for key, v in arrays.items():
            object.__setattr__(self, key, v)


def load_digits_data(test_size=0.3, split_seed=0) -> Data:
    """scikit-learn's bundled digits (1797 images 8×8, no download), pixels scaled to [0, 1],
    float32, a fixed stratified split (``random_state=split_seed``).

    >>> d = load_digits_data()
    >>> tuple(d.X_train.shape), tuple(d.X_test.shape)
    ((1257, 64), (540, 64))
    """
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=test_size,
                                          random_state=split_seed, stratify=y)
    f = torch.float32
    return Data(torch.tensor(Xtr, dtype=f), torch.tensor(ytr, dtype=torch.int64),
                torch.tensor(Xte, dtype=f), torch.tensor(yte, dtype=torch.int64), name="digits")


def make_model(name):
    """A fresh built-in model for the digits (inputs: rows of 64 pixels), float32.

    ``mlp``: 64 → 32 (tanh) → 10, 2410 parameters.
    ``cnn``: 8×8 image → conv 3×3 8 channels (tanh) → conv 3×3 stride 2, 16 channels (tanh)
    → linear 64 → 10, 1898 parameters.  Smooth activations, no pooling: the analysis assumes a
    smooth loss.  On a CPU the CNN is about ten times slower per run than the MLP (measured:
    the default ρ grid, 3 seeds, 200 steps with the counter-experiment took 277 s on a busy
    2-core machine), mostly the double backward through the convolutions.

    >>> sum(p.numel() for p in make_model("mlp").parameters())
    2410
    """
    import torch.nn as nn
    if not isinstance(name, str) or name.lower() not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    if name.lower() == "mlp":
        return nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 8, 3), nn.Tanh(),
                         nn.Conv2d(8, 16, 3, stride=2), nn.Tanh(), nn.Flatten(),
                         nn.Linear(64, 10))


def model_factory(model):
    """``(fresh, name)``: a callable returning a fresh ``nn.Module`` for ``model``, and its
    name (``ValueError`` for anything else)."""
    import torch.nn as nn
    if isinstance(model, str):
        make_model(model)                               # validates the name
        return lambda: make_model(model), model.lower()
    if isinstance(model, nn.Module):
        template = model

        def fresh():
            m = copy.deepcopy(template)
            for sub in m.modules():
                if hasattr(sub, "reset_parameters"):
                    sub.reset_parameters()
            return m
        return fresh, type(model).__name__
    if callable(model):
        return model, getattr(model, "__name__", type(model).__name__)
    raise ValueError(f"unknown model {model!r}; give 'mlp', 'cnn', an nn.Module or a callable "
                     f"returning one")

"""Numeric inputs and outputs of the emitted callables: points, arrays, dtypes.

Layout: *component first*.  ``theta`` (or ``g``) has shape ``(p,)`` for one point or
``(p, N)`` (more generally ``(p, *batch)``) for ``N`` points, column ``k`` being point ``k``;
results have the same shape.  The mpmath backend evaluates one point given as a sequence of
``p`` numbers and returns a list of ``mpf`` at the working precision.  NumPy and torch work in
float64 unless a ``dtype`` is chosen; torch tensors keep their device.

NumPy and torch are imported inside the functions that need them: the symbolic layer imports
only SymPy.
"""
from __future__ import annotations

import fractions

import sympy as sp

from .values import check_backend

__all__ = ["resolve_dtype", "as_points", "as_array", "stack_components", "to_mpf", "to_number",
           "all_finite"]


def resolve_dtype(backend, dtype=None):
    """The working dtype: ``numpy.dtype`` / ``torch.dtype`` (``float64`` by default), ``None``
    for mpmath.  ``TypeError`` for a non-floating (integer, complex, bool) or unknown dtype."""
    check_backend(backend)
    if backend == "mpmath":
        if dtype is not None:
            raise ValueError("dtype is for the numpy and torch backends; mpmath works at "
                             "mpmath.mp.prec / mp.dps, read at call time")
        return None
    if backend == "numpy":
        import numpy as np
        if dtype is None:
            return np.dtype(np.float64)
        if type(dtype).__module__ == "torch":  # torch.float32 -> "float32"
            dtype = str(dtype).split(".")[-1]
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype: not a NumPy dtype: {dtype!r}") from None
        if dt.kind != "f":
            raise TypeError(f"dtype must be a real floating-point type (float16, float32, "
                            f"float64, longdouble), got {dt}")
        return dt
    import torch
    if dtype is None:
        return torch.float64
    dt = dtype
    if not isinstance(dt, torch.dtype):
        name = str(getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or dtype)
        dt = getattr(torch, name.replace("torch.", ""), None)
        if not isinstance(dt, torch.dtype):
            raise TypeError(f"dtype: not a torch dtype: {dtype!r}")
    if not dt.is_floating_point:
        raise TypeError(f"dtype must be a real floating-point type (float16, bfloat16, float32, "
                        f"float64), got {dt}")
    return dt


def as_array(x, backend, dtype, name):
    """``x`` as a NumPy array / torch tensor of real numbers in ``dtype`` (any shape)."""
    if backend == "numpy":
        import numpy as np
        if type(x).__module__.startswith("torch"):
            x = x.detach().cpu().numpy()
        a = np.asarray(x)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
        return a.astype(dtype, copy=False)
    import torch
    if isinstance(x, torch.Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        return x.to(dtype)
    import numpy as np
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return torch.as_tensor(a.astype(np.float64), dtype=dtype)


def as_points(theta, p, backend, dtype, name="theta"):
    """``theta`` as an array of shape ``(p, *batch)`` in ``dtype`` (NumPy / torch), or a list of
    ``p`` mpf (mpmath); ``ValueError`` / ``TypeError`` with the expected layout otherwise."""
    layout = (f"{name} must have shape ({p},) for one point or ({p}, N) for N points "
              f"(component first, one row per parameter)")
    if backend == "mpmath":
        if hasattr(theta, "shape") and len(getattr(theta, "shape")) != 1:
            raise ValueError(f"the mpmath backend evaluates one point: {name} must be a "
                             f"sequence of {p} numbers, got shape {tuple(theta.shape)}")
        try:
            xs = list(theta)
        except TypeError:
            raise TypeError(f"{name} must be a sequence of {p} numbers, got "
                            f"{type(theta).__name__}") from None
        if len(xs) != p:
            raise ValueError(f"{name} has {len(xs)} components, the loss has {p} parameters")
        return [to_mpf(x, name) for x in xs]
    x = as_array(theta, backend, dtype, name)
    if x.ndim == 0 or x.shape[0] != p:
        shape = tuple(x.shape)
        hint = (" — points stored as rows? pass theta.T" if len(shape) == 2 and shape[1] == p
                else "")
        raise ValueError(f"{layout}; got shape {shape}{hint}")
    return x


def to_mpf(x, name="value"):
    """A real number (Python, SymPy, ``Fraction``, or a 0-d NumPy / torch value) as an
    ``mpmath.mpf`` at the working precision (rationals rounded once)."""
    import mpmath
    if isinstance(x, sp.Basic):
        if x.is_Rational:
            return mpmath.mpf(int(x.p)) / int(x.q)
        if x.is_number:
            return mpmath.mpf(x.evalf(mpmath.mp.dps + 15))
        raise TypeError(f"{name}: not a number: {x}")
    if isinstance(x, fractions.Fraction):
        return mpmath.mpf(x.numerator) / x.denominator
    if isinstance(x, bool):
        raise TypeError(f"{name}: components must be numbers, got {x!r}")
    try:
        return mpmath.mpf(x)
    except (TypeError, ValueError):
        pass
    try:
        return mpmath.mpf(float(x))        # a 0-d NumPy or torch value
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name}: components must be real numbers, got {x!r}") from None


def to_number(value, arithmetic="mpmath"):
    """A hyperparameter or coordinate value in the chosen arithmetic.

    ``mpmath``: an ``mpf`` at the current precision; strings and SymPy rationals are rounded once
    from their exact value, Python floats are taken as the binary number they are.
    ``exact``: a SymPy number (floats are taken exactly as binary rationals).

    >>> to_number("1/4", "exact"), to_number(0.5, "exact")
    (1/4, 1/2)
    """
    if arithmetic == "exact":
        if isinstance(value, float):
            return sp.Rational(value)
        value = sp.Rational(value) if isinstance(value, str) else sp.sympify(value)
        return sp.Rational(value) if isinstance(value, sp.Float) else value
    if isinstance(value, str):
        value = sp.Rational(value)
    if isinstance(value, sp.Basic) and not (value.is_number and value.is_real):
        raise TypeError(f"expected a real number, got {value!r}")
    return to_mpf(value)


def stack_components(backend, dtype, outs, batch_shape, device=None):
    """``outs`` (one value per component; constants allowed) as one array of shape
    ``(len(outs), *batch_shape)`` in ``dtype`` (NumPy / torch); a list for mpmath."""
    if backend == "numpy":
        import numpy as np
        return np.stack([np.broadcast_to(np.asarray(o, dtype=dtype), batch_shape)
                         for o in outs]) if outs else np.zeros((0,) + tuple(batch_shape), dtype)
    if backend == "torch":
        import torch
        if not outs:
            return torch.zeros((0,) + tuple(batch_shape), dtype=dtype, device=device)
        return torch.stack([torch.broadcast_to(
            torch.as_tensor(o, dtype=dtype, device=device), tuple(batch_shape)) for o in outs])
    return list(outs)


def all_finite(values):
    """Whether every entry of ``values`` (numbers, NumPy arrays, torch tensors, nested lists of
    them) is finite."""
    import numpy as np
    for v in values:
        if isinstance(v, (list, tuple)):
            if not all_finite(v):
                return False
        elif type(v).__module__.startswith("torch"):
            import torch
            if not bool(torch.isfinite(v).all()):
                return False
        elif not np.isfinite(np.asarray(v, dtype=float)).all():
            return False
    return True

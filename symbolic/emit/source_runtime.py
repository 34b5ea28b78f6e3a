"""The runtime helpers written into generated source modules (NumPy or torch).

A generated module needs only NumPy or torch: its input checks (real floating-point arrays of
``g``'s shape, the step index, hyperparameter ranges taken from
:data:`modeq.symbolic.family.RANGES` at generation time) are written into it as source.
"""
from __future__ import annotations

__all__ = ["runtime_helpers"]


def runtime_helpers(backend, ranges):
    """Source of the helper functions ``_check``, ``_step``, ``_array``, ``_scalar``,
    ``_apply``, ``_full_like`` and ``_finite_at_step`` (a field exact in ``n`` that overflows
    raises, instead of returning ``inf`` or ``nan``) for ``backend``, with the allowed
    ``ranges``."""
    rng = ",\n".join(f"    {k!r}: {v!r}" for k, v in sorted(ranges.items()))
    common = f'''
# allowed ranges: name -> (low, high, low included, high included); high None = unbounded
RANGES = {{
{rng}
}}


def _check(name, value):
    if isinstance(value, bool):
        raise TypeError(f"{{name}} must be a real number, got {{value!r}}")
    x = float(value)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"{{name}} must be a finite real number, got {{value!r}}")
    if name in RANGES:
        lo, hi, lo_in, hi_in = RANGES[name]
        bad = x < lo or (x == lo and not lo_in)
        if hi is not None:
            bad = bad or x > hi or (x == hi and not hi_in)
        if bad:
            lo_b, hi_b = "[" if lo_in else "(", "]" if hi_in else ")"
            where = f">= {{lo}}" if hi is None and lo_in else f"> {{lo}}" if hi is None \\
                else f"in {{lo_b}}{{lo}}, {{hi}}{{hi_b}}"
            raise ValueError(f"{{name}} must be {{where}}, got {{value!r}}")


_OVERFLOW = ("the flow overflowed {{dtype}} at step {{n}} although g is finite: its coefficients "
             "exact in n have parts past the float range (such as NAdam's 600^(n psi) against "
             "24^(3 n psi)), which cancel only in a division; modeq's compiled field "
             "(flow.lambdify) and matrix-free path balance them, or use the stationary flow")


def _step(n):
    if isinstance(n, bool) or not hasattr(n, "__index__") or int(n) < 0:
        raise ValueError(f"the step index n must be an integer >= 0, got {{n!r}}")
    return int(n)
'''
    if backend == "numpy":
        return common + '''

def _array(x, name, like=None):
    x = numpy.asarray(x)
    if x.dtype.kind in "iu":
        x = x.astype(numpy.float64 if like is None else like.dtype)
    if x.dtype.kind != "f":
        raise TypeError(f"{name} must hold real floating-point numbers, got dtype {x.dtype}")
    if like is not None and x.shape != like.shape:
        raise ValueError(f"{name} has shape {x.shape}, g has shape {like.shape}")
    return x


def _scalar(name, value, like):
    _check(name, value)
    return numpy.asarray(value, dtype=like.dtype)


def _apply(callback, *args, like):
    out = numpy.asarray(callback(*args))
    if out.shape != like.shape:
        raise ValueError(f"{getattr(callback, '__name__', 'callback')} returned shape "
                         f"{out.shape}, expected {like.shape} (the shape of g)")
    return out


def _full_like(g, value):
    return numpy.full_like(g, value)


def _finite_at_step(value, g, n):
    if numpy.isfinite(g).all() and not numpy.isfinite(value).all():
        raise FloatingPointError(_OVERFLOW.format(n=n, dtype=g.dtype))
    return value
'''
    return common + '''

def _array(x, name, like=None):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if like is not None and x.shape != like.shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)}, g has shape {tuple(like.shape)}")
    return x


def _scalar(name, value, like):
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar")
        value = value.item()
    _check(name, value)
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def _apply(callback, *args, like):
    out = callback(*args)
    if not isinstance(out, torch.Tensor) or out.shape != like.shape:
        shape = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
        raise ValueError(f"{getattr(callback, '__name__', 'callback')} returned {shape}, "
                         f"expected a tensor of shape {tuple(like.shape)} (the shape of g)")
    return out


def _full_like(g, value):
    return torch.full_like(g, float(value)) + 0 * g


def _finite_at_step(value, g, n):
    if bool(torch.isfinite(g).all()) and not bool(torch.isfinite(value).all()):
        raise FloatingPointError(_OVERFLOW.format(n=n, dtype=g.dtype))
    return value
'''

"""Numeric lowering of modified flows: SymPy expressions printed for NumPy, torch or mpmath.

``lambdify_flow(flow, E_or_losses, params, backend, stationary, schedule, cse, dtype, **values)``
returns ``f(n, theta) -> d theta/dt`` on ``[nh, (n+1)h)``.

Conventions
-----------
* **Hyperparameters** are converted *exactly* (floats by their binary value, strings and
  fractions as exact rationals) and substituted before printing; no float literal is printed.
* **Constants** (every non-integer number and every number-valued subexpression such as
  ``sqrt(3)`` or ``1/3``) are lifted out of the printed code into arguments bound to their values
  in the target arithmetic: with ``backend="mpmath"`` at the *call-time* ``mpmath.mp.prec`` (cached
  per precision), with NumPy / torch correctly rounded to the chosen ``dtype``.  Integers and
  integer exponents stay in the source.  ``B**(k/2)`` becomes ``sqrt(B)**k`` so that one square
  root is shared by common-subexpression elimination; small integer powers are multiplied out.
* **Batches** (NumPy, torch): ``theta`` has shape ``(p,)`` — one point — or ``(p, N)`` (more
  generally ``(p, *batch)``): *component first*, column ``k`` is point ``k``.  The result has the
  same shape.  Points stored as rows, shape ``(N, p)``, are passed as ``theta.T``.
* **dtype** (NumPy, torch): ``float64`` by default; any real floating type may be chosen
  (``"float32"``, ``numpy.float32``, ``torch.float32``...).  ``theta`` is converted to it, the
  result is in it.  torch tensors keep their device; the result is differentiable by autograd.
* **mpmath** evaluates one point: ``theta`` is a sequence of ``p`` numbers, the result a list of
  ``mpf`` at the working precision.
* Full batch: the lowered field (exact in ``n`` unless ``stationary``) is printed once, with
  common-subexpression elimination (``cse=True``); ``f.source`` is the printed code.
* SymPy 1.14's torch printer gaps are covered: elementwise ``Max``/``Min`` (``torch.max(0, x)``
  fails or reduces), functions of Python scalars (``torch.sqrt(2)``), ``torch.pow`` of two Python
  numbers, and constant results (broadcast to the batch shape).
* Mini batch: the flow on step ``n`` depends on every past batch.  Grouping the memory sums by
  batch (:func:`~modeq.symbolic.expansion.grouped_step_terms`), one call evaluates each batch's
  gradient and Hessian once, whatever ``n``; past steps enter only through scalar weight tables
  and the cheap ``F0`` kernel.  The memory window is cut only where the dropped weights are
  below the working precision.

The symbolic layer imports only SymPy: NumPy, torch and mpmath are imported lazily, inside the
functions that build callables.
"""
from __future__ import annotations

import fractions
import itertools
import math
import operator

import sympy as sp
from sympy.codegen.cfunctions import Sqrt

from .components import LossProvider, lower
from .expansion import grouped_step_terms
from .family import h as h_sym
from .family import n as n_sym

__all__ = ["lambdify_flow", "exact_value", "resolve_values", "BACKENDS", "Kernel",
           "FullBatchField", "resolve_dtype", "check_backend", "make_printer",
           "prepare_expressions", "share_square_roots", "check_step", "as_points"]

BACKENDS = ("mpmath", "numpy", "torch")

# integer powers x**k with 2 <= |k| <= _POW_EXPAND are printed as products (NumPy, torch)
_POW_EXPAND = 4
# integers up to this size stay literal in the printed code (exact in every float type used)
_INT_LITERAL = 2 ** 24


def exact_value(name, value):
    """Exact SymPy number for a user-given hyperparameter value."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if isinstance(value, sp.Basic):
        if not value.is_number:
            raise TypeError(f"{name} must be a number, got {value}")
        return sp.nsimplify(value, rational=True) if value.is_Float else value
    if isinstance(value, int):
        return sp.Integer(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        return sp.Rational(value)
    if isinstance(value, fractions.Fraction):
        return sp.Rational(value.numerator, value.denominator)
    if isinstance(value, str):
        try:
            return sp.Rational(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: cannot read {value!r} as a number") from None
    if hasattr(value, "man_exp"):  # an mpmath mpf: mantissa * 2**exponent, exactly
        man, ex = value.man_exp
        return sp.Integer(man) * sp.Integer(2) ** ex
    if type(value).__module__ == "numpy" and hasattr(value, "dtype"):  # numpy scalar
        kind = value.dtype.kind
        if kind in "iu":
            return sp.Integer(int(value))
        if kind == "f":
            return exact_value(name, float(value)) if value.dtype.itemsize <= 8 else \
                sp.Rational(*value.as_integer_ratio())
    raise TypeError(f"{name} must be a number, got {value!r}")


def resolve_values(flow, values):
    """``{symbol: exact value}`` for every hyperparameter of the flow (``h`` included when the
    order is >= 1); raises naming a missing or unknown hyperparameter, or a value out of range."""
    opt = flow.optimizer
    known = {str(s): s for s in opt.hyperparameters}
    if flow.order >= 1:
        known["h"] = h_sym
    unknown = sorted(set(values) - set(known) - {"h"})
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for {opt.name!r}; it has "
                         f"{sorted(known)}")
    exact = {name: exact_value(name, v) for name, v in values.items()}
    opt.check_values(exact)
    if "h" in exact:
        from .family import check_hyperparameter_values
        check_hyperparameter_values({"h": exact["h"]})
    missing = sorted(set(known) - set(exact))
    if missing:
        raise ValueError(f"no value given for {missing} (pass e.g. {missing[0]}=...)")
    return {known[k]: v for k, v in exact.items() if k in known}


def check_backend(backend):
    """The backend name, or ``ValueError`` naming the choices."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


_modules = check_backend  # the mini-batch evaluator's name for it


# ------------------------------------------------------------------------------------ dtypes
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


# ------------------------------------------------------------------- preparing expressions
def _is_constant(e):
    return isinstance(e, sp.Expr) and not e.free_symbols and e.is_number


def prepare_expressions(exprs):
    """Lift constants out of ``exprs`` and share square roots.

    Returns ``(prepared, constants)``: ``prepared`` uses placeholder symbols (``_c0``...) for every
    non-integer number-valued subexpression; ``constants`` is ``[(placeholder, exact value)]``.
    Integers (of modest size) and integer exponents stay; a number raised to a symbolic power
    becomes a placeholder (``2**(-n)`` would otherwise be a Python float); ``B**(k/2)`` becomes
    ``Sqrt(B)**k`` (an unevaluated square root, so that CSE shares it between ``B**(1/2)`` and
    ``B**(3/2)``).  Sums keep their limits untouched.
    """
    exprs = [sp.sympify(e) for e in exprs]
    taken = {str(s) for e in exprs for s in e.free_symbols}
    names = (nm for nm in (f"_c{k}" for k in itertools.count()) if nm not in taken)
    table = {}
    memo = {}

    def const(c):
        # plain symbols (not Dummy): lambdify would otherwise rename every argument
        if c not in table:
            table[c] = sp.Symbol(next(names), real=True)
        return table[c]

    def walk(e):
        if e in memo:
            return memo[e]
        if e.is_Integer:
            out = e if abs(int(e)) <= _INT_LITERAL else const(e)
        elif not e.args:
            out = const(e) if _is_constant(e) else e
        elif _is_constant(e):
            out = const(e)
        elif e.is_Pow:
            b, x = e.args
            if x.is_Integer:
                out = sp.Pow(walk(b), x)
            elif x.is_Rational and x.q == 2:
                out = Sqrt(walk(b)) ** int(x.p)
            else:
                nb = const(b) if _is_constant(b) else walk(b)
                out = sp.Pow(nb, walk(x))
        elif isinstance(e, sp.Sum):
            out = sp.Sum(walk(e.function), *e.limits)
        else:
            out = e.func(*[walk(a) for a in e.args])
        memo[e] = out
        return out

    prepared = [walk(e) for e in exprs]
    return prepared, [(d, c) for c, d in table.items()]


def share_square_roots(expr):
    """``B**(k/2)`` -> ``Sqrt(B)**k`` (an unevaluated square root): CSE then shares one root
    between ``sqrt(B)``, ``B**(3/2)`` and ``B**(-1/2)``; the printers print it as the backend's
    ``sqrt``."""
    return sp.sympify(expr).replace(
        lambda e: e.is_Pow and e.exp.is_Rational and e.exp.q == 2 and not e.exp.is_Integer,
        lambda e: Sqrt(e.base) ** int(e.exp.p))


def _cse_with_opaque_sums(exprs):
    """CSE that treats each ``Sum`` as one opaque value (its bound variable never escapes)."""
    sums = {}
    taken = {str(s) for e in exprs for s in e.free_symbols}
    names = (nm for nm in (f"_s{k}" for k in itertools.count()) if nm not in taken)

    def hide(e):
        return e.replace(lambda x: isinstance(x, sp.Sum),
                         lambda x: sums.setdefault(x, sp.Symbol(next(names))))

    hidden = [hide(e) for e in exprs]
    exclude = taken | {str(d) for d in sums.values()}
    repl, reduced = sp.cse(hidden, list=True, symbols=(
        sp.Symbol(nm) for nm in (f"_x{k}" for k in itertools.count()) if nm not in exclude))
    return [(d, s) for s, d in sums.items()] + list(repl), reduced


# ------------------------------------------------------------------------------- printers
_PRINTERS = {}


def make_printer(backend, fully_qualified=True):
    """A SymPy code printer for ``backend`` with modeq's fixes (see the module docstring):
    ``Sqrt`` printed as the backend's square root, small integer powers multiplied out
    (NumPy, torch), Python ``**`` instead of ``torch.pow``, elementwise ``Max``/``Min`` for torch.
    """
    check_backend(backend)
    key = backend
    if key not in _PRINTERS:
        _PRINTERS[key] = _printer_class(backend)
    return _PRINTERS[key]({"fully_qualified_modules": fully_qualified, "inline": True,
                           "allow_unknown_functions": True, "user_functions": {}})


def _printer_class(backend):
    from sympy.printing.precedence import PRECEDENCE, precedence

    if backend == "numpy":
        from sympy.printing.numpy import NumPyPrinter as Base
        sqrt_name = "numpy.sqrt"
    elif backend == "torch":
        from sympy.printing.pytorch import TorchPrinter as Base
        sqrt_name = "torch.sqrt"
    else:
        from sympy.printing.pycode import MpmathPrinter as Base
        sqrt_name = "mpmath.sqrt"
    expand_powers = backend in ("numpy", "torch")

    class Printer(Base):
        def _print_Sqrt(self, expr):
            return f"{self._module_format(sqrt_name)}({self._print(expr.args[0])})"

        def _print_Pow(self, expr, rational=False):
            b, x = expr.args
            if x.is_Integer and expand_powers and 2 <= abs(int(x)) <= _POW_EXPAND:
                base = self.parenthesize(b, PRECEDENCE["Mul"], strict=True)
                prod = "*".join([base] * abs(int(x)))
                return f"({prod})" if x > 0 else f"(1/({prod}))"
            if x == -1:
                return f"(1/{self.parenthesize(b, PRECEDENCE['Pow'], strict=True)})"
            if x == sp.S.Half:
                return f"{self._module_format(sqrt_name)}({self._print(b)})"
            if x == -sp.S.Half:
                return f"(1/{self._module_format(sqrt_name)}({self._print(b)}))"
            if x.is_Integer or backend == "torch":
                # Python's operator: no float exponent for integers, no torch.pow(int, int)
                PREC = precedence(expr)
                return "{}**{}".format(self.parenthesize(b, PREC, strict=False),
                                       self.parenthesize(x, PREC, strict=False))
            return super()._print_Pow(expr, rational=rational)

        if backend == "torch":
            def _minmax(self, expr, fn):
                args = [self._print(a) if not _is_constant(a)
                        else f"{self._module_format('torch.as_tensor')}({self._print(a)})"
                        for a in expr.args]
                out = args[0]
                for a in args[1:]:
                    out = f"{self._module_format(fn)}({out}, {a})"
                return out

            def _print_Max(self, expr):
                return self._minmax(expr, "torch.maximum")

            def _print_Min(self, expr):
                return self._minmax(expr, "torch.minimum")

    Printer.__name__ = f"Modeq{Base.__name__}"
    return Printer


# --------------------------------------------------------------------------------- kernels
class Kernel:
    """A list of SymPy expressions compiled for one backend.

    ``Kernel(exprs, args, backend, dtype=None, cse=True)``; ``kernel(*values)`` returns the list
    of values, one per expression (elementwise over arrays for NumPy / torch; a constant
    expression gives a scalar — see :meth:`broadcast`).  ``kernel.source`` is the printed
    function; constants enter as trailing arguments (see :func:`prepare_expressions`).
    ``ValueError`` if an expression has a free symbol that is not in ``args``.
    """

    def __init__(self, exprs, args, backend="numpy", dtype=None, cse=True):
        self.backend = check_backend(backend)
        self.dtype = resolve_dtype(backend, dtype)
        exprs = [sp.sympify(e) for e in exprs]
        args = list(args)
        free = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
        extra = free - set(args)
        if extra:
            raise ValueError(f"expression uses symbol(s) {sorted(map(str, extra))} that have "
                             f"no value (arguments: {[str(a) for a in args]})")
        prepared, consts = prepare_expressions(exprs)
        self._placeholders = [d for d, _ in consts]
        self._constants = [c for _, c in consts]
        self._cache = {}
        if cse is True:
            cse = _cse_with_opaque_sums
        import importlib
        # modules for the fully qualified names the printers use
        namespace = {m: importlib.import_module(m)
                     for m in (backend, "functools", "builtins", "math")}
        self._fn = sp.lambdify(args + self._placeholders, prepared,
                               modules=[namespace, backend],
                               printer=make_printer(backend), cse=cse, dummify=False)
        self.exprs = exprs
        self.args = args

    @property
    def source(self):
        import inspect
        return inspect.getsource(self._fn)

    def constants(self, device=None):
        """Values of the lifted constants in the working arithmetic (cached)."""
        if self.backend == "mpmath":
            import mpmath
            key = mpmath.mp.prec
        else:
            key = device
        if key not in self._cache:
            self._cache[key] = [self._value(c, device) for c in self._constants]
        return self._cache[key]

    def _value(self, c, device):
        if self.backend == "mpmath":
            import mpmath
            if c.is_Rational:
                return mpmath.mpf(int(c.p)) / int(c.q)
            return mpmath.mpf(c.evalf(mpmath.mp.dps + 15))
        if self.backend == "numpy":
            if self.dtype.itemsize > 8:
                return self.dtype.type(str(c.evalf(40)))
            return self.dtype.type(float(c.evalf(30)))
        import torch
        return torch.tensor(float(c.evalf(30)), dtype=self.dtype, device=device)

    def __call__(self, *values, device=None):
        return self._fn(*values, *self.constants(device))

    def broadcast(self, outs, batch_shape, device=None):
        """Stack per-expression results into one array of shape ``(len(outs), *batch_shape)``
        in the working dtype (constant results are broadcast)."""
        return stack_components(self.backend, self.dtype, outs, batch_shape, device)


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


# ------------------------------------------------------------------------ input checking
def check_step(n, required):
    """The step index as a Python ``int`` (``None`` allowed when the field does not use it)."""
    if n is None:
        if required:
            raise ValueError("this flow depends on the step index n (it is exact in n); pass "
                             "an integer n >= 0, or build it with stationary=True")
        return 0
    if isinstance(n, sp.Basic) and n.is_Integer:
        n = int(n)
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise ValueError(f"step index n must be an integer >= 0, got {n!r}")
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"step index n must be an integer >= 0, got {n}")
    return n


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
        return [_mpf(x, name) for x in xs]
    if backend == "numpy":
        import numpy as np
        if type(theta).__module__.startswith("torch"):
            theta = theta.detach().cpu().numpy()
        x = np.asarray(theta)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        x = x.astype(dtype, copy=False)
    else:
        import torch
        if isinstance(theta, torch.Tensor):
            if theta.is_complex() or theta.dtype == torch.bool:
                raise TypeError(f"{name} must hold real numbers, got dtype {theta.dtype}")
            x = theta.to(dtype)
        else:
            import numpy as np
            a = np.asarray(theta)
            if a.dtype.kind not in "fiu":
                raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
            x = torch.as_tensor(a.astype(np.float64), dtype=dtype)
    if x.ndim == 0 or x.shape[0] != p:
        shape = tuple(x.shape)
        hint = (" — points stored as rows? pass theta.T" if len(shape) == 2 and shape[1] == p
                else "")
        raise ValueError(f"{layout}; got shape {shape}{hint}")
    return x


def _mpf(x, name):
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
        raise TypeError(f"{name}: components must be real numbers, got {x!r}") from None


# ------------------------------------------------------------------------------- the field
def lambdify_flow(flow, E_or_losses, params, backend="mpmath", stationary=False, schedule=None,
                  cse=True, dtype=None, **values):
    """See the module docstring."""
    modules = check_backend(backend)
    provider = LossProvider(E_or_losses, params, schedule)
    subs = resolve_values(flow, values)
    if provider.full:
        return _full_batch(flow, provider, subs, modules, stationary, cse, dtype)
    if stationary:
        raise ValueError("stationary=True is for full batch; give a single loss")
    if dtype is not None:
        raise ValueError("dtype= is supported for full-batch flows; the mini-batch evaluator "
                         "works in each backend's default precision")
    return MiniBatchField(flow, provider, subs, modules, cse)


class FullBatchField:
    """``f(n, theta) -> d theta/dt = -F^(n)(theta)`` for a full-batch flow (module docstring).

    ``n``: the step index (an integer >= 0; may be ``None`` when the field does not depend on
    it, e.g. ``stationary=True``).  Memory sums without a closed form that do not depend on the
    point (order 2, exact in ``n``) are evaluated once per ``n`` and working precision and
    cached; sums that depend on the point are evaluated in the kernel, opaque to CSE.
    Attributes: ``expressions`` (the lowered ``-F`` components, exact), ``source`` (the printed
    code), ``backend``, ``dtype``, ``p``.
    """

    _MEMO_SIZE = 4096

    def __init__(self, exprs, params, backend, dtype=None, cse=True):
        self.expressions = list(exprs)
        self.params = list(params)
        self.p = len(self.params)
        self.backend = backend
        self.uses_n = any(e.has(n_sym) for e in self.expressions)
        body, coeffs = _hoist_memory_coefficients(self.expressions, self.params)
        self._sum_symbols = [s for s, _ in coeffs]
        self.kernel = Kernel(body, [n_sym, *self.params, *self._sum_symbols], backend, dtype,
                             cse)
        # memory coefficients (closed forms in n, or sums) are evaluated in mpmath with guard
        # digits, then rounded once: their closed forms cancel badly in float64 for decays
        # near 1 (e.g. 1 - (n+1) rho^n + n rho^(n+1) with rho = 0.999)
        self._sums = Kernel([e for _, e in coeffs], [n_sym], "mpmath", None, cse) \
            if coeffs else None
        self._memo = {}
        self.dtype = self.kernel.dtype

    @property
    def source(self):
        return self.kernel.source

    def _sum_values(self, n, device):
        if self._sums is None:
            return []
        if self.backend == "mpmath":
            import mpmath
            key = (n, mpmath.mp.prec)
        else:
            key = (n, str(device))
        if key not in self._memo:
            if len(self._memo) >= self._MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = self._coefficient_values(n, device)
        return self._memo[key]

    def _coefficient_values(self, n, device):
        import mpmath
        guard = 10 if self.backend == "mpmath" else 0
        dps = mpmath.mp.dps + guard if self.backend == "mpmath" else 30
        with mpmath.workdps(dps):
            values = list(self._sums(n))
        if self.backend == "mpmath":
            return [+v for v in values]                  # rounded to the working precision
        if self.backend == "numpy":
            return [self.dtype.type(str(v)) if self.dtype.itemsize > 8
                    else self.dtype.type(float(v)) for v in values]
        import torch
        return [torch.tensor(float(v), dtype=self.dtype, device=device) for v in values]

    def __call__(self, n, theta):
        n = check_step(n, self.uses_n)
        x = as_points(theta, self.p, self.backend, self.dtype)
        if self.backend == "mpmath":
            return list(self.kernel(n, *x, *self._sum_values(n, None)))
        device = getattr(x, "device", None)
        outs = self.kernel(n, *x, *self._sum_values(n, device), device=device)
        return self.kernel.broadcast(outs, tuple(x.shape[1:]), device)

    def __repr__(self):
        return (f"FullBatchField(p={self.p}, backend={self.backend!r}, "
                f"dtype={self.dtype}, uses_n={self.uses_n})")


def _hoist_memory_coefficients(exprs, params):
    """Replace each maximal subexpression that depends on the step index ``n`` but not on the
    point (memory moments in closed form, bias corrections, sums without closed form) by a
    symbol; returns the new expressions and ``[(symbol, coefficient)]``."""
    table = {}
    taken = {str(s) for e in exprs for s in e.free_symbols}
    names = (nm for nm in (f"_m{k}" for k in itertools.count()) if nm not in taken)
    point = set(params)

    def hoist(e):
        if e.has(n_sym) and not (e.free_symbols & point) and e != n_sym:
            if e not in table:
                table[e] = sp.Symbol(next(names))
            return table[e]
        if not e.args or isinstance(e, sp.Sum):
            return e
        return e.func(*[hoist(a) for a in e.args])

    out = [hoist(e) for e in exprs]
    return out, [(sym, c) for c, sym in table.items()]


def _full_batch(flow, provider, subs, modules, stationary, cse, dtype=None):
    F = flow.F("full", stationary)
    cache = {}
    exprs = [(-lower(F, j, provider, cache)).xreplace(subs) for j in range(provider.p)]
    return FullBatchField(exprs, provider.params, modules, dtype, cse)


def _compiled(args, exprs, modules, cse=True):
    """A callable through :class:`Kernel` (modeq's printers: no torch printer gaps, constants at
    the working precision); a single expression gives a single value."""
    single = not isinstance(exprs, (list, tuple))
    kernel = Kernel([exprs] if single else list(exprs), list(args), modules, None, cse)
    if single:
        return lambda *a: kernel(*a)[0]
    return lambda *a: kernel(*a)


class _KernelProvider:
    """Symbols for per-batch gradients, Hessians, external vectors and parameters."""

    def __init__(self, params, m):
        self.params = list(params)
        self.p = len(params)
        self.G = [[sp.Symbol(f"g_{b}_{j}") for j in range(self.p)] for b in range(m)]
        self.H = [[[sp.Symbol(f"H_{b}_{min(i, j)}_{max(i, j)}") for i in range(self.p)]
                   for j in range(self.p)] for b in range(m)]
        self.V = {}

    def grad(self, b, j):
        return self.G[int(b)][j]

    def hess(self, b, j, i):
        return self.H[int(b)][j][i]

    def theta(self, j):
        return self.params[j]

    def vec(self, name, j):
        key = (str(name), j)
        if key not in self.V:
            self.V[key] = sp.Symbol(f"{name}_{j}")
        return self.V[key]

    def hess_symbols(self, b):
        return [self.H[b][j][i] for j in range(self.p) for i in range(j, self.p)]


class MiniBatchField:
    """``f(n, theta)`` for a mini-batch flow of order 0 or 1 (see the module docstring)."""

    def __init__(self, flow, provider, subs, modules, cse):
        if flow.order > 1 and flow.optimizer.states:
            raise NotImplementedError("mini-batch flows with memory are implemented to order 1")
        self.flow, self.provider, self.modules = flow, provider, modules
        self.m = len(provider.losses)
        self.p = provider.p
        self.h = subs.get(h_sym, None)
        opt = flow.optimizer
        K = _KernelProvider(provider.params, self.m)
        terms = grouped_step_terms(opt, self.m, flow.order)
        self.W = terms.W
        self.states = opt.states
        args0 = [s for row in terms.W for s in row] + [x for row in K.G for x in row] \
            + list(provider.params)
        self._F0 = []
        self._F1 = []
        for c in range(self.m):
            F0 = [lower(terms.F0[c], j, K).xreplace(subs) for j in range(self.p)]
            self._F0.append(_compiled(args0, F0, modules=modules, cse=cse))
            if flow.order >= 1:
                vec_names = [v for row in terms.V for v in row]
                F1 = [lower(terms.F1[c], j, K).xreplace(subs) for j in range(self.p)]
                vsyms = [K.vec(v.args[0], j) for v in vec_names for j in range(self.p)]
                hsyms = [x for b in range(self.m) for x in K.hess_symbols(b)]
                self._F1.append(_compiled(args0 + hsyms + vsyms, F1, modules=modules,
                                            cse=cse))
        self.V = terms.V
        # per-batch derivatives of the losses
        prm = provider.params
        # indexed by loss (the weight tables u[i][l][b] sum over the steps that used loss b)
        self._grad = [_compiled(prm, [provider.loss_derivative(b, (j,)) for j in range(self.p)],
                                modules=modules) for b in range(self.m)]
        self._hess = [_compiled(prm, [provider.loss_derivative(b, (j, i)) for j in range(self.p)
                                      for i in range(j, self.p)], modules=modules)
                      for b in range(self.m)]
        # state weights: w(l, l) and decay per state, exact then numeric at call time
        self._w_last = [_compiled([n_sym], s.weight(n_sym, n_sym).xreplace(subs),
                                    modules=modules) for s in opt.states]
        self._decay = [_compiled([], s.decay.xreplace(subs), modules=modules)
                       for s in opt.states]
        self._tables = {}
        self._dtype = resolve_dtype(modules)

    # scalar tables, independent of theta -------------------------------------------------
    def _u_table(self, n):
        """``u[i][l][b] = sum_{k<=l, batch(k)=b} d_i^(l-k)`` for l <= n (cached, extended)."""
        key = self._precision_key()
        tab = self._tables.get(key)
        if tab is None:
            tab = {"u": [[] for _ in self.states], "d": [d() for d in self._decay]}
            self._tables = {key: tab}
        for i, d in enumerate(tab["d"]):
            rows = tab["u"][i]
            while len(rows) <= n:
                l = len(rows)
                prev = rows[-1] if rows else [0 * d] * self.m
                row = [d * x for x in prev]
                b = self.provider.loss_index(l)
                row[b] = row[b] + 1
                rows.append(row)
        return tab

    def _precision_key(self):
        if self.modules == "mpmath":
            import mpmath
            return mpmath.mp.prec
        return 53

    def _weights(self, tab, l):
        return [self._w_last[i](l) * x for i in range(len(self.states))
                for x in tab["u"][i][l]]

    def _window(self, tab, n):
        """Earliest past step whose weight can matter at the working precision."""
        tol = 2.0 ** (-self._precision_key() - 8)
        lo = n
        for i, d in enumerate(tab["d"]):
            dv = float(d)
            if dv <= 0.0:
                continue
            bound = 1.0 / (1.0 - dv) if dv < 1 else float("inf")
            L = math.ceil(math.log(tol / bound) / math.log(dv)) if dv < 1 else n
            lo = min(lo, max(0, n - L))
        return lo if self.states else n

    # the field ------------------------------------------------------------------------------
    def __call__(self, n, theta):
        """``d theta/dt`` on ``[nh, (n+1)h)``: a list of ``mpf`` (mpmath), or an array/tensor of
        ``theta``'s shape ``(p,)`` / ``(p, N)`` in float64 (NumPy, torch)."""
        n = check_step(n, True)
        x = as_points(theta, self.p, self.modules, self._dtype)
        out = self._field(n, list(x))
        if self.modules == "mpmath":
            return out
        device = getattr(x, "device", None)
        return stack_components(self.modules, self._dtype, out, tuple(x.shape[1:]), device)

    def _field(self, n, theta):
        tab = self._u_table(n)
        G = [self._grad[b](*theta) for b in range(self.m)]
        Gflat = [x for row in G for x in row]
        c = self.provider.loss_index(n)
        F0 = self._F0[c](*self._weights(tab, n), *Gflat, *theta)
        if self.flow.order == 0:
            return [-x for x in F0]
        Hflat = [x for b in range(self.m) for x in self._hess[b](*theta)]
        # V[i][b] = w_i(n, n) sum_{l<n} d_i^(n-l) u_ib(l) F0^(l)
        V = [[[0 * x for x in F0] for _ in range(self.m)] for _ in self.states]
        start = self._window(tab, n)
        for l in range(start, n):
            F0l = self._F0[self.provider.loss_index(l)](*self._weights(tab, l), *Gflat, *theta)
            for i, d in enumerate(tab["d"]):
                scale = d ** (n - l)
                for b in range(self.m):
                    coef = scale * tab["u"][i][l][b]
                    if coef:
                        V[i][b] = [a + coef * f for a, f in zip(V[i][b], F0l)]
        wn = [self._w_last[i](n) for i in range(len(self.states))]
        Vflat = [wn[i] * x for i in range(len(self.states)) for b in range(self.m)
                 for x in V[i][b]]
        F1 = self._F1[c](*self._weights(tab, n), *Gflat, *theta, *Hflat, *Vflat)
        h = self._h_value()
        return [-(a + h * b) for a, b in zip(F0, F1)]

    def _h_value(self):
        if self.modules == "mpmath":
            import mpmath
            return mpmath.mpf(self.h.p) / self.h.q
        return float(self.h)

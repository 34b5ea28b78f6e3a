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

import fractions
import math
from typing import Iterable, Mapping

import sympy as sp

__all__ = [
    "g", "theta", "h", "n", "beta", "rho", "eps", "EMA", "Optimizer",
    "NON_SMOOTH", "check_smooth", "check_hyperparameter", "check_hyperparameter_values",
    "RESERVED", "RANGES", "Refused", "STARTS", "dependency_order", "step_product",
    "ComponentConstant", "per_component",
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
    "mu": (0, 1, True, False),          # SGD's momentum
    "tau": (0, 1, True, True),          # SGD's dampening
    "lam": (0, None, True, False),      # weight decay
    "psi": (0, None, True, False),      # NAdam's momentum decay
    "lr_scale": (0, 1, False, True),    # a param group's lr / the largest (torch bridge)
}

#: how an EMA state starts: ``"zero"`` (s^(0) = 0, every built-in) or ``"input"`` (torch's
#: momentum buffer: the first update stores the input itself, ``s^(1) = of(g^(0), theta^(0))``)
STARTS = ("zero", "input")


class Refused(ValueError):
    """A declaration that has no smooth modified flow (or that modeq does not derive), with the
    reason in the message."""


_WHY_NOT_SMOOTH = {
    "Max": "a running max (amsgrad, Adamax) is not differentiable where the maximum switches, "
           "so the recursion has no smooth modified flow",
    "Min": "a running min is not differentiable where the minimum switches",
    "sign": "a sign-based step (signSGD, Lion) jumps where its argument vanishes, so it has no "
            "smooth modified flow; declare a smooth sign instead, e.g. tanh(x/delta)",
    "Abs": "|x| is not differentiable at 0",
}


def _describe(lo, hi, lo_closed, hi_closed):
    if hi is None:
        return f"{'>=' if lo_closed else '>'} {lo}"
    return f"in {'[' if lo_closed else '('}{lo}, {hi}{']' if hi_closed else ')'}"


def _is_infinite(value, x):
    """``value`` (converted to the float ``x``) is infinite, not merely beyond float range."""
    if not math.isinf(x):
        return False
    if isinstance(value, sp.Basic):
        return value.is_finite is not True
    if isinstance(value, (int, fractions.Fraction)):
        return False
    if type(value).__module__.startswith("mpmath"):
        import mpmath
        return bool(mpmath.isinf(value))
    return True


def _check_range(name, value, rng):
    lo, hi, lo_closed, hi_closed = rng
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        if isinstance(value, str):      # "1/2" as "0.5": read exactly, never evaluated
            value = sp.Rational(value)
        x = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if x != x:
        raise ValueError(f"{name} must be a real number, got NaN")
    if _is_infinite(value, x):
        raise ValueError(f"{name} must be finite ({_describe(*rng)}), got {value}")
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
    """Raise :class:`Refused` (a ``ValueError``) if ``expr`` uses a non-smooth function (Abs,
    sign, Max, ...), saying why; ``TypeError`` naming ``what`` if it is not a SymPy object."""
    expr = sp.sympify(expr)
    if not isinstance(expr, sp.Basic):
        raise TypeError(f"{what} must be a SymPy expression, got {expr!r}")
    for f in NON_SMOOTH:
        if expr.has(f):
            why = _WHY_NOT_SMOOTH.get(f.__name__, "it is not differentiable everywhere")
            raise Refused(
                f"{what} uses the non-smooth function {f.__name__}: {why}; backward error "
                f"analysis needs a smooth (C^infinity) expression")
    return expr


class ComponentConstant(sp.Symbol):
    """A hyperparameter whose value differs from one block of components to another (torch's
    param groups of other settings): constant in time, but one value per component.  Every
    operation of the recursion is componentwise except the contractions ``H.u``, ``T[u, w]``,
    so the derivation keeps such a constant inside them (``H.(lam theta)``, whose component
    ``j`` is ``sum_l H_jl lam_l theta_l``), where a plain hyperparameter is moved out
    (``lam H.theta``).  Prints as its name; a different symbol from the plain one."""


def per_component(optimizer, names):
    """``optimizer`` with the hyperparameters named in ``names`` made
    :class:`ComponentConstant` (same names and assumptions): its flow takes a value of them
    per component."""
    sub = {s: ComponentConstant(str(s), **s.assumptions0) for s in optimizer.hyperparameters
           if str(s) in set(names)}
    if not sub:
        return optimizer
    new = {}
    for st in optimizer.states:
        scale = None if st.custom_scale is None else sp.sympify(st.custom_scale).xreplace(sub)
        new[st] = EMA(st.name, sp.sympify(st.decay).xreplace(sub),
                      st.of.xreplace(sub).xreplace(new), st.normalized, st.bias_correction,
                      scale, st.start)
    return Optimizer(optimizer.name + "_per_component", [new[st] for st in optimizer.states],
                     optimizer.step.xreplace(sub).xreplace(new), notes=optimizer.notes)


def step_product(factor, index, lo, hi):
    """``prod_{index=lo}^{hi} factor``, a step-index-dependent coefficient (NAdam's
    ``mu_1 ... mu_t``), kept exact and unevaluated until ``n`` has a value."""
    return sp.Product(sp.sympify(factor), (index, lo, hi))


def dependency_order(states, owner="optimizer"):
    """The states in an order where every state comes after the states its input reads (a
    stable topological order, states matched by name); :class:`ValueError` naming the cycle if
    there is one, or a read state that is not listed (or listed with another declaration)."""
    states = list(states)
    by_name = {s.name: s for s in states}
    for s in states:
        unknown = [t.name for t in s.reads if t.name not in by_name]
        if unknown:
            raise ValueError(f"{owner}: state {s.name!r} reads state(s) {unknown} not listed in "
                             f"states")
    done, out = set(), []

    def visit(s, path):
        if s.name in done:
            return
        if s.name in path:
            cyc = path[path.index(s.name):] + [s.name]
            raise ValueError(f"{owner}: the states' inputs form a cycle {' -> '.join(cyc)}; a "
                             f"state may read only states updated before it in the same step")
        for t in s.reads:
            visit(by_name[t.name], path + [s.name])
        done.add(s.name)
        out.append(s)

    for s in states:
        visit(s, [])
    for s in states:
        for t in s.reads:
            if by_name[t.name] != t:
                raise ValueError(f"{owner}: state {s.name!r} reads a state {t.name!r} declared "
                                 f"differently from the listed one")
    return out


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
    (the current gradient component), ``theta`` and **earlier states** (their values after this
    step's update, as the step reads them: centered or momentum RMSprop, AdaBelief's
    ``(g - m)^2``); the optimizer checks the order.

    ``scale``: the input's factor ``c`` (default ``1 - decay`` when normalized, else 1; SGD's
    dampening is ``scale = 1 - tau``).  ``start="input"``: torch's momentum buffer, whose first
    update stores the input itself (``s^(1) = of``), so the weight of step 0 is ``decay^n``
    instead of ``c decay^n``.

    >>> import sympy as sp
    >>> m = EMA("m", decay=sp.Symbol("beta", positive=True), of=g, bias_correction=True)
    >>> m.describe()
    'm = EMA[beta](g) (normalised, bias-corrected)'
    """

    def __new__(cls, name, decay, of, normalized=True, bias_correction=False, scale=None,
                start="zero"):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"EMA name must be an identifier, got {name!r}")
        if name in RESERVED:
            raise ValueError(f"EMA name {name!r} is reserved (reserved: {sorted(RESERVED)})")
        decay = sp.sympify(decay)
        if not isinstance(decay, sp.Expr) or isinstance(decay, sp.MatrixBase):
            raise TypeError(f"EMA {name!r}: decay must be a number or a hyperparameter symbol, "
                            f"got {decay!r}")
        of = check_smooth(sp.sympify(of), f"EMA {name!r}: 'of'")
        if not isinstance(of, sp.Expr) or isinstance(of, sp.MatrixBase):
            raise TypeError(f"EMA {name!r}: 'of' must be a scalar SymPy expression, got {of!r}")
        if decay.free_symbols & {g, theta, h, n}:
            raise ValueError(f"EMA {name!r}: decay must be a constant or a hyperparameter symbol, "
                             f"got {decay}")
        if decay == 1:
            raise Refused(f"EMA {name!r}: decay 1 is an unbounded running sum (Adagrad): its "
                          f"weights do not decay, the state grows like n and the step shrinks "
                          f"like 1/sqrt(n), so there is no modified flow on a fixed horizon of "
                          f"the kind modeq derives; EMA {name!r} decay must be in [0, 1), got 1")
        if decay.is_number:
            _check_range(f"EMA {name!r} decay", decay, (0, 1, True, False))
        if any(isinstance(s, EMA) and s.name == name for s in of.free_symbols):
            raise ValueError(f"EMA {name!r}: 'of' reads the state itself (a cycle); a state may "
                             f"read only other, earlier states")
        if n in of.free_symbols or h in of.free_symbols:
            raise ValueError(f"EMA {name!r}: 'of' may not use the step index n or the step size h")
        if start not in STARTS:
            raise ValueError(f"EMA {name!r}: start must be one of {STARTS}, got {start!r}")
        if start == "input" and bias_correction:
            raise ValueError(f"EMA {name!r}: start='input' (torch's momentum buffer) has no bias "
                             f"correction")
        if scale is not None:
            scale = sp.sympify(scale)
            if scale.free_symbols & {g, theta, h, n} or any(
                    isinstance(x, EMA) for x in scale.free_symbols):
                raise ValueError(f"EMA {name!r}: scale must be a constant or hyperparameters, "
                                 f"got {scale}")
            if bias_correction:
                raise ValueError(f"EMA {name!r}: a custom scale has no bias correction")
        obj = sp.Symbol.__xnew__(cls, name, real=True)
        obj.decay = decay
        obj.of = of
        obj.normalized = bool(normalized)
        obj.bias_correction = bool(bias_correction)
        obj.custom_scale = scale
        obj.start = start
        return obj

    def __getnewargs_ex__(self):
        return ((self.name, self.decay, self.of, self.normalized, self.bias_correction,
                 self.custom_scale, self.start), {})

    def _hashable_content(self):
        # SymPy orders symbols by comparing this tuple item by item: no None in it.
        default_scale = self.custom_scale is None
        scale = sp.S.Zero if default_scale else self.custom_scale
        return super()._hashable_content() + (self.decay, self.of, self.normalized,
                                              self.bias_correction, default_scale, scale,
                                              self.start)

    @property
    def scale(self):
        """The input's factor ``c`` in ``s <- d s + c of``."""
        if self.custom_scale is not None:
            return self.custom_scale
        return 1 - self.decay if self.normalized else sp.S.One

    @property
    def reads(self):
        """The states this state's input reads (a tuple of :class:`EMA`)."""
        return tuple(sorted((x for x in self.of.free_symbols if isinstance(x, EMA)), key=str))

    def weight(self, step, k):
        """Weight ``w(step, k)`` of ``of`` evaluated at iterate ``k`` in the state after ``step``
        (for ``k >= 1``; add :meth:`first_weight_extra` at ``k = 0``)."""
        d = self.decay
        w = self.scale * d ** (step - k)
        if self.bias_correction:
            w = w / (1 - d ** (step + 1))
        return w

    def first_weight_extra(self, step):
        """What the weight of step 0 has beyond ``weight(step, 0)``: ``(1 - c) d^step`` for
        ``start="input"``, else 0 (it vanishes as ``step -> oo``)."""
        if self.start == "input":
            return (1 - self.scale) * self.decay ** step
        return sp.S.Zero

    def stationary_weight(self, lag):
        """The ``n -> infinity`` limit of the weight at lag ``n - k`` (bias correction -> 1)."""
        return self.scale * self.decay ** lag

    def describe(self) -> str:
        kind = "normalised" if self.normalized else "unnormalised"
        if self.custom_scale is not None:
            kind = f"scale {self.custom_scale}"
        bc = ", bias-corrected" if self.bias_correction else ""
        st = ", starts at its first input" if self.start == "input" else ""
        return f"{self.name} = EMA[{self.decay}]({self.of}) ({kind}{bc}{st})"


class Optimizer:
    """An optimizer of the EMA family: ``theta <- theta - h * step(states, g, theta)``.

    Parameters
    ----------
    name : str
    states : list of :class:`EMA`
    step : SymPy expression in the states, ``g``, ``theta``, hyperparameter symbols and the step
        index ``n`` (step-index-dependent coefficients such as NAdam's momentum schedule; the
        update after step ``n`` reads ``n``, counted from 0).  Parameter terms are written out:
        decoupled decay ``theta <- theta (1 - h lam)`` is ``+ lam*theta`` in the step, coupled
        L2 is ``g + lam*theta`` in the inputs (:func:`~.optimizers.with_weight_decay`).
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
        if h in step.free_symbols:
            raise ValueError(f"Optimizer {name!r}: step may not use the step size h "
                             f"(the update is theta - h*step)")
        free = set(step.free_symbols) - set(states) - {g, theta}
        states = dependency_order(states, f"Optimizer {name!r}")
        free -= {n}
        for s in states:
            free |= (s.decay.free_symbols | s.of.free_symbols | s.scale.free_symbols) \
                - {g, theta} - set(states)
            for t in s.reads:
                if t not in states:
                    raise ValueError(f"Optimizer {name!r}: state {s.name!r} reads {t.name!r}, "
                                     f"which is not listed in states")
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

    @property
    def uses_n(self) -> bool:
        """The step has step-index-dependent coefficients."""
        return n in self.step.free_symbols

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

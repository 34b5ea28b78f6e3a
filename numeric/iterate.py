"""Optimizer iterates in high precision (mpmath) or exact arithmetic, from the declaration.

Conventions (``docs/conventions.md`` §2, :mod:`modeq.symbolic.family`).  Steps are counted from 0;
step ``k`` uses the loss ``E_{schedule[k]}`` (``schedule=None``: cyclic ``k mod m`` over the
``m`` losses; full batch is ``m = 1``).  Every state starts at 0 and is updated as

    s <- d s + c of(g^(k), theta^(k), earlier states),  c = the state's scale,

in dependency order (an input that reads another state reads its value after this step's
update, as the step does), except that a state with ``start="input"`` stores its first input
itself (torch's momentum buffer); the step reads ``s / (1 - d^(k+1))`` when the state is
bias-corrected, and

    theta^(k+1) = theta^(k) - h step(states, g^(k), theta^(k), n=k),

componentwise.  Nothing here is specific to an optimizer: ``of`` and ``step`` are compiled from the
declaration with :func:`modeq.symbolic.emit.compile_exprs`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import mpmath
import sympy as sp

from modeq.symbolic.components import check_schedule_entries
from modeq.symbolic.family import (Optimizer, check_hyperparameter_values, g as G, n as N,
                                   theta as THETA)
from modeq.symbolic.emit import compile_exprs, normalize_values, to_number

__all__ = ["Iterator", "iterates", "as_losses", "schedule_fn", "DIVERGENCE_BOUND"]

#: ``|theta_j|`` above this, or a non-finite value, makes a run "divergent" (``ValueError``).
DIVERGENCE_BOUND = mpmath.mpf(10) ** 30


def as_losses(loss_or_losses):
    """``(losses, mini)``: a list of SymPy losses and whether the problem is mini batch."""
    if isinstance(loss_or_losses, (list, tuple)):
        if not loss_or_losses:
            raise ValueError("the list of losses is empty")
        return [sp.sympify(e) for e in loss_or_losses], True
    return [sp.sympify(loss_or_losses)], False


def schedule_fn(schedule, n_losses) -> Callable[[int], int]:
    """``k -> index of the loss used at step k``.

    ``None``: cyclic ``k mod n_losses``.  A sequence: ``schedule[k]`` (it must be long enough for
    the run; checked by the caller through :func:`check_schedule`).  A callable: used as is.
    """
    if schedule is None:
        return lambda k: k % n_losses
    if callable(schedule):
        return schedule
    return check_schedule_entries(schedule, n_losses).__getitem__


def check_schedule(schedule, steps):
    if schedule is not None and not callable(schedule) and len(schedule) < steps:
        raise ValueError(f"schedule has {len(schedule)} entries but the run needs {steps} steps")


@dataclass
class _State:
    decay: object
    scale: object          # c = 1 - d (normalized) or 1
    bias_correction: bool
    of: Callable
    reads: tuple = ()          # indices of the earlier states the input reads
    start: str = "zero"


class Iterator:
    """Compiled iterates of one optimizer on one problem at the current ``mpmath.mp.dps``.

    ``Iterator(optimizer, loss_or_losses, params, schedule=None, arithmetic="mpmath",
    **values)``; ``values`` are the hyperparameters by name (``h`` excluded: it is a run
    argument).  Call :meth:`run` to get the iterates.

    >>> import mpmath, sympy as sp
    >>> from modeq.symbolic import optimizers
    >>> x = sp.Symbol("x")
    >>> with mpmath.workdps(20):
    ...     path = Iterator(optimizers.gd(), x**2 / 2, [x]).run([1], mpmath.mpf(1) / 4, 2)
    >>> [mpmath.nstr(th[0], 6) for th in path]
    ['1.0', '0.75', '0.5625']
    """

    def __init__(self, optimizer: Optimizer, loss_or_losses, params: Sequence[sp.Symbol],
                 schedule=None, arithmetic="mpmath", **values):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"expected an Optimizer, got {optimizer!r}")
        self.losses, self.mini = as_losses(loss_or_losses)
        self.params = list(params)
        if not self.params or len(set(self.params)) != len(self.params):
            raise ValueError("params must be a non-empty list of distinct symbols")
        for i, E in enumerate(self.losses):
            extra = E.free_symbols - set(self.params)
            if extra:
                raise ValueError(f"loss {i} has symbol(s) {sorted(map(str, extra))} not in "
                                 f"params {[str(p) for p in self.params]}")
        values = normalize_values({k: v for k, v in values.items() if k != "h"})
        optimizer.check_values(values)
        self.optimizer = optimizer
        self.arithmetic = arithmetic
        self.schedule = schedule
        self._schedule = schedule_fn(schedule, len(self.losses))
        # hyperparameters enter as placeholders so that their values are converted exactly once
        hyp = list(optimizer.hyperparameters)
        hyp_vals = [to_number(values[str(s)], arithmetic) for s in hyp]
        self._grads = [compile_exprs([sp.diff(E, p) for p in self.params], self.params, arithmetic)
                       for E in self.losses]
        self._states = []
        index = {st.name: i for i, st in enumerate(optimizer.states)}
        for s in optimizer.states:
            d, c = compile_exprs([s.decay, s.scale], hyp, arithmetic)(*hyp_vals)
            reads = list(s.reads)
            of = compile_exprs([s.of], [G, THETA] + reads + hyp, arithmetic)
            self._states.append(_State(d, c, s.bias_correction, _bind(of, hyp_vals),
                                       tuple(index[t.name] for t in reads), s.start))
        step = compile_exprs([optimizer.step], list(optimizer.states) + [G, THETA, N] + hyp,
                             arithmetic)
        self._step = _bind(step, hyp_vals)

    def run(self, theta0, h, steps, check=True):
        """Iterates ``[theta^(0), ..., theta^(steps)]`` (lists of numbers) with step size ``h``.

        ``check``: raise ``ValueError`` when an iterate is not finite or exceeds
        :data:`DIVERGENCE_BOUND` in absolute value (a divergent run).
        """
        p = len(self.params)
        if len(theta0) != p:
            raise ValueError(f"theta0 has {len(theta0)} components, the problem has {p} "
                             f"parameters")
        if steps < 0 or int(steps) != steps:
            raise ValueError(f"steps must be a non-negative integer, got {steps}")
        check_schedule(self.schedule, steps)
        h = normalize_values({"h": h})["h"]
        check_hyperparameter_values({"h": h})          # h > 0, finite, a number
        num = lambda x: to_number(x, self.arithmetic)  # noqa: E731
        h = num(h)
        theta = [num(x) for x in theta0]
        states = [[num(0)] * p for _ in self._states]
        dpow = [num(1) for _ in self._states]
        out = [list(theta)]
        grads, sched, step = self._grads, self._schedule, self._step
        rng = range(p)
        for k in range(steps):
            gk = grads[sched(k)](*theta)
            hats = []
            for i, st in enumerate(self._states):
                s = states[i]
                of = st.of
                ins = [of(gk[j], theta[j], *[hats[e][j] for e in st.reads])[0] for j in rng]
                if k == 0 and st.start == "input":
                    s = ins
                else:
                    s = [st.decay * s[j] + st.scale * ins[j] for j in rng]
                states[i] = s
                if st.bias_correction:
                    dpow[i] = dpow[i] * st.decay
                    corr = 1 / (1 - dpow[i])
                    hats.append([x * corr for x in s])
                else:
                    hats.append(s)
            theta = [theta[j] - h * step(*[hs[j] for hs in hats], gk[j], theta[j], k)[0]
                     for j in rng]
            if check and self.arithmetic == "mpmath":
                _check_finite(theta, k + 1)
            out.append(theta)
        return out


def _bind(fn, extra):
    def bound(*xs):
        return fn(*xs, *extra)
    return bound


def _check_finite(theta, k):
    for x in theta:
        if not mpmath.isfinite(x) or abs(x) > DIVERGENCE_BOUND:
            raise ValueError(f"the run diverges: iterate {k} has a component {mpmath.nstr(x, 5)} "
                             f"(non-finite or above {mpmath.nstr(DIVERGENCE_BOUND, 3)}); take a "
                             f"smaller h or other hyperparameters")


def iterates(optimizer, loss_or_losses, params, theta0, h, steps, dps=40, schedule=None,
             arithmetic="mpmath", **values):
    """``[theta^(0), ..., theta^(steps)]`` of ``optimizer`` at ``dps`` decimal digits.

    ``arithmetic="exact"`` computes in SymPy numbers (exact for rational data and polynomial
    losses and steps); ``values`` are the hyperparameters by name.

    >>> import sympy as sp
    >>> from modeq.symbolic import optimizers
    >>> x = sp.Symbol("x")
    >>> iterates(optimizers.gd(), x**2 / 2, [x], [1], "1/2", 2, arithmetic="exact")
    [[1], [1/2], [1/4]]
    """
    if arithmetic == "exact":
        return Iterator(optimizer, loss_or_losses, params, schedule, arithmetic,
                        **values).run(theta0, h, steps)
    with mpmath.workdps(dps):
        return Iterator(optimizer, loss_or_losses, params, schedule, arithmetic,
                        **values).run(theta0, h, steps)

"""The mini-batch field of a declaration outside the batch grouping, evaluated step by step.

The batch grouping (:mod:`modeq.symbolic.batches`) covers states whose inputs read ``g`` and
``theta`` only.  A state reading another state (torch's RMSprop with momentum, AdaBelief),
torch's momentum buffer that stores its first input (SGD with dampening) and a step that reads
the step index (NAdam) are evaluated here, from the step-indexed form ``flow.F("mini")`` (at
order 2 with sums over pairs of past steps, where derived): every past step ``k`` enters with
the derivatives of its own batch, ``Grad(k)``, ``Hess(k)``.  Lowered per component,

* the derivatives of the current step (``Grad(n)``) and of a fixed step (``Grad(0)``, the first
  input of torch's buffer) are symbols, evaluated per call from the batch that step used;
* those of a summation index are per-step data ``_D<slot>(k)``.

The sums over past steps then go to node tables (:mod:`.nested_sums`, one forward pass over
the steps, linear in ``n``), whose summand at step ``k`` reads the derivatives of the batch
``schedule[k]``; each batch's derivatives are evaluated once per call.

With the default cyclic schedule of period ``m`` the field is periodic in ``n`` past its
transient: from ``N = start + m`` (``start`` of :mod:`.stationary_limit`, the ``+ m`` for the
periodic weights' slower approach, as in :mod:`.cyclic_tail`) the weights of every step since
the transient equal their periodic limits and the steps before it are below the working
precision, so ``F^(n)`` equals ``F^(N + (n - N) mod m)`` there: a call at any ``n`` costs at
most a call at ``N + m``, and in mpmath the node tables start at ``N`` by their periodic
closed form (:class:`~.node_tables.PeriodicRun`), so that call costs ``O(m)`` summands per
node instead of ``O(N)``.  A schedule given as a list is periodic in the same sense where the
list repeats a pattern of ``m`` steps throughout (``[2, 0, 1, 1, 0, 2] * 40``: ``m = 6``) and
is long enough for the closed form's fit (``N + (DEGREE + 2) m`` entries).  A step that reads
``n`` has transients of its own: where they are geometric (NAdam's ``0.96^(t psi)`` and its
products ``mu_1 ... mu_t``) their rates join the decays that set ``N``
(:func:`~.stationary_limit.limit_decays`).  Any other list, any other step reading ``n`` and
a flow without a full-batch stationary limit (centered RMSprop, whose ``v - a^2`` may vanish
under the root) are evaluated at ``n`` itself.
"""
from __future__ import annotations

import sympy as sp

from ..family import n as n_sym
from .arrays import all_finite, as_points, resolve_dtype, stack_components
from .full_batch import FullBatchField
from .kernel import Kernel
from .node_tables import DEGREE
from .stationary_limit import StationaryLimit, limit_decays, sum_depth
from .values import check_step, lowered_with_values

__all__ = ["StepIndexedField", "schedule_period"]


def schedule_period(schedule):
    """The smallest ``m`` with ``schedule[k] == schedule[k - m]`` for every ``k >= m`` (the
    length itself for a list that does not repeat), by the prefix function of the list.

    >>> schedule_period([2, 0, 1, 1, 0, 2] * 3), schedule_period([0, 1, 0]), schedule_period([1])
    (6, 2, 1)
    """
    border = [0] * len(schedule)
    for i in range(1, len(schedule)):
        b = border[i - 1]
        while b and schedule[i] != schedule[b]:
            b = border[b - 1]
        border[i] = b + 1 if schedule[i] == schedule[b] else 0
    return len(schedule) - border[-1]


class _StepLowering:
    """The lowering provider of the module docstring: ``derivatives`` lists the multi-indices
    used (a slot each); ``named`` maps ``(step expression in n, slot)`` to its symbol."""

    def __init__(self, params, n):
        self.params, self.p, self.n = list(params), len(params), n
        self.derivatives, self._slots = [], {}
        self.named = {}

    def _value(self, step, idx):
        idx = tuple(sorted(idx))
        if idx not in self._slots:
            self._slots[idx] = len(self.derivatives)
            self.derivatives.append(idx)
        slot = self._slots[idx]
        step = sp.sympify(step)
        if step.free_symbols <= {self.n}:
            key = (step, slot)
            if key not in self.named:
                self.named[key] = sp.Symbol(f"_d{len(self.named)}")
            return self.named[key]
        return sp.Function(f"_D{slot}")(step)

    def grad(self, b, j):
        return self._value(b, (j,))

    def hess(self, b, j, i):
        return self._value(b, (j, i))

    def d3(self, b, j, i, k):
        return self._value(b, (j, i, k))

    def theta(self, j):
        return self.params[j]


class StepIndexedField:
    """``f(n, theta) -> d theta/dt = -F^(n)(theta)`` of a mini-batch flow whose declaration
    the batch grouping does not cover (module docstring); step ``k`` uses
    ``losses[schedule[k]]`` (cyclic by default).  ``theta`` and the result as for
    :class:`~.minibatch.MiniBatchField`; ``field`` is the compiled
    :class:`~.full_batch.FullBatchField` (its point extended by the named derivatives);
    constants named in ``late`` are given by :meth:`bind`.  A periodic schedule (the default
    cyclic one, or a list repeating a pattern) has the representative step of the module
    docstring; ``m`` is its period."""

    def __init__(self, flow, provider, subs, backend, cse=True, late=()):
        self.provider, self.backend = provider, backend
        self.params, self.p = list(provider.params), provider.p
        self.dtype = resolve_dtype(backend)
        lowering = _StepLowering(self.params, n_sym)
        exprs = lowered_with_values(flow.F("mini"), self.p, lowering, subs)
        self._named = [(sp.lambdify([n_sym], step, "math"), slot)
                       for (step, slot) in lowering.named]
        self.late = list(late)
        self.field = FullBatchField(exprs, self.params + list(lowering.named.values()), backend,
                                    None, cse, self.late, flow.optimizer.decays, step_data=True)
        self._derivatives = [
            Kernel([provider.loss_derivative(b, idx) for idx in lowering.derivatives],
                   self.params, backend, None, cse) for b in range(len(provider.losses))]
        self.limit = None
        schedule = provider.schedule
        self.m = len(provider.losses) if schedule is None else schedule_period(schedule)
        decays = limit_decays(flow.optimizer, subs)
        if decays is not None and self.field.sums and (
                schedule is None or self.m < len(schedule)):
            self.limit = StationaryLimit(lambda: flow.terms("full", stationary=True), decays,
                                         max(sum_depth(e) for e in exprs))

    def bind(self, **values):
        """A copy with the late-bound constants set (``late``, e.g. ``h`` in an order study:
        compiled once for every step size); the compiled kernels are shared."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.field = self.field.bind(**values)
        return out

    def periodic_start(self):
        """``N`` of the module docstring at the current working precision (``None`` where the
        field is not periodic)."""
        start = self._start()
        return None if start is None or self.limit.field is None else start

    def _start(self):
        """``N`` before asking whether the flow has a stationary limit (a derivation, made only
        once a call reaches ``N``)."""
        if self.limit is None:
            return None
        start = self.limit.start(self.field.precision, self.field.bound_values)
        if start is None:
            return None
        schedule = self.provider.schedule
        if schedule is not None and start + self.m + (DEGREE + 2) * self.m > len(schedule):
            return None                    # too short a list for the closed form's fit
        return start + self.m

    def __call__(self, n, theta):
        n = check_step(n, True)
        start, period = self._start(), None
        if start is not None and n >= start and self.limit.field is not None:
            n = start + (n - start) % self.m
            period = (start, self.m)
        x = as_points(theta, self.p, self.backend, self.dtype)
        device = getattr(x, "device", None)
        rows = [list(k(*x, device=device)) for k in self._derivatives]
        batch = self.provider.loss_index
        named = [rows[batch(int(step(n)))][slot] for step, slot in self._named]
        if self.backend == "mpmath":
            point = [*x, *named]
        elif not named:
            point = x
        elif self.backend == "numpy":
            import numpy as np
            point = np.concatenate([x, self._stacked(named, x, device)])
        else:
            import torch
            point = torch.cat([x, self._stacked(named, x, device)])
        out = self.field(n, point, data=(rows, batch), period=period)
        if self.backend != "mpmath" and not all_finite(out) and all_finite(x) \
                and all_finite(rows):
            raise FloatingPointError(
                f"the field overflowed {self.dtype} at step {n} although the point and every "
                f"batch's derivatives there are finite (its weights and step coefficients span "
                f"more than the float range): evaluate with backend='mpmath'")
        return out

    def _stacked(self, values, x, device):
        """``values`` (arrays or constants) as one array of shape ``(len, *points)``."""
        return stack_components(self.backend, self.dtype, values, tuple(x.shape[1:]), device)

    def __repr__(self):
        return (f"StepIndexedField(p={self.p}, m={self.m}, "
                f"backend={self.backend!r})")

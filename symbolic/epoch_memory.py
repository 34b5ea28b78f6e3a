"""Epoch flows with memory: linear-memory optimizers in the stationary regime, averaged over
the orders of the current and of all past epochs (see :mod:`epoch` for the definitions).

Class covered.  A step that is linear in ``g`` and in the states, every state an EMA whose input
is ``c g`` (heavy-ball ``u <- beta u + g``; a normalised EMA of ``g``; Nesterov's ``g + mu b``).
In the stationary regime (weights ``w_i(j) = c_i d_i^j`` at lag ``j``, bias corrections and the
start gone) the velocity of step ``n`` is a kernel over past gradients, each at its own iterate:

    theta^(n+1) = theta^(n) - h sum_{k<=n} K(n-k) g_{b_k}(theta^(k)),
    K(j) = a_0 [j = 0] + sum_i a_i c_i w_i(j),          step = a_0 g + sum_i a_i s_i.

Expansion at the epoch start ``theta = theta^(0)`` (steps ``0..m-1`` are the current epoch,
``k < 0`` the past).  With ``U_l = sum_{k'<=l} K(l-k') g_{b_k'}`` the order-0 velocities and
``theta^(k) = theta - h sum_{l=0}^{k-1} U_l + O(h^2)`` (a signed sum: ``+sum_{l=k}^{-1}`` for
``k < 0``, the past iterates reached back along the same recursion),

    d_1 = -sum_{n=0}^{m-1} U_n,
    d_2 = sum_{k,k'} alpha(k, k') H_{b_k} g_{b_k'},
    alpha(k, k') = [sum_{n=max(k,0)}^{m-1} K(n-k)] [sum_{l=0}^{k-1} K(l-k') [l >= k']].

The orders of different epochs are independent and uniform, so the expectation of a pair
``H_{b_k} g_{b_k'}`` depends only on its class: the same step (``A = (1/m) sum_b H_b g_b``), the
same epoch at two positions (``(m B - A)/(m - 1)``), different epochs (``B = H_bar g_bar``).

What is averaged.  With memory the state is not a function of ``theta`` alone, so the object is
the one-epoch increment of the **mean iterate**, ``E[theta^(m)] - E[theta^(0)]``, as a function of
``theta_bar = E[theta^(0)]`` (stationary regime).  The current point itself depends on the past
orders at ``O(h)``: ``theta^(0) - theta_bar = h sum_{k<0} tail(-k) (g_{b_k} - g_bar) + O(h^2)``,
``tail(s) = sum_{j>=s} K(j)`` (the momentum not yet delivered; zero for SGD).  Expanding at
``theta_bar`` adds ``-sum_n K(n-k) H_{b_k} (theta^(0) - theta_bar)`` for past ``k``, whose mean
correlates ``b_k`` with the past ``b_k'`` of the same epoch: it enters ``d_2`` as
``alpha(k, k') -= c_k tail(-k')`` for ``k, k'`` in one past epoch, ``c_k = sum_{n=0}^{m-1} K(n-k)``
(it cancels for pairs in different epochs).  Without it the flow misses an ``O(h)`` part of
``F1``: the mean iterate then agrees only to ``O(h)`` (measured: slope 1 instead of 2).  The
second moment of the ``O(h)`` spread enters at ``O(h^3)`` per epoch, i.e. at order 2.  Hence,
with ``S_all``, ``S_same``, ``S_diag`` the sums of ``alpha`` over all pairs, the pairs in one
epoch and the diagonal,

    E d_1 = -m kappa g_bar,      E d_2 = S_all B + (A - B) (m S_diag - S_same) / (m - 1),

``kappa = sum_j K(j)``, and matching over time ``m h`` (:func:`~.epoch.match_epoch`) gives
``F0 = kappa g_bar`` and ``F1``.  The sums are finite over positions (concrete ``m``) and
geometric over epochs (closed forms by :func:`~.memory.closed_sum`).  With all batches equal
``A = B`` and the result is the full-batch stationary flow (for heavy-ball
``(1+beta)/(2(1-beta)^3) H g``).

Not covered here: a step nonlinear in the states (Adam, RMSProp: ``m / sqrt(v + eps)``) -- there
``F0`` is already ``E_pi[psi(S0)]`` with ``S0`` a combination of the batch gradients whose
weights depend on the orders of all past epochs, a mean of a nonlinear function with no finite
closed form; :mod:`epoch_adaptive` expands it in the batch spread.  Order 2 (the second moment
of the ``O(h)`` spread of the epoch maps enters there) and ``reshuffle=False`` with memory (the
per-step cyclic flow ``ModifiedFlow.field(losses, params, n=...)`` covers that schedule) raise
``NotImplementedError`` with the reason.
"""
from __future__ import annotations

import sympy as sp

from .family import g, theta
from .memo import Memo
from .memory import closed_sum
from .operators import Grad, Hess, factored

__all__ = ["memory_displacement", "linear_kernel", "linear_memory_reason", "outside_state_family",
           "kernel_sums", "MAX_MEMORY_ORDER"]

MAX_MEMORY_ORDER = 1


def outside_state_family(optimizer):
    """Why the epoch flows with memory do not cover ``optimizer`` at all (a parameter term, a
    state reading another state), or ``None``: what both the linear-memory class here and the
    adaptive steps of :mod:`epoch_adaptive` require."""
    if optimizer.step.has(theta) or any(s.of.has(theta) for s in optimizer.states):
        return "the step or a state's input depends on theta (a parameter term)"
    if any(s.reads for s in optimizer.states):
        return "a state reads another state"
    return None


_REASONS = Memo()


def linear_memory_reason(optimizer):
    """``None`` when the step and the states are in the linear-memory class (module docstring),
    else why not (a sentence); remembered per optimizer object."""
    return _REASONS.get((), lambda: _linear_memory_reason(optimizer), optimizer)


def _linear_memory_reason(optimizer):
    why = outside_state_family(optimizer)
    if why is not None:
        return why
    states = list(optimizer.states)
    step = optimizer.step
    for s in states:
        c = sp.diff(s.of, g)
        if c.has(g) or sp.simplify(s.of - c * g) != 0:
            return f"state {s.name!r} has the nonlinear input {s.of}"
    lin = [g] + states
    for x in lin:
        if sp.diff(step, x).has(*lin):
            return f"the step {step} is nonlinear in {x}"
    if sp.simplify(step.xreplace({x: 0 for x in lin})) != 0:
        return f"the step {step} has a part that is not linear in g and the states"
    return None


def linear_kernel(optimizer):
    """``(a0, [(coef_i, d_i)])`` with ``K(j) = a0 [j=0] + sum_i coef_i d_i^j`` (stationary), or
    ``NotImplementedError`` saying why the declaration is outside the linear-memory class."""
    why = linear_memory_reason(optimizer)
    if why is not None:
        raise NotImplementedError(
            f"epoch flow of {optimizer.name!r} with linear memory: {why}. Steps nonlinear in "
            f"the states (Adam, RMSProp) go through modeq.symbolic.epoch_adaptive")
    states = list(optimizer.states)
    step = optimizer.step
    a0 = sp.diff(step, g)
    parts = [(sp.diff(step, s) * sp.diff(s.of, g) * s.scale, s.decay) for s in states]
    return a0, parts


def _K(kernel, j):
    """``K(j)`` for an integer (or symbolic, ``>= 1``) lag ``j``."""
    a0, parts = kernel
    out = sp.Add(*[c * d ** j for c, d in parts])
    if j == 0:
        out += a0
    return out


def _Ksum(kernel, j0, j1):
    """``sum_{j=j0}^{j1} K(j)`` for a concrete ``j0 >= 0`` and ``j1 >= j0 - 1`` (concrete, or
    symbolic and then ``>= j0``)."""
    if isinstance(j1, int) or (isinstance(j1, sp.Basic) and j1.is_Integer):
        return sp.Add(*[_K(kernel, j) for j in range(j0, int(j1) + 1)])
    a0, parts = kernel
    out = sp.Add(*[c * (d ** j0 - d ** (j1 + 1)) / (1 - d) for c, d in parts])
    return out + (a0 if j0 == 0 else 0)


def _tail(kernel, s):
    """``sum_{j>=s} K(j)`` for a lag ``s >= 1`` (symbolic)."""
    return sp.Add(*[c * d ** s / (1 - d) for c, d in kernel[1]])


def _infinite(expr, E):
    """``sum_{E>=1} expr`` for a polynomial-geometric scalar ``expr`` in ``E``."""
    expr = sp.expand(sp.powsimp(sp.expand_power_exp(sp.expand(expr))))
    s = closed_sum(expr, E, 1, sp.oo)
    if s is None:
        raise ValueError(f"no closed form for the memory sum of {expr} over past epochs")
    return s


def kernel_sums(kernel, m):
    """``(kappa, S_all, S_same, S_diag)`` for the kernel and ``m`` batches (module docstring)."""
    a0, parts = kernel
    kappa = a0 + sp.Add(*[c / (1 - d) for c, d in parts])
    mu1 = sp.Add(*[c * d / (1 - d) ** 2 for c, d in parts])
    S_all = kappa * (kappa * sp.Rational(m * (m - 1), 2) - m * mu1)
    E = sp.Symbol("E", integer=True, positive=True)      # epochs back: e = -E
    # the diagonal, k = -s < 0: [sum_n K(n + s)] * (-sum_{j=0}^{s-1} K(j)); s = mE - p, all p
    S_diag = sp.S.Zero
    for p in range(m):
        s = m * E - p
        first = sp.Add(*[_K(kernel, n + s) for n in range(m)])
        S_diag += _infinite(-first * _Ksum(kernel, 0, s - 1), E)
    # pairs in one epoch: the current one (e = 0) and the past ones (e = -E)
    S_same = sp.S.Zero
    for p in range(m):
        first_now = _Ksum(kernel, 0, m - 1 - p)
        for q in range(p):                              # k' = q < k = p
            S_same += first_now * _Ksum(kernel, 0, p - 1 - q)
        first_past = sp.Add(*[_K(kernel, n - p + m * E) for n in range(m)])
        for q in range(m):
            # k = p - mE, k' = q - mE: -sum_{l=max(k,k')}^{-1} K(l - k'), and the
            # correlation of the current point with the past order: -tail(-k')
            second = -_Ksum(kernel, max(p, q) - q, m * E - q - 1) - _tail(kernel, m * E - q)
            S_same += _infinite(first_past * second, E)
            if q == p:
                S_diag += _infinite(-first_past * _tail(kernel, m * E - q), E)
    return factored(kappa), factored(S_all), factored(S_same), factored(S_diag)


def memory_displacement(optimizer, m, order, reshuffle):
    """``[0, E d_1, E d_2]``: the averaged epoch displacement of a linear-memory optimizer in the
    stationary regime (module docstring); :func:`~.epoch.match_epoch` turns it into ``F``."""
    if not reshuffle:
        raise NotImplementedError(
            "reshuffle=False with memory: the fixed order repeated is the cyclic schedule, whose "
            "per-step flow is ModifiedFlow.field(losses, params, n=...) (mini batch); its "
            "autonomous epoch form is not derived")
    if order > MAX_MEMORY_ORDER:
        raise NotImplementedError(
            f"epoch flows with memory are derived to order {MAX_MEMORY_ORDER}: at order 2 the "
            f"second moment of the O(h) spread of the iterates over orders enters")
    kernel = linear_kernel(optimizer)
    kappa, S_all, S_same, S_diag = kernel_sums(kernel, m)
    gbar = sp.Add(*[Grad(b) for b in range(m)]) / m
    A = sp.Add(*[Hess(b, Grad(b)) for b in range(m)]) / m
    B = sp.Add(*[Hess(a, Grad(b)) for a in range(m) for b in range(m)]) / m ** 2
    return [sp.S.Zero, -m * kappa * gbar,
            S_all * B + (A - B) * factored((m * S_diag - S_same) / (m - 1))]

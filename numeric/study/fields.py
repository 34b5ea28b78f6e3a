"""The modified flows an order study integrates: ``factory(order, h) -> f(n, theta)``.

Convention: ``f(n, theta)`` is the right-hand side on ``[nh, (n+1)h)``, i.e. ``-F^(n)(theta)``
as a list of mpmath numbers, evaluated at the current ``mpmath.mp.dps``.
"""
import sympy as sp

from modeq.symbolic.family import Refused

from ..iterate import as_losses


def require_uniform_expansion(optimizer):
    """Raise :class:`~modeq.symbolic.family.Refused` when the full-batch expansion in ``h`` of
    ``optimizer`` cannot be uniform on a fixed horizon, so that an order study has nothing to
    measure.

    The criterion: the ``n -> oo`` (stationary) flow of order 1 exists, i.e. the step is smooth
    at the states' limiting values.  Where it is not (centered RMSprop: ``v - a^2 -> 0`` for a
    smooth gradient path, under a square root), the exact-in-``n`` coefficients are finite at
    every ``n`` but those of order 2 and up grow without bound (centered RMSprop: ``F2^(n)``
    like ``rho^(-n/2)``, the ``O(h^2)`` variance of the path over the vanishing
    ``sqrt(rho^(n+1))``); over ``n <= T/h``, ``h^2 F2`` is unbounded as ``h -> 0``, so no
    flow's error is ``O(h^(r+1))`` uniformly on ``[0, T]`` and no slope settles (measured
    against torch's iterates: slopes from -4.4 to 0.8).  The flow is still right step by step
    at fixed ``n`` (series oracle)."""
    from modeq.symbolic.pipeline import require_stationary_flow
    if not optimizer.states:
        return
    try:
        require_stationary_flow(optimizer, order=1)
    except Refused as why:
        reason = str(why).rstrip(".")
        raise Refused(
            f"{optimizer.name}: no order study on a fixed horizon: {reason}. The exact-in-n "
            f"flow holds step by step, but its coefficients of order 2 and up grow without "
            f"bound in n, so the expansion in h is not uniform over the steps n <= T/h and no "
            f"slope can settle.") \
            from None


def require_batch_spread(optimizer, losses, params):
    """In mini batch, :func:`require_uniform_expansion` with the batches' spread: a step that
    is not smooth at the states' limiting values of one gradient (centered RMSprop's
    ``v - a^2 -> 0``) is smooth at those of several batches, where ``v - a^2`` tends to the
    batches' weighted variance, bounded away from 0 while the batch gradients differ in every
    component (the expansion in ``h`` is then uniform: order studies pass, see the README).
    Refused with the full-batch reason when some component of the gradient is the same
    function for every batch: there the variance vanishes as in full batch."""
    if not optimizer.states:
        return
    grads = [[sp.diff(E, p) for p in params] for E in losses]
    same = [p for i, p in enumerate(params)
            if all(sp.expand(G[i] - grads[0][i]) == 0 for G in grads[1:])]
    if same:
        try:
            require_uniform_expansion(optimizer)
        except Refused as why:
            raise Refused(f"{why} In mini batch the batches' spread would keep the states "
                          f"away from that limit, but the gradient component along "
                          f"{same[0]} is the same for every batch.") from None


def compiled_full_batch_field(flow, loss, params, stationary, values):
    """The full-batch field ``flow.field(loss, params, stationary=...)`` with the
    hyperparameter ``values`` (by name) substituted, compiled once in ``n``, ``params`` and
    ``h`` by the emit layer (:class:`~modeq.symbolic.emit.field.FullBatchField`, ``h`` bound
    later with ``.bind(h=...)``; order 0 has no ``h``)."""
    values = {k: v for k, v in values.items() if k != "h"}
    late = ("h",) if flow.order >= 1 else ()
    return flow.lambdify(loss, params, backend="mpmath", stationary=stationary, late=late,
                         **values)


class FieldFactory:
    """``factory(order, h) -> f(n, theta)``: the modified flow of ``optimizer`` from
    :func:`modeq.symbolic.derive`.

    Full batch: :func:`compiled_full_batch_field`, compiled once per order, then bound to each
    ``h``; so is mini batch outside the batch grouping (step-indexed).  Other mini batch:
    ``flow.lambdify(...)`` per ``h``.
    """

    def __init__(self, optimizer, loss_or_losses, params, stationary=False, schedule=None,
                 **values):
        self.optimizer, self.params = optimizer, list(params)
        self.loss_or_losses = loss_or_losses
        self.losses, self.mini = as_losses(loss_or_losses)
        self.stationary, self.schedule, self.values = stationary, schedule, values
        self._compiled = {}
        if not stationary:
            if self.mini:
                require_batch_spread(optimizer, self.losses, self.params)
            else:
                require_uniform_expansion(optimizer)

    def flow(self, order):
        from modeq.symbolic import derive
        return derive(self.optimizer, order=order)

    def __call__(self, order, h):
        if self.mini:
            flow = self.flow(order)
            if order >= 1 and not flow.batch_grouped:
                if order not in self._compiled:      # compiled once, h bound per step size
                    values = {k: v for k, v in self.values.items() if k != "h"}
                    self._compiled[order] = flow.lambdify(
                        self.loss_or_losses, self.params, backend="mpmath",
                        schedule=self.schedule, late=("h",), **values)
                return self._compiled[order].bind(h=h)
            return flow.lambdify(self.loss_or_losses, self.params, backend="mpmath",
                                 stationary=self.stationary, schedule=self.schedule, h=h,
                                 **self.values)
        if order not in self._compiled:
            self._compiled[order] = compiled_full_batch_field(
                self.flow(order), self.losses[0], self.params, self.stationary, self.values)
        field = self._compiled[order]
        return field.bind(h=h) if field.late else field

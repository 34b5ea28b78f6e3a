"""The modified flows an order study integrates: ``factory(order, h) -> f(n, theta)``.

Convention: ``f(n, theta)`` is the right-hand side on ``[nh, (n+1)h)``, i.e. ``-F^(n)(theta)``
as a list of mpmath numbers, evaluated at the current ``mpmath.mp.dps``.
"""
from ..iterate import as_losses


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
    ``h``.  Mini batch: ``flow.lambdify(...)`` as is.
    """

    def __init__(self, optimizer, loss_or_losses, params, stationary=False, schedule=None,
                 **values):
        self.optimizer, self.params = optimizer, list(params)
        self.loss_or_losses = loss_or_losses
        self.losses, self.mini = as_losses(loss_or_losses)
        self.stationary, self.schedule, self.values = stationary, schedule, values
        self._compiled = {}

    def flow(self, order):
        from modeq.symbolic import derive
        return derive(self.optimizer, order=order)

    def __call__(self, order, h):
        if self.mini:
            return self.flow(order).lambdify(self.loss_or_losses, self.params,
                                             backend="mpmath", stationary=self.stationary,
                                             schedule=self.schedule, h=h, **self.values)
        if order not in self._compiled:
            self._compiled[order] = compiled_full_batch_field(
                self.flow(order), self.losses[0], self.params, self.stationary, self.values)
        field = self._compiled[order]
        return field.bind(h=h) if field.late else field

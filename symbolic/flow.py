"""``ModifiedFlow``: the result of :func:`~modeq.symbolic.derive`, and its lowerings.

Convention: on ``[nh, (n+1)h)`` the flow is ``d theta/dt = -F^(n)(theta)``,
``F = F0 + h F1 + h^2 F2``.  ``terms()`` gives ``F_r`` in the dimension-free component algebra
(:mod:`operators`); ``field()`` lowers ``-F`` to a SymPy ``Matrix`` for concrete losses;
``generic(p)`` to generic symbols ``g_i, H_ij, T_ijk``; ``lambdify()`` to a numeric callable.
"""
from __future__ import annotations

import sympy as sp

from . import dag
from .components import LossProvider, SymbolProvider, lower_vector
from .epoch import epoch_flow
from .family import Optimizer, h, n
from .operators import Grad
from .memo import Memo
from .memory import gather_powers_into_sums, stationary_limit
from .pipeline import MAX_ORDER, derivation, groupable, grouped_terms

__all__ = ["derive", "ModifiedFlow"]


class ModifiedFlow:
    """Modified flow of an optimizer to a given order (see module docstring).

    >>> import sympy as sp
    >>> from modeq.symbolic import derive, optimizers
    >>> flow = derive(optimizers.heavy_ball(), order=1)
    >>> flow.terms(stationary=True)[1]
    -(beta + 1)*(H.(g))/(2*(beta - 1)**3)
    >>> x = sp.Symbol("x")
    >>> f = flow.lambdify(x**2 / 2, [x], backend="numpy", stationary=True, h=0.1, beta=0.5)
    >>> [round(float(v), 6) for v in f(None, [1.0])]   # -(g/(1-beta) + h (1+beta)/(2(1-beta)^3) H g)
    [-2.6]
    """

    def __init__(self, optimizer, order):
        self.optimizer = optimizer
        self.order = order

    # -- the derivation -------------------------------------------------------------------
    def derivation(self, batch="full", stationary=False):
        """The :class:`~modeq.symbolic.pipeline.Derivation` with every intermediate step."""
        return derivation(self.optimizer, self.order, batch, stationary)

    def terms(self, batch="full", stationary=False):
        """``[F0, F1, ...]`` as component expressions (exact in ``n`` unless stationary)."""
        return list(self.derivation(batch, stationary).F)

    def named_terms(self, batch="full", stationary=False):
        """The terms with their memory coefficients named once, as ``modeq derive`` prints
        them (:class:`~modeq.symbolic.display.NamedTerms`: ``terms``, ``coefficients``,
        ``s``; ``substituted()`` gives back :meth:`terms`)."""
        from .display import named_terms
        return named_terms(self, batch, stationary)

    def F(self, batch="full", stationary=False):
        """``F = F0 + h F1 + ...`` as one component expression."""
        return sp.Add(*[h ** r * f for r, f in enumerate(self.terms(batch, stationary))])

    @property
    def batch_grouped(self):
        """Whether the batch grouping covers this declaration (:func:`~.pipeline.groupable`):
        its mini-batch flow is then evaluated from :meth:`grouped_terms`; otherwise (a state
        reading a state, torch's dampened buffer, a step reading ``n``) step-indexed."""
        return groupable(self.optimizer)

    def grouped_terms(self, m):
        """Mini batch with ``m`` losses: the step terms with the memory sums grouped by batch
        (the stage numeric evaluation starts from; see :func:`~.pipeline.grouped_terms`)."""
        return grouped_terms(self.optimizer, m, self.order)

    def notes(self, batch="full", stationary=False):
        """What a reader must know about this flow, read off the derived terms (so a user's
        declaration gets the same notes as a built-in): the declaration's own ``notes``; a
        validity condition where ``F0`` has ``sqrt(u**2)`` of a gradient expression (smooth
        only away from ``u = 0``, e.g. epsilon outside the square root); and, exact in ``n``,
        memory sums with no closed form kept as exact finite sums over past steps."""
        out = [self.optimizer.notes] if self.optimizer.notes else []
        terms = self.terms(batch, stationary)
        kinks = sorted({str(e.base.base) for e in sp.preorder_traversal(terms[0])
                        if e.is_Pow and e.exp == sp.S.Half and e.base.is_Pow
                        and e.base.exp == 2 and e.base.has(Grad)}, key=str)
        if kinks and not any("vanish" in o for o in out):
            out.append(f"F0 contains sqrt(({', '.join(kinks)})**2): the flow is smooth, hence "
                       f"valid, only where no gradient component vanishes")
        if any(t.has(sp.Sum) for t in terms):
            out.append("memory sums with no closed form in n are kept as exact finite sums "
                       "Sum(..., (l, 0, n - 1)) over past steps (evaluated exactly per step)")
        return out

    def correction(self, stationary=True):
        """``F1``, the first correction (full batch)."""
        if self.order < 1:
            raise ValueError("the flow of order 0 has no correction; derive with order >= 1")
        return self.terms("full", stationary)[1]

    # -- lowerings ------------------------------------------------------------------------
    def field(self, E_or_losses, params, n=None, stationary=False, schedule=None, at=None,
              **values):
        """``d theta/dt = -F(theta)`` as a SymPy column ``Matrix`` for a concrete loss.

        Full batch (``E_or_losses`` an expression): exact in the step index, which stays the
        symbol ``n`` unless a value is given; ``stationary=True`` gives the ``n -> oo`` limit.
        Mini batch (a list of losses): the field on ``[nh, (n+1)h)`` for the given integer
        ``n`` when step ``k`` uses loss ``schedule[k]`` (cyclic over the list by default).
        Hyperparameters stay symbols unless given by name (``beta="1/4", h=...``; exact
        values, range-checked); giving them makes the finite sums of a given step (full batch)
        and the mini-batch ``h^2`` sums much cheaper.  ``at`` (one exact value per parameter,
        e.g. ``at=["1/2", -1]``): the field's value at that point, the loss's derivatives taken
        there before any sum is written out -- far cheaper than the field as an expression in
        the parameters evaluated afterwards.
        """
        provider = LossProvider(E_or_losses, params, schedule, at)
        subs = self._exact_values(values)
        if provider.full:
            F = self.F("full", stationary)
            out = -lower_vector(F, provider)
            if n is not None and not stationary:
                out = _replaced(out, {_n(): _check_step(n)})
                if all(v != 0 for v in subs.values()):
                    # numbers in before the finite sums and products are written out: far
                    # cheaper; a value 0 waits (beta**n * beta**(-k) would read 0 * zoo)
                    out = _replaced(out, subs)
                # sums over products of the step index (NAdam's mu_1 ... mu_t): written out
                # outermost first (dag.doit), every limit is an integer when it is reached
                out = out.applyfunc(dag.doit) if out.has(sp.Product) else out.doit()
            return _replaced(out, subs)
        if stationary:
            raise ValueError("stationary=True is for full batch; give a single loss")
        if n is None:
            raise ValueError("mini batch: give the step index n (an integer >= 0)")
        step = _check_step(n)
        if self.order >= 2 and self.optimizer.states and self.batch_grouped:
            # the h^2 memory sums over pairs of past batches, evaluated exactly for this
            # schedule from the grouped terms (every past step kept)
            from .emit.minibatch_order2 import exact_field
            return exact_field(self, provider, int(step), subs)
        # a value 0 (a decay beta = 0) goes in after the finite sums are written out, their
        # weights merged first: beta**n * beta**(-k) would read 0 * zoo, not 0**(n-k)
        zero = {s: v for s, v in subs.items() if v == 0}
        rest = {s: v for s, v in subs.items() if v != 0}
        if zero:
            F = dag.xreplace(gather_powers_into_sums(dag.xreplace(self.F("mini"), {_n(): step}),
                                                     zero), rest)
        else:       # the numbers in once per values (every step of a run reads the same)
            key = tuple(sorted((str(s), v) for s, v in rest.items()))
            valued = _VALUED.get(key, lambda: dag.xreplace(self.F("mini"), rest), self)
            F = dag.xreplace(valued, {_n(): step})
        return -lower_vector(F, provider).applyfunc(lambda e: dag.xreplace(dag.doit(e), zero))

    def _exact_values(self, values):
        """``{symbol: exact value}`` for hyperparameters given by name (a subset may be given)."""
        if not values:
            return {}
        from .emit.values import resolve_symbols
        opt = self.optimizer
        return resolve_symbols(list(opt.hyperparameters) + [h], values, opt.decays,
                               f"{opt.name!r}", require_all=False)

    def generic(self, p, stationary=True, r=None):
        """Component form for any loss in dimension ``p``: ``-F`` (or ``F_r`` if ``r`` given)
        in symbols ``g_i``, ``H_ij``, ``T_ijk``, ``theta_i`` (full batch)."""
        P = SymbolProvider(p)
        expr = self.F("full", stationary) if r is None else self.terms("full", stationary)[r]
        out = lower_vector(expr, P)
        return out if r is not None else -out

    def lambdify(self, E_or_losses, params, backend="mpmath", stationary=False, schedule=None,
                 **values):
        """A numeric ``f(n, theta) -> d theta/dt`` on ``[nh, (n+1)h)``.

        ``backend="mpmath"`` returns a list of ``mpf`` at the caller's precision;
        ``"numpy"``/``"torch"`` take ``theta`` of shape ``(p,)`` or ``(p, N)`` (component
        first, ``N`` points) and return an array/tensor of that shape, float64 unless
        ``dtype=`` says otherwise.  Hyperparameters by name (``h=..., beta=...``), converted
        exactly.  See :func:`modeq.symbolic.emit.lambdify_flow`."""
        from .emit.field import lambdify_flow
        return lambdify_flow(self, E_or_losses, params, backend=backend, stationary=stationary,
                             schedule=schedule, **values)

    def epoch_flow(self, losses, params, reshuffle=True):
        """The epoch flow (:class:`~modeq.symbolic.epoch.EpochFlow`) of one epoch over the batch
        ``losses`` (each used once per epoch), to this flow's order: ``reshuffle=True`` averages
        the one-epoch map over the ``m!`` orders (and, with memory, past epochs' independent
        orders, stationary); ``reshuffle=False`` is the fixed order ``0..m-1`` repeated (the
        cyclic schedule).  Time ``h`` per step, ``m h`` per epoch.  See :mod:`.epoch`."""
        return epoch_flow(self, losses, params, reshuffle=reshuffle)

    def stationary_terms(self):
        """``lim_{n->oo} F_r^(n)`` of the exact-``n`` terms (checks the stationary derivation)."""
        return [stationary_limit(f, _n()) for f in self.terms("full", False)]

    def __repr__(self):
        return f"ModifiedFlow({self.optimizer.name!r}, order={self.order})"

    def __str__(self):
        from .display import flow_text
        return flow_text(self)


#: a mini-batch ``F`` with the hyperparameters' numbers in, per flow and values
_VALUED = Memo(limit=4)


def _replaced(column, rule):
    """``column.xreplace(rule)`` with each distinct subexpression of its entries replaced once
    (the entries of a field share most of their terms)."""
    return sp.Matrix(column.shape[0], column.shape[1],
                     list(dag.xreplace(sp.Tuple(*column), rule)))


def derive(optimizer, order=1):
    """The modified flow of ``optimizer`` to ``order`` (0, 1 or 2): ``F = F0 + h F1 + h^2 F2``
    with ``d theta/dt = -F^(n)(theta)`` on ``[nh, (n+1)h)`` (docs/conventions.md §3).

    >>> from modeq.symbolic import derive, optimizers
    >>> flow = derive(optimizers.gd(), order=1)
    >>> flow.terms()[1]
    (H.(g))/2
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"derive expects an Optimizer declaration, got {type(optimizer).__name__}")
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise ValueError(f"order must be an integer >= 0, got {order!r}")
    if order > MAX_ORDER:
        raise NotImplementedError(f"order {order} > {MAX_ORDER} needs fourth derivatives of the "
                                  f"loss; orders 0..{MAX_ORDER} are implemented")
    return ModifiedFlow(optimizer, order)


def _n():
    return n


def _check_step(value):
    if isinstance(value, bool) or not isinstance(value, (int, sp.Integer)) or int(value) < 0:
        raise ValueError(f"step index n must be an integer >= 0, got {value!r}")
    return sp.Integer(int(value))

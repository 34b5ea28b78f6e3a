"""The lambdified full-batch field ``f(n, theta) -> d theta/dt = -F^(n)(theta)``.

:func:`lambdify_flow` is the one entry point behind ``ModifiedFlow.lambdify``: it resolves the
hyperparameter values (:mod:`.values`), lowers ``-F`` to components for the concrete loss
(through the flow's own ``lowered`` method) and compiles it as a :class:`FullBatchField`; mini
batch goes to :class:`~.minibatch.MiniBatchField`.

A :class:`FullBatchField` hoists every coefficient that depends on the step index ``n`` (and on
late-bound constants such as ``h``) but not on the point — memory moments in closed form, bias
corrections, finite memory sums — and evaluates them once per ``n`` in mpmath with guard digits,
then rounds once to the working arithmetic: their closed forms cancel badly in float64 for
decays near 1 (``1 - (n+1) rho^n + n rho^(n+1)`` with ``rho = 0.999``).  Constants named in
``late`` stay symbols in the compiled code and are given by :meth:`FullBatchField.bind`, so that
an order study compiles each flow once for all its step sizes.

A flow whose memory sums have no closed form in ``n`` already at ``h^1`` (Adam and RMSprop
without bias correction, torch's RMSprop: ``Sum(..., (l, 0, n - 1))`` in ``F1``) is evaluated
as the mini-batch flow of the one loss ``[E]`` (:class:`OneBatchField`, :mod:`.minibatch`):
with one batch every step uses ``E``, so the two flows are the same function of ``n`` and
``theta``, and the mini-batch evaluator's cyclic tail (:mod:`.cyclic_tail`, period 1) sums the
steps from the one where every memory weight equals its limit to ``2^-(prec+10)`` relative in
closed form — the cost per call stops growing with ``n``.  Where the sums start at ``h^2``
(Adam with bias correction), the grouping does not cover the declaration (a state reading
another state, a step using ``n``) or a non-default ``dtype`` is asked for, the sums stay in
the compiled field: mpmath evaluates them up to ``n = TABLES_UP_TO`` by the node tables of
:mod:`.nested_sums` (one forward pass in MPFR), beyond it by :func:`~.windowed.windowed_sum`
(the recent and the first steps term by term, the middle enclosed in interval arithmetic and
kept only as far as it matters at the working precision, a proved bound); NumPy and torch add
every term.
A field with sums inside its sums (a state reading another state: torch's RMSprop with
momentum) evaluates all of them by the node tables of :mod:`.nested_sums`, one forward pass over
the steps, linear in ``n``.
"""
from __future__ import annotations

import sympy as sp

from ..components import LossProvider, lower
from ..family import h as h_sym, n as n_sym
from .arrays import as_points, resolve_dtype, to_mpf
from .intervals import point
from .kernel import Kernel
from . import mpfr
from .minibatch import MiniBatchField
from .nested_sums import NestedSums
from .prepare import extract_sums, hoist_coefficients
from .windowed import windowed_sum
from .values import check_backend, check_step, resolve_values, resolve_symbols

__all__ = ["lambdify_flow", "FullBatchField", "OneBatchField"]


def lambdify_flow(flow, E_or_losses, params, backend="mpmath", stationary=False, schedule=None,
                  cse=True, dtype=None, late=(), **values):
    """``f(n, theta) -> d theta/dt`` on ``[nh, (n+1)h)`` for a concrete loss (full batch) or a
    list of losses (mini batch, step ``k`` uses ``losses[schedule[k]]``, cyclic by default).

    ``values``: every hyperparameter by name (``h`` too when the order is >= 1), converted
    exactly; names in ``late`` are left out and given later by ``f.bind(name=value)`` (full
    batch).  See :mod:`.arrays` for the layout of ``theta`` and the result.
    """
    check_backend(backend)
    provider = LossProvider(E_or_losses, params, schedule)
    subs = resolve_values(flow, values, late)
    if provider.full:
        late_symbols = [s for s in [*flow.optimizer.hyperparameters, h_sym] if str(s) in late]
        if _one_batch_applies(flow, stationary, backend, dtype):
            return OneBatchField(flow, provider, subs, backend, cse, late_symbols)
        F = flow.F("full", stationary)
        cache = {}
        exprs = [(-lower(F, j, provider, cache)).xreplace(subs) for j in range(provider.p)]
        return FullBatchField(exprs, provider.params, backend, dtype, cse, late_symbols,
                              flow.optimizer.decays)
    if stationary:
        raise ValueError("stationary=True is for full batch; give a single loss")
    if dtype is not None:
        raise ValueError("dtype= is supported for full-batch flows; the mini-batch evaluator "
                         "works in each backend's default precision")
    if late:
        raise ValueError("late= is supported for full-batch flows")
    return MiniBatchField(flow, provider, subs, backend, cse)


def _one_batch_applies(flow, stationary, backend, dtype):
    """Whether the full-batch field is evaluated as the mini-batch flow of one loss
    (:class:`OneBatchField`): exact in ``n``, with a memory sum in no closed form already in
    the ``h^1`` term ``F1`` — the past steps' ``F0^(l)`` then depend on ``l`` (a memory without
    bias correction, whose weights ``1 - d^(l+1)`` enter a nonlinear step), and the windowed
    sums cost ``O(n)`` per call until ``d^l`` is negligible, nested at order 2.  With bias
    correction the sums start at ``h^2`` and the windowed sums are flat in ``n`` and cheaper
    than the one-batch sweep (``O(min(n, 2 tail.start))`` per call at order 2), so they stay.
    Also required: a declaration the batch grouping covers (``flow.grouped_terms(1)``
    exists) and the mini-batch evaluator's working precision (mpmath, or float64)."""
    terms = flow.terms("full", stationary)
    if stationary or len(terms) < 2 or not terms[1].has(sp.Sum):
        return False
    if dtype is not None and (backend == "mpmath"
                              or resolve_dtype(backend, dtype) != resolve_dtype(backend)):
        return False
    try:
        flow.grouped_terms(1)                    # cached: the one-batch field starts from it
    except NotImplementedError:
        return False
    return True


class OneBatchField:
    """``f(n, theta) -> d theta/dt = -F^(n)(theta)`` of a full-batch flow whose memory sums have
    no closed form in ``n``, evaluated as the mini-batch flow of the one loss ``[E]``
    (:class:`~.minibatch.MiniBatchField` with ``m = 1``).

    One batch is the full batch: the mini-batch flow of ``[E_0, ..., E_{m-1}]`` is derived from
    the same update with step ``k`` using ``E_{batch(k)}``; with ``m = 1`` every step uses ``E``,
    the batch weights ``u(l) = sum_{k<=l, batch(k)=0} d^(l-k)`` are the full-batch memory
    weights ``sum_{k<=l} d^(l-k)``, and the grouped terms are the full-batch terms with the sums
    over past steps regrouped — the same function of ``n`` and ``theta``.  The default (cyclic)
    schedule has period 1, so the closed-form tail of :mod:`.cyclic_tail` applies: from
    ``tail.start`` (the first step whose weights equal their limits to ``2^-(prec+10)``
    relative; at order 2 from ``2 tail.start + 1``, where the memory carried by a step is
    stationary too) every past step contributes the same ``F0`` at the working precision, and
    its memory sums are geometric sums in closed form.  The cost of a call stops growing with
    ``n`` once ``n`` passes the tail start.

    The interface of :class:`FullBatchField`: constants named in ``late`` are given by
    :meth:`bind` (the mini-batch field is built then; its order-2 kernels are cached across
    step sizes); ``theta`` and the result as in :mod:`.arrays` (float64 for NumPy and torch).
    ``batch_field`` is the :class:`~.minibatch.MiniBatchField` (``None`` until bound).
    """

    def __init__(self, flow, provider, subs, backend, cse=True, late=()):
        self.flow = flow
        self.params = list(provider.params)
        self.p = len(self.params)
        self.backend = backend
        self.dtype = resolve_dtype(backend)
        self.late = list(late)
        self.uses_n = True
        self._one = LossProvider(list(provider.losses), self.params)     # m = 1, cyclic
        self._subs, self._cse = dict(subs), cse
        self.batch_field = None if self.late else self._build(self._subs)

    def _build(self, subs):
        return MiniBatchField(self.flow, self._one, subs, self.backend, self._cse)

    def bind(self, **values):
        """A copy with the late-bound constants set (exact conversion, ranges checked)."""
        exact = resolve_symbols(self.late, values, self.flow.optimizer.decays, "this field")
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.batch_field = self._build({**self._subs, **exact})
        return out

    def __call__(self, n, theta):
        if self.batch_field is None:
            raise ValueError(f"this field has late-bound constants {[str(s) for s in self.late]}"
                             f": call .bind({self.late[0]}=...) first")
        return self.batch_field(n, theta)

    def __repr__(self):
        return (f"OneBatchField(p={self.p}, backend={self.backend!r}, dtype={self.dtype}, "
                f"uses_n=True)")


#: guard bits of the nested memory sums' tables (:mod:`.nested_sums`)
GUARD_BITS = 34


class FullBatchField:
    """``f(n, theta) -> d theta/dt = -F^(n)(theta)`` for a full-batch flow (module docstring).

    ``n``: the step index (an integer >= 0; may be ``None`` when the field does not depend on
    it, e.g. ``stationary=True``).  Attributes: ``expressions`` (the lowered components,
    exact), ``source`` (the printed code), ``backend``, ``dtype``, ``p``, ``late`` (symbols
    still to be bound).
    """

    _MEMO_SIZE = 4096
    #: up to this step index, mpmath sums over past steps are filled as node tables (one forward
    #: pass in MPFR, linear in n); beyond it they are windowed (bounded in n)
    TABLES_UP_TO = 2048

    def __init__(self, exprs, params, backend, dtype=None, cse=True, late=(), decays=()):
        self.expressions = list(exprs)
        self.params = list(params)
        self.p = len(self.params)
        self.backend = backend
        self.late = list(late)
        self._decays = list(decays)
        self.uses_n = any(e.has(n_sym) for e in self.expressions)
        body, coeffs = hoist_coefficients(self.expressions, self.params, {n_sym, *self.late})
        body, groups = extract_sums(body)
        self._coefficient_symbols = [s for s, _ in coeffs]
        head = [n_sym, *self.params, *self.late, *self._coefficient_symbols]
        # with sums inside sums, every sum goes to node tables (:mod:`.nested_sums`): their cost
        # is linear in n anyway, and the tables share the point's values and run in MPFR
        nested = (groups if any(f.has(sp.Sum) for members in groups.values()
                                for _, f in members) else {})
        self._nested = None
        if nested:
            self._nested = NestedSums([sp.Sum(f, key) for key, members in nested.items()
                                       for _, f in members], head, n_sym, backend, dtype, cse)
        nested_symbols = [t for members in nested.values() for t, _ in members]
        self._sums = []            # (limits(n), summand kernel, interval kernel, symbols)
        # the same sums as node tables, built at the first call with n <= TABLES_UP_TO
        self._table_sums = [sp.Sum(f, key) for key, members in groups.items()
                            if key not in nested for _, f in members]
        self._tables, self._head = None, head
        for (index, lo, hi), members in groups.items():
            if (index, lo, hi) in nested:
                continue
            limits = sp.lambdify([n_sym], [lo, hi], modules="math")
            terms = [sp.powsimp(f, combine="exp") for _, f in members]
            summands = Kernel(terms, head + [index], backend, dtype, cse)
            enclosure = (Kernel(terms, head + [index], "interval", None, cse)
                         if backend == "mpmath" else None)
            self._sums.append((limits, summands, enclosure, [t for t, _ in members]))
        self.kernel = Kernel(body, head + [t for *_, ts in self._sums for t in ts]
                             + nested_symbols, backend, dtype, cse)
        self._coefficients = Kernel([e for _, e in coeffs], [n_sym, *self.late], "mpmath",
                                    None, cse, running=True) if coeffs else None
        self.dtype = self.kernel.dtype
        # the same code in MPFR arithmetic (:mod:`.mpfr`), where gmpy2 is installed
        self._fast = (mpfr.fast_kernel(self.kernel) if not (self._sums or self._nested)
                      else None)
        self._bound = None if self.late else []
        self._exact_late = []
        self._memo = {}

    def bind(self, **values):
        """A copy with the late-bound constants set (exact conversion, ranges checked); the
        compiled kernels are shared."""
        exact = resolve_symbols(self.late, values, self._decays, "this field")
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out._exact_late = [exact[s] for s in self.late]
        out._bound = [self._in_arithmetic(v) for v in out._exact_late]
        out._memo = {}
        return out

    @property
    def source(self):
        return self.kernel.source

    def _in_arithmetic(self, v):
        if self.backend == "mpmath":
            return v                       # converted at call time, at the working precision
        if self.backend == "numpy":
            return self.dtype.type(float(v))
        import torch
        return torch.tensor(float(v), dtype=self.dtype)

    def _late_values(self, device):
        if self.backend == "mpmath":
            import mpmath
            key = ("late", mpmath.mp.prec)
            if key not in self._memo:
                self._memo[key] = [to_mpf(v) for v in self._exact_late]
            return self._memo[key]
        if self.backend == "torch" and device is not None:
            return [b.to(device) for b in self._bound]
        return self._bound

    def _coefficient_values(self, n, device):
        if self._coefficients is None:
            return []
        import mpmath
        key = (n, mpmath.mp.prec if self.backend == "mpmath" else str(device))
        if key in self._memo:
            return self._memo[key]
        if len(self._memo) >= self._MEMO_SIZE:
            self._memo.clear()
        mp_backend = self.backend == "mpmath"
        with mpmath.workdps(mpmath.mp.dps + 10 if mp_backend else 30):
            values = list(self._coefficients(n, *[to_mpf(v) for v in self._exact_late]))
        if mp_backend:
            out = [+v for v in values]                   # rounded to the working precision
        elif self.backend == "numpy":
            out = [self.dtype.type(str(v)) if self.dtype.itemsize > 8
                   else self.dtype.type(float(v)) for v in values]
        else:
            import torch
            out = [torch.tensor(float(v), dtype=self.dtype, device=device) for v in values]
        self._memo[key] = out
        return out

    def __call__(self, n, theta):
        if self._bound is None:
            raise ValueError(f"this field has late-bound constants {[str(s) for s in self.late]}"
                             f": call .bind({self.late[0]}=...) first")
        n = check_step(n, self.uses_n)
        x = as_points(theta, self.p, self.backend, self.dtype)
        if self._fast is not None:
            import mpmath
            prec = mpmath.mp.prec
            with mpfr.context(prec):
                outs = self._fast(prec, n, *(mpfr.from_mpf(v) for v in x),
                                  *self._fast_head(n, prec))
                if outs is not None:
                    return [mpfr.to_mpf(r, prec) for r in outs]
        device = getattr(x, "device", None)
        head = [n, *x, *self._late_values(device), *self._coefficient_values(n, device)]
        sums = []
        if (self._sums and self.backend == "mpmath" and n is not None
                and n <= self.TABLES_UP_TO):
            if self._tables is None:
                self._tables = NestedSums(self._table_sums, self._head, n_sym, "mpmath")
            sums += self._table_values(self._tables, head, device)
        for limits, summands, enclosure, symbols in (self._sums if not sums else ()):
            lo, hi = (int(v) for v in limits(n))
            if enclosure is None:
                totals = [0] * len(symbols)
                for index in range(lo, hi + 1):
                    totals = [a + b for a, b in zip(totals, summands(*head, index, device=device))]
            else:
                totals = self._windowed(summands, enclosure, head, len(symbols), lo, hi)
            sums += totals
        if self._nested is not None:
            sums += self._table_values(self._nested, head, device)
        outs = self.kernel(*head, *sums, device=device)
        if self.backend == "mpmath":
            return list(outs)
        return self.kernel.broadcast(outs, tuple(x.shape[1:]), device)

    def fixed(self, n, values, bits, out_bits):
        """The field in fixed point, for an integrator that works in it: ``values[j]`` is
        ``theta_j 2^bits`` (an integer); returns ``[f_j 2^out_bits]`` (truncated integers), or
        ``None`` where the MPFR path does not apply (no gmpy2, a kernel it does not cover, a
        non-finite result): then call the field itself.  Same arithmetic as ``self(n, theta)``
        (the point rounded to the working precision first)."""
        if self._fast is None or self._bound is None:
            return None
        import mpmath
        prec = mpmath.mp.prec
        n = check_step(n, self.uses_n)
        with mpfr.context(prec):
            outs = self._fast(prec, n, *(mpfr.from_fixed(v, bits) for v in values),
                              *self._fast_head(n, prec))
            if outs is None:
                return None
            return [mpfr.to_fixed(r, out_bits) for r in outs]

    def _fast_head(self, n, prec):
        """The late and step-index coefficient values as ``mpfr`` (memoized per ``n`` and
        precision; inside ``with mpfr.context(prec)``)."""
        key = ("mpfr", n, prec)
        head = self._memo.get(key)
        if head is None:
            values = [*self._late_values(None), *self._coefficient_values(n, None)]
            head = self._memo[key] = [mpfr.from_mpf(v) for v in values]
        return head

    def _table_values(self, tables, head, device):
        """Memory sums by their node tables (:mod:`.nested_sums`); in mpmath (or the same
        arithmetic in MPFR) with guard bits (the tables are recurrences over the steps),
        rounded once."""
        if self.backend != "mpmath":
            return tables(*head, device=device)
        import mpmath
        prec = mpmath.mp.prec
        if tables.has_fast:
            guarded = prec + GUARD_BITS
            with mpmath.workprec(guarded), mpfr.context(guarded):
                outs = tables.fast(guarded, *(mpfr.from_mpf(v) for v in head))
                if outs is not None:
                    return [mpfr.to_mpf(r, prec) for r in outs]
        with mpmath.workprec(prec + GUARD_BITS):
            values = tables(*head)
        return [+v for v in values]

    def _windowed(self, summands, enclosure, head, k, lo, hi):
        """One memory sum in mpmath at a cost bounded in ``n`` (:mod:`.windowed`)."""
        boxed = [head[0], *(point(v) for v in head[1:])]
        totals, _ = windowed_sum(lambda l: summands(*head, l), lambda L: enclosure(*boxed, L),
                                 k, lo, hi)
        return totals

    def __repr__(self):
        return (f"FullBatchField(p={self.p}, backend={self.backend!r}, "
                f"dtype={self.dtype}, uses_n={self.uses_n})")

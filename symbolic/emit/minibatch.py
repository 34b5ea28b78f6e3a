"""The mini-batch field ``f(n, theta)``: the flow on step ``n`` depends on every past batch.

With the memory sums grouped by batch (the flow's ``grouped_terms(m)`` stage), one call
evaluates each batch's gradient and Hessian once, whatever ``n``; past steps enter only through
scalar weight tables and the cheap ``F0`` kernel.  The memory window is cut only where the
dropped weights are below the working precision.  Step ``k`` uses ``losses[schedule[k]]``
(cyclic by default); the derivative tables are indexed by loss, the weight tables by the loss
each past step used.
"""
from __future__ import annotations

import math

from ..components import lower
from ..family import h as h_sym
from ..family import n as n_sym
from ..memo import Memo
from . import mpfr
from .arithmetic import Compiled, InMpfr, NotFinite, Plain
from .arrays import as_points, resolve_dtype, stack_components
from .batch_weights import BatchWeights
from .cyclic_tail import cyclic_tail
from .minibatch_order2 import KernelProvider, Order2Sweep, kernel_key
from .values import check_step

__all__ = ["MiniBatchField"]


_GROUPED_KERNELS = Memo(limit=33)


class _GroupedKernels:
    """The compiled parts of a grouped mini-batch field of order 0 or 1: per residue the ``F0``
    and ``F1`` kernels, per loss its gradient and Hessian, per state its last weight, decay and
    limit.  Independent of ``h`` (it enters at call time): cached across the step sizes of an
    order study (:func:`~.minibatch_order2.kernel_key`)."""

    def __init__(self, flow, provider, subs, modules, cse):
        m, p, prm = len(provider.losses), provider.p, provider.params
        opt = flow.optimizer
        K = KernelProvider(prm, m)
        terms = flow.grouped_terms(m)
        args0 = [s for row in terms.W for s in row] + [x for row in K.G for x in row] + list(prm)
        hsyms = [x for b in range(m) for x in K.hess_symbols(b)]
        vsyms = [K.vec(v.args[0], j) for row in terms.V for v in row for j in range(p)]
        self.F0, self.F1 = [], []
        for c in range(m):
            F0 = [lower(terms.F0[c], j, K).xreplace(subs) for j in range(p)]
            self.F0.append(Compiled(args0, F0, modules=modules, cse=cse))
            if flow.order >= 1:
                F1 = [lower(terms.F1[c], j, K).xreplace(subs) for j in range(p)]
                self.F1.append(Compiled(args0 + hsyms + vsyms, F1, modules=modules, cse=cse))
        # indexed by loss (the weight tables u[i][l][b] sum over the steps that used loss b)
        self.grad = [Compiled(prm, [provider.loss_derivative(b, (j,)) for j in range(p)],
                              modules=modules) for b in range(m)]
        self.hess = [Compiled(prm, [provider.loss_derivative(b, (j, i)) for j in range(p)
                                    for i in range(j, p)], modules=modules) for b in range(m)]
        # state weights: w(l, l) and decay per state, exact then numeric at call time
        self.w_last = [Compiled([n_sym], s.weight(n_sym, n_sym).xreplace(subs),
                                modules=modules) for s in opt.states]
        self.decay = [Compiled([], s.decay.xreplace(subs), modules=modules)
                      for s in opt.states]
        self.limit = [Compiled([], s.stationary_weight(0).xreplace(subs), modules=modules)
                      for s in opt.states]


class MiniBatchField:
    """``f(n, theta)`` for a mini-batch flow (see the module docstring); order 2 evaluates the
    memory sums of the ``h^2`` term with :class:`~.minibatch_order2.Order2Sweep`."""

    def __init__(self, flow, provider, subs, modules, cse):
        self.flow, self.provider, self.modules = flow, provider, modules
        self.m = len(provider.losses)
        self.p = provider.p
        self.h = subs.get(h_sym, None)
        self._dtype = resolve_dtype(modules)
        if flow.order >= 2:
            self._order2 = Order2Sweep.get(flow, provider, subs, modules, cse)
            self._tables = {}
            return
        k = _GROUPED_KERNELS.get(kernel_key(provider, subs, modules, cse, flow.order),
                                 lambda: _GroupedKernels(flow, provider, subs, modules, cse),
                                 flow.optimizer)
        self.states = flow.optimizer.states
        self._F0, self._F1, self._grad, self._hess = k.F0, k.F1, k.grad, k.hess
        self._w_last, self._decay, self._limit = k.w_last, k.decay, k.limit
        self._tables = {}
        # every theta-dependent kernel in MPFR (mpmath backend, gmpy2 installed)
        self._fast = modules == "mpmath" and all(
            f.fast is not None for f in (*self._F0, *self._F1, *self._grad, *self._hess))

    # scalar tables, independent of theta -------------------------------------------------
    def _u_table(self, n, ar=Plain):
        """The weight table (:class:`~.batch_weights.BatchWeights`) filled up to step ``n``,
        in the arithmetic ``ar`` (the same roundings in MPFR as in mpmath); one per precision
        and arithmetic, kept and extended."""
        prec = self._precision_key()
        key = (prec, ar.key)
        tab = self._tables.get(key)
        if tab is None:
            decays = [d() for d in self._decay]
            tab = BatchWeights([ar.num(d) for d in decays], self.m, self.provider.loss_index,
                               lambda l: [ar.num(w(l)) for w in self._w_last])
            # the tail in this arithmetic: the plain table's, read through a conversion
            tab.tail = (self._cyclic_tail(decays, prec) if ar.key is None
                        else ar.tail(self._u_table(0).tail))
            if any(k[0] != prec for k in self._tables):
                self._tables = {}
            self._tables[key] = tab
        tab.row(n)
        return tab

    def _precision_key(self):
        if self.modules == "mpmath":
            import mpmath
            return mpmath.mp.prec
        return 53

    def _cyclic_tail(self, decays, prec):
        """The closed-form stationary part of the memory sums (:mod:`.cyclic_tail`), or
        ``None`` (every step of the window is then added)."""
        if self.provider.schedule is not None:
            return None
        return cyclic_tail(decays, [c() for c in self._limit], self._w_last, self.m,
                           self.provider.loss_index, prec, self.modules)

    @staticmethod
    def _weights(tab, l):
        """The weights ``w_i(l, l) u_ib(l)`` of step ``l`` (the tail's past its start)."""
        tail = tab.tail
        if tail is not None and l >= tail.start:
            return tail.weights(l)
        return tab.products(l)

    def _window(self, tab, n):
        """Earliest past step whose weight can matter at the working precision."""
        tol = 2.0 ** (-self._precision_key() - 8)
        lo = n
        for d in tab.d:
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
        """The components of ``-(F0 + h F1 + h^2 F2)`` (up to the flow's order) at step ``n``."""
        if self.flow.order < 2:
            return self._evaluate(n, theta, self._fast, self._direct_table, self._terms)
        self._order2_table(n)                   # the plain table, outside the MPFR context
        fast = self.modules == "mpmath" and self._order2.fast
        return self._evaluate(n, theta, fast, self._order2_table, self._terms2)

    def _evaluate(self, n, theta, fast, table, terms):
        """``terms(n, theta, table(n, ar), ar)`` in MPFR when ``fast`` (every kernel of the
        point has its MPFR code), else, or when a value there is not finite, in the backend's
        own arithmetic."""
        if fast:
            prec = self._precision_key()
            ar = InMpfr(prec)

            def compute():
                try:
                    return terms(n, [ar.num(v) for v in theta], table(n, ar), ar)
                except NotFinite:
                    return None
            outs = mpfr.run(prec, compute, lambda r: mpfr.to_mpf(r, prec))
            if outs is not None:
                return outs
        return terms(n, theta, table(n, Plain), Plain)

    def _direct_table(self, n, ar):
        """The order-0/1 table up to step ``n``, or to the tail's start (summed past it)."""
        tail = self._u_table(0).tail
        return self._u_table(n if tail is None else min(n, tail.start), ar)

    def _terms(self, n, theta, tab, ar):
        """``-(F0 + h F1)`` at step ``n`` in the arithmetic ``ar`` (:class:`Plain` or
        :class:`InMpfr`), ``tab`` from :meth:`_direct_table`."""
        tail = tab.tail
        G = [ar.call(self._grad[b], *theta) for b in range(self.m)]
        Gflat = [x for row in G for x in row]
        c = self.provider.loss_index(n)
        F0 = ar.call(self._F0[c], *self._weights(tab, n), *Gflat, *theta)
        if self.flow.order == 0:
            return [-x for x in F0]
        Hflat = [x for b in range(self.m) for x in ar.call(self._hess[b], *theta)]
        # V[i][b] = w_i(n, n) sum_{l<n} d_i^(n-l) u_ib(l) F0^(l)
        V = [[[0 * x for x in F0] for _ in range(self.m)] for _ in self.states]
        start = self._window(tab, n)
        stop = n if tail is None else min(n, tail.start)
        tab.forget_before(start)
        for l in range(start, stop):
            F0l = ar.call(self._F0[self.provider.loss_index(l)], *self._weights(tab, l),
                          *Gflat, *theta)
            for i, row in enumerate(tab.row(l)):
                scale = tab.power(i, n - l)
                for b in range(self.m):
                    coef = scale * row[b]
                    if coef:
                        V[i][b] = [a + coef * f for a, f in zip(V[i][b], F0l)]
        if tail is not None:
            # steps tail.start <= l < n: one F0 per residue, geometric sums over the periods
            for s, r, T in tail.residues(n, tail.start):
                F0r = ar.call(self._F0[self.provider.loss_index(r)],
                              *tail.weights(r), *Gflat, *theta)
                for i in range(len(self.states)):
                    s0 = tail.lag_sums(i, s, T)[0]
                    for b, ub in enumerate(tail.u(r)[i]):
                        coef = s0 * ub
                        if coef:
                            V[i][b] = [a + coef * f for a, f in zip(V[i][b], F0r)]
        wn = tab.w(n)
        Vflat = [wn[i] * x for i in range(len(self.states)) for b in range(self.m)
                 for x in V[i][b]]
        F1 = ar.call(self._F1[c], *self._weights(tab, n), *Gflat, *theta, *Hflat, *Vflat)
        h = ar.num(self._h_value())
        return [-(a + h * b) for a, b in zip(F0, F1)]

    def _order2_table(self, n, ar=Plain):
        """The order-2 scalar table (:meth:`.Order2Sweep.table`) at the working precision in
        the arithmetic ``ar``: the plain one made once per precision, the others converted from
        it once (``n`` unused: every step is filled on demand)."""
        prec = self._precision_key()
        key = (prec, ar.key)
        if key not in self._tables:
            if ar.key is None:
                self._tables = {key: self._order2.table(
                    self.provider.loss_index, prec=prec, cyclic=self.provider.schedule is None)}
            else:
                self._tables[key] = self._order2.table_in(ar, self._order2_table(n))
        return self._tables[key]

    def _terms2(self, n, theta, table, ar):
        """``-(F0 + h (F1 + h F2))`` at step ``n`` in the arithmetic ``ar``."""
        F0, F1, F2 = self._order2(n, theta, table, self._precision_key(), ar=ar)
        h = ar.num(self._h_value())
        return [-(a + h * (b + h * c)) for a, b, c in zip(F0, F1, F2)]

    def _h_value(self):
        if self.modules == "mpmath":
            import mpmath
            return mpmath.mpf(self.h.p) / self.h.q
        return float(self.h)

"""The mini-batch field of order 2: ``-(F0 + h F1 + h^2 F2)`` on step ``n``, exact for the
schedule.

The grouped terms (the flow's ``grouped_terms(m)`` stage, order 2) leave per state ``i`` and
batch ``b`` the scalars ``W_ib`` and the vectors ``V_ib``, ``U_ib``, the second moment
``M_ib = A_ib A_ib^T`` and the Jacobian ``J_ib = DV_ib`` to fill in.  All are finite sums over
past steps of fields evaluated at the current point; one call makes one backward sweep over the
memory window (every past ``F0^(l)``, its Jacobian and ``F1^(l)`` once), so the cost per call is
bounded by the window, not by ``n``:

* ``V^(l)_ib = w_i(l, l) a_ib(l)`` with ``a_ib(l+1) = d_i (a_ib(l) + u_ib(l) F0^(l))``
  (``u_ib(l) = sum_{k<=l, batch(k)=b} d_i^(l-k)``), so every past ``F1^(l)`` costs one kernel;
* ``D_k = sum_{l=k}^{n-1} F0^(l)`` (suffix sums), ``E_l = F1^(l) + DF0^(l).(F0^(l)/2 + D_{l+1})``;
* ``U_ib = w_i(n,n) sum_l d_i^(n-l) u_ib(l) E_l``, ``J_ib = w_i(n,n) sum_l d_i^(n-l) u_ib(l)
  DF0^(l)``, ``M_ib = w_i(n,n) sum_{k: batch(k)=b} d_i^(n-k) D_k D_k^T``.

Steps older than the window are dropped only where every dropped term is below the working
precision (the polynomial growth of ``D_k`` included); the exact arithmetic (``flow.field``)
keeps every step.  ``A`` enters ``F2`` as a quadratic form, lowered with ``A_j A_k -> M_jk``.
"""
from __future__ import annotations

import math

import sympy as sp

from ..components import lower
from ..family import n as n_sym
from ..memo import Memo
from .arithmetic import Compiled, Plain
from .batch_weights import BatchWeights
from .cyclic_tail import cyclic_tail

__all__ = ["Order2Sweep", "exact_field"]

_SWEEPS = Memo(limit=33)


def kernel_key(provider, subs, backend, *more):
    """The key of kernels compiled for the losses, parameters and hyperparameter values
    ``subs`` of a mini-batch field, ``h`` left out: ``h`` enters at call time, so an order study
    compiles them once for all its step sizes."""
    return (tuple(provider.losses), tuple(provider.params),
            tuple(sorted((str(k), v) for k, v in subs.items() if str(k) != "h")), backend, *more)


class KernelProvider:
    """The symbols a grouped term is lowered to (:func:`~modeq.symbolic.components.lower`):
    per-batch ``g``, symmetric ``H`` and ``T``, external vectors, the Jacobians of the tagged
    batches (``Hess(J, u) -> sum_i J_ji u_i``; no tags below order 2) and the parameters."""

    def __init__(self, params, m, tags=()):
        self.params, self.p, self.tags = list(params), len(params), set(tags)
        p = self.p
        self.G = [[sp.Symbol(f"g_{b}_{j}") for j in range(p)] for b in range(m)]
        self._sym = {}

    def s(self, name):
        if name not in self._sym:
            self._sym[name] = sp.Symbol(name)
        return self._sym[name]

    def grad(self, b, j):
        return self.G[int(b)][j]

    def hess(self, b, j, i):
        if b in self.tags:
            return self.s(f"{b}__{j}_{i}")
        j, i = sorted((j, i))
        return self.s(f"H_{int(b)}_{j}_{i}")

    def d3(self, b, j, i, k):
        return self.s("T_%d_%d_%d_%d" % (int(b), *sorted((j, i, k))))

    def theta(self, j):
        return self.params[j]

    def vec(self, name, j):
        return self.s(f"{name}_{j}")

    def hess_symbols(self, b):
        return [self.hess(b, j, i) for j in range(self.p) for i in range(j, self.p)]

    def d3_symbols(self, b):
        p = self.p
        return [self.d3(b, j, i, k) for j in range(p) for i in range(j, p) for k in range(i, p)]

    def matrix_symbols(self, name, sym):
        p = self.p
        return [self.s(f"{name}__{j}_{k}") for j in range(p) for k in range(j if sym else 0, p)]


def _quadratic_form(expr, avecs, P):
    """``expr`` with its quadratic dependence on each external ``Vec(A)`` replaced by the second
    moment: ``A_j A_k -> M_jk`` (``expr`` is a quadratic form in each ``A``, no cross terms)."""
    a = {str(v.args[0]): [P.vec(v.args[0], j) for j in range(P.p)] for v in avecs}
    zero = {x: 0 for xs in a.values() for x in xs}
    out = expr.xreplace(zero)
    for name, xs in a.items():
        for j in range(P.p):
            for k in range(j, P.p):
                c = sp.diff(expr, xs[j], xs[k])
                c = c.xreplace(zero) if c.has(*zero) else c
                out += (c / 2 if j == k else c) * P.s(f"M{name}__{j}_{k}")
    return out


class Order2Sweep:
    """The compiled kernels of the order-2 mini-batch field for one flow, loss list and values
    (cached: an order study reuses them for every step size; ``h`` enters at call time)."""

    @classmethod
    def get(cls, flow, provider, subs, backend, cse=True):
        return _SWEEPS.get(kernel_key(provider, subs, backend),
                           lambda: cls(flow, provider, subs, backend, cse), flow.optimizer)

    def __init__(self, flow, provider, subs, backend, cse=True):
        opt = flow.optimizer
        self.backend, self.states = backend, opt.states
        self.m, self.p = len(provider.losses), provider.p
        terms = flow.grouped_terms(self.m)
        tags = [t for row in terms.J for t in row]
        P = KernelProvider(provider.params, self.m, tags)
        m, p, prm = self.m, self.p, list(provider.params)
        W = [w for row in terms.W for w in row]
        G = [x for row in P.G for x in row]
        H = [x for b in range(m) for x in P.hess_symbols(b)]
        T = [x for b in range(m) for x in P.d3_symbols(b)]
        vecs = lambda rows: [P.vec(v.args[0], j) for row in rows for v in row for j in range(p)]
        V, U = vecs(terms.V), vecs(terms.U)
        A = [v for row in terms.A for v in row]
        M = [x for v in A for x in P.matrix_symbols(f"M{v.args[0]}", True)]
        Q = vecs([terms.Q])
        J = [x for t in tags for x in P.matrix_symbols(str(t), False)]
        E = [P.s(f"e_{j}") for j in range(p)]
        low = lambda e, j: lower(e, j, P).xreplace(subs)
        free = set()
        F0, J0, F1, F2 = [], [], [], []
        for c in range(m):
            f0 = [low(terms.F0[c], j) for j in range(p)]
            dir0 = [low(terms.DF0[c], j) for j in range(p)]
            j0 = [sp.diff(dj, e) for dj in dir0 for e in E]
            f1 = [low(terms.F1[c], j) for j in range(p)]
            f2 = [low(terms.F2[c], j) for j in range(p)]
            for e in f0 + j0 + f1 + f2:
                free |= e.free_symbols
            F0.append(f0), J0.append(j0), F1.append(f1), F2.append(f2)
        dec = [s.decay.xreplace(subs) for s in opt.states]
        wl = [s.weight(n_sym, n_sym).xreplace(subs) for s in opt.states]
        for e in dec + wl:
            free |= e.free_symbols - {n_sym}
        q = [_quadratic_form(low(e, j), A, P) for e in terms.Qform for j in range(p)]
        for e in q:
            free |= e.free_symbols
        known = set(W + G + H + T + V + U + M + J + Q + prm)
        self.extra = sorted(free - known, key=str)          # symbolic values (exact field)
        x = self.extra
        self._F0 = [Compiled(W + G + prm + x, e, backend, cse) for e in F0]
        self._J0 = [Compiled(W + G + prm + H + x, e, backend, cse) for e in J0]
        self._F1 = [Compiled(W + G + prm + H + V + x, e, backend, cse) for e in F1]
        self._F2 = [Compiled(W + G + prm + H + T + V + U + Q + J + x, e, backend, cse)
                    for e in F2]
        self._Q = Compiled(G + prm + H + T + M + x, q, backend, cse)
        loss = lambda b, order: [provider.loss_derivative(b, idx) for idx in _indices(p, order)]
        self._grad = [Compiled(prm, loss(b, 1), backend) for b in range(m)]
        self._hess = [Compiled(prm, loss(b, 2), backend) for b in range(m)]
        self._d3 = [Compiled(prm, loss(b, 3), backend) for b in range(m)]
        limits = [s.stationary_weight(0).xreplace(subs) for s in opt.states]
        self._decay = Compiled(x, dec, backend)
        self._w_last = Compiled([n_sym] + x, wl, backend)
        self._limits = Compiled(x, limits, backend)
        self._exact_decays = dec
        #: every kernel of the point has its MPFR code (mpmath backend, numeric values)
        self.fast = not x and all(
            k.fast is not None for k in [*self._F0, *self._J0, *self._F1, *self._F2, self._Q,
                                         *self._grad, *self._hess, *self._d3])

    # ----------------------------------------------------------------------------- tables
    def window(self, n, prec):
        """First past step kept: older terms are below ``2^-(prec+10)`` relative, counting the
        ``(n-k)^2`` growth of the second moments and ``1/(1-d)^3`` from the memory sums."""
        if prec is None:
            return 0
        lo = n
        for d in self._exact_decays:
            dv = float(d)
            if dv <= 0.0:
                continue
            target = -(prec + 10) * math.log(2) + 3 * math.log(1 - dv)
            L = 1
            while L * math.log(dv) + 2 * math.log(L + 1) > target and L <= n:
                L = max(L + 1, int(L * 1.2))
            lo = min(lo, max(0, n - L))
        return lo if self.states else n

    def table(self, loss_index, values=(), prec=None, cyclic=False):
        """The scalar table ``u[l][i][b]`` of a schedule (filled on demand); with ``cyclic``
        (the default schedule) and a working precision ``prec``, also the closed-form
        stationary part of the memory sums (:mod:`.cyclic_tail`) where it applies."""
        table = BatchWeights(self._decay(*values), self.m, loss_index,
                             lambda l: self._w_last(l, *values))
        if cyclic and prec is not None:
            w_last = [lambda l, i=i: self._w_last(l, *values)[i]
                      for i in range(len(self.states))]
            table.tail = cyclic_tail(table.d, self._limits(*values), w_last, self.m,
                                     loss_index, prec, self.backend)
        return table

    @staticmethod
    def table_in(ar, plain):
        """The table ``plain`` (from :meth:`table`) in the arithmetic ``ar``: its decays, last
        weights and tail converted, its rows recomputed there."""
        table = BatchWeights([ar.num(d) for d in plain.d], plain.m, plain.batch,
                             lambda l: [ar.num(w) for w in plain.w_last(l)])
        table.tail = ar.tail(plain.tail)
        return table

    def __call__(self, n, theta, table, prec, values=(), ar=Plain):
        """``[F0, F1, F2]`` at step ``n`` for the point ``theta`` (a list of components);
        ``table`` from :meth:`table` (same values and precision), or from :meth:`table_in`
        for the arithmetic ``ar`` (:mod:`.arithmetic`) the point and the kernels run in.

        Steps from ``start`` (the window) on are swept one by one; with a cyclic tail, the
        steps from ``L0`` (where the memory ``a(l)`` of a step is periodic too, two tail starts
        in) to ``n`` are summed per residue in closed form instead."""
        x = list(values)
        m, p, S = self.m, self.p, len(self.states)
        d = table.d
        zero = 0 * theta[0]
        G = [v for b in range(m) for v in ar.call(self._grad[b], *theta)]
        H = [v for b in range(m) for v in ar.call(self._hess[b], *theta)]
        T = [v for b in range(m) for v in ar.call(self._d3[b], *theta)]
        start = self.window(n, prec)
        tail = table.tail
        L0 = n + 1 if tail is None else max(start, 2 * tail.start + m)
        acc = [[[zero] * p for _ in range(m)] for _ in range(S)]
        past = []
        for l in range(start, min(n + 1, L0)):
            b, u = table.batch(l), table.row(l)
            wl = table.w(l)
            W = [wl[i] * v for i in range(S) for v in u[i]]
            F0 = ar.call(self._F0[b], *W, *G, *theta, *x)
            V = [wl[i] * a for i in range(S) for row in acc[i] for a in row]
            if l < n:
                J0 = ar.call(self._J0[b], *W, *G, *theta, *H, *x)
                F1 = ar.call(self._F1[b], *W, *G, *theta, *H, *V, *x)
                past.append((b, u, F0, J0, F1))
            else:
                Wn, Vn, F0n, bn, wn = W, V, F0, b, wl
            for i in range(S):
                acc[i] = [[d[i] * (a + u[i][c] * f) for a, f in zip(acc[i][c], F0)]
                          for c in range(m)]
        Uv = [[[zero] * p for _ in range(m)] for _ in range(S)]
        Jv = [[[zero] * (p * p) for _ in range(m)] for _ in range(S)]
        Mv = [[[zero] * (p * (p + 1) // 2) for _ in range(m)] for _ in range(S)]
        D = [zero] * p                                     # D_{l+1}
        if L0 <= n:
            wn = table.w(n)
            Wn, Vn, F0n, bn, D = self._stationary_part(n, L0, table, wn, acc, Uv, Jv, Mv, G, H,
                                                       theta, x, ar)
            scale = [wn[i] * d[i] ** (n - L0) for i in range(S)]
        else:
            scale = [wn[i] for i in range(S)]
        F1n = ar.call(self._F1[bn], *Wn, *G, *theta, *H, *Vn, *x)
        for b, ul, F0, J0, F1 in reversed(past):
            scale = [scale[i] * d[i] for i in range(S)]
            X = [f / 2 + dd for f, dd in zip(F0, D)]
            El = [F1[j] + sum((J0[j * p + k] * X[k] for k in range(p)), zero)
                  for j in range(p)]
            D = [dd + f for dd, f in zip(D, F0)]            # now D_l
            DD = [D[j] * D[k] for j in range(p) for k in range(j, p)]
            for i in range(S):
                Mv[i][b] = [a + scale[i] * q for a, q in zip(Mv[i][b], DD)]
                for c in range(m):
                    cf = scale[i] * ul[i][c]
                    if _nonzero(cf):
                        Uv[i][c] = [a + cf * e for a, e in zip(Uv[i][c], El)]
                        Jv[i][c] = [a + cf * e for a, e in zip(Jv[i][c], J0)]
        flat = lambda X: [v for i in range(S) for row in X[i] for v in row]
        Q = ar.call(self._Q, *G, *theta, *H, *T, *flat(Mv), *x) if S else []
        F2n = ar.call(self._F2[bn], *Wn, *G, *theta, *H, *T, *Vn, *flat(Uv), *Q, *flat(Jv), *x)
        return F0n, F1n, F2n

    def _stationary_part(self, n, L0, table, wn, acc, Uv, Jv, Mv, G, H, theta, x, ar):
        """Add the steps ``L0 <= l < n`` of the cyclic tail to the sums ``U, J, M`` (in place)
        and return the current step's ``W, V, F0``, batch and ``D_{L0}``.

        Per residue ``r``: ``F0*(r)``, its Jacobian ``J0*(r)`` and ``F1*(r)`` (with the
        periodic memory ``a*(r) = sum_{s=1}^{m} d^s u*(r-s) F0*(r-s) / (1 - d^m)``).  Step
        ``l = n - s - m t`` has ``D_l = t P + Q_s`` (``P`` the sum over a period, ``Q_s`` over
        the last ``s`` steps) and ``E_l = A_s + t B_s``, so each lag ``s`` contributes the
        moments ``d^s sum_t t^k d^(m t)``, ``k <= 2``."""
        m, p, S = self.m, self.p, len(self.states)
        tail = table.tail
        zero = 0 * theta[0]
        F0s = [ar.call(self._F0[tail.batch[r]], *tail.weights(r), *G, *theta, *x)
               for r in range(m)]
        per = []
        for r in range(m):
            a = [[[zero] * p for _ in range(m)] for _ in range(S)]
            for s in range(1, m + 1):
                q = (r - s) % m
                for i in range(S):
                    k = tail.power(i, s) / (1 - tail.power(i, m))
                    for c, uc in enumerate(tail.u(q)[i]):
                        a[i][c] = [v + k * uc * f for v, f in zip(a[i][c], F0s[q])]
            V = [tail.limit(i) * v for i in range(S) for row in a[i] for v in row]
            W = tail.weights(r)
            J0 = ar.call(self._J0[tail.batch[r]], *W, *G, *theta, *H, *x)
            F1 = ar.call(self._F1[tail.batch[r]], *W, *G, *theta, *H, *V, *x)
            per.append((J0, F1))
        P = [sum((F0s[r][j] for r in range(m)), zero) for j in range(p)]
        PP = [P[j] * P[k] for j in range(p) for k in range(j, p)]
        accn = [[[v * table.d[i] ** (n - L0) for v in row] for row in acc[i]]
                for i in range(S)]
        Q = [zero] * p
        D = [zero] * p
        for s, r, Tcount in tail.residues(n, L0):
            F0r, (J0r, F1r) = F0s[r], per[r]
            X = [f / 2 + q for f, q in zip(F0r, Q)]
            Q = [q + f for q, f in zip(Q, F0r)]
            A = [F1r[j] + sum((J0r[j * p + k] * X[k] for k in range(p)), zero)
                 for j in range(p)]
            B = [sum((J0r[j * p + k] * P[k] for k in range(p)), zero) for j in range(p)]
            PQ = [P[j] * Q[k] + Q[j] * P[k] for j in range(p) for k in range(j, p)]
            QQ = [Q[j] * Q[k] for j in range(p) for k in range(j, p)]
            D = [dd + (Tcount + 1) * f for dd, f in zip(D, F0r)]
            b = tail.batch[r]
            for i in range(S):
                s0, s1, s2 = tail.lag_sums(i, s, Tcount)
                w0, w1, w2 = wn[i] * s0, wn[i] * s1, wn[i] * s2
                Mv[i][b] = [v + w2 * a2 + w1 * a1 + w0 * a0
                            for v, a2, a1, a0 in zip(Mv[i][b], PP, PQ, QQ)]
                for c, uc in enumerate(tail.u(r)[i]):
                    if _nonzero(uc):
                        Uv[i][c] = [v + uc * (w0 * ea + w1 * eb)
                                    for v, ea, eb in zip(Uv[i][c], A, B)]
                        Jv[i][c] = [v + uc * w0 * e for v, e in zip(Jv[i][c], J0r)]
                        accn[i][c] = [v + uc * s0 * f for v, f in zip(accn[i][c], F0r)]
        rn = n % m
        Vn = [wn[i] * v for i in range(S) for row in accn[i] for v in row]
        return tail.weights(rn), Vn, F0s[rn], tail.batch[rn], D


def _nonzero(c):
    try:
        return bool(c != 0)
    except TypeError:
        return True


def _indices(p, order):
    if order == 1:
        return [(j,) for j in range(p)]
    if order == 2:
        return [(j, i) for j in range(p) for i in range(j, p)]
    return [(j, i, k) for j in range(p) for i in range(j, p) for k in range(i, p)]


def exact_field(flow, provider, n, subs=None):
    """``-(F0 + h F1 + h^2 F2)`` on step ``n`` as a SymPy ``Matrix`` in the parameters (at the
    provider's point ``at`` if it has one), with the hyperparameters as symbols unless ``subs``
    gives them exact values (exact arithmetic, every past step kept)."""
    from ..family import h as h_sym
    subs = dict(subs or {})
    hv = subs.pop(h_sym, h_sym)
    sweep = Order2Sweep.get(flow, provider, subs, "exact")
    table = sweep.table(provider.loss_index, sweep.extra)
    point = [provider.theta(j) for j in range(provider.p)]
    F0, F1, F2 = sweep(n, point, table, None, sweep.extra)
    return sp.Matrix([-(a + hv * b + hv ** 2 * c) for a, b, c in zip(F0, F1, F2)])

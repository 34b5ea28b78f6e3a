"""The scalar weight table of a mini-batch flow's memory sums, free of ``theta``.

For state ``i`` (decay ``d_i``) and batch ``b``, ``u_ib(l) = sum_{k<=l, batch(k)=b} d_i^(l-k)``
is how much of batch ``b``'s input the state holds after step ``l`` (unit input per step).  It
is filled by the exact recursion ``u_i(l) = d_i u_i(l-1) + e_batch(l)`` from step 0, in the
arithmetic of the decays (exact rationals, ``mpf`` or MPFR), so every field that reads it rounds
the same way.  Both mini-batch fields (orders 0-1 and order 2) read this one table.
"""
from __future__ import annotations

__all__ = ["BatchWeights"]

_MEMO_LIMIT = 4096


class BatchWeights:
    """``u[l][i][b]`` (:meth:`row`), the newest-input weights ``w_i(l, l)`` (:meth:`w`), their
    products ``w_i(l, l) u_ib(l)`` (:meth:`products`) and the powers ``d_i^k`` (:meth:`power`).

    ``d``: the decays; ``m``: the number of batches; ``batch(l)``: the batch step ``l`` used;
    ``w_last(l)``: the list ``[w_i(l, l)]``.  ``tail`` is the closed-form stationary part
    (:class:`~.cyclic_tail.CyclicTail`) when the owner attaches one, else ``None``."""

    def __init__(self, d, m, batch, w_last):
        self.d, self.m, self.batch, self.w_last = list(d), m, batch, w_last
        self.rows, self.tail = [], None
        self._w, self._products = {}, {}
        self._powers = [{} for _ in self.d]

    def row(self, l):
        """``[[u_ib(l) for b] for i]``, the rows up to ``l`` filled on the way."""
        while len(self.rows) <= l:
            k = len(self.rows)
            prev = self.rows[-1] if self.rows else [[0] * self.m for _ in self.d]
            new = [[di * v for v in r] for di, r in zip(self.d, prev)]
            b = self.batch(k)
            for r in new:
                r[b] = r[b] + 1
            self.rows.append(new)
        return self.rows[l]

    def w(self, l):
        """``[w_i(l, l)]`` (remembered)."""
        hit = self._w.get(l)
        if hit is None:
            if len(self._w) > _MEMO_LIMIT:
                self._w.clear()
            hit = self._w[l] = list(self.w_last(l))
        return hit

    def products(self, l):
        """``[w_i(l, l) u_ib(l)]`` flattened state-major (remembered): the weights ``W_ib`` of
        step ``l``'s grouped ``F0``."""
        hit = self._products.get(l)
        if hit is None:
            hit = self._products[l] = [wi * x for wi, r in zip(self.w(l), self.row(l))
                                       for x in r]
        return hit

    def power(self, i, k):
        """``d_i^k`` (remembered; the same rounding as ``d_i ** k``)."""
        v = self._powers[i].get(k)
        if v is None:
            v = self._powers[i][k] = self.d[i] ** k
        return v

    def forget_before(self, start):
        """Drop the remembered products of steps before ``start`` once they outnumber the
        rest (a field called at increasing ``n`` then keeps only its window)."""
        memo = self._products
        if len(memo) <= 64:
            return
        old = [l for l in memo if l < start]
        if 2 * len(old) > len(memo):
            for l in old:
                del memo[l]

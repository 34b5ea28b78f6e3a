"""Process-wide memos: derived or compiled values remembered per key, optionally per object.

A key that names an object by ``id`` (an optimizer declaration, a flow) must not answer for
another object that later gets the same ``id``: an entry made with ``owner=obj`` keeps ``obj``
itself (alive) and answers only while the owner asked about *is* that object.  A memo with a
``limit`` starts over when full (tables of running sums and products, compiled kernels).

>>> memo = Memo(limit=2)
>>> memo.get("a", lambda: 1), memo.get("a", lambda: 2)
(1, 1)
>>> key = object()
>>> memo.peek("k", owner=key) is MISSING
True
"""
from __future__ import annotations

__all__ = ["Memo", "MISSING"]

#: what :meth:`Memo.peek` returns for a key it does not hold
MISSING = object()


class Memo:
    """Values by key (and owner object, by identity); at most ``limit`` entries."""

    def __init__(self, limit=None):
        self.limit = limit
        self._entries = {}

    def _full(self, key, owner):
        return key if owner is None else (id(owner), key)

    def peek(self, key, owner=None):
        """The value held for ``key`` (and ``owner``), else :data:`MISSING`."""
        hit = self._entries.get(self._full(key, owner))
        return hit[1] if hit is not None and hit[0] is owner else MISSING

    def put(self, key, value, owner=None):
        """Remember ``value``; the memo starts over first if it is full."""
        if self.limit is not None and len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[self._full(key, owner)] = (owner, value)
        return value

    def get(self, key, make, owner=None):
        """The value held for ``key`` (and ``owner``), else ``make()`` remembered."""
        value = self.peek(key, owner)
        return self.put(key, make(), owner) if value is MISSING else value

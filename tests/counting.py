"""Test helper: compiled kernels whose calls are counted (their MPFR version's calls too)."""


class Counted:
    """``k`` (a mini-batch field's compiled kernel, or any callable) with every call, in
    mpmath or in MPFR (``k.fast``), added to ``calls[key]``."""

    def __init__(self, k, calls, key):
        self.k, self.calls, self.key = k, calls, key
        self.single = getattr(k, "single", False)
        self.fast = None if getattr(k, "fast", None) is None else self._fast

    def _fast(self, *a):
        self.calls[self.key] += 1
        return self.k.fast(*a)

    def __call__(self, *a):
        self.calls[self.key] += 1
        return self.k(*a)

"""Atomic file output for the command line (the implementation lives in
:mod:`modeq.numeric.atomic`, the lower layer)."""
from modeq.numeric.atomic import atomic_path, atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_text", "atomic_write_bytes", "atomic_path"]

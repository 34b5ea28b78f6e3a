"""Where modeq keeps what it remembers, and whether it may: the rules shared by the derivation
cache (:mod:`modeq.symbolic.cache`) and the remembered command outputs
(:mod:`modeq.proofs.output_cache`).  Standard library only, so that a command answered from
the output cache never imports SymPy.
"""
from __future__ import annotations

import os
import pathlib

__all__ = ["cache_dir", "off_by_environment", "OUTPUT_SUFFIX"]

#: file name ending of a remembered command output (``modeq cache clear`` removes these too)
OUTPUT_SUFFIX = ".cli.txt"


def cache_dir() -> pathlib.Path:
    """The cache directory (not created): ``$MODEQ_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/modeq``, else ``~/.cache/modeq``."""
    env = os.environ.get("MODEQ_CACHE_DIR")
    if env:
        return pathlib.Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "modeq"


def off_by_environment() -> bool:
    """Whether ``MODEQ_NO_CACHE`` turns caching off (any value but empty, 0, false, no)."""
    return os.environ.get("MODEQ_NO_CACHE", "").strip().lower() not in ("", "0", "false", "no")

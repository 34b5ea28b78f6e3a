"""The printed answer of a command, remembered: ``modeq derive adam`` run again prints what it
printed before without importing SymPy (interpreter start is then most of the cost).

Only commands whose output is a function of their arguments and of modeq's own code are kept:
``derive`` on a built-in optimizer (not ``--torch``, which reads the installed torch).  An entry
is keyed by a SHA-256 of the arguments and of a fingerprint: the versions of modeq, SymPy and
mpmath (package metadata, read without importing them) and a digest of every ``.py`` of
``modeq.symbolic``, ``modeq.numeric`` and ``modeq.proofs``, so an edited checkout never prints
another code's answer.  Entries live in the derivation cache's directory (the rule of
:mod:`modeq.symbolic.cache_location`, which imports no SymPy), are written atomically, carry
their key in a first line checked on read, and are off wherever the derivation cache is off
(``MODEQ_NO_CACHE``, ``--no-cache``).  ``modeq cache clear`` removes them.  Nothing here
imports SymPy.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import pathlib
import tempfile

from modeq.symbolic.cache_location import OUTPUT_SUFFIX, cache_dir, off_by_environment

__all__ = ["SUFFIX", "cacheable", "lookup", "store"]

#: file name ending of a remembered output (``modeq cache clear`` removes these too)
SUFFIX = OUTPUT_SUFFIX
_PACKAGES = ("modeq.symbolic", "modeq.numeric", "modeq.proofs")
_fingerprint = None


def cacheable(argv) -> bool:
    """Whether the output of ``modeq *argv`` is remembered (see the module docstring)."""
    return (bool(argv) and argv[0] == "derive" and not off_by_environment()
            and not any(a in ("--no-cache", "-h", "--help") or a.startswith("--torch")
                        for a in argv))


def _versions():
    from importlib.metadata import PackageNotFoundError, version
    out = []
    for name in ("modeq", "sympy", "mpmath"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} unknown")
    return "; ".join(out)


def fingerprint() -> str:
    """Versions and a digest of modeq's source (computed once per process)."""
    global _fingerprint
    if _fingerprint is None:
        digest = hashlib.sha256()
        for package in _PACKAGES:
            spec = importlib.util.find_spec(package)
            for root in spec.submodule_search_locations or []:
                root = pathlib.Path(root)
                for path in sorted(root.rglob("*.py")):
                    digest.update(f"{package}/{path.relative_to(root)}".encode() + b"\0")
                    digest.update(path.read_bytes())
        _fingerprint = f"{_versions()}; source {digest.hexdigest()[:20]}"
    return _fingerprint


def _path_and_key(argv):
    key_text = json.dumps({"argv": list(argv), "fingerprint": fingerprint()}, sort_keys=True)
    key = hashlib.sha256(key_text.encode()).hexdigest()
    return cache_dir() / f"{key}{SUFFIX}", key


def lookup(argv):
    """The remembered output of ``modeq *argv``, or ``None``."""
    if not cacheable(argv):
        return None
    try:
        path, key = _path_and_key(argv)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    first, _, body = text.partition("\n")
    return body if first == f"modeq-output {key}" else None


def store(argv, output):
    """Remember ``output`` for ``modeq *argv`` (atomically; a failure to write is ignored:
    the answer was printed, only the next run is slower)."""
    if not cacheable(argv):
        return
    tmp = None
    try:
        path, key = _path_and_key(argv)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=SUFFIX)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"modeq-output {key}\n{output}")
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

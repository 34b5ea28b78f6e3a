"""The persistent derivation cache: derivations, proofs and display forms stored on disk.

An entry is keyed by a SHA-256 of a canonical text: the kind of result (``"derivation"``,
``"recognize"``, ``"display"``), the declaration (:func:`declaration_text`: ``srepr`` of its
step, of every state's decay, input and scale, its flags and name), the variant (order, batch,
stationary, ...) and :func:`fingerprint` (modeq's version and a digest of the source of this
package, so an edited checkout never reads answers of other code).  Python's ``hash`` is never
used (it differs between processes).

Where: ``$MODEQ_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/modeq``, else ``~/.cache/modeq``.
Off: ``MODEQ_NO_CACHE=1`` in the environment, :func:`disabled` (a context manager), or
``--no-cache`` on the command line; ``modeq cache clear`` / :func:`clear` empties the
directory, ``modeq cache info`` / :func:`info` shows it.

Safety: an entry is written to a temporary file in the same directory and renamed over the
final name (``os.replace``), so a reader sees a whole entry or none, and processes writing the
same key concurrently (a Dask sweep) are safe (the last rename wins; both are the same answer).
Where the system has ``fcntl`` (POSIX), :func:`computing` also makes them compute it once: the
first holds a lock on the key (a file ``.lock-<key>``) while it computes; the others wait for it
and read its entry.
Each file starts with a header (format, key, fingerprint, the full key text), checked on load:
a corrupted, truncated or foreign entry (another version, another key) is ignored with a
:class:`CacheWarning` and the result recomputed, never returned.  Payloads are pickles (SymPy
objects and modeq's ``EMA``, ``Grad``, ``Hess``... unpickle equal); ``Dummy`` symbols are
re-created fresh on load, so they never collide with the dummies of the loading process; sums
are rebuilt by :func:`~.dag.make_sum` (SymPy's constructor walks every summand as a tree: 80 s
of the 82 s AdaBelief's mini-batch order-2 derivation took to load).  A pickle runs code when
loaded: keep the cache directory private (it is created ``0o700``).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pathlib
import pickle
import tempfile
import threading
import warnings

import sympy as sp

try:
    import fcntl
except ImportError:     # not POSIX: processes may compute the same entry at the same time
    fcntl = None

from .cache_location import OUTPUT_SUFFIX, cache_dir, off_by_environment
from .dag import make_sum

__all__ = ["cache_dir", "enabled", "disabled", "fingerprint", "declaration_text", "cached",
           "computing", "lookup", "store", "clear", "info", "CacheWarning", "MISS"]

FORMAT = 1
MAGIC = b"modeq-cache\n"
SUFFIX = ".pickle"
LOCK_PREFIX = ".lock-"
MISS = object()


class CacheWarning(UserWarning):
    """A cache entry that could not be read or written (it is recomputed, never trusted)."""


_state = threading.local()


def _depth():
    return getattr(_state, "off", 0)


def enabled() -> bool:
    """Whether the cache is read and written here and now."""
    return _depth() == 0 and not off_by_environment()


@contextlib.contextmanager
def disabled():
    """Within the block, nothing is read from or written to the cache (in this thread).

    >>> from modeq.symbolic import cache
    >>> with cache.disabled():
    ...     cache.enabled()
    False
    """
    _state.off = _depth() + 1
    try:
        yield
    finally:
        _state.off = _depth() - 1


_FINGERPRINT = None


def fingerprint() -> str:
    """modeq's version and a digest of the source of ``modeq.symbolic`` (every ``.py``)."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        try:
            from importlib.metadata import version
            ver = version("modeq")
        except Exception:  # noqa: BLE001 - not installed as a distribution
            ver = "unknown"
        digest = hashlib.sha256()
        root = pathlib.Path(__file__).resolve().parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
        _FINGERPRINT = f"modeq {ver}; sympy {sp.__version__}; source {digest.hexdigest()[:20]}"
    return _FINGERPRINT


def declaration_text(optimizer) -> str:
    """A canonical text of an ``Optimizer`` declaration: equal declarations (in any process)
    give equal texts, declarations differing in anything the derivation reads differ."""
    lines = [f"optimizer {optimizer.name!r}", f"step {sp.srepr(optimizer.step)}",
             "hyperparameters " + sp.srepr(tuple(optimizer.hyperparameters)),
             f"notes {optimizer.notes!r}"]
    for s in optimizer.states:
        scale = "default" if s.custom_scale is None else sp.srepr(s.custom_scale)
        lines.append(f"state {s.name!r} {sp.srepr(s)} decay {sp.srepr(s.decay)} of "
                     f"{sp.srepr(s.of)} normalized {s.normalized} bias_correction "
                     f"{s.bias_correction} scale {scale} start {s.start!r}")
    return "\n".join(lines)


def _key_text(kind, optimizer, params):
    items = ", ".join(f"{k}={params[k]!r}" for k in sorted(params))
    return f"{kind}\n{fingerprint()}\n{declaration_text(optimizer)}\nvariant {items}"


def _path(key):
    return cache_dir() / f"{key}{SUFFIX}"


def _digest(key_text):
    return hashlib.sha256(key_text.encode()).hexdigest()


# -- pickling: dummies are re-created fresh on load ---------------------------------------
def _fresh_dummy(name, index, assumptions):
    table = getattr(_state, "dummies", None)
    if table is None:
        return sp.Dummy(name, **dict(assumptions))
    k = (name, index, assumptions)
    if k not in table:
        table[k] = sp.Dummy(name, **dict(assumptions))
    return table[k]


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj):
        if type(obj) is sp.Dummy:
            _, assumptions = obj.__getnewargs_ex__()
            return _fresh_dummy, (obj.name, obj.dummy_index, tuple(sorted(assumptions.items())))
        if type(obj) is sp.Sum:
            return make_sum, obj.args
        return NotImplemented


def _dumps(value):
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buf.getvalue()


def _loads(data):
    _state.dummies = {}
    try:
        return pickle.loads(data)
    finally:
        _state.dummies = None


# -- reading and writing ------------------------------------------------------------------
def _warn(message):
    warnings.warn(f"modeq cache: {message}; recomputing", CacheWarning, stacklevel=4)


def lookup(kind, optimizer, **params):
    """The stored result, or :data:`MISS` (also, with a :class:`CacheWarning`, for an entry
    that is corrupted or belongs to another key or version)."""
    if not enabled():
        return MISS
    text = _key_text(kind, optimizer, params)
    key = _digest(text)
    path = _path(key)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return MISS
    except OSError as exc:
        _warn(f"cannot read {path} ({exc})")
        return MISS
    try:
        if not data.startswith(MAGIC):
            raise ValueError("not a modeq cache entry")
        end = data.index(b"\n", len(MAGIC))
        header = json.loads(data[len(MAGIC):end].decode())
        if header.get("format") != FORMAT or header.get("fingerprint") != fingerprint():
            _warn(f"ignoring {path.name}: written by {header.get('fingerprint')!r}, "
                  f"this is {fingerprint()!r}")
            return MISS
        if header.get("key") != key or header.get("text") != text:
            _warn(f"ignoring {path.name}: its header is for another key")
            return MISS
        payload = data[end + 1:]
        if hashlib.sha256(payload).hexdigest() != header.get("payload"):
            raise ValueError("payload checksum mismatch (truncated or corrupted)")
        return _loads(payload)
    except Exception as exc:  # noqa: BLE001 - any unreadable entry is recomputed
        _warn(f"ignoring the unreadable entry {path.name} ({type(exc).__name__}: {exc})")
        return MISS


_WARNED_WRITE = set()


def store(kind, optimizer, value, **params):
    """Write ``value`` atomically (temporary file in the cache directory + ``os.replace``);
    a failure (unwritable directory, unpicklable value) warns once and is otherwise ignored."""
    if not enabled():
        return
    text = _key_text(kind, optimizer, params)
    key = _digest(text)
    directory = cache_dir()
    tmp = None
    try:
        payload = _dumps(value)
        header = json.dumps({"format": FORMAT, "key": key, "fingerprint": fingerprint(),
                             "kind": kind, "text": text,
                             "payload": hashlib.sha256(payload).hexdigest()})
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=SUFFIX)
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + header.encode() + b"\n" + payload)
        os.replace(tmp, directory / f"{key}{SUFFIX}")
        tmp = None
    except Exception as exc:  # noqa: BLE001 - the cache never breaks a computation
        if (directory, type(exc)) not in _WARNED_WRITE:
            _WARNED_WRITE.add((directory, type(exc)))
            warnings.warn(f"modeq cache: cannot store a {kind} entry in {directory} "
                          f"({type(exc).__name__}: {exc})", CacheWarning, stacklevel=3)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def cached(kind, optimizer, compute, **params):
    """``compute()``, or its stored result for the same key (computed once among processes
    asking at the same time: :func:`computing`)."""
    value = lookup(kind, optimizer, **params)
    if value is MISS:
        with computing(kind, optimizer, **params):
            value = lookup(kind, optimizer, **params)
            if value is MISS:
                value = compute()
                store(kind, optimizer, value, **params)
    return value


@contextlib.contextmanager
def computing(kind, optimizer, **params):
    """Hold the key's lock while computing its entry: a process (or thread) entering with the
    same key waits until the holder leaves, then looks the entry up again (two xdist workers or
    Dask workers deriving one flow derive it once).  Without ``fcntl``, with the cache off or
    its directory not writable: no lock (the same answer may be computed twice).  The lock is
    the operating system's on an open file: it goes with its process, whatever ends it."""
    fd = None
    if fcntl is not None and enabled():
        try:
            directory = cache_dir()
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(directory / f"{LOCK_PREFIX}{_digest(_key_text(kind, optimizer, params))}",
                         os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            if fd is not None:
                os.close(fd)
            fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)        # releases the lock


def _entries(directory):
    if not directory.is_dir():
        return []
    # remembered command outputs (modeq.proofs.output_cache) are entries too
    return [p for p in directory.iterdir()
            if p.is_file() and p.name.endswith((SUFFIX, OUTPUT_SUFFIX))]


def info():
    """``{"directory", "entries", "bytes", "enabled"}`` of the cache."""
    directory = cache_dir()
    files = _entries(directory)
    size = 0
    for p in files:
        with contextlib.suppress(OSError):
            size += p.stat().st_size
    return {"directory": str(directory), "entries": sum(not p.name.startswith(".tmp-")
                                                        for p in files),
            "bytes": size, "enabled": enabled()}


def clear():
    """Remove every cache entry (and left-over temporary files, and the lock files of
    :func:`computing`, not counted); returns how many."""
    removed = 0
    directory = cache_dir()
    for p in _entries(directory):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed += 1
    for p in directory.glob(f"{LOCK_PREFIX}*") if directory.is_dir() else ():
        with contextlib.suppress(OSError):
            p.unlink()
    return removed

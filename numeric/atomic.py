"""Atomic file output: write to a temporary file in the same folder, then ``os.replace``.

An interrupted or failed write leaves the previous file (if any) intact and no partial file;
the new file gets the usual mode (``0666 & ~umask``), not ``mkstemp``'s ``0600``.
"""
from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["atomic_path", "atomic_write", "atomic_write_text", "atomic_write_bytes",
           "atomic_savefig"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_target(path):
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, expected a file path")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"folder {folder} is not writable")
    return folder


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; when the block succeeds it replaces ``path``."""
    path = os.fspath(path)
    folder = _check_target(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path, text: str):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write(path, data):
    """``data`` as str (UTF-8) or bytes."""
    atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)


def atomic_savefig(fig, path, **kwargs):
    """A matplotlib figure saved atomically (format from the file name, PNG by default)."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)

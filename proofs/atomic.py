"""Atomic file output: write to a temporary file in the same folder, then rename.

An interrupted or failed write leaves the previous file (if any) intact and no partial file.
"""
from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["atomic_write_text", "atomic_write_bytes", "atomic_path"]


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
def atomic_path(path, suffix=""):
    """Yield a temporary path next to ``path``; on success it replaces ``path``."""
    folder = _check_target(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix or os.path.splitext(path)[1],
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
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

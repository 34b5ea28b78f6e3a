"""The command line as a user meets it: wall and CPU time of whole ``modeq`` processes
(interpreter start included), each in a fresh derivation cache (``MODEQ_CACHE_DIR`` set to an
empty folder) for the cold figure, then again on the cache it filled for the warm one.

* ``modeq derive adam`` cold and warm (goals < 2 s cold, < 0.6 s warm, CPU);
* ``modeq derive adam --order 2`` cold (goal < 10 s);
* ``modeq latex adam --pdf`` wall (goal < 30 s; needs ``latexmk``);
* ``modeq reproduce`` wall on the embedded default problem (goal < 2 min).

CPU time is the child's user + system time (``resource.getrusage``), so that other work on a
shared machine does not distort it; wall time is printed beside it.  The children cache
bytecode as Python does by default (``PYTHONDONTWRITEBYTECODE``, which a sandbox may set, is
removed; one untimed ``modeq --help`` writes it first), as an installed package would have.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

MODEQ = [sys.executable, "-m", "modeq.proofs.cli"]


def _env(cache):
    env = dict(os.environ, MODEQ_CACHE_DIR=cache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _run(args, cache, cwd):
    env = _env(cache)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(MODEQ + args, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        raise RuntimeError(f"modeq {' '.join(args)} exited {r.returncode}:\n{r.stderr[-2000:]}")
    return cpu, wall


def _row(what, cpu, wall, goal):
    print(f"{what:<44} CPU {cpu:7.2f} s   wall {wall:7.2f} s   (goal {goal})")


def main():
    print("== the modeq command line (whole processes) ==")
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        subprocess.run(MODEQ + ["--help"], env=_env(cache), capture_output=True, check=True)
        cpu, wall = _run(["derive", "adam"], cache, tmp)
        _row("modeq derive adam, cold cache", cpu, wall, "< 2 s CPU")
        cpu, wall = _run(["derive", "adam"], cache, tmp)
        _row("modeq derive adam, warm cache", cpu, wall, "< 0.6 s CPU")
        cpu, wall = _run(["derive", "adam", "--order", "2"], os.path.join(tmp, "cache2"), tmp)
        _row("modeq derive adam --order 2, cold cache", cpu, wall, "< 10 s")
        if shutil.which("latexmk"):
            cpu, wall = _run(["latex", "adam", "--pdf", "--out", tmp],
                             os.path.join(tmp, "cache3"), tmp)
            _row("modeq latex adam --pdf, cold cache", cpu, wall, "< 30 s wall")
        else:
            print("modeq latex adam --pdf: not measured (latexmk is not installed)")
        cpu, wall = _run(["reproduce", "--no-progress", "--out", os.path.join(tmp, "report")],
                         os.path.join(tmp, "cache4"), tmp)
        _row("modeq reproduce, cold cache", cpu, wall, "< 120 s wall")


if __name__ == "__main__":
    main()

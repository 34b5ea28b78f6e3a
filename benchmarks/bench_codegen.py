"""Lambdified NumPy correction vs a hand-written NumPy implementation of the paper's formula.

Adam's first-order correction ``h F1`` (stationary, eps inside; Cattaneo, Klusowski, Shigida 2024)
on ``N = 10^4`` points for ``p = 3`` and ``p = 10``, from the gradient ``g`` (shape ``(p, N)``) and
the Hessian ``H`` (shape ``(p, p, N)``).  All variants run side by side in one process, on the same
data, and must agree with the hand-written values; each figure is the best of several repeats.

* ``hand-written``: the paper's formula written directly with NumPy (the reference, 1.00x);
* ``array form``: modeq's ``f(g, H)`` (:mod:`modeq.symbolic.emit.forms`): the engine's ``F1``
  read as ``c(g) * (H . u(g))``, one CSE kernel for ``c`` and ``u`` plus one ``einsum``;
* ``component form, CSE``: the ``p`` components in generic symbols ``g_i, H_ij`` compiled by
  :class:`modeq.symbolic.emit.kernel.Kernel` (lifted constants, shared square roots, multiplied-out
  powers, ``sympy.cse``);
* ``component form, no CSE``: the same without common-subexpression elimination;
* ``stock lambdify, cse=True``: plain ``sympy.lambdify(..., "numpy", cse=True)`` of the same
  expressions (SymPy's printer, for comparison).

Ratios are speeds relative to the hand-written code (>= 0.8x is the target for the lambdified
correction with CSE).  Variants are timed round-robin (the minimum over rounds of each), so a
change of machine load affects all of them alike.

Two runs, each in a fresh process: with glibc's default allocator, and with
``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_`` raised.  Temporaries of ``p * N * 8`` bytes
(240 KB at p = 3) exceed the default mmap threshold, so with the default allocator a variant's
time depends on how many temporaries are alive at once (page faults on every call), not only on
its arithmetic; the second run measures the arithmetic.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import timeit

import numpy as np
import sympy as sp

N = 10_000
HYPER = dict(beta=0.9, rho=0.999, eps=1e-8, h=0.01)


def hand_written(g, H, beta, rho, eps, h):
    """The paper's correction divided by sqrt(g^2+eps): h F1 = correction / s."""
    s = np.sqrt(g * g + eps)
    dnorm = np.einsum("jin,in->jn", H, g / s)           # d_j ||grad E||_{1,eps}
    a = (1 + beta) / (1 - beta) - (1 + rho) / (1 - rho)
    b = (1 + rho) / (1 - rho)
    return (h / 2) * (a + b * eps / (s * s)) * dnorm / s


def _round_robin(fns, rounds=15, budget=0.02):
    """Seconds per call of each function: the minimum over ``rounds`` interleaved batches."""
    numbers = {k: max(1, int(budget / max(1e-6, timeit.timeit(f, number=1))))
               for k, f in fns.items()}
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = timeit.timeit(f, number=numbers[k]) / numbers[k]
            best[k] = min(best[k], t)
    return best


def _variants(p):
    from modeq.symbolic import derive, optimizers
    from modeq.symbolic.emit.forms import first_order_form
    from modeq.symbolic.emit.kernel import Kernel
    from modeq.symbolic.family import beta, eps, h, rho
    flow = derive(optimizers.adam(), 1)
    t0 = time.perf_counter()
    form = first_order_form(flow, stationary=True)
    array_form = form.array_function(backend="numpy", beta=HYPER["beta"], rho=HYPER["rho"],
                                      eps=HYPER["eps"])
    t_array = time.perf_counter() - t0
    t0 = time.perf_counter()
    comp = flow.generic(p, stationary=True, r=1)
    subs = {beta: sp.Rational(HYPER["beta"]), rho: sp.Rational(HYPER["rho"]),
            eps: sp.Rational(HYPER["eps"]), h: sp.Rational(HYPER["h"])}
    exprs = [(h * e).xreplace(subs) for e in comp]
    gs = [sp.Symbol(f"g_{j + 1}", real=True) for j in range(p)]
    hs = [sp.Symbol(f"H_{min(i, j) + 1}{max(i, j) + 1}", real=True)
          for i in range(p) for j in range(p) if i <= j]
    args = gs + hs
    k_cse = Kernel(exprs, args, "numpy", cse=True)
    t_cse = time.perf_counter() - t0
    k_plain = Kernel(exprs, args, "numpy", cse=False)
    stock = sp.lambdify(args, exprs, modules="numpy", cse=True)
    iu = [(i, j) for i in range(p) for j in range(p) if i <= j]
    hh = HYPER["h"]

    def flat(g, H):
        return [g[j] for j in range(p)] + [H[i, j] for i, j in iu]

    return {
        "array form f(g, H)": lambda g, H: hh * array_form(g, H),
        "component form, CSE": lambda g, H: np.stack(k_cse(*flat(g, H))),
        "component form, no CSE": lambda g, H: np.stack(k_plain(*flat(g, H))),
        "stock lambdify, cse=True": lambda g, H: np.stack(stock(*flat(g, H))),
    }, {"array form f(g, H)": t_array, "component form, CSE": t_cse}


def measure():
    """One table: every variant against the hand-written code, for p = 3 and p = 10."""
    rng = np.random.default_rng(0)
    for p in (3, 10):
        g = rng.standard_normal((p, N))
        A = rng.standard_normal((p, p, N))
        H = np.ascontiguousarray(A + A.transpose(1, 0, 2))
        ref = hand_written(g, H, **HYPER)
        variants, build = _variants(p)
        fns = {"hand-written": lambda: hand_written(g, H, **HYPER)}
        fns.update({k: (lambda f=f: f(g, H)) for k, f in variants.items()})
        times = _round_robin(fns)
        t_ref = times["hand-written"]
        print(f"p = {p}:  hand-written {t_ref * 1e3:7.3f} ms   (1.00x)")
        for name, fn in variants.items():
            out = fn(g, H)
            err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
            t = times[name]
            extra = f"   build {build[name]:4.1f} s" if name in build else ""
            print(f"  {name:26s} {t * 1e3:7.3f} ms   speed {t_ref / t:5.2f}x of hand-written"
                  f"   max diff {err:.0e} (rel. to max){extra}")


_TUNED = {"MALLOC_TRIM_THRESHOLD_": "1000000000", "MALLOC_MMAP_THRESHOLD_": "1000000000"}


def main():
    print(f"== Adam's correction h*F1 on N = {N} points, NumPy float64 (round-robin minima) ==")
    for label, extra in (("default allocator", {}),
                         ("allocator tuned: no trimming, no mmap of temporaries", _TUNED)):
        print(f"\n-- {label}")
        env = {k: v for k, v in os.environ.items() if k not in _TUNED}
        env.update(extra)
        sys.stdout.flush()
        subprocess.run([sys.executable, os.path.abspath(__file__), "--measure"], env=env,
                       check=True)


if __name__ == "__main__":
    if "--measure" in sys.argv:
        measure()
    else:
        main()

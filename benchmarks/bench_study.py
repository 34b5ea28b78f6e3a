"""Benchmark: cost of an order study relative to computing the iterates alone.

Default 2-D problem (``logcosh2d``), Adam (eps inside, bias correction), h = 2^-4 ... 2^-9,
T = 1, dps = 40, orders 0 and 1.  Printed side by side:

* the floor: the time to compute the iterates alone for every h (CPU time of this process,
  so that other work on a shared machine does not distort the ratios);
* the study (``order_study``): first call (includes the one-time symbolic lowering and
  compilation of the flows) and a repeated call (compiled flows cached), as multiples of the floor;
* per flow: our integration (embedded pair, error estimate, auto-refinement) against a plain
  classical RK4 with 8 substeps per step on the same compiled fields, as multiples of the floor.

The flows' fields run in MPFR arithmetic (gmpy2) where their code allows
(:mod:`modeq.symbolic.emit.mpfr`); the iterates run in mpmath (which itself uses gmpy2's
integers when gmpy2 is installed).  Then the same study in the configuration of the speed
goals (3-D problem, four step sizes, dps 30), cold (a fresh process; with the derivation cache
on disk as it is, and with an empty one) and repeated.

Run: ``python benchmarks/bench_study.py``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import mpmath

# CPU time of this process: the machine may be shared, and the ratios compare work, not the
# neighbours' load (everything here runs in this one process).
_clock = time.process_time


def rk4_substeps(f, theta0, h, steps, substeps=8):
    """A plain classical RK4 in mpf arithmetic, ``substeps`` equal steps per interval."""
    dt = mpmath.mpf(h) / substeps
    half = dt / 2
    y = [mpmath.mpf(x) for x in theta0]
    path = [y]
    for n in range(steps):
        for _ in range(substeps):
            k1 = f(n, y)
            k2 = f(n, [a + half * b for a, b in zip(y, k1)])
            k3 = f(n, [a + half * b for a, b in zip(y, k2)])
            k4 = f(n, [a + dt * b for a, b in zip(y, k3)])
            y = [a + dt / 6 * (b + 2 * c + 2 * d + e) for a, b, c, d, e in zip(y, k1, k2, k3, k4)]
        path.append(y)
    return path


def _floor(opt, prob, values, hs, dps):
    """CPU seconds to compute the iterates alone for every ``h`` (the floor)."""
    from modeq.numeric.iterate import Iterator
    t0 = _clock()
    with mpmath.workdps(dps):
        it = Iterator(opt, prob.loss, prob.params, **values)
        for h in hs:
            it.run(prob.theta0, h, int(prob.T / h))
    return _clock() - t0


def _study(opt, prob, values, hs, dps):
    """``(CPU seconds, result)`` of the order study, orders 0 and 1."""
    from modeq.numeric.study import order_study
    t0 = _clock()
    res = order_study(opt, prob.loss, prob.params, prob.theta0, T=prob.T, hs=hs,
                      orders=(0, 1), dps=dps, problem_name=prob.name, **values)
    return _clock() - t0, res


def issue_configuration(repeats=5):
    """The configuration the speed goals name: Adam on the 3-D problem ``coupled3d``, four step
    sizes ``h = 2^-4 ... 2^-7``, orders 0 and 1, dps 30; cold (the first call in a fresh
    process: lowering and compiling the flows, the derivation from the cache on disk) and
    repeated, each against the iterates alone."""
    from modeq.numeric import problems
    from modeq.symbolic import optimizers

    prob = problems.get("coupled3d")
    adam = optimizers.adam()
    args = (adam, prob, prob.values_for(adam), problems.DEFAULT_HS[:4], 30)
    t_floor0 = _floor(*args)
    t_cold, res = _study(*args)
    warm = sorted(_study(*args)[0] / f for f in (_floor(*args) for _ in range(repeats)))
    print(f"\nAdam on {prob.name} (3-D), h = 2^-4 ... 2^-7, T = {prob.T}, dps = {args[-1]}, "
          f"orders 0 and 1: floor {t_floor0:.3f} s; study first call {t_cold:.3f} s = "
          f"{t_cold / t_floor0:.1f}x floor (goal <= 10x); repeated, paired ratios "
          f"{', '.join(f'{w:.1f}' for w in warm)} (median {warm[len(warm) // 2]:.1f}x, "
          f"goal <= 5x); verdicts {res.verdicts}")


def main(dps=40, repeats=5):
    from modeq.numeric import problems
    from modeq.numeric.integrate import integrate, method_for
    from modeq.numeric.study import FieldFactory
    from modeq.symbolic import optimizers

    prob = problems.get("logcosh2d")
    adam = optimizers.adam()
    values = prob.values_for(adam)
    hs = problems.DEFAULT_HS
    args = (adam, prob, values, hs, dps)

    t_cold, res = _study(*args)
    # paired measurements (floor, then study, back to back) so that a busy machine slows both
    pairs = []
    for _ in range(repeats):
        t_floor_i = _floor(*args)
        t_warm_i, res = _study(*args)
        pairs.append((t_warm_i / t_floor_i, t_floor_i, t_warm_i, res))
    pairs.sort(key=lambda p: p[0])
    ratio, t_floor, t_warm, res = pairs[len(pairs) // 2]  # the median pair

    factory = FieldFactory(adam, prob.loss, prob.params, **values)
    per_flow = {}
    agree = {}
    with mpmath.workdps(dps):
        for r in (0, 1):
            t0 = _clock()
            ours = {h: integrate(factory(r, h), prob.theta0, h, int(prob.T / h), method_for(r))
                    for h in hs}
            t_ours = _clock() - t0
            t0 = _clock()
            rk4 = {h: rk4_substeps(factory(r, h), prob.theta0, h, int(prob.T / h)) for h in hs}
            per_flow[r] = (t_ours, _clock() - t0)
            # the two integrations agree far below the discrepancies of the table
            agree[r] = max(abs(a - b) for h in hs for p, q in zip(ours[h].path, rk4[h])
                           for a, b in zip(p, q))

    print(res.table(), end="")
    print()
    print(f"Adam on {prob.name}, h = 2^-4 ... 2^-9, T = {prob.T}, dps = {dps}, orders 0 and 1")
    print(f"floor (iterates alone, {sum(int(prob.T / h) for h in hs)} steps): "
          f"{t_floor:.3f} s")
    print(f"{'':40s}{'seconds':>10s}{'x floor':>10s}")
    rows = [("study, first call (incl. symbolic setup)", t_cold),
            ("study, repeated (flows compiled)", t_warm),
            ]
    for r, (ours, rk4) in per_flow.items():
        rows.append((f"order {r} flow: embedded pair (ours)", ours))
        rows.append((f"order {r} flow: plain RK4, 8 substeps", rk4))
    for label, t in rows:
        print(f"{label:40s}{t:10.3f}{t / t_floor:10.1f}")
    print("max |ours - RK4| along the flows: "
          + ", ".join(f"order {r}: {mpmath.nstr(d, 2)}" for r, d in agree.items()))
    print(f"paired study/floor ratios over {repeats} repeats: "
          f"{', '.join(f'{p[0]:.1f}' for p in pairs)} (median {ratio:.1f}); "
          f"verdicts: {res.verdicts}; goal: study <= 10x floor")
    # in a fresh interpreter, so that its first call is cold (nothing derived or compiled in
    # the process): once with the derivation cache on disk as the user's, once with an empty one
    print("\nderivation cache on disk as the user's:", end="")
    subprocess.run([sys.executable, __file__, "--issue-configuration"], check=True)
    with tempfile.TemporaryDirectory() as empty:
        print("\nempty derivation cache (the first call derives Adam's flows):", end="")
        subprocess.run([sys.executable, __file__, "--issue-configuration"], check=True,
                       env={**os.environ, "MODEQ_CACHE_DIR": empty})
    return {"floor": t_floor, "study_cold": t_cold, "study_warm": t_warm,
            "per_flow": per_flow}


if __name__ == "__main__":
    if sys.argv[1:] == ["--issue-configuration"]:
        issue_configuration()
    else:
        main()

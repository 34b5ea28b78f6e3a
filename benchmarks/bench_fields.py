"""Fields flat in ``n``: the cost of one evaluation of an exact-in-``n`` field at ``n = 10**5``
against ``n = 10``, for every built-in, orders 1 and 2, full batch and mini batch (3 batches,
cyclic), mpmath at 30 digits.  Goal: at most 2x.

Each case runs in its own process (a fresh field; the per-``n`` coefficient memo is filled by a
first call at each ``n``, then the point is varied so that only the point-dependent work is
timed).  A case whose single evaluation at ``n = 10**5`` exceeds the time limit is printed as
``> limit``.  Run: ``python benchmarks/bench_fields.py [--limit SECONDS] [--batch full|mini]``.

``--sequential``: NAdam (order 1, full batch), every step asked once in turn as an order study
asks them, so that each call at a new ``n`` pays for its step-index coefficients: the cost near
``n = 20`` against near ``n = 3000`` (its memory sums by their recurrence in ``n``).

``--nested``: torch's RMSprop with momentum (order 1, full batch), whose memory sums nest
(:mod:`modeq.symbolic.emit.nested_sums`, linear in ``n``) until the stationary field takes over
(:mod:`modeq.symbolic.emit.stationary_limit`): one call at ``n = 10``, ``10**3``, ``10**4`` and
``10**5``, beside the same field with every step by the node tables; then the same for its
mini-batch field (3 batches, cyclic; periodic past its transient,
:mod:`modeq.symbolic.emit.step_indexed`).

``--float-growth``: torch's NAdam (``psi = 1``), 3 batches cyclic, NumPy float64, with the
growth of its parts balanced (:mod:`modeq.symbolic.emit.growth`) and without, side by side
(each in its own process): the compile time and one call at ``n = 10``, ``300``, ``10**5``
(without the pass, the call past about 100 steps raises an overflow error).
"""
from __future__ import annotations

import subprocess
import sys

# the problem, the hyperparameters and the point every case evaluates at (no braces: the scripts
# are filled in with str.format)
SETUP = r"""
import time, mpmath, sympy as sp
from modeq.symbolic import derive, optimizers
x, y = sp.symbols('x y')
E = (x - 1)**2/2 + x*y/3 + y**4/4
losses = [(x - 1)**2/2 + y**4/4, x*y/3 + (y + 1)**2/2, (x + y)**2/4 + x**4/8]
values = dict(h=sp.Rational(1, 20), beta=sp.Rational(9, 10), rho=sp.Rational(99, 100),
              eps=sp.Rational(1, 1000))
th = [mpmath.mpf('0.3'), mpmath.mpf('-0.2')]
"""

CASE = SETUP + r"""
name, eps, bc, order, batch, n = {name!r}, {eps!r}, {bc!r}, {order}, {batch!r}, {n}
opt = optimizers.get(name, eps_placement=eps, bias_correction=bc)
need = {{str(s) for s in opt.hyperparameters}} | {{"h"}}
flow = derive(opt, order)
f = flow.lambdify(E if batch == "full" else losses, [x, y],
                  **{{k: v for k, v in values.items() if k in need}})
mpmath.mp.dps = 30
f(n, th)
t = time.process_time(); reps = 0
while reps < 3 or time.process_time() - t < 0.5:
    f(n, [th[0] + (reps + 1) * mpmath.mpf('1e-9'), th[1]]); reps += 1
print((time.process_time() - t) / reps)
"""

BUILTINS = [("gd", "inside", True), ("heavy_ball", "inside", True), ("rmsprop", "inside", True),
            ("rmsprop", "inside", False), ("adam", "inside", True), ("adam", "outside", True),
            ("adam", "inside", False)]


def _label(name, eps, bc):
    return name + (" eps-outside" if eps == "outside" else "") + ("" if bc else " no-bias-corr")


def _script(source, label, limit):
    """The output of ``source`` run in a process of its own, or ``None`` after printing why
    not (``label: > limit s``, or the last line of its error)."""
    try:
        r = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                           timeout=limit)
    except subprocess.TimeoutExpired:
        print(f"{label}: > {limit} s")
        return None
    if r.returncode != 0:
        print(f"{label}:", r.stderr.strip().splitlines()[-1])
        return None
    return r.stdout


def _one(limit, **case):
    try:
        r = subprocess.run([sys.executable, "-c", CASE.format(**case)], capture_output=True,
                           text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0:
        return r.stderr.strip().splitlines()[-1]
    return float(r.stdout.split()[-1])


def main(limit=120, batches=("full", "mini")):
    print("== one field evaluation (mpmath, dps 30): n = 10**5 against n = 10 ==")
    for batch in batches:
        for order in (1, 2):
            for name, eps, bc in BUILTINS:
                if batch == "mini" and name == "gd":
                    continue                     # mini-batch GD is SGD: listed once
                label = f"{batch:<4} order {order} {_label(name, eps, bc):<26}"
                small = _one(limit, name=name, eps=eps, bc=bc, order=order, batch=batch, n=10)
                if not isinstance(small, float):
                    print(f"{label} n = 10: {small or f'> {limit} s'}")
                    continue
                big = _one(limit, name=name, eps=eps, bc=bc, order=order, batch=batch,
                           n=10 ** 5)
                if isinstance(big, float):
                    print(f"{label} {small * 1e3:9.2f} ms  {big * 1e3:10.2f} ms  "
                          f"ratio {big / small:9.1f}x  (goal <= 2x)")
                else:
                    print(f"{label} {small * 1e3:9.2f} ms  n = 10**5: {big or f'> {limit} s'}")


SEQUENTIAL = SETUP + r"""
f = derive(optimizers.torch_nadam(), 1).lambdify(E, [x, y], psi=4, **values)
mpmath.mp.dps = 30
cost = dict()
for n in range({last} + 1):
    t = time.process_time()
    f(n, th)
    cost[n] = time.process_time() - t
early = sorted(cost[n] for n in range(10, 30))[10]
late = sorted(cost[n] for n in range({last} - 20, {last}))[10]
print(early, late)
"""


def sequential(limit=600, last=3000):
    """NAdam, order 1, full batch, each step ``n = 0, 1, ..., last`` asked once in turn (as an
    order study asks them): the cost of a call at a new ``n`` near 20 against near ``last``
    (median of 20 steps each; the step-index coefficients included)."""
    out = _script(SEQUENTIAL.format(last=last), "NAdam order 1, new steps in turn", limit)
    if out is None:
        return
    early, late = (float(v) for v in out.split())
    print(f"NAdam order 1, each new step in turn (n = 0 ... {last}): {early * 1e3:.2f} ms near "
          f"n = 20, {late * 1e3:.2f} ms near n = {last}, ratio {late / early:.1f}x "
          f"(goal <= 2x)")


NESTED = SETUP + r"""
f = derive(optimizers.torch_rmsprop(momentum=True), 1).lambdify(
    E, [x, y], mu=sp.Rational(3, 10), **{{k: v for k, v in values.items() if k != "beta"}})
tables = object.__new__(type(f))
tables.__dict__.update(f.__dict__)
tables.limit = None                          # every step by the node tables
mpmath.mp.dps = 30
print("start", f.limit_start(), flush=True)


def cost(g, n):
    g(n, th)
    t = time.process_time(); reps = 0
    while reps < 2 or time.process_time() - t < 0.5:
        g(n, [th[0] + (reps + 1) * mpmath.mpf('1e-9'), th[1]]); reps += 1
    return (time.process_time() - t) / reps


for n in (10, 10**3, 10**4, 10**5):
    print(n, cost(f, n), cost(tables, n), flush=True)

mini = derive(optimizers.torch_rmsprop(momentum=True), 1).lambdify(
    losses, [x, y], mu=sp.Rational(3, 10), **{{k: v for k, v in values.items() if k != "beta"}})
every = object.__new__(type(mini))
every.__dict__.update(mini.__dict__)
every.limit = None                           # every step by the node tables
print("mini", mini.periodic_start(), flush=True)
for n in (10, 10**3, 10**4, 10**5):
    print(n, cost(mini, n), cost(every, n), flush=True)
"""


def nested(limit=600):
    """torch's RMSprop with momentum, order 1, full batch: one call at growing ``n``."""
    try:
        r = subprocess.run([sys.executable, "-c", NESTED.format()], capture_output=True, text=True,
                           timeout=limit)
    except subprocess.TimeoutExpired as e:
        r = None
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    else:
        out = r.stdout
    if r is not None and r.returncode != 0:
        print("torch RMSprop momentum order 1:", r.stderr.strip().splitlines()[-1])
        return
    first = None
    for row in (line.split() for line in out.splitlines() if line.strip()):
        if row[0] == "start":
            print(f"torch RMSprop momentum order 1 (rho = 0.99, mu = 0.3, dps 30), full batch: "
                  f"the stationary field from n = {row[1]}")
        elif row[0] == "mini":
            print(f"same, mini batch (3 batches, cyclic): periodic from n = {row[1]} (a call at "
                  f"n is the call at its residue there, its node tables started there by "
                  f"their periodic closed form)")
        else:
            n, t, every = int(row[0]), float(row[1]), float(row[2])
            first = t if n == 10 else first
            print(f"  n = {n:>6}: {t * 1e3:9.2f} ms  ratio to n = 10: {t / first:7.1f}x   "
                  f"(every step by the node tables: {every * 1e3:9.2f} ms)")
    if r is None:
        print(f"(stopped after {limit} s)")


GROWTH = SETUP + r"""
import numpy as np
from modeq.symbolic.emit import step_coefficients
if not {balance}:
    step_coefficients.balance_growth = lambda exprs, step, point: list(exprs)
flow = derive(optimizers.torch_nadam(), {order})
vals = dict(h=sp.Rational(1, 64), beta=sp.Rational(1, 4), rho=sp.Rational(3, 5),
            eps=sp.Rational(1, 10), psi=1)
t = time.process_time()
f = flow.lambdify(losses, [x, y], backend="numpy", **vals)
print("compile", time.process_time() - t, flush=True)
for n in (10, 300, 10**5):
    t = time.process_time()
    try:
        with np.errstate(all="ignore"):
            f(n, np.array([0.3, -0.2]))
        print(n, time.process_time() - t, flush=True)
    except FloatingPointError:
        print(n, "overflow", flush=True)
"""


def growth(limit=900, order=1):
    """NAdam's float64 mini-batch field with and without the growth pass, side by side."""
    runs = {}
    for balance in (True, False):
        out = _script(GROWTH.format(balance=balance, order=order),
                      f"NAdam float growth (balance={balance})", limit)
        if out is None:
            return
        runs[balance] = dict(line.split() for line in out.splitlines())
    print(f"torch NAdam order {order}, mini batch (3 batches, cyclic, psi = 1), NumPy float64, "
          f"growth balanced / not:")
    on, off = runs[True], runs[False]
    print(f"  compile: {float(on['compile']):.1f} s / {float(off['compile']):.1f} s "
          f"(ratio {float(on['compile']) / float(off['compile']):.2f}x)")
    for n in ("10", "300", "100000"):
        show = [v if v == "overflow" else f"{float(v) * 1e3:.1f} ms" for v in (on[n], off[n])]
        print(f"  n = {n:>6}: {show[0]} / {show[1]}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--float-growth" in args:
        growth()
        sys.exit(0)
    if "--sequential" in args:
        sequential()
        sys.exit(0)
    if "--nested" in args:
        nested()
        sys.exit(0)
    chosen = (args[args.index("--batch") + 1],) if "--batch" in args else ("full", "mini")
    if not set(chosen) <= {"full", "mini"}:
        sys.exit("--batch must be 'full' or 'mini'")
    main(float(args[args.index("--limit") + 1]) if "--limit" in args else 120, chosen)

"""Symbolic engine benchmarks (cold processes, so no cache helps).

* derive full-batch Adam to order 1 and prove it equal to the paper's form for p = 3
  (dimension-free proof + generic components p = 3); goal < 2 s;
* derive Adam's F2 (full batch, exact in n and stationary) and lower it to generic components
  for p = 2 and p = 3; goal < 30 s;
* cost of one evaluation of the lambdified order-2 field relative to the order-1 field;
* the memoised ``expand_mul`` (:mod:`modeq.symbolic.expand`) against SymPy's own on the same
  cold derivation (torch's NAdam with L2, order 1: memory sums recurring in many terms), each
  in a fresh process with its own empty derivation cache.
"""
from __future__ import annotations

import subprocess
import sys

ORDER1 = """
import time; t = time.perf_counter()
from modeq.symbolic import derive, optimizers
from modeq.symbolic.recognize import recognize
rec = recognize(derive(optimizers.adam(), 1), stationary=True, dims=(3,))
assert rec and rec[0].proved
print(time.perf_counter() - t)
"""

ORDER2 = """
import time; t = time.perf_counter()
from modeq.symbolic import derive, optimizers
f = derive(optimizers.adam(), 2)
f.terms(stationary=False); f.generic({p}, stationary=False, r=2)
print(time.perf_counter() - t)
"""

EVAL = """
import time, mpmath, sympy as sp
from modeq.symbolic import derive, optimizers
x, y = sp.symbols('x y'); E = (x - 1)**2/2 + x*y/3 + y**4/4 + sp.sin(x)/5
vals = dict(h=0.05, beta=0.9, rho=0.99, eps=1e-3)
mpmath.mp.dps = 40
out = []
for order in (1, 2):
    f = derive(optimizers.adam(), order).lambdify(E, [x, y], **vals)
    th = [mpmath.mpf('0.3'), mpmath.mpf('-0.2')]
    reps = 300; t = time.perf_counter()
    for k in range(reps): f(k % 50, th)
    out.append((time.perf_counter() - t) / reps)
print(out[0], out[1])
"""


EXPAND = """
import os, tempfile, time
os.environ["MODEQ_CACHE_DIR"] = tempfile.mkdtemp()
import sympy as sp
from modeq.symbolic import derive, operators, memory, optimizers
if {sympys}:   # SymPy's expand_mul where the derivation calls the memoised one
    operators.expand_mul = memory.expand_mul = sp.expand_mul
t = time.process_time()
derive(optimizers.torch_nadam(weight_decay="coupled"), 1).terms()
print(time.process_time() - t)
"""


def _cold(code):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return r.stdout.split()


def main():
    print("== symbolic engine (each figure from a fresh process) ==")
    t1 = min(float(_cold(ORDER1)[0]) for _ in range(2))
    print(f"derive Adam order 1 + prove = paper (p = 3): {t1:6.2f} s   (goal < 2 s)")
    for p in (2, 3):
        t2 = float(_cold(ORDER2.format(p=p))[0])
        print(f"derive Adam F2 (exact in n) + lower to p = {p}:  {t2:6.2f} s   (goal < 30 s)")
    e1, e2 = map(float, _cold(EVAL))
    print(f"one evaluation, mpmath dps 40: order 1 {e1 * 1e6:8.0f} us, order 2 {e2 * 1e6:8.0f} us,"
          f" ratio order2/order1 = {e2 / e1:5.1f}x")
    mine, sympys = (float(_cold(EXPAND.format(sympys=flag))[0]) for flag in (False, True))
    print(f"derive torch NAdam + L2, order 1, CPU: memoised expand_mul {mine:6.1f} s, SymPy's "
          f"{sympys:6.1f} s, ratio {sympys / mine:4.1f}x")


if __name__ == "__main__":
    main()

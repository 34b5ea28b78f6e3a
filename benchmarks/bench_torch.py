"""Benchmark: ``modeq.numeric.torch.adam_correction`` against one gradient evaluation.

Target (issue 4): on an MLP with at least 1e5 parameters the correction (one gradient with
``create_graph=True`` plus one Hessian-vector product) costs at most 4× one gradient evaluation.
Both timings include the forward pass (``forward + backward`` vs ``forward + adam_correction``);
each is the median of several interleaved repeats after a warm-up.  Also printed: the memory a dense Hessian
would need instead.

Run: ``python benchmarks/bench_torch.py`` (or call :func:`main`).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=256, help="hidden width (default 256)")
    parser.add_argument("--batch", type=int, default=512, help="batch size (default 512)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: steadiest on a shared machine)")
    args = parser.parse_args(argv)

    import torch
    from modeq.numeric.torch import adam_correction, implicit_correction

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    w = args.width
    net = torch.nn.Sequential(torch.nn.Linear(784, w), torch.nn.Tanh(), torch.nn.Linear(w, w),
                              torch.nn.Tanh(), torch.nn.Linear(w, 10)).to(args.device, dtype)
    params = list(net.parameters())
    p = sum(t.numel() for t in params)
    if p < 100_000:
        print(f"warning: only {p} parameters (< 1e5); raise --width", file=sys.stderr)
    x = torch.randn(args.batch, 784, device=args.device, dtype=dtype)
    y = torch.randint(0, 10, (args.batch,), device=args.device)

    def sync():
        if torch.device(args.device).type == "cuda":
            torch.cuda.synchronize()

    def gradient():
        loss = torch.nn.functional.cross_entropy(net(x), y)
        torch.autograd.grad(loss, params)
        sync()

    def correction():
        loss = torch.nn.functional.cross_entropy(net(x), y)
        adam_correction(loss, params, beta=0.9, rho=0.999, eps=1e-8, h=1e-3)
        sync()

    adamw = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01)

    def adamw_correction():
        loss = torch.nn.functional.cross_entropy(net(x), y)
        implicit_correction(adamw, loss, params)
        sync()

    # interleaved, so that a load change on a shared machine hits all timings alike
    gradient(), correction(), adamw_correction()
    t_g, t_c, t_w = [], [], []
    for _ in range(args.repeats):
        for fn, acc in ((gradient, t_g), (correction, t_c), (adamw_correction, t_w)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    t_grad, t_corr = statistics.median(t_g), statistics.median(t_c)
    ratio = t_corr / t_grad
    pair = statistics.median(c / g for c, g in zip(t_c, t_g))
    itemsize = torch.tensor([], dtype=dtype).element_size()
    print(f"MLP 784-{w}-{w}-10 (tanh), {p} parameters, batch {args.batch}, {args.dtype}, "
          f"{args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"one gradient evaluation (forward + backward):       {t_grad * 1e3:9.2f} ms")
    print(f"adam_correction (forward + grad + 1 HVP):          {t_corr * 1e3:9.2f} ms")
    print(f"ratio adam_correction / gradient:                   {ratio:9.2f}x  "
          f"(target <= 4x: {'met' if ratio <= 4 else 'NOT met'}; median of paired ratios "
          f"{pair:.2f}x)")
    t_adamw = statistics.median(t_w)
    pair_w = statistics.median(c / g for c, g in zip(t_w, t_g))
    print(f"implicit_correction(AdamW(lr=1e-3, weight_decay=0.01)): {t_adamw * 1e3:9.2f} ms")
    print(f"ratio AdamW correction / gradient:                  {t_adamw / t_grad:9.2f}x  "
          f"(target <= 4x: {'met' if t_adamw / t_grad <= 4 else 'NOT met'}; median of paired "
          f"ratios {pair_w:.2f}x)")
    print(f"dense Hessian instead: {p}^2 x {itemsize} B = {_bytes(p * p * itemsize)} "
          f"(the parameters themselves: {_bytes(p * itemsize)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

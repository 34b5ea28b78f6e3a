"""``modeq codegen OPTIMIZER --backend numpy|torch``: write a standalone module computing the
modified flow and its correction from ``g`` and a Hessian-vector-product callback."""
from __future__ import annotations

import shlex
import sys

from ._common import add_cache_arg, add_optimizer_args, check_output_file, optimizer_from_args


def add_parser(sub):
    p = sub.add_parser(
        "codegen", help="emit a standalone NumPy/torch module computing the modified flow",
        description="Derive the modified flow of an optimizer and write a standalone Python "
                    "module (no modeq dependency) with F0, F1[, F2], correction and flow as "
                    "functions of the gradient g, a Hessian-vector product callback hvp(v) "
                    "[and d3(u, w) at order 2] and the hyperparameters.")
    add_optimizer_args(p)
    p.add_argument("--backend", required=True, metavar="{numpy,torch}",
                   help="array library of the emitted module")
    p.add_argument("--order", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--stationary", action="store_true",
                   help="the n -> oo flow (otherwise exact in the step index n)")
    p.add_argument("--out", metavar="FILE",
                   help="write the module to FILE (atomically); default: standard output")
    add_cache_arg(p)
    p.set_defaults(run=run)


def run(args):
    from modeq.symbolic.codegen import CODEGEN_BACKENDS, generate_module
    from modeq.proofs.atomic import atomic_write_text
    if args.backend not in CODEGEN_BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(CODEGEN_BACKENDS)}, "
                         f"got {args.backend!r}")
    opt = optimizer_from_args(args)
    check_output_file(args.out, "--out")          # before any work
    command = "modeq codegen " + " ".join(
        shlex.quote(a) for a in _argv_without_out(args))
    source = generate_module(opt, order=args.order, backend=args.backend,
                             stationary=args.stationary, command=command)
    if args.out:
        atomic_write_text(args.out, source)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(source)
    return 0


def _argv_without_out(args):
    out = [args.optimizer, "--backend", args.backend, "--order", str(args.order)]
    if args.stationary:
        out.append("--stationary")
    if args.eps_outside:
        out.append("--eps-outside")
    if args.no_bias_correction:
        out.append("--no-bias-correction")
    return out

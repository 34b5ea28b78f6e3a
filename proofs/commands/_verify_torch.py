"""``modeq verify --torch "AdamW(betas=(0.9, 0.99), weight_decay=0.01)"``: the order study of
a torch.optim optimizer as configured, against torch's own float64 iterates.

For each step size ``h`` the optimizer is built by torch with ``lr = h`` (a ``lr`` in the spec
is not used) and run on the problem; the modified flows derived from the update torch performs
(:func:`modeq.numeric.torch_optim.from_torch`) are integrated in mpmath
(:func:`modeq.numeric.torch_check.torch_order_study`).  The table, verdicts, ``--json`` and
``--plot`` are those of ``modeq verify``.
"""
from __future__ import annotations

from ._common import PLOT_SUFFIXES, UsageError, check_output_file, report_study

#: torch's dtypes a user may ask for; the check runs in float64 only
DTYPES = ("float64", "float32", "float16", "bfloat16")


def check_torch_args(args):
    """Refuse what the torch check does not take, before any work (exit 2)."""
    if args.optimizer is not None:
        raise UsageError("give OPTIMIZER or --torch, not both")
    if args.dtype != "float64":
        raise UsageError(f"--dtype {args.dtype}: the check runs torch in float64 only; the "
                         f"rounding of {args.dtype} (unit 2^-{_MANTISSA[args.dtype]}) would "
                         f"hide the errors h^(r+1) it measures")
    for flag in ("eps_outside", "no_bias_correction", "stationary"):
        if getattr(args, flag):
            raise UsageError(f"--{flag.replace('_', '-')} is for a built-in OPTIMIZER; the "
                             f"torch spec says what torch does")
    for name in ("beta", "rho", "eps"):
        if getattr(args, name) is not None:
            raise UsageError(f"--{name} is for a built-in OPTIMIZER; put the setting in the "
                             f"torch spec (betas=(...), eps=...)")
    if args.batch != "full" or args.schedule or args.seed is not None:
        raise UsageError("--torch checks run full batch (--batch mini is for a built-in "
                         "OPTIMIZER)")
    if args.jobs != 1 or args.scheduler:
        raise UsageError("--jobs and --scheduler are for a built-in OPTIMIZER")


_MANTISSA = {"float32": 24, "float16": 11, "bfloat16": 8}


def make_from_spec(text):
    """``(make_optimizer(params, lr), declaration, values)`` of the spec: torch builds the
    optimizer (checking its settings) and :func:`from_torch` reads it (refusing what has no
    smooth flow), both before any study."""
    import torch
    from modeq.numeric.torch_optim import from_torch
    from modeq.proofs.torch_spec import parse_torch_spec
    name, kwargs = parse_torch_spec(text)
    kwargs.pop("lr", None)
    cls = getattr(torch.optim, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"--torch: torch.optim has no optimizer {name!r}")

    def make(params, lr):
        return cls(params, lr=lr, **kwargs)
    try:
        probe = make([torch.zeros(1, dtype=torch.float64, requires_grad=True)], 0.01)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--torch: torch.optim.{name} refused the settings: {exc}") from None
    declaration, values = from_torch(probe)
    return make, declaration, {k: v for k, v in values.items() if k != "h"}


def memory_note(declaration, values, T, hs):
    """A warning when the slowest memory (:func:`~modeq.numeric.study.judge.memory_span`) is
    longer than the shortest run: the flows then describe a transient the study does not
    resolve at these ``h`` (a fit that fails is reported ``unresolved``, pre-asymptotic)."""
    from modeq.numeric.study.judge import memory_span
    steps = int(T / min(hs))
    memory = memory_span(declaration, values)
    if memory is not None and memory[1] > steps:
        return (f"note: a memory of {memory[1]:.0f} steps (1/(1 - decay)) is longer than the "
                f"run (T/h = {steps} steps at the smallest h): the errors are not yet in their "
                f"asymptotic regime; use smaller --hs, a longer --T, or shorter memory")
    return None


def run_torch(args, problem_from_args, orders, hs):
    """The ``--torch`` branch of ``modeq verify`` (exit 0 when every order passes, else 1)."""
    import time
    from modeq.numeric.study import validate_inputs
    from modeq.numeric.study.result import StudyResult
    from modeq.numeric.torch_check import torch_order_study
    check_torch_args(args)
    check_output_file(args.plot, "--plot", PLOT_SUFFIXES)
    check_output_file(args.json, "--json")
    make, declaration, values = make_from_spec(args.torch)
    loss, params, theta0, T, _, name = problem_from_args(args, declaration)
    validate_inputs(declaration, loss, params, theta0, T, hs, orders, args.dps)
    note = memory_note(declaration, values, T, hs)
    start = time.perf_counter()
    results = torch_order_study(make, loss, params, theta0, T=T, hs=hs, orders=orders,
                                dps=args.dps)
    result = StudyResult(f"torch.optim {args.torch.strip()}", f"{name} (torch's iterates)",
                         "full", False, args.dps, str(T),
                         {k: str(v) for k, v in values.items()}, results,
                         {"total": time.perf_counter() - start})
    return report_study(result, args, ([note] if note else [])
                        + [f"time: {result.timings['total']:.1f} s"])

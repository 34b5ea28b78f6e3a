"""``modeq derive OPTIMIZER`` / ``modeq derive --torch "AdamW(lr=1e-3, ...)"``: print the
modified flow of a built-in optimizer, or of a torch.optim optimizer as configured."""
from __future__ import annotations

from ._common import (UsageError, add_cache_arg, add_optimizer_args, check_label,
                      optimizer_from_args, require_extra)


def add_parser(sub):
    p = sub.add_parser("derive", help="derive and print the modified flow of an optimizer",
                       description="Derive the modified flow d theta/dt = -(F0 + h F1 + ...) "
                                   "of an optimizer from its recursion.")
    add_optimizer_args(p, required=False)
    p.add_argument("--torch", metavar="SPEC",
                   help='a torch.optim optimizer as you would write it, e.g. '
                        '"AdamW(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01)" '
                        '(instead of OPTIMIZER; needs torch)')
    p.add_argument("--order", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--batch", choices=("full", "mini"), default="full")
    p.add_argument("--stationary", action="store_true",
                   help="the n -> oo limit (full batch)")
    p.add_argument("--epoch", type=int, metavar="M",
                   help="the epoch flow of M mini batches, each used once per epoch, averaged "
                        "over the M! orders (random reshuffling; time h per step)")
    p.add_argument("--batches", type=int, metavar="M",
                   help="with --batch mini --order 2: the number of batches of the grouped "
                        "form (default 2)")
    p.add_argument("--no-reshuffle", action="store_true",
                   help="with --epoch: one fixed batch order repeated instead of reshuffling")
    p.add_argument("--format", choices=("text", "latex"), default="text")
    p.add_argument("--dims", type=int, metavar="P",
                   help="also print the components for any loss in dimension P, in generic "
                        "symbols g_i, H_ij, T_ijk (full batch)")
    p.add_argument("--no-recognize", action="store_true",
                   help="skip the proofs against published closed forms")
    p.add_argument("--full-proofs", action="store_true",
                   help="also prove the components for each dimension p exactly (slow); by "
                        "default the dimension-free proof is the proof and the components "
                        "are compared exactly at random rational points")
    add_cache_arg(p)
    p.set_defaults(run=run)


def run(args):
    from modeq.symbolic import derive
    from modeq.symbolic.display import flow_latex, flow_text
    from modeq.symbolic.recognize import recognize
    # every option is checked before any work
    values = None
    if args.torch is not None:
        if args.optimizer is not None:
            raise UsageError("give OPTIMIZER or --torch, not both")
        require_extra(("torch",), "torch")
        from modeq.proofs.torch_spec import optimizer_from_spec
        opt, values = optimizer_from_spec(args.torch)
    elif args.optimizer is None:
        raise UsageError("the following arguments are required: OPTIMIZER (or --torch SPEC)")
    else:
        opt = optimizer_from_args(args)
    if args.batch == "mini" and args.stationary:
        raise ValueError("--stationary is for --batch full")
    if args.epoch is not None:
        return _epoch(opt, args)
    if args.no_reshuffle:
        raise UsageError("--no-reshuffle is for --epoch M")
    if args.dims is not None:
        if args.batch != "full":
            raise UsageError("--dims is for --batch full")
        if not 1 <= args.dims <= 6:
            raise UsageError(f"--dims must be in 1..6, got {args.dims}")
    if args.batches is not None and not (args.batch == "mini" and args.order == 2):
        raise UsageError("--batches is for --batch mini --order 2")
    flow = derive(opt, order=args.order)
    if args.batch == "mini" and args.order == 2 and opt.states:
        if flow.batch_grouped:
            return _grouped(flow, args, values)
        if args.batches is not None:
            raise UsageError(f"--batches: {opt.name}'s mini-batch flow is not batch-grouped "
                             f"(it is printed step-indexed, for any number of batches)")
    if args.format == "latex":
        print(flow_latex(flow, args.batch, args.stationary))
    else:
        print(flow_text(flow, args.batch, args.stationary))
    if values is not None:
        print("hyperparameters from torch (h = lr): "
              + ", ".join(f"{k} = {v}" for k, v in sorted(values.items())))
    if args.dims is not None:
        import sympy as sp
        comps = flow.generic(args.dims, stationary=args.stationary)
        print(f"\ncomponents for p = {args.dims} (d theta_j/dt):")
        for j, c in enumerate(comps):
            print(f"  j = {j + 1}: " + (sp.latex(c) if args.format == "latex" else sp.sstr(c)))
    if args.batch == "full" and not args.no_recognize and args.order >= 1:
        dims = (1, 2, 3, 4) if args.stationary else (1, 2)
        components = "prove" if args.full_proofs else "fast"
        for rec in recognize(flow, stationary=args.stationary, dims=dims,
                             components=components):
            print(f"\nrecognized ({rec.term}): {rec.name} — {rec.source}\n  {rec.display}")
            for check in rec.checks:
                print(f"  [{check_label(check)}] {check[0]}")
    return 0


def _grouped(flow, args, values):
    """Mini batch, order 2, an optimizer with memory: the batch-grouped form (no step-indexed
    closed form exists at this order)."""
    from modeq.symbolic.display_grouped import grouped_flow_text
    if args.format != "text" or args.dims is not None:
        raise UsageError("--batch mini --order 2 prints the grouped form as text; it takes no "
                         "--format latex or --dims")
    m = 2 if args.batches is None else args.batches
    if not 1 <= m <= 6:
        raise UsageError(f"--batches must be in 1..6, got {m}")
    print(grouped_flow_text(flow, m))
    if values is not None:
        print("hyperparameters from torch (h = lr): "
              + ", ".join(f"{k} = {v}" for k, v in sorted(values.items())))
    return 0


def _epoch(opt, args):
    """``--epoch M``: the epoch flow's terms, grouped by structure (batch ``b``: ``g[b]``)."""
    import sympy as sp
    from modeq.symbolic.display import grouped_terms
    from modeq.symbolic.epoch import epoch_terms, expansion_of
    if args.stationary or args.dims is not None or args.format != "text":
        raise UsageError("--epoch prints the epoch flow as text; it takes no --stationary, "
                         "--dims or --format latex")
    reshuffle = not args.no_reshuffle
    if args.epoch < (2 if reshuffle else 1):
        raise UsageError(f"--epoch M needs M >= 2 batches to reshuffle (M >= 1 with "
                         f"--no-reshuffle), got {args.epoch}")
    terms, _ = epoch_terms(opt, args.epoch, args.order, reshuffle)
    kind = "averaged over the M! orders (random reshuffling)" if reshuffle else \
        "one fixed order 0..M-1 repeated"
    print(f"epoch flow of {opt.name}: M = {args.epoch} batches, {kind}")
    print("d theta/dt = -(F0 + h F1 + ...), time h per step (one epoch is M h); "
          "g[b], H[b], T[b]: derivatives of batch b's loss")
    if expansion_of(opt) is not None:
        _print_spread_expansion(opt, args.epoch, args.order)
        return 0
    for r, term in enumerate(terms):
        parts = grouped_terms(term)
        body = "\n    + ".join(sp.sstr(c) if k == 1 else f"({sp.sstr(c)}) * {sp.sstr(k)}"
                                for k, c in parts) or "0"
        print(f"F{r} = {body}")
    return 0


def _print_spread_expansion(opt, m, order):
    """An adaptive step's epoch flow in its structure (``modeq.symbolic.epoch_adaptive``): the
    step at the mean states plus the states' covariances over the orders, then the noise-free
    ``F1`` as ``modeq derive --stationary`` prints it, read for the mean loss."""
    import sympy as sp
    from modeq.symbolic import derive
    from modeq.symbolic.display import formula_lines, named_terms
    from modeq.symbolic.epoch_adaptive import EXPANSION_NOTE, spread_expansion
    from modeq.symbolic.family import g
    from modeq.symbolic.operators import Grad
    e = spread_expansion(opt, m)
    b = sp.Symbol("b")
    mean = lambda f: f"mean_b[{sp.sstr(f.xreplace({g: Grad(b)}))}]"  # noqa: E731
    pairs = e.pairs
    parts = [("(1/2) * " if xi == xk else "") + f"psi_{xi}{xk} * Cov({xi}, {xk})"
             for xi, xk, *_ in pairs]
    print(EXPANSION_NOTE)
    print("F0 = " + " + ".join([f"psi({', '.join(map(str, e.channels))})"] + parts)
          + "   (at the mean states)")
    print(f"  psi = {sp.sstr(e.step)}")
    for x in e.channels:
        k = e.kappa[x]
        print(f"  mean {x} = " + ("" if k == 1 else f"({sp.sstr(k)}) * ") + mean(e.inputs[x]))
    for xi, xk, d2, c, _ in pairs:
        sigma = (f"mean_b[{sp.sstr((e.inputs[xi] * e.inputs[xk]).xreplace({g: Grad(b)}))}] - "
                 f"{mean(e.inputs[xi])} * {mean(e.inputs[xk])}")
        print(f"  psi_{xi}{xk} = {sp.sstr(sp.simplify(d2))}")
        print(f"  Cov({xi}, {xk}) = ({sp.sstr(c)}) * ({sigma})")
    if order >= 1:
        print("F1 = the stationary full-batch F1 of the mean loss C = mean_b[E_b] "
              "(g = mean_b[g[b]], H = mean_b[H[b]]):")
        named = named_terms(derive(opt, order=1), stationary=True)
        for line in formula_lines(named, orders=(1,)):
            print(line)
        if named.s is not None:
            print(f"  where s = {sp.sstr(named.s)}")

"""``modeq latex OPTIMIZER``: the derivation document of a built-in optimizer (LaTeX, PDF).

Builds the document from the engine's intermediate results, verifies every equality it states
(a failed check writes nothing and exits 1), writes ``OUT/<name>.tex`` atomically and, with
``--pdf``, compiles it with ``latexmk`` or ``pdflatex`` in a temporary folder and moves the PDF
next to it atomically.  Without LaTeX the ``.tex`` is written and the command says how to
compile it.  ``--out`` must be a folder (created if missing); a file or an unwritable folder
is a usage error (exit 2).

``modeq latex --regenerate [--pdf] [--out FOLDER]`` (no OPTIMIZER) rewrites the committed
documents of :data:`~modeq.proofs.registry.BUILTIN_DOCUMENTS` (default folder: ``proofs/tex/``).
"""
from __future__ import annotations

import os
import sys
import time

from modeq.symbolic import optimizers

from ._common import Progress, add_cache_arg, add_optimizer_args, optimizer_from_args


def add_parser(sub):
    p = sub.add_parser("latex", help="write the derivation document (LaTeX, optionally PDF)",
                       description=__doc__.split("\n\n")[0])
    add_optimizer_args(p, required=False)                  # left out with --regenerate
    p.add_argument("--regenerate", action="store_true",
                   help="rewrite the committed documents (proofs/tex/*.tex; no OPTIMIZER)")
    p.add_argument("--order", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--batch", choices=("full", "mini"), default="full")
    p.add_argument("--stationary", action="store_true",
                   help="derive with the stationary memory (n -> oo); needed for order 2 "
                        "with memory")
    p.add_argument("--out", default=None, help="output folder (default: current folder; "
                                               "with --regenerate: proofs/tex/)")
    p.add_argument("--pdf", action="store_true", help="also compile the PDF")
    add_cache_arg(p)
    p.set_defaults(run=run)


def check_out_dir(out):
    """Create ``out`` if missing; ``ValueError``/``PermissionError`` with a clear message if
    it is a file or not writable."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out!r} is a file, expected a folder")
    if not os.path.exists(out):
        try:
            os.makedirs(out)
        except OSError as exc:
            raise ValueError(f"--out {out!r}: cannot create the folder ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {out!r} is not writable")
    return out


def _validate(opt, args):
    if args.batch == "mini" and args.stationary:
        raise ValueError("--stationary is for --batch full")
    if args.batch == "mini" and args.order == 0:
        raise ValueError("mini-batch documents are derived to order 1 or 2 (use --order 1 or 2)")
    if args.order >= 2 and opt.states and not args.stationary and args.batch == "full":
        raise ValueError("order 2 with memory: use --stationary (the exact-in-n h^2 memory "
                         "sums have no closed form)")


def variant_suffix(opt, eps_outside=False, no_bias_correction=False):
    """File-name suffix for the declaration variants the optimizer's name does not show."""
    suffix = ""
    if eps_outside and "eps_outside" not in opt.name:
        suffix += "-eps-outside"
    if no_bias_correction and "no_bias_correction" not in opt.name:
        suffix += "-no-bias-correction"
    return suffix


def write_document(opt, order, batch, stationary, out, pdf, suffix="", progress=None):
    # the document builder and renderer are imported here, not when the parser is built
    from modeq.proofs.build import document, document_name
    from modeq.proofs.latex import compile_pdf, latex_engine, write_tex
    """Build, verify, write; returns ``(tex_path, pdf_path or None, message)``.
    ``progress``: a :class:`~._common.Progress` told of each stage (build and check, PDF)."""
    progress = progress or Progress("modeq latex", 2 if pdf else 1, enabled=False)
    t0 = time.perf_counter()
    with progress.step("derive, build and check the document") as update:
        doc = document(opt, order, batch, stationary)
        update(1, 1, f"{len(doc.checks)} checks passed")
    stem = document_name(opt, order, batch, stationary)
    if suffix:
        parts = stem.split("-" + batch + "-", 1)
        stem = parts[0] + suffix + "-" + batch + "-" + parts[1]
    tex_path = os.path.join(out, stem + ".tex")
    write_tex(doc, tex_path)
    msg = f"wrote {tex_path} ({len(doc.checks)} checks passed, {time.perf_counter() - t0:.1f} s)"
    pdf_path = None
    if pdf:
        if latex_engine() is None:
            msg += (f"\nno LaTeX found (latexmk or pdflatex): compile with "
                    f"'pdflatex {os.path.basename(tex_path)}' in {out}")
        else:
            with progress.step("compile the PDF") as update:
                pdf_path = compile_pdf(tex_path)
                update(1, 1, os.path.basename(pdf_path))
            msg += f"\nwrote {pdf_path}"
    else:
        msg += f"\ncompile with 'pdflatex {os.path.basename(tex_path)}' (or pass --pdf)"
    return tex_path, pdf_path, msg


def run(args):
    from modeq.proofs.document import ProofError
    from modeq.proofs.registry import TEX_DIR, regenerate
    if args.regenerate:
        if args.optimizer is not None:
            raise ValueError("--regenerate rewrites every committed document: give no OPTIMIZER")
        regenerate(check_out_dir(args.out or TEX_DIR), pdf=args.pdf)
        return 0
    if args.optimizer is None:
        raise ValueError("the following arguments are required: OPTIMIZER")
    opt = optimizer_from_args(args)
    _validate(opt, args)
    out = check_out_dir(args.out or ".")
    try:
        _, _, msg = write_document(opt, args.order, args.batch, args.stationary, out, args.pdf,
                                   variant_suffix(opt, args.eps_outside,
                                                  args.no_bias_correction),
                                   Progress("modeq latex", 2 if args.pdf else 1))
    except ProofError as exc:
        print(f"modeq latex: a check failed, no document written: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:      # LaTeX compilation failed; the .tex is written
        print(f"modeq latex: {exc}", file=sys.stderr)
        return 1
    print(msg)
    return 0


def reproduce_part(out_dir, quick=False):
    """For ``modeq reproduce``: Adam's documents (.tex and, with LaTeX, PDF) in ``out_dir``."""
    from modeq.proofs.latex import latex_engine
    check_out_dir(out_dir)
    adam = optimizers.adam()
    variants = [(1, "full", False)] if quick else [(1, "full", False), (1, "mini", False)]
    lines = []
    pdf = latex_engine() is not None
    for order, batch, stationary in variants:
        _, _, msg = write_document(adam, order, batch, stationary, out_dir, pdf)
        lines.append(msg.splitlines()[0] + ("" if pdf else " (no LaTeX: .tex only)"))
        if pdf:
            lines.append(msg.splitlines()[1])
    return "\n".join(lines)

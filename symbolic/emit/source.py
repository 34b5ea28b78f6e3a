"""Emit a standalone Python module (NumPy or torch) computing a derived modified flow.

``module_source(flow, backend="numpy", stationary=False)`` returns the source of a readable module that needs only NumPy or torch at run time (no modeq, no SymPy).  It is built
from the matrix-free forms of :mod:`.forms` — ``F_r`` as componentwise expressions in the
gradient ``g`` and contractions ``H.u`` / ``T[u, w]`` — and contains, for the hyperparameters given
as keyword arguments:

* ``F0(g, ...)``, ``F1(g, hvp, ...)``, ``F2(g, hvp, d3, ...)`` (up to the order);
* ``correction(g, hvp, ..., h)`` = ``h F1 (+ h^2 F2)``;
* ``flow(g, hvp, ..., h)`` = ``d theta/dt = -(F0 + h F1 (+ h^2 F2))``.

``hvp(v)`` must return ``H v`` and ``d3(u, w)`` ``T[u, w]`` (the Hessian / third derivative of the
loss at the current point) in the shape of ``g``; any shape works (a flat vector, a batch of
points as columns, one parameter tensor of a network).  Flows exact in the step index take
``n=`` (when a term depends on it: GD's does not).  Before anything is written, every form is checked symbolically against the derived term
(:func:`~.forms.verify`); the docstring of the module records the checks.

Numbers: rational coefficients print as Python divisions of integers (``(1/2)*x``); constant
subexpressions that are not rational (``sqrt(2)``, ``pi``) print as 17-digit literals; the
hyperparameters are converted to 0-d arrays/tensors of ``g``'s dtype (and device), so float32
inputs stay float32.
"""
from __future__ import annotations

import textwrap

import sympy as sp

from ..family import RANGES, n as n_sym, theta as theta_sym
from .forms import G, flow_forms, verify
from .prepare import cse_with_opaque_sums, share_square_roots
from .printers import literal_printer
from .source_runtime import runtime_helpers

__all__ = ["CODEGEN_BACKENDS", "module_source"]

CODEGEN_BACKENDS = ("numpy", "torch")


def _describe_optimizer(opt, notes):
    lines = [f"step = {opt.step}   (theta <- theta - h * step)"]
    for s in opt.states:
        lines.append(s.describe())
    lines += [f"note: {note}" for note in notes]
    return lines


def _range_text(name):
    lo, hi, lo_closed, hi_closed = RANGES[name]
    if hi is None:
        return f"{name} {'>=' if lo_closed else '>'} {lo}"
    return f"{name} in {'[' if lo_closed else '('}{lo}, {hi}{']' if hi_closed else ')'}"


def _staged_lines(outputs, stage_of, printer, taken, prefix="t"):
    """Code lines for ``[(name, expr, stage)]`` with one common-subexpression elimination over
    all of them (``t0, t1...``, memory sums held opaque).  ``stage_of`` gives the stage from
    which a free symbol is available (contraction results); returns ``{stage: [lines]}`` so that
    every line comes after the values it uses."""
    exprs = [share_square_roots(e) for _, e, _ in outputs]
    repl, reduced = cse_with_opaque_sums(exprs, prefix=prefix, sum_prefix=prefix, taken=taken)
    stage = dict(stage_of)

    def stage_expr(e):
        return max((stage.get(sym, 0) for sym in e.free_symbols), default=0)

    lines = {}
    for sym, e in repl:
        stage[sym] = stage_expr(e)
        lines.setdefault(stage[sym], []).append(f"{sym} = {printer(e)}")
    for (name, _, st), e in zip(outputs, reduced):
        st = max(st, stage_expr(e))
        lines.setdefault(st, []).append(f"{name} = {printer(e)}")
    return lines


class _FormCode:
    """The code of one function ``F_r`` from a :class:`~.forms.MatrixFreeForm`."""

    def __init__(self, form, r, backend, hyper_names, rename=None):
        self.form, self.r, self.backend, self.rename = form, r, backend, rename
        self.printer = literal_printer(backend)
        self.hyper = [str(s) for s in form.hyperparameters]
        self.uses_n = form.uses_n
        self.uses_theta = form.uses_theta
        self.needs_hvp = form.n_hvp > 0
        self.needs_d3 = form.n_d3 > 0
        clash = {str(c.symbol) for c in form.contractions} & set(hyper_names)
        if clash:
            raise ValueError(f"hyperparameter name(s) {sorted(clash)} clash with generated names")

    def positional(self):
        args = ["g"]
        if self.needs_hvp:
            args.append("hvp")
        if self.needs_d3:
            args.append("d3")
        if self.uses_theta:
            args.append("theta")
        return args

    def keywords(self):
        return (["n"] if self.uses_n else []) + self.hyper

    def body(self):
        form = self.form
        vsyms = [c.symbol for c in form.contractions]
        level = {}
        for c in form.contractions:
            deps = set().union(*(a.free_symbols for a in c.args)) & set(vsyms)
            level[c.symbol] = 1 + max((level[d] for d in deps), default=-1)
        taken = {"g", "theta", "n", "hvp", "d3"} | set(self.hyper) | {str(v) for v in vsyms}
        point = {G, theta_sym}
        if not form.contractions:
            # no contraction: one expression in g (F0 and the like)
            taken.add("F")
            lines = _staged_lines([("F", form.output, 0)], {}, self.printer, taken).get(0, [])
            result = lines.pop().split(" = ", 1)[1]
            ok = form.output.free_symbols & point
            return lines + [f"return {result}" if ok else f"return _full_like(g, {result})"]
        outputs = []       # (name, expr, stage)
        by_expr = {}       # one name per distinct argument
        calls = {}         # level -> call lines
        for c in form.contractions:
            lv = level[c.symbol]
            argnames = []
            for a, pre in zip(c.args, ("u", "w")):
                if a == G or a in vsyms:
                    argnames.append(str(a))
                    continue
                if a not in by_expr:
                    by_expr[a] = f"{pre}{str(c.symbol)[1:]}"
                    outputs.append((by_expr[a], a, lv))
                argnames.append(by_expr[a])
            cb = "hvp" if c.kind == "hvp" else "d3"
            what = f"H . {argnames[0]}" if c.kind == "hvp" else \
                f"T[{argnames[0]}, {argnames[1]}]"
            calls.setdefault(lv, []).append(
                f"{c.symbol} = _apply({cb}, {', '.join(argnames)}, like=g)  # {what}")
        final, named = [], {}
        for i, (c, mono) in enumerate(form.monomials):
            if c.free_symbols & (point | {n_sym}):
                if self.rename is not None:
                    c, used = self.rename(c)
                    named.update((name, value) for name, value in used if name not in named)
                outputs.append((f"coef{i}", c, 0))
                final.append((sp.Symbol(f"coef{i}"), mono))
            else:
                final.append((c, mono))
        # the code's own names (coef*, t*, m*, u*, w*, v*) are letters the display's names
        # never use, so a named coefficient cannot shadow one of them
        clash = {str(nm) for nm in named} & (taken | {nm for nm, _, _ in outputs})
        if clash:
            raise ValueError(f"named coefficients {sorted(clash)} clash with generated names")
        taken |= {nm for nm, _, _ in outputs} | {str(nm) for nm in named}
        # the named memory coefficients first, with their own temporaries (m0, m1, ...)
        lines = _staged_lines([(str(nm), v, 0) for nm, v in named.items()], {}, self.printer,
                              taken, prefix="m").get(0, [])
        taken |= {ln.split(" = ", 1)[0] for ln in lines}
        stage_of = {v: level[v] + 1 for v in vsyms}
        staged = _staged_lines(outputs, stage_of, self.printer, taken)
        for st in range(0, max(level.values()) + 2):
            lines += staged.get(st, [])
            lines += calls.get(st, [])
        result = sp.Add(*[c * m for c, m in final])
        lines.append(f"return {self.printer(result)}")
        return lines


def _signature(positional, keywords):
    return ", ".join(positional + (["*"] + keywords if keywords else []))


def _conversions(hyper, uses_n, uses_theta, indent="    "):
    out = [f"{indent}g = _array(g, 'g')"]
    if uses_theta:
        out.append(f"{indent}theta = _array(theta, 'theta', like=g)")
    if uses_n:
        out.append(f"{indent}n = _step(n)")
    for h in hyper:
        out.append(f"{indent}{h} = _scalar({h!r}, {h}, g)")
    return out


def module_source(flow, backend="numpy", stationary=False, command=None, verify_dims=(1, 2),
                  recognized=(), naming=None):
    """Source of the standalone module of ``flow`` (see the module docstring).

    ``stationary``: the ``n -> oo`` flow (otherwise exact in ``n``, and the functions take
    ``n=``); ``command``: the command line recorded in the docstring; ``verify_dims``: the
    dimensions of the symbolic checks run before emitting (``()`` skips them);
    ``recognized``: published forms proved equal (recorded in the docstring); ``naming``:
    ``(formula lines, rename)`` of the named memory coefficients (the docstring shows the
    lines, the code computes each named coefficient once under its name).  ``ValueError`` for
    an unknown backend or a failed check.
    """
    if backend not in CODEGEN_BACKENDS:
        raise ValueError(f"backend must be one of {CODEGEN_BACKENDS}, got {backend!r}")
    optimizer, order = flow.optimizer, flow.order
    forms = flow_forms(flow, stationary)
    checks = []
    for form in forms:
        if verify_dims:
            res = verify(form, verify_dims)
            bad = [what for what, ok in res if not ok]
            if bad:
                raise ValueError(f"{form.label}: symbolic check failed: {bad[0]}")
            checks.append((form.label, res))

    hyper = sorted({str(s) for f in forms for s in f.hyperparameters} |
                   ({"h"} if order >= 1 else set()))
    rename = naming[1] if naming else None
    codes = [_FormCode(f, r, backend, hyper, rename) for r, f in enumerate(forms)]
    uses_n = any(c.uses_n for c in codes)
    uses_theta = any(c.uses_theta for c in codes)
    needs_hvp = any(c.needs_hvp for c in codes)
    needs_d3 = any(c.needs_d3 for c in codes)
    ranges = {k: RANGES[k] for k in hyper if k in RANGES}
    for s in optimizer.states:
        if isinstance(s.decay, sp.Symbol) and str(s.decay) not in ranges:
            ranges[str(s.decay)] = (0, 1, True, False)
    lib = "NumPy" if backend == "numpy" else "torch"

    # ---- docstring
    title = (f"Modified flow of {optimizer.name} to order {order} "
             f"({'stationary, n -> oo' if stationary else 'exact in the step index n'}).")
    doc = [title, ""]
    doc += _wrap(f"Generated by modeq{' (' + command + ')' if command else ''} from the "
                 f"optimizer's recursion by backward error analysis. Standalone: needs only "
                 f"{lib}.", "", width=92)
    doc += ["", "Optimizer", *["    " + ln for ln in _describe_optimizer(optimizer, flow.notes("full", stationary))], ""]
    doc += ["Conventions",
            "    On [n h, (n+1) h) the iterates theta^(n) follow, to O(h^(order+1)) on a fixed",
            "    horizon, the flow  d theta/dt = -F(theta),  F = F0 + h F1 + h^2 F2 (up to the "
            "order).",
            "    g = grad E(theta); hvp(v) = (Hessian of E at theta) v; d3(u, w) = T[u, w] with",
            "    T[u, w]_j = sum_ik d_j d_i d_k E u_i w_k.  Everything else (products, powers, "
            "sqrt,",
            "    division) is componentwise.  g may have any shape (a flat parameter vector, a "
            "batch",
            "    of points as columns, a parameter tensor) as long as hvp/d3 return that shape.",
            "    Hyperparameters are keyword arguments (converted to g's dtype"
            + (" and device)." if backend == "torch" else ")."),
            ]
    if not stationary:
        doc.append("    n is the step index (n = 0 for the first step); the memory terms depend "
                   "on it.")
    doc += ["", "Formula (component j; v_k are the contractions, in evaluation order)"]
    for f in forms:
        for c in f.contractions:
            doc += _wrap(str(c), "    ")
        doc += _wrap(f"{f.label} = {f.output}", "    ")
    if naming:
        doc += ["", "The same, as `modeq derive` prints it (memory coefficients named once; the "
                "code", "computes them under these names)"]
        for line in naming[0]:
            doc += _wrap(line.strip(), " " * (len(line) - len(line.lstrip())))
    if recognized:
        doc += ["", "Published form (proved equal symbolically at generation time)"]
        for rec in recognized:
            doc += _wrap(f"{rec.term}: {rec.name} - {rec.source}: {rec.display}", "    ")
    if checks:
        doc += ["", "Checks run at generation time (all passed)"]
        for label, res in checks:
            for what, _ in res:
                doc += _wrap(f"{label}: {what}", "    ")
    doc += ["", "Functions"]
    for c in codes:
        doc.append(f"    F{c.r}({_signature(c.positional(), c.keywords())})")
    pos = ["g"] + (["hvp"] if needs_hvp else []) + (["d3"] if needs_d3 else []) \
        + (["theta"] if uses_theta else [])
    kws = (["n"] if uses_n else []) + hyper
    if order >= 1:
        doc.append(f"    correction({_signature(pos, kws)})   = h F1"
                   + (" + h^2 F2" if order >= 2 else ""))
    doc.append(f"    flow({_signature(pos, kws)})   = d theta/dt = -F")

    src = ['"""' + "\n".join(doc).replace('"""', "'''").replace("\\", "\\\\") + '\n"""',
           "import numpy" if backend == "numpy" else "import torch"]
    if any(f.expr.has(sp.Sum) for f in forms):
        src.append("import builtins")
    if any(f.expr.has(sp.Product) for f in forms):
        src.append("import math")
    src.append("")
    src.append(f"OPTIMIZER = {optimizer.name!r}")
    src.append(f"ORDER = {order}")
    src.append(f"STATIONARY = {stationary}")
    src.append(f"HYPERPARAMETERS = {tuple(hyper)!r}")
    names = [f"F{c.r}" for c in codes] + (["correction"] if order >= 1 else []) + ["flow"]
    src.append(f"__all__ = {names!r}")
    src.append(runtime_helpers(backend, ranges))

    for c in codes:
        src.append("")
        src.append(f"def F{c.r}({_signature(c.positional(), c.keywords())}):")
        src.append(f'    """{_first_line(c)}"""')
        src += _conversions(c.hyper, c.uses_n, c.uses_theta)
        body = c.body()
        if c.uses_n:
            body[-1] = f"return _finite_at_step({body[-1][len('return '):]}, g, n)"
        src += ["    " + ln for ln in body]
        src.append("")

    def call(c):
        args = ", ".join(c.positional() + [f"{k}={k}" for k in c.keywords()])
        return f"F{c.r}({args})"

    if order >= 1:
        src.append("")
        src.append(f"def correction({_signature(pos, kws)}):")
        src.append(f'    """h F1{" + h^2 F2" if order >= 2 else ""}: the terms beyond the '
                   f'limiting flow F0 (d theta/dt = -(F0 + correction))."""')
        src.append("    g = _array(g, 'g')")
        src.append("    step = _scalar('h', h, g)")
        terms = [f"step * {call(codes[1])}"]
        if order >= 2:
            terms.append(f"step * step * {call(codes[2])}")
        src.append(f"    return {' + '.join(terms)}")
        src.append("")
    src.append("")
    src.append(f"def flow({_signature(pos, kws)}):")
    src.append('    """d theta/dt = -F(theta) = -(F0 + h F1 + ...), up to the order."""')
    if order >= 1:
        cargs = ", ".join(pos + [f"{k}={k}" for k in kws])
        src.append(f"    return -({call(codes[0])} + correction({cargs}))")
    else:
        src.append(f"    return -{call(codes[0])}")
    src.append("")
    return "\n".join(src)


def _first_line(code):
    f = code.form
    if code.r == 0:
        return "F0: the limiting flow's field (d theta/dt = -F0 at order 0)."
    parts = [f"{c.kind.upper() if c.kind == 'hvp' else 'T'}" for c in f.contractions]
    return (f"F{code.r}: the h^{code.r} term of F ({parts.count('HVP')} Hessian-vector "
            f"product(s), {parts.count('T')} third-derivative contraction(s)).")


def _wrap(text, indent, width=96):
    lines = textwrap.wrap(text, width=width - len(indent), break_long_words=True,
                          break_on_hyphens=False, subsequent_indent="    " if indent else "")
    return [indent + ln for ln in lines]

"""Build the derivation document of a full-batch flow from the engine's intermediate results.

``build_document(optimizer, order, batch, stationary)`` returns an unverified
:class:`~modeq.proofs.document.Document`; :func:`document` also verifies it.

Full batch, exact in ``n`` (``stationary=False``): recursion; memory through the flow;
evaluated memory sums with named memory coefficients (``b_n``, ``r_n``, ...); the step in
powers of ``h``; the flow's own step; matching; ``F_0, F_1 (, F_2)``; the ``n -> oo`` limit;
the recognized published forms; for Adam-type flows the paper's correction, its perturbed
one-norm form and the regime table.  ``stationary=True`` derives directly with the stationary
memory (weight moments ``mu_m``), the route used for order 2 with memory.  Mini batch:
:mod:`modeq.proofs.build_mini`.

Every equation of the document is a quantity of the document and is established by checks
(:mod:`modeq.proofs.checks`) that read it back from the document.
"""
from __future__ import annotations

import sympy as sp

from modeq.symbolic import derive, optimizers as builtin
from modeq.symbolic.pipeline import derivation
from modeq.symbolic.display import grouped_terms
from modeq.symbolic.expansion import StateSeries, step_series
from modeq.symbolic.family import eps, n
from modeq.symbolic.operators import FULL, Grad, collect_fields
from modeq.symbolic.recognize import recognize
from modeq.symbolic.solve import flow_step_coefficients

from . import checks as C
from . import sections
from .document import Document
from .notation import FieldSymbol, find_radicand
from .printer import tex

__all__ = ["build_document", "document", "document_name"]

S_SYM = FieldSymbol("s", positive=True)
U_SYM = FieldSymbol("u")


def document_name(optimizer, order, batch="full", stationary=False):
    """File stem of a document: ``adam-full-order1``, ``adam-full-order2-stationary``, ..."""
    stem = f"{optimizer.name.replace('_', '-')}-{batch}-order{order}"
    return stem + ("-stationary" if stationary and batch == "full" else "")


def document(optimizer, order=1, batch="full", stationary=False):
    """Build and verify (raises :class:`~modeq.proofs.document.ProofError` on a failed check)."""
    return build_document(optimizer, order, batch, stationary).verify()


def build_document(optimizer, order=1, batch="full", stationary=False):
    if isinstance(optimizer, str):
        optimizer = builtin.get(optimizer)
    if batch == "mini":
        from .build_mini import build_mini
        return build_mini(optimizer, order)
    if batch != "full":
        raise ValueError(f"batch must be 'full' or 'mini', got {batch!r}")
    return _FullBuilder(optimizer, order, stationary).build()


# -- memory coefficients ---------------------------------------------------------------------

_MOMENT_NAMES = {("beta", 1): "b_n", ("rho", 1): "r_n", ("beta", 0): "a_n",
                 ("rho", 0): "a^{\\rho}_n", ("beta", 2): "b^{(2)}_n", ("rho", 2): "r^{(2)}_n"}


class MemoryCoefficient:
    """A named scalar ``sym(n)`` from the evaluated memory sums of one state."""

    def __init__(self, sym, value, state, moment, latex):
        self.sym, self.value, self.state, self.moment, self.latex = \
            sym, value, state, moment, latex

    def definition(self, k):
        """``sum_{k=0}^n w(n,k) (n-k)^m`` for a moment, else ``None``."""
        if self.moment is None:
            return None
        return sp.Sum(self.state.weight(n, k) * (n - k) ** self.moment, (k, 0, n))


def _moment_closed(state, m):
    k = sp.Dummy("k", integer=True, nonnegative=True)
    return C.nice_closed_form(C.evaluate_sums(sp.Sum(state.weight(n, k) * (n - k) ** m,
                                                     (k, 0, n))))


def _split_memory(coeff, decays):
    """``coeff = rest * mem`` with ``mem`` the factors depending only on ``n`` and decays."""
    allowed = set(decays) | {n}
    mem, rest = [], []
    for f in sp.Mul.make_args(sp.factor(coeff)):
        if f.is_number or f.free_symbols and f.free_symbols <= allowed:
            mem.append(f)
        else:
            rest.append(f)
    return sp.Mul(*rest), sp.Mul(*mem)


class _FullBuilder:
    """Collects the engine's intermediate results of one full-batch variant into a Document;
    the prose, equations and checks of each step are in :mod:`modeq.proofs.sections`."""

    def __init__(self, opt, order, stationary):
        self.opt, self.order, self.stationary = opt, order, stationary
        self.flow = derive(opt, order)
        self.d = derivation(opt, order, "full", stationary)
        self.memory = bool(opt.states)
        self.exact = not stationary and self.memory
        name = document_name(opt, order, "full", stationary)
        self.doc = Document(name=name, title=sections.title(opt, order, "full", stationary),
                            summary="")
        self.coeffs = []          # MemoryCoefficient
        self.names = {}           # symbol -> latex

    # -- helpers ------------------------------------------------------------------------------
    def t(self, e):
        return tex(e, self.names)

    def build(self):
        doc = self.doc
        d = self.d
        F0 = d.F[0]
        R = find_radicand(F0)
        doc.display.update(radicand=R, s=S_SYM if R is not None else None, u=None,
                           u_value=None, names=self.names, scalars=())
        if R is not None:
            doc.abbreviate(S_SYM, sp.sqrt(R), "the square root in the step",
                           latex=f"s_j = \\sqrt{{{self.t(R)}}}")
        if R is not None and not F0.has(n):
            # u = F0 abbreviates the operator argument (Adam, RMSProp: u = g/s)
            doc.abbreviate(U_SYM, F0, "the leading term F_0", latex="")
            doc.display.update(u=U_SYM, u_value=F0)
        sections.conventions(doc, self)
        self.recursion()
        if self.memory:
            self.memory_steps()
        self.step_expansion()
        self.flow_step()
        self.matching()
        if self.exact:
            self.stationary_limit()
        self.recognized()
        self.regimes()
        doc.summary = sections.summary(self)
        return doc

    # -- 1. the recursion ----------------------------------------------------------------------
    def recursion(self):
        sections.recursion(self.doc, self)

    # -- 2./3. memory ---------------------------------------------------------------------------
    def memory_steps(self):
        doc, d, opt = self.doc, self.d, self.opt
        decays = [s.decay for s in opt.states]
        # name the memory coefficients of the evaluated sums
        abbreviated = []
        generic = 0
        for i, ser in enumerate(d.states):
            st_ = ser.state
            terms = []
            for r, term in enumerate(ser.terms):
                new = sp.S.Zero
                for mono, coeff in grouped_terms(term):
                    rest, mem = _split_memory(coeff, decays)
                    if not mem.has(n) if self.exact else True:
                        new += rest * mem * mono
                        continue
                    sym = self._name_coefficient(st_, mem)
                    if sym is None:
                        generic += 1
                        label = "c_n" if generic == 1 else f"c^{{({generic})}}_n"
                        sym = sp.Symbol(f"c{generic}_n")
                        mem = C.nice_closed_form(mem)
                        self.coeffs.append(MemoryCoefficient(sym, mem, st_, None, label))
                        self.names[sym] = label
                        doc.abbreviate(sym, mem, f"memory coefficient in $S_{{{st_.name},{r}}}$",
                                       latex=label)
                        new += rest * sym * mono
                    else:
                        sym, ratio = sym
                        new += rest * ratio * sym * mono
                terms.append(collect_fields(new))
            abbreviated.append(StateSeries(st_, terms, ser.raw))
        self.series = abbreviated
        self.scalars = tuple(c.sym for c in self.coeffs)
        doc.display["scalars"] = self.scalars
        for i, ser in enumerate(abbreviated):
            for r, term in enumerate(ser.terms):
                doc.add(f"raw[{ser.state.name}]{r}", d.states[i].raw[r])
                doc.add(f"S[{ser.state.name}]{r}", term)
        sections.memory(doc, self)

    def _name_coefficient(self, state, mem):
        """``(symbol, ratio)`` if ``mem`` is a number times a weight moment of ``state``."""
        for c in self.coeffs:
            if c.state is state and c.moment is not None:
                ratio = sp.cancel(mem / c.value)
                if ratio.is_number:
                    return c.sym, ratio
        for m in range(0, self.order + 2):
            M = _moment_closed(state, m)
            if M == 0:
                continue
            ratio = sp.cancel(C.powers_of_step(mem / M))
            if ratio.is_number and ratio != 0:
                key = (str(state.decay), m)
                label = _MOMENT_NAMES.get(key, f"\\mu^{{({state.name})}}_{{{m},n}}")
                sym = sp.Symbol(f"mu_{state.name}_{m}_n")
                self.coeffs.append(MemoryCoefficient(sym, M, state, m, label))
                self.names[sym] = label
                self.doc.abbreviate(sym, M, f"weight moment {m} of ${state.name}$",
                                    latex=label)
                return sym, ratio
        return None

    # -- 4. the step in powers of h ------------------------------------------------------------
    def step_expansion(self):
        doc, opt = self.doc, self.opt
        series = getattr(self, "series", [])
        if not self.memory:
            self.series = []
            self.scalars = ()
        psi = step_series(opt, series, self.order, "full")
        for r, p in enumerate(psi):
            doc.add(f"psi{r}", p)
        sections.step_expansion(doc, self)

    # -- 5. the flow's own step ----------------------------------------------------------------
    def flow_step(self):
        doc = self.doc
        F = []
        for r in range(self.order + 1):
            if r == 0:
                F.append(doc.quantities["psi0"])
                continue
            Rr = flow_step_coefficients(F, r + 1)[r + 1]
            doc.add(f"R{r}", collect_fields(Rr))
            F.append(collect_fields(doc.quantities[f"psi{r}"] + Rr))
        self.F_abbr = F
        for r, f in enumerate(F):
            doc.add(f"F{r}", f)
        sections.flow_step(doc, self)

    # -- 6./7. matching and solution -----------------------------------------------------------
    def matching(self):
        sections.matching(self.doc, self)

    # -- 8. the stationary limit ---------------------------------------------------------------
    def stationary_limit(self):
        doc = self.doc
        limits = {}
        for c in self.coeffs:
            lim = C.stationary_value(c.value)
            limits[c.sym] = lim
            doc.add(f"lim:{c.sym.name}", lim)
        self.limits = limits
        finf = [collect_fields(doc.quantities[f"F{r}"].xreplace(limits))
                for r in range(self.order + 1)]
        if any(f.has(n) or f.has(sp.Sum) for f in finf):
            # n still enters through sums without closed form: no stationary limit to show
            for c in self.coeffs:
                del doc.quantities[f"lim:{c.sym.name}"]
            self.exact_limit = False
            st = doc.step(r"The stationary limit $n\to\infty$")
            st.text(r"The step index still enters through memory sums without a closed form, "
                    r"so no stationary limit is stated here; derive with the stationary memory "
                    r"(\texttt{--stationary}) for the $n\to\infty$ flow.")
            return
        self.exact_limit = True
        for r, f in enumerate(finf):
            doc.add(f"Finf{r}", f)
        sections.stationary(doc, self)

    # -- 9. recognized closed forms ------------------------------------------------------------
    def recognized(self):
        doc = self.doc
        self.recognitions = []
        variants = [(self.stationary or not self.memory, "F")]
        if self.exact:
            variants = [(False, "F")] + ([(True, "Finf")] if self.exact_limit else [])
        for stationary, prefix in variants:
            dims = (1, 2) if not stationary else (1, 2, 3)
            for rec in recognize(self.flow, stationary=stationary, dims=dims):
                key = f"rec{len(self.recognitions)}"
                doc.add(key, rec.closed_form)
                r = int(rec.term[1:])
                self.recognitions.append((rec, key, f"{prefix}{r}", stationary))
        sections.recognized(doc, self)

    # -- 10. regime table ----------------------------------------------------------------------
    def regimes(self):
        names = {s.name for s in self.opt.states}
        adam_like = names in ({"m", "v"}, {"v"}) and all(s.bias_correction
                                                          for s in self.opt.states) \
            and find_radicand(self.d.F[0]) == sp.expand(Grad(FULL) ** 2 + eps)
        if not adam_like or self.order < 1:
            return
        from .sections_adam import adam_paper_and_regimes
        adam_paper_and_regimes(self.doc, self)

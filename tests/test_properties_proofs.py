"""Property: the symbolic proofs reject wrong answers (no false "proved").

A derived term that a published form provably equals (GD's ``F1``, ``F2``, heavy-ball's and
Adam's/RMSProp's stationary ``F1``) is perturbed in one place — one additive term's
coefficient multiplied by ``1 + 1/q``, or a small rational multiple of one monomial added —
and every check that compares a derived term with a published one must then say "different":

* :func:`modeq.symbolic.recognize.recognize` (on a flow whose term is the perturbed one)
  returns no recognition for that term;
* :func:`~modeq.symbolic.prove.prove_equal` has a failed check;
* the document check :func:`modeq.proofs.checks.equal` (used by the derivation documents'
  "equals the published form" checks) returns False;
* the exact zero test :func:`~modeq.symbolic.prove.is_zero` of the lowered difference
  (generic ``g_i, H_ij, T_ijk``, ``p = 1``) is False, and
  :func:`~modeq.symbolic.prove.agree_at_random_points` disagrees.

The perturbation is nonzero by construction (a nonzero rational times a term of the derived
expression, or a monomial that is not identically zero), checked independently by evaluating
it at a random generic point.  The unperturbed term is proved equal (the checks can pass).
"""
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from modeq.proofs import checks as C
from modeq.symbolic import Optimizer, derive, optimizers
from modeq.symbolic.components import SymbolProvider, lower_vector
from modeq.symbolic.operators import D3, FULL, Grad, Hess
from modeq.symbolic.prove import agree_at_random_points, is_zero, prove_equal
from modeq.symbolic.recognize import recognize

G = Grad(FULL)
CASES = {"gd F1": (optimizers.gd, 1, 1), "gd F2": (optimizers.gd, 2, 2),
         "heavy_ball F1": (optimizers.heavy_ball, 1, 1), "rmsprop F1": (optimizers.rmsprop, 1, 1),
         "adam F1": (optimizers.adam, 1, 1)}
_REF = {}


def reference(name):
    """(flow, derived term, published form) — the form found and proved by recognize."""
    if name not in _REF:
        make, order, r = CASES[name]
        flow = derive(make(), order)
        recs = [x for x in recognize(flow, stationary=True, dims=(1,)) if x.term == f"F{r}"]
        assert recs and recs[0].proved, f"{name}: the unperturbed term is not proved"
        _REF[name] = (flow, flow.terms("full", True)[r], recs[0].closed_form)
    return _REF[name]


MONOMIALS = [G, G**3, Hess(FULL, G), G * Hess(FULL, G), D3(FULL, G, G), Hess(FULL, Hess(FULL, G)),
             Hess(FULL, G / sp.sqrt(G**2 + sp.Symbol("eps", positive=True))), G**2 * Hess(FULL, G)]


class _Flow:
    """A flow whose stationary term ``r`` is replaced (what recognize sees)."""

    _count = 0

    def __init__(self, flow, r, term):
        # a fresh declaration equal to the original but under a new name, so that nothing
        # remembered about the original's derivation answers for the perturbed term
        _Flow._count += 1
        o = flow.optimizer
        self.optimizer = Optimizer(f"{o.name}_perturbed_{_Flow._count}", o.states, o.step)
        self.order, self._r, self._term, self._flow = flow.order, r, term, flow

    def terms(self, batch="full", stationary=False):
        out = list(self._flow.terms(batch, stationary))
        out[self._r] = self._term
        return out


def nonzero_at_a_point(e):
    comps = lower_vector(e, SymbolProvider(1))
    syms = sorted(set().union(*(c.free_symbols for c in comps)), key=str)
    pt = {s: sp.Rational(3 + i, 7 + 2 * i) for i, s in enumerate(syms)}
    return any(sp.N(c.xreplace(pt).doit(), 30) != 0 for c in comps)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_documents_equality_accepts_the_published_forms(name):
    _, F, ref = reference(name)
    assert C.components_at_points(F, ref, (1, 2, 3))
    assert C.equal(F, ref, dims=(1, 2))


@settings(max_examples=examples(20))
@given(name=st.sampled_from(sorted(CASES)), kind=st.sampled_from(["coefficient", "monomial"]),
       q=st.integers(2, 50).flatmap(lambda q: st.sampled_from([q, -q])), data=st.data())
def test_a_perturbed_term_is_not_proved(name, kind, q, data):
    flow, F, ref = reference(name)
    if kind == "coefficient":
        terms = sp.Add.make_args(F)
        t = terms[data.draw(st.integers(0, len(terms) - 1))]
        delta = t / q                        # t (1 + 1/q) in place of t
    else:
        delta = data.draw(st.sampled_from(MONOMIALS)) / q
    assert nonzero_at_a_point(delta)
    wrong = F + delta
    r = CASES[name][2]
    assert not any(x.term == f"F{r}" for x in recognize(_Flow(flow, r, wrong), True, dims=(1,)))
    assert not all(ok for _, ok in prove_equal(wrong, ref, dims=(1,)))
    assert not C.equal(wrong, ref, dims=(1,))
    assert not C.components_at_points(wrong, ref, (1, 2))   # the document's fast stage
    assert not C.same_canonical(wrong, ref)                  # and its proof, each alone
    P = SymbolProvider(1)
    d = lower_vector(wrong - ref, P)
    assert not all(is_zero(c) for c in d)
    assert not agree_at_random_points(list(lower_vector(wrong, SymbolProvider(1))),
                                      list(lower_vector(ref, SymbolProvider(1))))

"""``operators.factored``: the derivation's canonical factoring of a scalar coefficient.

It stands for SymPy's two steps ``factor(cancel(c))`` (the oracle here), computed by ``factor``
alone where that gives the same form.  Coefficients are drawn by Hypothesis as the derivation
makes them: sums of products of decays, ``d^n``, ``n``, ``eps`` and square roots, over
denominators of the same kind (and powers of fractions with a symbolic exponent, NAdam's
``(24/25)^(n psi)``, where the two steps are kept).
"""
import sympy as sp
from conftest import examples
from hypothesis import given, settings, strategies as st

from modeq.symbolic.family import beta, eps, n, rho
from modeq.symbolic.operators import factored

psi = sp.Symbol("psi", positive=True)
ATOMS = [beta, rho, eps, n, beta ** n, rho ** (n + 1), sp.sqrt(eps + rho), 1 - beta,
         sp.Rational(24, 25) ** (n * psi)]
atom = st.sampled_from(ATOMS)
coefficient = st.integers(-3, 3).filter(bool)
monomial = st.builds(lambda c, xs: c * sp.Mul(*xs), coefficient,
                     st.lists(atom, min_size=0, max_size=3))
polynomial = st.lists(monomial, min_size=1, max_size=4).map(lambda ms: sp.Add(*ms))


@settings(max_examples=examples(40))
@given(terms=st.lists(st.tuples(polynomial, polynomial), min_size=1, max_size=3))
def test_factored_is_factor_of_cancel(terms):
    """``sum num_i / den_i``: the form of ``factor(cancel(c))``, exactly."""
    c = sp.Add(*[a / b for a, b in terms if b != 0])
    assert factored(c) == sp.factor(sp.cancel(c))

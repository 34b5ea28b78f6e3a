"""The order study's precondition, ``pipeline.require_stationary_flow``, against the
derivation it stands for: the stationary flow of order 1 (and 2) is refused by the cheap
check exactly when deriving that flow is refused, with the same reason.

Declarations: the built-ins and torch's variants (centered RMSprop is refused: ``v - a^2``
tends to 0 under a square root), and Hypothesis-drawn steps ``g / (eps + sqrt(c1 v - c2 m^2))``
and states reading states, smooth at the limit or not depending on ``c1, c2``.
"""
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from modeq.symbolic import EMA, Optimizer, beta, derive, eps, g, rho
from modeq.symbolic import optimizers as O
from modeq.symbolic.family import Refused
from modeq.symbolic.pipeline import require_stationary_flow


def _outcome(call):
    try:
        call()
    except Refused as why:
        return str(why)
    return "derived"


def _agree(opt, order):
    derived = _outcome(lambda: derive(opt, order=order).terms("full", stationary=True))
    checked = _outcome(lambda: require_stationary_flow(opt, order))
    assert checked == derived, opt.name
    return derived


BUILT_INS = {"adam": O.adam, "adam-eps-outside": lambda: O.adam("outside"),
             "rmsprop-no-bc": lambda: O.rmsprop(bias_correction=False),
             "heavy-ball": O.heavy_ball, "nadam": O.torch_nadam,
             "sgd-nesterov": lambda: O.torch_sgd(True, False, True),
             "rmsprop-momentum-l2": lambda: O.torch_rmsprop(momentum=True,
                                                            weight_decay="coupled"),
             "centered": lambda: O.torch_rmsprop(centered=True),
             "centered-momentum": lambda: O.torch_rmsprop(centered=True, momentum=True)}


@pytest.mark.parametrize("name", BUILT_INS)
def test_built_ins_refused_exactly_when_the_derivation_refuses(name):
    outcome = _agree(BUILT_INS[name](), 1)
    assert (outcome != "derived") == name.startswith("centered")


_MADE = {}


def _declaration(c1, c2, reads, normalized):
    key = (c1, c2, reads, normalized)
    if key not in _MADE:
        m = EMA(f"m{len(_MADE)}", decay=beta, of=g, normalized=normalized)
        v = EMA(f"v{len(_MADE)}", decay=rho, of=(g - m) ** 2 if reads else g ** 2)
        _MADE[key] = Optimizer(f"drawn{len(_MADE)}", [m, v],
                               g / (eps + sp.sqrt(c1 * v - c2 * m ** 2)))
    return _MADE[key]


@settings(max_examples=examples(6), deadline=None)
@given(c1=st.sampled_from([sp.Integer(1), sp.Integer(2)]),
       c2=st.sampled_from([sp.Integer(0), sp.Integer(1), sp.Rational(1, 2)]),
       reads=st.booleans(), normalized=st.booleans(), order=st.sampled_from([1, 2]))
def test_drawn_steps_refused_exactly_when_the_derivation_refuses(c1, c2, reads, normalized,
                                                                   order):
    _agree(_declaration(c1, c2, reads, normalized), order)


def test_a_vanishing_variance_under_the_root_is_refused_by_both():
    assert _agree(_declaration(sp.Integer(1), sp.Integer(1), False, True), 1) != "derived"
    assert _agree(_declaration(sp.Integer(2), sp.Integer(1), False, True), 1) == "derived"

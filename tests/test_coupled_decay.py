"""Coupled weight decay as a shifted loss (symbolic/coupled_decay.py).

The pipeline derives NAdam with coupled weight decay as plain NAdam on ``E + lam |theta|^2 / 2``
(its direct derivation at order 2 takes minutes).  Checked here against the direct derivation
of the coupled declaration, forcing the shift onto declarations it is not taken for (their
direct derivations are fast); NAdam's own is checked against its recursion (the order-2 series
oracle of test_minibatch_step_indexed.py) and against torch's iterates (test_torch_optim.py).
"""
import mpmath
import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st

from conftest import examples
from modeq.symbolic import cache, derive, optimizers as O, pipeline
from modeq.symbolic.coupled_decay import plain_of_coupled
from modeq.symbolic.family import g, theta
from modeq.symbolic.optimizers import lam

x, y = sp.symbols("x y")
E = sp.log(sp.cosh(x)) + (y - x / 2) ** 2 / 2 + x ** 2 / 4 + x * y ** 2 / 7
LOSSES = [E + (x + y) / 4, E - x / 4 + y ** 2 / 8, E - y / 4 + x * y / 8]
COUPLED = {
    "adam-l2": lambda: O.torch_adam("coupled"),
    "sgd-nesterov-maximize-l2": lambda: O.torch_sgd(True, False, True, "coupled", True),
    "rmsprop-momentum-l2": lambda: O.torch_rmsprop(momentum=True, weight_decay="coupled"),
    "heavy-ball-l2": lambda: O.with_weight_decay(O.heavy_ball(), "coupled"),
    "adam-l2-eps-inside": lambda: O.with_weight_decay(O.adam(), "coupled"),
}
VALUES = dict(beta="1/4", rho="3/5", eps="1/10", mu="3/10", lam="1/5", tau="1/3", h="1/16")


def _values(opt):
    names = {str(s) for s in opt.hyperparameters} | {"h"}
    return {k: v for k, v in VALUES.items() if k in names}


@settings(max_examples=examples(8), deadline=None)
@given(name=st.sampled_from(sorted(COUPLED)), order=st.integers(0, 1),
       batch=st.sampled_from(["full", "mini"]), N=st.integers(0, 4),
       point=st.tuples(st.integers(-6, 6), st.integers(-6, 6)))
def test_the_shifted_plain_derivation_is_the_direct_one(name, order, batch, N, point):
    """For declarations whose direct derivation is fast, the field of the plain declaration's
    derivation shifted to ``E + s lam |theta|^2 / 2`` equals the field of the direct
    derivation (both compiled, mpmath at 40 digits) at a random step and point, in full and
    mini batch."""
    direct, shifted = derive(COUPLED[name](), order), derive(COUPLED[name](), order)
    lookup, target = cache.lookup, shifted.optimizer
    with pytest.MonkeyPatch.context() as m:
        # the shift for this declaration, neither read from the disk cache nor stored there
        taken = []
        m.setattr(pipeline, "_derived_by_shift",
                  lambda opt: taken.append(opt) or plain_of_coupled(opt))
        m.setattr(cache, "lookup", lambda kind, opt, **key: cache.MISS if opt is target
                  else lookup(kind, opt, **key))
        m.setattr(cache, "store", lambda *args, **key: None)
        for variant in ("full", "mini"):     # the full-batch field may take the mini one
            shifted.derivation(variant)
        assert target in taken
    losses = E if batch == "full" else LOSSES
    vals = _values(direct.optimizer)
    with mpmath.workdps(40):
        theta = [mpmath.mpf(point[0]) / 4 + mpmath.mpf(1) / 3, mpmath.mpf(point[1]) / 4 - 1]
        got = shifted.lambdify(losses, [x, y], **vals)(N, theta)
        want = direct.lambdify(losses, [x, y], **vals)(N, theta)
        for a, b in zip(got, want):
            assert abs(a - b) <= mpmath.mpf(10) ** -36 * (1 + abs(b)), (a, b)


def test_plain_of_coupled_reads_the_sign_and_refuses_other_theta():
    """``g + lam theta`` -> ``(plain, lam)``; torch's maximize, ``-g + lam theta`` ->
    ``(plain, -lam)``; a parameter read otherwise (decoupled decay in the step) or a declaration
    without ``theta``: ``None``."""
    plain, c = plain_of_coupled(O.torch_nadam("coupled"))
    assert c == lam and not any(theta in s.of.free_symbols for s in plain.states)
    assert [s.of for s in plain.states] == [s.of for s in O.torch_nadam().states]
    plain, c = plain_of_coupled(O.torch_sgd(True, False, True, "coupled", True))
    assert c == -lam and plain.states[0].of == -g
    assert plain_of_coupled(O.torch_nadam("decoupled")) is None
    assert plain_of_coupled(O.torch_nadam()) is None

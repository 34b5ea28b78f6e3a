"""A memory long against the run: a failed fit is reported ``unresolved`` (pre-asymptotic), never
``fail``, while a wrong flow whose rates have settled still fails (numeric/study/judge.py).

The flows expand in ``h`` at a fixed step index; a state of decay ``d`` weighs ``M = 1/(1-d)``
past steps, so a run of ``N = T/h`` steps is asymptotic only once ``M`` is small against ``N``.
Adam with torch's default ``rho = 0.999`` (``M = 1000``) on runs of 8 to 64 steps measures
negative rates: the flows are right (they pass with ``rho = 1/3`` on the same problem), the
runs are too short to show it.
"""
import math

import sympy as sp
from hypothesis import given, settings, strategies as st

from conftest import examples
from modeq.numeric import order_study, problems
from modeq.numeric.study.judge import MEMORY_FRACTION, judge_order, memory_span
from modeq.numeric.study.result import Point
from modeq.symbolic import optimizers

P2 = problems.get("logcosh2d")
H4_7 = [sp.Rational(1, 2 ** k) for k in range(4, 8)]


def _adam_study(rho, T, hs):
    return order_study(optimizers.adam(), P2.loss, P2.params, P2.theta0, T=T, hs=hs,
                       orders=(0, 1), dps=20, beta="9/10", rho=rho, eps="1/100000000")


def test_adam_with_torchs_default_memory_is_pre_asymptotic():
    res = _adam_study("999/1000", sp.Rational(1, 2), H4_7)
    for r in (0, 1):
        o = res.orders[r]
        assert o.verdict == "unresolved", res.table()
        assert "pre-asymptotic" in o.reason and "outlasts the 64 steps" in o.reason, o.reason
        assert o.slope < r + 1 - 0.5, res.table()      # a fit that would have failed


def test_memory_span_reads_the_slowest_decay():
    assert memory_span(optimizers.adam(), {"beta": "9/10", "rho": "99/100", "eps": 1}) == \
        (0.99, 100.0)
    assert memory_span(optimizers.gd(), {}) is None
    assert memory_span(optimizers.heavy_ball(), {}) is None          # beta has no value


def _points(hs, steps, errors):
    return [Point(str(h), n, e, 0.0, 0.0, True, "", "ck45", 1, 0, 0.0)
            for h, n, e in zip(hs, steps, errors)]


@settings(max_examples=examples(200), deadline=None)
@given(order=st.sampled_from([0, 1, 2]), slope=st.floats(-1.0, 4.0),
       bend=st.floats(0.0, 2.0), span=st.floats(1.0, 5000.0), finest=st.integers(8, 4096))
def test_the_memory_rule(order, slope, bend, span, finest):
    """Errors ``h^slope (1 + bend h)`` over four halvings: with a memory shorter than
    ``MEMORY_FRACTION`` of the finest run the verdict is the one without memory; a memory that
    outlasts the finest run turns every failed fit into ``unresolved``; a pure power law (rates
    settled) that fails still fails unless the memory outlasts the run."""
    hs = [2.0 ** -k for k in range(4)]
    steps = [finest // 8, finest // 4, finest // 2, finest]
    errors = [h ** slope * (1 + bend * h) for h in hs]
    tol = 0.15 if order == 2 else 0.1
    plain = judge_order(order, _points(hs, steps, errors), tol)
    judged = judge_order(order, _points(hs, steps, errors), tol, memory=(1 - 1 / span, span))
    if plain.verdict == "pass":
        assert judged.verdict == "pass"
    elif span >= finest:
        assert judged.verdict == "unresolved" and "outlasts" in judged.reason
    elif span <= MEMORY_FRACTION * finest or bend == 0:
        assert (judged.verdict, judged.reason) == (plain.verdict, plain.reason)
    else:
        rates = [math.log(errors[i - 1] / errors[i]) / math.log(2) for i in (2, 3)]
        moving = abs(rates[1] - rates[0]) > tol / 2
        assert judged.verdict == ("unresolved" if moving else "fail"), (rates, judged.reason)

"""Properties: invariances of the modified flow, each checked against a second, independent
computation (exact SymPy fields at random rational points, compared to 50 digits).

* **Equal batches give the full-batch flow**: a mini batch of ``m`` copies of one loss, under
  any schedule, is the full-batch recursion, so at every step ``n`` the mini-batch field (its
  own derivation, memory sums grouped by batch) equals the full-batch field exact in ``n``.
* **Adam with beta = 0 is RMSProp**: with ``beta = 0`` Adam's ``m`` is the current gradient
  and its bias correction ``1/(1 - 0^(n+1)) = 1``, so the two recursions coincide and so must
  their (separately derived) flows, exact in ``n`` and stationary.
* **A rescaled loss** ``cE`` (``c > 0``).  Derived from the recursions, not from the code:
  - GD/SGD and heavy-ball: the step is linear in ``g``, so the iterates for ``cE`` with step
    ``h`` are those for ``E`` with step ``ch``; their flow in ``s = t c`` is
    ``d theta/ds = -sum_r (ch)^r F_r[E]``, hence ``d theta/dt = -sum_r c^(r+1) h^r F_r[E]``:
    ``F_r[cE] = c^(r+1) F_r[E]`` for every ``r``;
  - Adam/RMSProp, eps inside: ``c m/sqrt(c^2 v + eps) = m/sqrt(v + eps/c^2)`` with the same
    ``h``, so ``F_r[cE; eps] = F_r[E; eps/c^2]`` (as eps -> 0: scale invariance of ``F_0``);
    eps outside: ``c m/(c sqrt(v) + eps) = m/(sqrt(v) + eps/c)``, so
    ``F_r[cE; eps] = F_r[E; eps/c]``.
* **Permuting parameters permutes components**: for ``E'(theta) = E(theta_pi)`` (variables
  renamed) every componentwise optimizer has ``F[E'](theta)_{pi(i)} = F[E](theta_pi)_i``.
"""
import sympy as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import examples
from strategies import X, declarations, losses, points, schedules, value_strategy
from modeq.symbolic import beta, derive, eps, h as H_SYM, n as N_SYM, optimizers

DIGITS = 50


def values_of(opt, draw, order):
    syms = list(opt.hyperparameters) + ([H_SYM] if order >= 1 else [])
    return {s: draw(value_strategy(s)) for s in syms}


def valid_point(E, params, point, placement):
    """eps outside the root: the flow is valid only where no gradient component vanishes
    (docs/conventions.md §2.2)."""
    if placement != "outside":
        return True
    at = dict(zip(params, point))
    return all(sp.diff(E, x).xreplace(at) != 0 for x in params)


def evaluate(F, values, params, point):
    subs = dict(values)
    subs.update(zip(params, point))
    return [sp.N(e.xreplace(subs).doit(), DIGITS + 10) for e in F]


def assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        scale = max(1, abs(u), abs(v))
        assert abs(u - v) <= scale * sp.Float(10) ** (-DIGITS + 5), (u, v)


MINI = [optimizers.sgd, optimizers.heavy_ball, optimizers.rmsprop, optimizers.adam]


@settings(max_examples=examples(6))
@given(data=st.data(), order=st.sampled_from([0, 1]), p=st.integers(1, 2),
       m=st.integers(2, 3), n=st.integers(0, 4))
def test_equal_batches_give_the_full_batch_field(data, order, p, m, n):
    opt = data.draw(st.sampled_from(MINI))()
    params = list(X[:p])
    E = data.draw(losses(p, transcendental=False))
    sched = data.draw(schedules(m, n + 1))
    values = values_of(opt, data.draw, order)
    point = data.draw(points(p))
    flow = derive(opt, order)
    mini = flow.field([E] * m, params, n=n, schedule=sched)
    full = flow.field(E, params, n=n)
    assert_same(evaluate(mini, values, params, point), evaluate(full, values, params, point))


@settings(max_examples=examples(4))
@given(data=st.data(), order=st.sampled_from([0, 1]), p=st.integers(1, 2),
       stationary=st.booleans(), n=st.integers(0, 5),
       placement=st.sampled_from(["inside", "outside"]))
def test_adam_with_beta_zero_is_rmsprop(data, order, p, stationary, n, placement):
    params = list(X[:p])
    E = data.draw(losses(p))
    adam = derive(optimizers.adam(eps_placement=placement), order)
    rms = derive(optimizers.rmsprop(eps_placement=placement), order)
    values = values_of(rms.optimizer, data.draw, order)
    point = data.draw(points(p))
    assume(valid_point(E, params, point, placement))
    nn = None if stationary else n
    a = adam.field(E, params, n=nn, stationary=stationary)
    r = rms.field(E, params, n=nn, stationary=stationary)
    assert_same(evaluate(a, {**values, beta: sp.Integer(0)}, params, point),
                evaluate(r, values, params, point))


@settings(max_examples=examples(5))
@given(data=st.data(), order=st.sampled_from([0, 1]), p=st.integers(1, 2),
       c=st.sampled_from([sp.Rational(1, 3), sp.Rational(1, 2), 2, 3, sp.Rational(7, 4)]),
       which=st.sampled_from(["gd", "heavy_ball", "rmsprop", "adam", "adam_outside"]),
       stationary=st.booleans(), n=st.integers(0, 4))
def test_a_rescaled_loss_rescales_the_flow(data, order, p, c, which, stationary, n):
    opt = {"gd": optimizers.gd, "heavy_ball": optimizers.heavy_ball,
           "rmsprop": optimizers.rmsprop, "adam": optimizers.adam,
           "adam_outside": lambda: optimizers.adam(eps_placement="outside")}[which]()
    flow = derive(opt, order)
    params = list(X[:p])
    E = data.draw(losses(p))
    values = values_of(opt, data.draw, order)
    point = data.draw(points(p))
    assume(valid_point(E, params, point, "outside" if which == "adam_outside" else "inside"))
    nn = None if stationary else n
    scaled = evaluate(flow.field(c * E, params, n=nn, stationary=stationary), values, params,
                      point)
    if which in ("gd", "heavy_ball"):
        # -sum_r c^(r+1) h^r F_r[E]: the terms of E, each scaled by its own power of c
        terms = flow.terms("full", stationary)
        total = sp.Add(*[c ** (r + 1) * H_SYM ** r * t for r, t in enumerate(terms)])
        from modeq.symbolic.components import LossProvider, lower_vector
        ref = -lower_vector(total, LossProvider(E, params))
        if nn is not None:
            ref = ref.xreplace({N_SYM: nn})
        expected = evaluate(ref, values, params, point)
    else:
        k = 2 if which in ("rmsprop", "adam") else 1
        moved = {**values, eps: values[eps] / c ** k}
        expected = evaluate(flow.field(E, params, n=nn, stationary=stationary), moved, params,
                            point)
    assert_same(scaled, expected)


@settings(max_examples=examples(6))
@given(data=st.data(), order=st.sampled_from([0, 1]), p=st.integers(2, 3),
       stationary=st.booleans(), n=st.integers(0, 4))
def test_permuting_parameters_permutes_components(data, order, p, stationary, n):
    opt = data.draw(declarations(max_states=2))
    flow = derive(opt, order)
    params = list(X[:p])
    E = data.draw(losses(p))
    pi = data.draw(st.permutations(list(range(p))))
    E2 = E.xreplace({params[i]: params[pi[i]] for i in range(p)})   # E2(theta) = E(theta_pi)
    values = values_of(opt, data.draw, order)
    theta = data.draw(points(p))
    phi = [theta[pi[i]] for i in range(p)]
    nn = None if stationary else n
    F = evaluate(flow.field(E, params, n=nn, stationary=stationary), values, params, phi)
    F2 = evaluate(flow.field(E2, params, n=nn, stationary=stationary), values, params, theta)
    assert_same([F2[pi[i]] for i in range(p)], F)

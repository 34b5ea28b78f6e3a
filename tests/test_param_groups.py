"""Param groups of different settings: one declaration, each group's constants on its own
components (``from_torch_merged``, ``implicit_correction``, the mpmath fields of the order
studies, ``torch_order_study(..., split=...)``).

Independent references: torch's own iterates for each group's configuration (the merged
declaration with a group's values is that group's update), and a slow oracle for the
correction: the derived ``F1`` with every hyperparameter made a function of ``theta``
(``beta -> B(theta)``), lowered by components (``H.u`` sums ``H_ji u_i``, so component ``i``
of ``u`` reads ``B(x_i)``), then ``B(x_i)`` replaced by the value of component ``i``'s group:
no compiled kernel, no block evaluation.
"""
import inspect

import pytest
import sympy as sp
import torch
from conftest import examples
from hypothesis import given, settings, strategies as st

from modeq.numeric.iterate import iterates
from modeq.numeric.torch import implicit_correction
from modeq.numeric.torch_check import torch_iterates, torch_order_study
from modeq.numeric.torch_optim import from_torch_merged
from modeq.symbolic import derive
from modeq.symbolic import optimizers as O
from modeq.symbolic.components import LossProvider, lower_vector
from modeq.symbolic.family import ComponentConstant, Refused, theta

X = sp.symbols("x0 x1 x2")
E = (X[0] - 1) ** 2 / 2 + X[1] ** 4 / 4 + X[0] * X[1] * X[2] / 3 + sp.cos(X[2]) + X[2] ** 2
POINT = [sp.Rational(3, 2), sp.Rational(-4, 5), sp.Rational(7, 10)]
# two groups: parameter a = (x0, x1), parameter b = (x2,)
SPLIT = (2, 1)


def _torch_loss(a, b):
    x0, x1, x2 = a[0], a[1], b[0]
    return (x0 - 1) ** 2 / 2 + x1 ** 4 / 4 + x0 * x1 * x2 / 3 + torch.cos(x2) + x2 ** 2


def _oracle(declaration, group_values):
    """Stationary ``h F1`` at POINT, components ``0..1`` with group 0's values and ``2`` with
    group 1's."""
    F1 = derive(declaration, 1).terms("full", True)[1]
    names = sorted({k for v in group_values for k in v if k != "h"})
    symbols = {s for s in declaration.hyperparameters if str(s) in names}
    as_function = {s: sp.Function(f"B_{s}")(theta) for s in symbols}
    lowered = lower_vector(F1.xreplace(as_function), LossProvider(E, list(X)))
    owner = [0] * SPLIT[0] + [1] * SPLIT[1]
    per_component = {as_function[s].func(X[i]): sp.nsimplify(group_values[owner[i]][str(s)],
                                                              rational=True)
                     for s in symbols for i in range(3)}
    at = dict(zip(X, POINT))
    h = group_values[0]["h"]
    return [h * float(sp.N(e.xreplace(per_component).doit().xreplace(at), 30)) for e in lowered]


def _params():
    a = torch.tensor([float(v) for v in POINT[:2]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([float(POINT[2])], dtype=torch.float64, requires_grad=True)
    return a, b


GROUPED = {   # name: optimizer of two groups (a, b) with different settings, one lr
    "adamw-no-decay-group": lambda a, b: torch.optim.AdamW(
        [{"params": [a]}, {"params": [b], "weight_decay": 0.0, "betas": (0.5, 0.7),
                           "eps": 0.3}], lr=0.01, betas=(0.4, 0.6), eps=0.1, weight_decay=0.2),
    "sgd-momentum-in-one-group": lambda a, b: torch.optim.SGD(
        [{"params": [a], "momentum": 0.3, "dampening": 0.2},
         {"params": [b], "weight_decay": 0.2}], lr=0.05),
    "rmsprop-other-alpha": lambda a, b: torch.optim.RMSprop(
        [{"params": [a], "momentum": 0.3}, {"params": [b], "alpha": 0.8, "eps": 0.2}],
        lr=0.01, alpha=0.6, eps=0.1),
    "adam-layerwise-lr": lambda a, b: torch.optim.Adam(
        [{"params": [a]}, {"params": [b], "lr": 0.004}], lr=0.01, betas=(0.4, 0.6), eps=0.1),
    "sgd-layerwise-lr-and-momentum": lambda a, b: torch.optim.SGD(
        [{"params": [a], "lr": 0.02, "momentum": 0.3}, {"params": [b], "momentum": 0.5}],
        lr=0.05),
    "nadam-coupled-decay-in-one-group": lambda a, b: torch.optim.NAdam(
        [{"params": [a], "weight_decay": 0.2}, {"params": [b]}], lr=0.01, betas=(0.4, 0.6),
        eps=0.1, momentum_decay=4.0),
}


@pytest.mark.parametrize("name", sorted(GROUPED))
def test_the_correction_takes_each_groups_constants(name):
    a, b = _params()
    opt = GROUPED[name](a, b)
    decl, groups = from_torch_merged(opt)
    got = implicit_correction(opt, _torch_loss(a, b))
    flat = torch.cat([t.reshape(-1) for t in got]).tolist()
    want = _oracle(decl, [g.values for g in groups])
    assert flat == pytest.approx(want, rel=1e-10, abs=1e-14), (flat, want)
    # the groups differ: group 0's constants everywhere is another flow
    accepted = inspect.signature(type(opt)).parameters
    alone = type(opt)([a, b], **{k: v for k, v in opt.param_groups[0].items()
                                 if k in accepted and k != "params"})
    other = torch.cat([t.reshape(-1) for t in implicit_correction(alone, _torch_loss(a, b))])
    assert other.tolist() != pytest.approx(want, rel=1e-6)


@settings(max_examples=examples(4), deadline=None)
@given(b1=st.sampled_from([0.0, 0.3, 0.6]), b2=st.sampled_from([0.5, 0.9]),
       wd=st.sampled_from([0.0, 0.1]), eps=st.sampled_from([0.05, 0.4]))
def test_adamw_groups_of_any_betas_eps_and_decay(b1, b2, wd, eps):
    a, b = _params()
    opt = torch.optim.AdamW([{"params": [a]}, {"params": [b], "betas": (b1, b2), "eps": eps,
                                               "weight_decay": wd}],
                            lr=0.02, betas=(0.4, 0.6), eps=0.1, weight_decay=0.2)
    decl, groups = from_torch_merged(opt)
    got = torch.cat([t.reshape(-1) for t in implicit_correction(opt, _torch_loss(a, b))])
    assert got.tolist() == pytest.approx(_oracle(decl, [g.values for g in groups]),
                                         rel=1e-10, abs=1e-14)


# the GROUPED configurations whose full-batch fields have their memory sums in closed form (the
# others go through the step-indexed evaluator, which takes one value per constant)
CLOSED_FORM = ["adamw-no-decay-group", "sgd-momentum-in-one-group", "adam-layerwise-lr",
               "sgd-layerwise-lr-and-momentum"]


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_the_mpmath_field_takes_each_groups_constants_inside_the_contractions(name):
    """``flow.lambdify`` with one value per component (a list): its ``h F1`` (the order-1
    field minus the order-0 field) at POINT against the slow oracle."""
    a, b = _params()
    decl, groups = from_torch_merged(GROUPED[name](a, b))
    owner = [groups[0]] * SPLIT[0] + [groups[1]] * SPLIT[1]
    values = {}
    for k in groups[0].values:
        per = [grp.values[k] for grp in owner]
        values[k] = per[0] if len(set(per)) == 1 else per
    f0, f1 = (derive(decl, r).lambdify(E, list(X), backend="mpmath", stationary=True,
                                       **values) for r in (0, 1))
    got = [float(u - v) for u, v in zip(f0(0, POINT), f1(0, POINT))]
    assert got == pytest.approx(_oracle(decl, [grp.values for grp in groups]),
                                rel=1e-10, abs=1e-14)


def test_values_per_component_are_checked_by_name():
    a, b = _params()
    decl, groups = from_torch_merged(GROUPED["adamw-no-decay-group"](a, b))
    values = {k: v for k, v in groups[0].values.items() if k != "h"}
    flow = derive(decl, 0)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        flow.lambdify(E, list(X), **{**values, "beta": [0.4, 1.2, 0.4]})
    with pytest.raises(ValueError, match="2 values given, one per component needs 3"):
        flow.lambdify(E, list(X), **{**values, "beta": [0.4, 0.5]})
    with pytest.raises(ValueError, match="rho: one value per component is for the "
                                         "hyperparameters that differ between param groups"):
        derive(O.adam(), 0).lambdify(E, list(X), beta=0.4, rho=[0.5, 0.6, 0.7], eps=0.1)


x2, y2 = sp.symbols("x y")
E2 = (x2 - 3) ** 2 / 2 + (y2 + 2) ** 2 / 2 + x2 * y2 / 4 + x2 ** 4 / 24


@settings(max_examples=examples(6), deadline=None)
@given(kind=st.sampled_from(["AdamW", "SGD"]), first=st.sampled_from([0.0, 0.3, 0.5]),
       second=st.sampled_from([0.2, 0.6]), wd=st.sampled_from([0.0, 0.2]),
       ratio=st.sampled_from([1, 2, 4]))
def test_param_groups_order_study_against_torch(kind, first, second, wd, ratio):
    """Two groups (one component each) of other betas / momenta, weight decay and lr: the flows
    of the merged declaration, each group's constants on its component, against torch's
    float64 iterates: slopes 1 and 2 (measured on T = 1/2, h = 2^-6 .. 2^-9: AdamW 0.923 / 1.953
    with rho 0.6 in one group, 0.979 / 2.020 with 0.2; SGD 1.003 / 1.990.  From h = 2^-5 the
    first had order-0 rates 0.72, 0.86, 0.94, a fit of 0.897: not yet asymptotic)."""
    if kind == "AdamW":
        def make(ps, lr):
            return torch.optim.AdamW(
                [{"params": [ps[0]]}, {"params": [ps[1]], "betas": (first, 0.5),
                                       "weight_decay": wd, "lr": lr / ratio}],
                lr=lr, betas=(0.4, second), eps=0.1, weight_decay=0.2)
    else:
        def make(ps, lr):
            return torch.optim.SGD(
                [{"params": [ps[0]], "momentum": second, "dampening": 0.2},
                 {"params": [ps[1]], "momentum": first, "weight_decay": wd,
                  "lr": lr / ratio}], lr=lr)
    res = torch_order_study(make, E2, [x2, y2], [1, sp.Rational(1, 2)], T=sp.Rational(1, 2),
                            hs=["1/64", "1/128", "1/256", "1/512"], orders=(0, 1), split=(1, 1))
    for r, o in res.items():
        assert o.verdict == "pass", (kind, r, o.slope, o.rates, o.reason)


def test_param_groups_order_study_fails_with_one_groups_constants_everywhere():
    """The study can fail: torch runs two groups, the flows read group 0's constants for both
    components (``make_optimizer`` shows the flows one group only)."""
    def make(ps, lr):
        if all(float(p.detach().abs().sum()) == 0 for p in ps):   # the probe the flows read
            return torch.optim.AdamW(ps, lr=lr, betas=(0.4, 0.6), eps=0.1, weight_decay=0.2)
        return torch.optim.AdamW([{"params": [ps[0]]}, {"params": [ps[1]], "betas": (0.0, 0.5),
                                                        "weight_decay": 0.0}],
                                 lr=lr, betas=(0.4, 0.6), eps=0.1, weight_decay=0.2)
    res = torch_order_study(make, E2, [x2, y2], [1, sp.Rational(1, 2)], T=1,
                            hs=["1/16", "1/32", "1/64", "1/128"], orders=(0, 1), split=(1, 1))
    assert all(o.verdict == "fail" for o in res.values()), \
        {r: (o.slope, o.reason) for r, o in res.items()}


def test_param_groups_study_refuses_what_it_cannot_split():
    """RMSprop without bias correction has memory sums with no closed form in its F1: its
    fields take one value per constant, and the study says so; a tensor left out of the groups
    and a split that does not cover the parameters are refused by name."""
    def rms(ps, lr):
        return torch.optim.RMSprop([{"params": [ps[0]]}, {"params": [ps[1]], "alpha": 0.8}],
                                   lr=lr, alpha=0.6, eps=0.1)
    with pytest.raises(ValueError, match="one value per component"):
        torch_order_study(rms, E2, [x2, y2], [1, sp.Rational(1, 2)], T=sp.Rational(1, 2),
                          hs=["1/16", "1/32", "1/64"], orders=(1,), split=(1, 1))
    with pytest.raises(ValueError, match="left a tensor out"):
        torch_order_study(lambda ps, lr: torch.optim.SGD([ps[0]], lr=lr), E2, [x2, y2],
                          [1, 1], hs=["1/16", "1/32", "1/64"], orders=(0,), split=(1, 1))
    with pytest.raises(ValueError, match="split must be positive sizes summing to the 2"):
        torch_order_study(lambda ps, lr: torch.optim.SGD(ps, lr=lr), E2, [x2, y2], [1, 1],
                          hs=["1/16", "1/32", "1/64"], orders=(0,), split=(1, 2))


SINGLE = {   # a group's own configuration, as one optimizer: the merged declaration with that
    # group's values must be its update
    "sgd-plain-with-dampening-set": lambda p, lr: torch.optim.SGD(p, lr=lr, dampening=0.2),
    "sgd-dampened": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.3, dampening=0.2),
    "adamw-no-decay": lambda p, lr: torch.optim.AdamW(p, lr=lr, betas=(0.4, 0.6), eps=0.1,
                                                      weight_decay=0.0),
    "rmsprop-no-momentum": lambda p, lr: torch.optim.RMSprop(p, lr=lr, alpha=0.6, eps=0.1),
}
PARTNER = {   # another group that forces the merged declaration to have the switched-off term
    "sgd-plain-with-dampening-set": {"momentum": 0.3, "dampening": 0.2, "weight_decay": 0.2},
    "sgd-dampened": {"weight_decay": 0.2},
    "adamw-no-decay": {"weight_decay": 0.2},
    "rmsprop-no-momentum": {"momentum": 0.3, "weight_decay": 0.1},
}


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_the_merged_declaration_with_a_groups_values_is_that_groups_update(name):
    """torch's own iterates of the group's configuration alone (float64) against modeq's
    iterates of the merged declaration with that group's values: a term switched off by a
    constant (decay 0, momentum 0 with a dampening set, as torch ignores it) stays off."""
    y = sp.Symbol("y")
    loss = (X[0] - 3) ** 2 / 2 + (y + 2) ** 2 / 2 + X[0] * y / 4 + X[0] ** 4 / 24
    w, extra = (torch.zeros(2, dtype=torch.float64, requires_grad=True),
                torch.zeros(1, dtype=torch.float64, requires_grad=True))
    opt = SINGLE[name]([w], 0.05)
    opt.add_param_group({"params": [extra], **PARTNER[name]})
    decl, groups = from_torch_merged(opt)
    values = {k: v for k, v in groups[0].values.items() if k != "h"}
    ours = iterates(decl, loss, [X[0], y], [1, sp.Rational(1, 2)], sp.Rational(1, 20), 10,
                    dps=30, **values)
    ref = torch_iterates(SINGLE[name], loss, [X[0], y], [1, sp.Rational(1, 2)], 0.05, 10)
    for r, o in zip(ref, ours):
        assert max(abs(float(u) - float(v)) for u, v in zip(r, o)) < 1e-12, (name, decl)


@pytest.mark.parametrize("first, second, match", [
    ({"momentum": 0.3, "nesterov": True}, {"momentum": 0.3}, "differ in nesterov"),
    ({}, {"maximize": True}, "differ in maximize"),
])
def test_groups_that_differ_in_kind_are_refused_with_the_reason(first, second, match):
    a, b = _params()
    opt = torch.optim.SGD([{"params": [a], **first}, {"params": [b], **second}], lr=0.1)
    with pytest.raises(Refused, match=match):
        from_torch_merged(opt)
    with pytest.raises(Refused, match=match):
        implicit_correction(opt, _torch_loss(a, b))


def test_a_parameter_outside_the_groups_is_refused_when_the_groups_differ():
    a, b = _params()
    opt = GROUPED["adamw-no-decay-group"](a, b)
    stray = torch.ones(1, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"params\[2\] is in no param group"):
        implicit_correction(opt, _torch_loss(a, b) + (stray ** 2).sum(), [a, b, stray])


# -------------------------------------- the derivation with constants per component, by series
def _per_component_iterates(opt, steps, D, values):
    """The recursion written out per component ``j`` with its own constants ``values[j]``
    (states from zero, bias correction ``1 - d^(k+1)``) on the loss ``SERIES_LOSS``: the
    iterates as series in ``h`` to degree ``D``."""
    from series_oracle import TPS, _compile, _number
    from modeq.symbolic import g as G, theta as TH
    x, y = SERIES_PARAMS
    grad = _compile([x, y], [sp.diff(SERIES_LOSS, p) for p in (x, y)], False)
    hs = TPS([0, 1], D)
    th = [TPS([_number(t, False)], D) for t in SERIES_START]
    acc = {s.name: [None, None] for s in opt.states}
    out = []
    for k in range(steps):
        gk = grad(*th)
        new = []
        for j in range(2):
            sub, hats = values[j], {}
            for s in opt.states:
                of = _compile([G, TH], s.of.xreplace(sub), False)
                d = _number(s.decay.xreplace(sub), False)
                c = _number(s.scale.xreplace(sub), False)
                a = c * of(gk[j], th[j])
                acc[s.name][j] = a if acc[s.name][j] is None else d * acc[s.name][j] + a
                hats[s] = acc[s.name][j] / (1 - d ** (k + 1)) if s.bias_correction \
                    else acc[s.name][j]
            step = _compile([*opt.states, G, TH], opt.step.xreplace(sub), False)
            new.append(th[j] - hs * step(*[hats[s] for s in opt.states], gk[j], th[j]))
        th = new
        out.append(th)
    return out


SERIES_PARAMS = sp.symbols("x y")
SERIES_START = [sp.Rational(1, 2), sp.Rational(1, 3)]       # no gradient component 0
SERIES_LOSS = ((SERIES_PARAMS[0] - 1) ** 2 / 2 + SERIES_PARAMS[1] ** 2 / 2
               + SERIES_PARAMS[0] * SERIES_PARAMS[1] / 3 + SERIES_PARAMS[0] ** 3 / 5
               + SERIES_PARAMS[1] ** 4 / 4)


class _PerComponentField:
    """``flow.field`` of a flow with per-component constants, lowered by components with
    component ``j``'s values (the oracle of this module's docstring), exact in ``n``."""

    def __init__(self, flow, values):
        self.flow, self.values = flow, values

    def field(self, E, params, n=None, **_):
        from modeq.symbolic.family import n as n_sym
        F = self.flow.F("full").xreplace({n_sym: n})
        consts = {s for s in F.atoms(ComponentConstant)}
        F = F.xreplace({s: v for s, v in self.values[0].items() if s not in consts})
        as_function = {s: sp.Function(f"B_{s}")(theta) for s in consts}
        lowered = lower_vector(F.xreplace(as_function), LossProvider(E, list(params)))
        per = {as_function[s].func(params[j]): self.values[j][s] for s in consts
               for j in range(2)}
        return [-e.xreplace(per).doit() for e in lowered]


SERIES_CASES = {   # declaration, per-component names, values of the two components
    "adamw-decay-beta-eps": (lambda: O.torch_adam("decoupled"), ["lam", "beta", "eps"], [
        {"lam": sp.Rational(1, 5), "beta": sp.Rational(1, 2), "eps": sp.Integer(1)},
        {"lam": sp.Rational(3, 2), "beta": sp.Rational(1, 4), "eps": sp.Rational(1, 3)}]),
    # other lr per group: the step times lr_scale (torch's lr multiplies the whole update)
    "sgd-momentum-lr": (lambda: _scaled(O.torch_sgd(momentum=True)), ["mu", "lr_scale"], [
        {"mu": sp.Rational(3, 10), "lr_scale": sp.Integer(1)},
        {"mu": sp.Rational(7, 10), "lr_scale": sp.Rational(2, 5)}]),
}


def _scaled(opt):
    from modeq.numeric.torch_optim import LR_SCALE
    from modeq.symbolic.family import Optimizer
    return Optimizer(opt.name, opt.states, LR_SCALE * opt.step)


@pytest.mark.parametrize("name", sorted(SERIES_CASES))
def test_a_flow_with_constants_per_component_agrees_with_the_recursion_through_h_squared(name):
    """A declaration with some constants per component (param groups of other settings),
    order 1 exact in ``n``: the recursion run per component with its own constants and the
    flow (per-component lowering) agree through ``h^2`` and differ at ``h^3`` over 3 steps; with
    the constants pulled out of the contractions (one value for all) they differ at ``h^2``."""
    import mpmath
    from series_oracle import compare, flow_series
    from modeq.symbolic.family import h, per_component
    mpmath.mp.dps = 60
    make, names, named = SERIES_CASES[name]
    opt = per_component(make(), names)
    values = [{s: v[str(s)] if str(s) in v else sp.Rational(3, 4)
               for s in opt.hyperparameters} for v in named]
    it = _per_component_iterates(opt, 3, 3, values)
    fs = flow_series(_PerComponentField(derive(opt, 1), values), SERIES_LOSS,
                     list(SERIES_PARAMS), SERIES_START, 3, 3, {}, h, exact=False)
    assert compare(it, fs, tol=mpmath.mpf(10) ** -45) == 3


def test_an_exact_in_n_flow_whose_memory_weight_is_per_component_is_refused_with_the_reason():
    """Momentum per group, the flow exact in ``n``: ``sum_k mu_j^(n-k) (H.u_k)_j`` has no form
    ``H.(vector)`` (the weight is the outer component's), so the matrix-free path says so; the
    stationary flow of the same groups is evaluated."""
    a, b = _params()
    opt = GROUPED["sgd-layerwise-lr-and-momentum"](a, b)
    with pytest.raises(ValueError, match="sum over past steps multiplies a contraction"):
        implicit_correction(opt, _torch_loss(a, b), stationary=False, n=3)
    assert implicit_correction(opt, _torch_loss(a, b))[1].shape == (1,)

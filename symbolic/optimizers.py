"""Built-in optimizers, each a short declaration in the EMA family (``family.py``).

Hyperparameters are the SymPy symbols ``beta`` (gradient momentum), ``rho`` (squared-gradient
momentum) and ``eps`` from :mod:`modeq.symbolic.family`; the step size ``h`` multiplies the step.
"""
from __future__ import annotations

import sympy as sp

from .family import EMA, Optimizer, beta, eps, g, n, rho, step_product, theta

__all__ = ["gd", "sgd", "heavy_ball", "rmsprop", "adam", "BUILTINS", "get",
           "with_weight_decay", "torch_sgd", "torch_adam", "torch_nadam", "torch_rmsprop",
           "mu", "tau", "lam", "psi", "WEIGHT_DECAY"]

#: SGD's momentum and dampening, a weight decay, NAdam's momentum decay
mu = sp.Symbol("mu", positive=True)
tau = sp.Symbol("tau", positive=True)
lam = sp.Symbol("lam", positive=True)
psi = sp.Symbol("psi", positive=True)
WEIGHT_DECAY = (None, "coupled", "decoupled")

EPS_PLACEMENTS = ("inside", "outside")

_OUTSIDE_NOTE = ("epsilon outside the square root (torch.optim.Adam): the step "
                 "m/(sqrt(v)+eps) is smooth only where no gradient component vanishes, so the "
                 "modified flow is valid only away from g_j = 0")


def _eps_step(numerator, v, placement):
    if placement not in EPS_PLACEMENTS:
        raise ValueError(f"eps_placement must be one of {EPS_PLACEMENTS}, got {placement!r}")
    if placement == "inside":
        return numerator / sp.sqrt(v + eps)
    return numerator / (sp.sqrt(v) + eps)


def gd():
    """Gradient descent ``theta <- theta - h g`` (SGD when each step has its own loss)."""
    return Optimizer("gd", states=[], step=g)


def sgd():
    """Stochastic gradient descent: the same declaration as :func:`gd`, used with mini batches."""
    return Optimizer("sgd", states=[], step=g)


def heavy_ball():
    """Heavy-ball momentum ``u <- beta u + g``, ``theta <- theta - h u`` (unnormalised, u = 0)."""
    u = EMA("u", decay=beta, of=g, normalized=False, bias_correction=False)
    return Optimizer("heavy_ball", states=[u], step=u)


def rmsprop(eps_placement="inside", bias_correction=True):
    """RMSProp: Adam with ``beta = 0``: ``v <- rho v + (1-rho) g^2``, step ``g/sqrt(v_hat+eps)``."""
    v = EMA("v", decay=rho, of=g**2, normalized=True, bias_correction=bias_correction)
    notes = _OUTSIDE_NOTE if eps_placement == "outside" else ""
    return Optimizer("rmsprop", states=[v], step=_eps_step(g, v, eps_placement), notes=notes)


def adam(eps_placement="inside", bias_correction=True):
    """Adam.  ``eps_placement="inside"``: the paper's step ``m_hat/sqrt(v_hat + eps)``
    (Cattaneo, Klusowski, Shigida 2024).  ``"outside"``: torch.optim.Adam's
    ``m_hat/(sqrt(v_hat) + eps)``, whose modified flow is smooth, hence valid, only where no
    gradient component is zero."""
    m = EMA("m", decay=beta, of=g, normalized=True, bias_correction=bias_correction)
    v = EMA("v", decay=rho, of=g**2, normalized=True, bias_correction=bias_correction)
    notes = _OUTSIDE_NOTE if eps_placement == "outside" else ""
    name = "adam" if eps_placement == "inside" else "adam_eps_outside"
    if not bias_correction:
        name += "_no_bias_correction"
    return Optimizer(name, states=[m, v], step=_eps_step(m, v, eps_placement), notes=notes)


BUILTINS = {"gd": gd, "sgd": sgd, "heavy_ball": heavy_ball, "rmsprop": rmsprop, "adam": adam}


def get(name, eps_placement="inside", bias_correction=True):
    """A built-in by name (the names every ``modeq`` subcommand takes)."""
    key = name.replace("-", "_")
    if key not in BUILTINS:
        raise ValueError(f"unknown optimizer {name!r}; built-ins: {sorted(BUILTINS)}")
    if key in ("adam", "rmsprop"):
        return BUILTINS[key](eps_placement=eps_placement, bias_correction=bias_correction)
    return BUILTINS[key]()


# --------------------------------------------------------------------------------------------
# Parameter terms and torch.optim's update rules, as declarations (docs/conventions.md §2.4)
# --------------------------------------------------------------------------------------------

def rebuild(optimizer, name, of_map, step_map, extra_step=0, notes=None):
    """A copy of ``optimizer`` with every input and the step rewritten (states rebuilt in
    dependency order, so that a state reading another reads the rebuilt one)."""
    new = {}
    for s in optimizer.states:
        of = of_map(s.of).xreplace(new)
        new[s] = EMA(s.name, s.decay, of, s.normalized, s.bias_correction, s.custom_scale,
                     s.start)
    step = step_map(optimizer.step).xreplace(new) + extra_step
    return Optimizer(name, [new[s] for s in optimizer.states], step,
                     notes=optimizer.notes if notes is None else notes)


def with_weight_decay(optimizer, kind, lam=lam):
    """``optimizer`` with a weight decay ``lam``: ``"coupled"`` (L2, torch's
    ``weight_decay`` of SGD/Adam/RMSprop: ``g + lam*theta`` replaces ``g`` in every input and in
    the step) or ``"decoupled"`` (torch's AdamW: ``theta <- theta (1 - h lam)`` before the
    update, i.e. ``+ lam*theta`` in the step).

    >>> with_weight_decay(gd(), "coupled").step
    g + lam*theta
    """
    if kind == "coupled":
        sub = lambda e: e.xreplace({g: g + lam * theta})  # noqa: E731
        return rebuild(optimizer, optimizer.name + "_l2", sub, sub)
    if kind == "decoupled":
        same = lambda e: e  # noqa: E731
        return rebuild(optimizer, optimizer.name + "_decoupled_wd", same, same, lam * theta)
    raise ValueError(f"weight decay must be 'coupled' or 'decoupled', got {kind!r}")


def _input(maximize, weight_decay):
    """The gradient torch feeds to the states: ``-g`` when maximizing, ``+ lam*theta`` for a
    coupled weight decay."""
    x = -g if maximize else g
    return x + lam * theta if weight_decay == "coupled" else x


def _check_wd(weight_decay, allowed=WEIGHT_DECAY):
    if weight_decay not in allowed:
        raise ValueError(f"weight_decay must be one of {allowed}, got {weight_decay!r}")


def torch_sgd(momentum=False, dampening=False, nesterov=False, weight_decay=None,
              maximize=False):
    """``torch.optim.SGD``: ``d = -/+g + lam theta``; with momentum ``b <- mu b + (1-tau) d``
    (the first update stores ``d`` itself), ``theta <- theta - h (d + mu b)`` (Nesterov) or
    ``theta - h b``.  The flags say which terms exist; ``mu``, ``tau``, ``lam`` stay symbols."""
    _check_wd(weight_decay, (None, "coupled"))
    if (dampening or nesterov) and not momentum:
        raise ValueError("dampening and nesterov need momentum")
    if nesterov and dampening:
        raise ValueError("torch's Nesterov momentum requires zero dampening")
    d = _input(maximize, weight_decay)
    if not momentum:
        return Optimizer("torch_sgd", [], d)
    if dampening:
        b = EMA("b", decay=mu, of=d, normalized=False, scale=1 - tau, start="input")
    else:
        b = EMA("b", decay=mu, of=d, normalized=False)
    return Optimizer("torch_sgd", [b], d + mu * b if nesterov else b)


def torch_adam(weight_decay=None, maximize=False):
    """``torch.optim.Adam`` / ``AdamW``: ``m_hat / (sqrt(v_hat) + eps)`` (eps outside, torch's
    bias corrections ``1 - beta^(n+1)``, ``1 - rho^(n+1)``), weight decay coupled (Adam) or
    decoupled (AdamW, ``theta <- theta (1 - h lam)``)."""
    _check_wd(weight_decay)
    d = _input(maximize, weight_decay)
    m = EMA("m", decay=beta, of=d, normalized=True, bias_correction=True)
    v = EMA("v", decay=rho, of=d**2, normalized=True, bias_correction=True)
    step = m / (sp.sqrt(v) + eps)
    if weight_decay == "decoupled":
        step += lam * theta
    name = "torch_adamw" if weight_decay == "decoupled" else "torch_adam"
    return Optimizer(name, [m, v], step, notes=_OUTSIDE_NOTE)


def nadam_momentum(t):
    """NAdam's momentum schedule ``mu_t = beta (1 - 0.96^(t psi) / 2)`` (torch's constant 0.96
    taken as 24/25)."""
    return beta * (1 - sp.Rational(24, 25) ** (t * psi) / 2)


def torch_nadam(weight_decay=None, maximize=False):
    """``torch.optim.NAdam``: with ``t = n + 1``, ``P_t = mu_1 ... mu_t``,

        theta <- theta - h [ (1-mu_t)/(1-P_t) d + mu_{t+1}/(1-P_t mu_{t+1}) m ] / (sqrt(v_hat)+eps),

    ``m`` the (not bias-corrected) EMA of ``d``, ``v_hat`` the bias-corrected EMA of ``d^2``;
    exact in ``n`` (the products stay unevaluated until ``n`` has a value)."""
    _check_wd(weight_decay)
    d = _input(maximize, weight_decay)
    i = sp.Symbol("i", integer=True, positive=True)
    m = EMA("m", decay=beta, of=d, normalized=True)
    v = EMA("v", decay=rho, of=d**2, normalized=True, bias_correction=True)
    P = step_product(nadam_momentum(i), i, 1, n + 1)
    mu_t, mu_next = nadam_momentum(n + 1), nadam_momentum(n + 2)
    step = ((1 - mu_t) / (1 - P) * d + mu_next / (1 - P * mu_next) * m) / (sp.sqrt(v) + eps)
    if weight_decay == "decoupled":
        step += lam * theta
    return Optimizer("torch_nadam", [m, v], step, notes=_OUTSIDE_NOTE)


def torch_rmsprop(centered=False, momentum=False, weight_decay=None, maximize=False):
    """``torch.optim.RMSprop`` (``rho`` is torch's ``alpha``, no bias correction):
    ``v <- rho v + (1-rho) d^2``, centered ``a <- rho a + (1-rho) d`` and ``sqrt(v - a^2)``,
    ``r = d/(sqrt(.) + eps)``; with momentum ``b <- mu b + r`` (an input that reads ``v``, ``a``)
    and ``theta <- theta - h b``, else ``theta - h r``."""
    _check_wd(weight_decay, (None, "coupled"))
    d = _input(maximize, weight_decay)
    v = EMA("v", decay=rho, of=d**2, normalized=True)
    states = [v]
    if centered:
        a = EMA("a", decay=rho, of=d, normalized=True)
        states.append(a)
        r = d / (sp.sqrt(v - a**2) + eps)
    else:
        r = d / (sp.sqrt(v) + eps)
    notes = ("epsilon outside the square root (torch.optim.RMSprop): the step is smooth only "
             "where no gradient component vanishes")
    if centered:
        notes += ("; centered: the variance v - a^2 of a constant gradient tends to 0, so the "
                  "flow exists exact in n only (no stationary form), on horizons where rho^n "
                  "is not small; there the memory spans the horizon, so the expansion in h is "
                  "not uniform on a fixed horizon (F2^(n) grows like rho^(-n/2)): right per "
                  "step (series oracle), refused by full-batch order studies; in mini batch "
                  "v - a^2 tends to the batches' variance and the studies hold")
    if momentum:
        b = EMA("b", decay=mu, of=r, normalized=False)
        return Optimizer("torch_rmsprop", states + [b], b, notes=notes)
    return Optimizer("torch_rmsprop", states, r, notes=notes)

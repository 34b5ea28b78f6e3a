"""From a configured ``torch.optim`` optimizer to the exact declaration of the update it performs.

:func:`from_torch` reads an optimizer's param groups and returns ``(declaration, values)``: the
:class:`~modeq.symbolic.Optimizer` built from torch's own update rule
(:mod:`modeq.symbolic.optimizers`, ``torch_*``) and the numeric hyperparameters by name, with
``h`` = ``lr``.  Supported (docs/conventions.md §2.4):

* ``SGD``: momentum, dampening (torch's first buffer is the gradient itself), nesterov,
  weight_decay (coupled), maximize;
* ``Adam``: eps outside the root, torch's bias corrections, coupled weight decay, and
  ``decoupled_weight_decay=True``; ``AdamW`` (decoupled decay ``theta <- theta (1 - lr lam)``);
* ``NAdam``: the momentum schedule ``mu_t`` and its products exact in the step index,
  weight_decay coupled or ``decoupled_weight_decay``;
* ``RMSprop``: alpha, eps (outside the root, no bias correction), centered, momentum,
  weight_decay.  Centered: derived; full-batch order studies refuse it (its expansion in ``h``
  is not uniform on a fixed horizon, :func:`modeq.numeric.study.fields.require_uniform_expansion`),
  mini-batch ones hold where the batch gradients differ in every component
  (:func:`~modeq.numeric.study.fields.require_batch_spread`);
* any ``torch.optim.Optimizer`` with a method ``modeq_declaration(group) -> (declaration,
  values)`` that says which update it performs (modeq's own
  :class:`~modeq.numeric.torch.AdamEpsInside`, the paper's Adam with ``eps`` inside the root).

Refused, with the reason (:class:`~modeq.symbolic.family.Refused`): ``amsgrad=True`` and
``Adamax`` (a running max), ``RAdam`` (the rectification switches the update on a threshold of
the step index), ``Adagrad`` (an unbounded running sum), ``Rprop``/``LBFGS``/others, a
learning-rate scheduler (the step size must be constant: one of ``lr_scheduler``'s schedulers
attached to the optimizer, which leaves ``initial_lr`` in its groups, or passed instead of the
optimizer; ``ReduceLROnPlateau`` attached leaves no trace and is not detected: the current
``lr`` is read), a tensor ``lr`` of more than one element, an empty param group.  Param groups
whose hyperparameters differ are returned one by one by :func:`from_torch_groups`, or as one
declaration with the differing constants per component by :func:`from_torch_merged` (one
``lr``; :func:`~modeq.numeric.implicit_bias.implicit_correction` uses it).
"""
from __future__ import annotations

import math

import sympy as sp
import torch

from modeq.symbolic import optimizers as O
from modeq.symbolic.family import Optimizer, Refused

__all__ = ["from_torch", "from_torch_groups", "from_torch_merged", "TorchGroup",
           "SUPPORTED", "REFUSED"]

SUPPORTED = ("SGD", "Adam", "AdamW", "NAdam", "RMSprop")
REFUSED = {
    "Adamax": "Adamax's infinity norm is a running max, not differentiable where the maximum "
              "switches: no smooth modified flow",
    "RAdam": "RAdam's rectification switches the update on a threshold of the step index "
             "(rho_t > 5), a discontinuity of the recursion modeq does not derive",
    "Adagrad": "Adagrad's state is an unbounded running sum (decay 1): the step shrinks like "
               "1/sqrt(n) and there is no modified flow on a fixed horizon of the kind modeq "
               "derives",
    "Rprop": "Rprop uses the sign of the gradient and of its changes: not smooth",
    "LBFGS": "LBFGS runs a line search and a history of curvature pairs, not an EMA recursion",
    "SparseAdam": "SparseAdam updates only the components a sparse gradient touches",
    "ASGD": "ASGD's averaging and learning-rate schedule are not supported",
}


def _real(group, key, name):
    v = group[key]
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise Refused(f"{name}: {key} is a tensor of shape {tuple(v.shape)}")
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name}: {key} must be a finite real number, got {v!r}")
    return float(v)


class TorchGroup:
    """One param group: ``declaration``, ``values`` (``h`` = lr included), ``params``."""

    def __init__(self, declaration, values, params, index):
        self.declaration, self.values, self.params, self.index = \
            declaration, values, params, index

    def key(self):
        return (self.declaration.name, str(self.declaration.step),
                tuple(s.describe() for s in self.declaration.states),
                tuple(sorted(self.values.items())))

    def __iter__(self):
        return iter((self.declaration, self.values))

    def __repr__(self):
        return f"TorchGroup({self.index}: {self.declaration!r}, {self.values})"


def _check_common(opt, group, name):
    for flag in ("amsgrad",):
        if group.get(flag):
            raise Refused(f"{name}(amsgrad=True): the running max of v is not differentiable "
                          f"where the maximum switches, so there is no smooth modified flow; "
                          f"use amsgrad=False")
    for flag in ("capturable", "differentiable"):
        if group.get(flag):
            raise Refused(f"{name}: {flag}=True is not supported (the recursion is the same, but "
                          f"modeq reads plain float hyperparameters)")


def _sgd(group, name):
    mu = _real(group, "momentum", name)
    tau = _real(group, "dampening", name) if mu else 0.0    # torch ignores it without momentum
    lam = _real(group, "weight_decay", name)
    flags = dict(momentum=mu != 0, dampening=mu != 0 and tau != 0,
                 nesterov=bool(group["nesterov"]), weight_decay="coupled" if lam else None,
                 maximize=bool(group.get("maximize", False)))
    return O.torch_sgd, flags, {"mu": mu, "tau": tau, "lam": lam}


def _adam(group, name, decoupled):
    b1, b2 = (_real({"b": b}, "b", name) for b in group["betas"])
    lam = _real(group, "weight_decay", name)
    flags = dict(weight_decay=("decoupled" if decoupled else "coupled") if lam else None,
                 maximize=bool(group.get("maximize", False)))
    return O.torch_adam, flags, {"beta": b1, "rho": b2, "eps": _real(group, "eps", name),
                                 "lam": lam}


def _nadam(group, name):
    b1, b2 = (_real({"b": b}, "b", name) for b in group["betas"])
    lam = _real(group, "weight_decay", name)
    decoupled = group.get("decoupled_weight_decay")
    flags = dict(weight_decay=("decoupled" if decoupled else "coupled") if lam else None,
                 maximize=bool(group.get("maximize", False)))
    return O.torch_nadam, flags, {"beta": b1, "rho": b2, "eps": _real(group, "eps", name),
                                  "lam": lam,
                                  "psi": _decimal(_real(group, "momentum_decay", name))}


def _decimal(x):
    """``x`` as the rational its shortest decimal form names (``0.004`` -> ``1/250``), as torch's
    constant ``0.96`` is taken as ``24/25``: the binary value of ``0.004`` (a 60-bit
    denominator) makes the exact powers ``(24/25)^(psi t)`` too large for SymPy to build."""
    return sp.Rational(repr(x))


def _rmsprop(group, name):
    mu = _real(group, "momentum", name)
    lam = _real(group, "weight_decay", name)
    flags = dict(centered=bool(group["centered"]), momentum=mu != 0,
                 weight_decay="coupled" if lam else None,
                 maximize=bool(group.get("maximize", False)))
    return O.torch_rmsprop, flags, {"rho": _real(group, "alpha", name),
                                    "eps": _real(group, "eps", name), "mu": mu, "lam": lam}


def _reading(opt, group, index):
    """``(builder, flags, values)`` of one param group: the declaration is
    ``builder(**flags)`` (``builder`` ``None`` and ``flags`` the declaration itself for an
    optimizer that names its own update)."""
    name = type(opt).__name__
    if not group["params"]:
        raise ValueError(f"{name}: param group {index} is empty (no parameters)")
    _check_common(opt, group, name)
    if hasattr(opt, "modeq_declaration"):
        decl, values = opt.modeq_declaration(group)
        return None, decl, values
    if isinstance(opt, torch.optim.AdamW):
        return _adam(group, name, True)
    if isinstance(opt, torch.optim.Adam):
        return _adam(group, name, bool(group.get("decoupled_weight_decay")))
    if isinstance(opt, torch.optim.NAdam):
        return _nadam(group, name)
    if isinstance(opt, torch.optim.RMSprop):
        return _rmsprop(group, name)
    if isinstance(opt, torch.optim.SGD):
        return _sgd(group, name)
    raise AssertionError(name)


def _group(opt, group, index, decl=None):
    """The :class:`TorchGroup` of one param group, with its own declaration or ``decl``."""
    name = type(opt).__name__
    builder, flags, values = _reading(opt, group, index)
    if decl is None:
        decl = flags if builder is None else builder(**flags)
    values = {k: v for k, v in values.items() if k in {str(s) for s in decl.hyperparameters}}
    lr = _real(group, "lr", name)
    if lr <= 0:
        raise ValueError(f"{name}: lr must be > 0, got {lr}")
    values["h"] = lr
    decl.check_values(values)
    return TorchGroup(decl, values, list(group["params"]), index)


def _check_optimizer(opt):
    if isinstance(opt, torch.optim.lr_scheduler.LRScheduler):
        raise Refused(f"{type(opt).__name__} is a learning-rate scheduler: the modified flow "
                      f"needs a constant step size h = lr; pass the optimizer itself, used "
                      f"without the scheduler")
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"from_torch expects a torch.optim.Optimizer, got {type(opt).__name__}")
    name = type(opt).__name__
    if name in REFUSED:
        raise Refused(f"{name} is not supported: {REFUSED[name]}")
    if not isinstance(opt, (torch.optim.SGD, torch.optim.Adam, torch.optim.NAdam,
                            torch.optim.RMSprop)) and not hasattr(opt, "modeq_declaration"):
        raise Refused(f"{name} is not supported; supported: {', '.join(SUPPORTED)}")
    if _has_scheduler(opt):
        raise Refused(f"{name}: a learning-rate scheduler is attached; the modified flow needs a "
                      f"constant step size h = lr")
    if not opt.param_groups:
        raise ValueError(f"{name} has no param group")


def _has_scheduler(opt):
    # the LRSchedulers record the initial lr in each group; ReduceLROnPlateau leaves no trace
    return any("initial_lr" in g for g in opt.param_groups)


def from_torch_groups(optimizer):
    """One :class:`TorchGroup` per param group (declaration, values with ``h`` = lr, params)."""
    _check_optimizer(optimizer)
    return [_group(optimizer, g, i) for i, g in enumerate(optimizer.param_groups)]


def from_torch(optimizer, group=None):
    """``(declaration, values)`` of the update a configured ``torch.optim`` optimizer performs.

    ``values`` holds the numeric hyperparameters by name and ``h`` (torch's ``lr``).  With
    several param groups, their configurations must agree (else pass ``group=i``, or use
    :func:`from_torch_groups`: different hyperparameters act on their own components).

    >>> import torch
    >>> w = torch.zeros(2, requires_grad=True)
    >>> decl, values = from_torch(torch.optim.AdamW([w], lr=1e-3, weight_decay=0.01))
    >>> decl.name, values["h"], values["lam"]
    ('torch_adamw', 0.001, 0.01)
    """
    groups = from_torch_groups(optimizer)
    if group is not None:
        if not 0 <= group < len(groups):
            raise ValueError(f"group must be in [0, {len(groups)}), got {group}")
        return tuple(groups[group])
    keys = {g.key() for g in groups}
    if len(keys) > 1:
        raise ValueError(f"{type(optimizer).__name__}: its {len(groups)} param groups have "
                         f"different configurations; pass group=i, or use from_torch_groups() or "
                         f"from_torch_merged()")
    return tuple(groups[0])


def from_torch_merged(optimizer):
    """``(declaration, groups)``: one declaration for every param group, and one
    :class:`TorchGroup` per group with that declaration and the group's own values.

    Where the groups' own declarations differ only by a term a constant switches off (a weight
    decay 0, momentum or dampening 0), the declaration has the term and those groups have the
    constant 0; the hyperparameters whose values differ between groups are
    :class:`~modeq.symbolic.family.ComponentConstant` (one value per component: each group's
    on its own parameters, :func:`~modeq.numeric.implicit_bias.implicit_correction`).  Groups
    of different ``lr``: ``h`` is the largest and the step is multiplied by ``lr_scale = lr /
    h`` (per component; torch's ``lr`` multiplies the whole update, decoupled decay
    included), so the flow's time runs ``h`` per step.  A difference in kind (``nesterov``,
    ``maximize``, ``centered``, coupled against decoupled decay) is refused with the reason.

    >>> import torch
    >>> a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    >>> opt = torch.optim.AdamW([{"params": [a]}, {"params": [b], "weight_decay": 0.0}])
    >>> decl, groups = from_torch_merged(opt)
    >>> decl.name, [g.values["lam"] for g in groups]
    ('torch_adamw_per_component', [0.01, 0.0])
    """
    from modeq.symbolic.family import per_component
    _check_optimizer(optimizer)
    name = type(optimizer).__name__
    readings = [_reading(optimizer, g, i) for i, g in enumerate(optimizer.param_groups)]
    builder = readings[0][0]
    if builder is None:
        decls = {(str(d.step), tuple(x.describe() for x in d.states)) for _, d, _ in readings}
        if len(decls) > 1:
            raise Refused(f"{name}: its param groups name different updates")
        decl = readings[0][1]
    else:
        decl = builder(**_merged_flags(name, [flags for _, flags, _ in readings]))
    groups = [_group(optimizer, g, i, decl) for i, g in enumerate(optimizer.param_groups)]
    h = max(g.values["h"] for g in groups)
    if any(g.values["h"] != h for g in groups):
        decl = Optimizer(decl.name, decl.states, LR_SCALE * decl.step, notes=decl.notes)
        for g in groups:
            g.values["lr_scale"], g.values["h"] = g.values["h"] / h, h
    differ = {k for k in groups[0].values if len({g.values[k] for g in groups}) > 1}
    decl = per_component(decl, differ)
    for g in groups:
        g.declaration = decl
        decl.check_values(g.values)
    return decl, groups


#: the ratio of a param group's ``lr`` to the largest (``from_torch_merged``)
LR_SCALE = sp.Symbol("lr_scale", positive=True)


def _merged_flags(name, all_flags):
    merged = {}
    for key in all_flags[0]:
        seen = {f[key] for f in all_flags}
        if len(seen) == 1:
            merged[key] = seen.pop()
        elif key in ("momentum", "dampening"):
            merged[key] = True
        elif key == "weight_decay" and len(seen - {None}) == 1:
            merged[key] = (seen - {None}).pop()
        else:
            raise Refused(f"{name}: param groups differ in {key} "
                          f"({', '.join(sorted(map(str, seen)))}): that changes the recursion, "
                          f"not one of its constants, and one flow describes one recursion")
    return merged

"""The implicit bias of a configured ``torch.optim`` optimizer on a real model.

:func:`implicit_correction` reads the optimizer (:func:`~modeq.numeric.torch_optim.from_torch`:
the exact update torch performs, ``h`` = its ``lr``), derives its modified flow to order 1 and
evaluates the first correction ``h F1`` at the current parameters, matrix-free: the emit
layer's form of ``F1`` with autograd's Hessian-vector products
(:mod:`modeq.numeric.torch_flow`), never a dense Hessian.  Convention: the flow is
``dθ/dt = -(F0 + h F1)``; vectors are lists of tensors shaped like the parameters.

:func:`implicit_penalty`: where ``F1`` is a gradient field, ``F1 = ∇Φ``, the scalar ``h Φ`` (the
modified loss's penalty term: its gradient, by double backprop, is ``h F1``); refused with a
``ValueError`` saying why where it is not (:func:`penalty_potential` decides it from the derived
term: an asymmetric Jacobian is a proof that it is not a gradient).

:class:`ImplicitCorrectionLogger` records the size of the correction during training.
"""
from __future__ import annotations

import torch

__all__ = ["implicit_correction", "implicit_penalty", "penalty_potential",
           "ImplicitCorrectionLogger"]

_FLOWS = {}


def _key(declaration):
    from modeq.symbolic.cache import declaration_text
    return declaration_text(declaration)       # srepr: a per-component constant is its own


def _flow(declaration):
    key = _key(declaration)
    if key not in _FLOWS:
        from modeq.symbolic import derive
        _FLOWS[key] = derive(declaration, 1)
    return _FLOWS[key]


def _read_optimizer(optimizer, params):
    """``(declaration, values, params)`` of a configured torch optimizer (``from_torch``); the
    parameters default to those of its param groups; ``ValueError`` if there are none."""
    from .torch_optim import from_torch
    declaration, values = from_torch(optimizer)
    if params is None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
    params = list(params)
    if not params:
        raise ValueError("params is empty")
    return declaration, values, params


def _read_blocks(optimizer, params):
    """``(declaration, [(values, params), ...])``: the optimizer's one declaration
    (:func:`~modeq.numeric.torch_optim.from_torch_merged`) and ``params`` (a list) in runs of
    one group's values.  Where every group has the same values, one run of any ``params``; else
    each parameter must belong to a group."""
    from .torch_optim import from_torch_merged
    declaration, groups = from_torch_merged(optimizer)
    if not params:
        raise ValueError("params is empty")
    if len({tuple(sorted(g.values.items())) for g in groups}) == 1:
        return declaration, [(groups[0].values, params)]
    owner = {id(p): g for g in groups for p in g.params}
    blocks = []
    for i, p in enumerate(params):
        g = owner.get(id(p))
        if g is None:
            raise ValueError(f"params[{i}] is in no param group of the optimizer (its groups "
                             f"have different settings, so each parameter takes its group's)")
        if blocks and blocks[-1][0] is g:
            blocks[-1][1].append(p)
        else:
            blocks.append((g, [p]))
    return declaration, [(g.values, ps) for g, ps in blocks]


def implicit_correction(optimizer, loss, params=None, stationary=True, n=None):
    """``h F1`` of ``optimizer``'s modified flow at the current parameters: a list of tensors
    shaped like ``params`` (default: every parameter of the optimizer's param groups).

    ``stationary=True`` (default) is the ``n -> oo`` flow; ``stationary=False, n=k`` the flow
    exact in the step index.  Param groups of different settings (a weight decay on some
    parameters only, other betas or eps; one ``lr``): one flow in which each parameter takes
    its group's constants (:func:`~modeq.numeric.torch_optim.from_torch_merged`).  A frozen
    parameter (``requires_grad=False``) is one torch's optimizer never moves: its correction is
    0, and the others' flow holds it constant.

    >>> import torch
    >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    >>> opt = torch.optim.SGD([w], lr=0.1)
    >>> loss = (w ** 4).sum() / 4                  # h F1 = (h/2) H g for gradient descent
    >>> [round(v, 6) for v in implicit_correction(opt, loss)[0].tolist()]
    [0.15, -4.8]
    """
    from .torch_flow import blockwise_correction, flow_correction
    if params is None:
        params = [p for g in optimizer.param_groups for p in g["params"]]
    params = list(params)
    live = [p for p in params if not isinstance(p, torch.Tensor) or p.requires_grad]
    if params and not live:
        raise ValueError("no parameter requires grad: the optimizer moves none of them")
    declaration, blocks = _read_blocks(optimizer, live)
    if len(blocks) == 1:
        values, ps = blocks[0]
        out = flow_correction(_flow(declaration), loss, ps, stationary=stationary, n=n,
                              **values)
    else:
        out = blockwise_correction(_flow(declaration), loss, blocks, stationary=stationary, n=n)
    moving, out = {id(p) for p in live}, iter(out)
    return [next(out) if id(p) in moving else torch.zeros_like(p) for p in params]


# -- where F1 is a gradient: the penalty ------------------------------------------------------
class Potential:
    """``F1 = ∇Φ`` with ``Φ(θ) = Σ_j phi(g_j, θ_j) + a E(θ)``: ``phi`` a componentwise SymPy
    expression in ``g`` (:data:`modeq.symbolic.emit.G`) and ``theta``, ``a`` a number; the
    hyperparameters (and ``n``) are substituted exactly."""

    def __init__(self, phi, a):
        self.phi, self.a = phi, a
        self._kernels = {}

    def kernel(self, dtype):
        if dtype not in self._kernels:
            from modeq.symbolic.emit import Kernel
            from modeq.symbolic.emit.forms import G
            from modeq.symbolic.family import theta
            self._kernels[dtype] = Kernel([self.phi], [G, theta], "torch", dtype)
        return self._kernels[dtype]

    def __repr__(self):
        return f"Potential(phi={self.phi}, a={self.a})"


def _exact(value):
    """A hyperparameter value as an exact SymPy number (a float is its exact binary value)."""
    from modeq.symbolic.emit.values import exact_value
    return exact_value("value", value)


def _random_loss(xs, rng, degree=4):
    """A random polynomial loss in ``xs`` (every monomial up to ``degree``, rational
    coefficients): a generic loss for the symmetry test."""
    import itertools
    import sympy as sp
    terms = []
    for powers in itertools.product(range(degree + 1), repeat=len(xs)):
        if 1 <= sum(powers) <= degree:
            c = sp.Rational(rng.choice([-1, 1]) * rng.randint(1, 9), rng.randint(1, 7))
            terms.append(c * sp.Mul(*[x ** k for x, k in zip(xs, powers)]))
    return sp.Add(*terms)


def _asymmetry(form, subs, points=3, seed=13):
    """``None`` if the Jacobian of ``F1`` (its matrix-free ``form`` with the values ``subs``) is
    symmetric at ``points`` random rational points for a random polynomial loss in ``p = 2``;
    else ``(loss, point, J01, J10)`` with ``J01 != J10`` there: a proof that ``F1`` is not a
    gradient field (for this loss, hence in general)."""
    import random
    import sympy as sp
    rng = random.Random(seed)
    xs = sp.symbols("x0 x1", real=True)
    E = _random_loss(xs, rng)
    g = [sp.diff(E, x) for x in xs]
    H = [[sp.diff(E, a, b) for b in xs] for a in xs]
    F = [e.xreplace(subs).doit() for e in form.lower(g, H, theta=list(xs))]
    J01, J10 = sp.diff(F[0], xs[1]), sp.diff(F[1], xs[0])
    seen, tries = 0, 0
    while seen < points and tries < 20 * points:
        tries += 1
        pt = {x: sp.Rational(rng.randint(-40, 40), rng.randint(1, 20)) for x in xs}
        a, b = (sp.N(J.xreplace(pt), 50) for J in (J01, J10))
        if not (a.is_finite and b.is_finite and a.is_real and b.is_real):
            continue                       # a component of g vanishes there: not smooth
        seen += 1
        if abs(a - b) > sp.Float(10, 50) ** -30 * (1 + abs(a) + abs(b)):
            return E, pt, a, b
    if seen == 0:
        raise ValueError("F1 could not be evaluated at any random point (not smooth there)")
    return None


def _construct(form, subs):
    """A :class:`Potential` of ``F1`` of the form ``Σ_j phi(g_j, θ_j) + a E``, or ``None`` when
    ``F1`` is not ``Σ_k c_k H.u_k(g, θ) + w(g, θ)`` with constant ``c_k`` and a ``phi`` whose
    remainder is ``a g + b(θ)``.  Every step is checked exactly."""
    import sympy as sp
    from modeq.symbolic.emit.forms import G
    from modeq.symbolic.family import theta
    point = {G, theta}
    syms = {c.symbol: c for c in form.contractions}
    u, w = sp.S.Zero, sp.S.Zero
    for coeff, mono in form.monomials:
        coeff = coeff.xreplace(subs).doit()
        if mono == 1:
            w += coeff
            continue
        c = syms.get(mono)
        if c is None or c.kind != "hvp" or c.args[0].free_symbols & set(syms) or \
                coeff.free_symbols & point:
            return None
        u += coeff * c.args[0].xreplace(subs).doit()
    s = sp.Dummy("s", real=True)
    U = sp.integrate(u.xreplace({G: s}), (s, 0, G))
    r = sp.cancel(w - sp.diff(U, theta))
    a = sp.cancel(sp.diff(r, G))
    b = sp.cancel(r - a * G)
    if U.has(sp.Integral) or a.free_symbols & point or G in b.free_symbols:
        return None
    B = sp.integrate(b.xreplace({theta: s}), (s, 0, theta))
    phi = U + B
    if B.has(sp.Integral) or sp.simplify(sp.diff(phi, G) - u) != 0 or \
            sp.simplify(sp.diff(phi, theta) + a * G - w) != 0:
        return None
    return Potential(phi, a)


_POTENTIALS = {}


def penalty_potential(declaration, values, stationary=True, n=None):
    """The :class:`Potential` ``Φ`` with ``F1 = ∇Φ`` of ``declaration``'s modified flow at the
    hyperparameter ``values`` (by name; ``h`` is not needed), stationary or at step ``n``.

    Decided from the derived term: its Jacobian must be symmetric (checked exactly at random
    rational points for a random polynomial loss in two parameters; one asymmetric entry proves
    ``F1`` is not a gradient: ``ValueError`` saying so), and ``Φ`` is then built as
    ``Σ_j phi(g_j, θ_j) + a E`` and checked (``NotImplementedError`` if ``F1`` passes the test
    but has no potential of that form).

    >>> from modeq.symbolic import optimizers
    >>> penalty_potential(optimizers.heavy_ball(), {"beta": 0.5}).phi
    3*g**2
    """
    import sympy as sp
    from modeq.symbolic.emit import flow_forms
    from modeq.symbolic.family import n as n_sym
    flow = _flow(declaration)
    if stationary and n is not None:
        raise ValueError("n is for stationary=False (the flow exact in the step index)")
    form = flow_forms(flow, stationary)[1]
    subs = {}
    for sym in form.hyperparameters:
        if str(sym) not in values:
            raise ValueError(f"{declaration.name}: no value for {sym}")
        subs[sym] = _exact(values[str(sym)])
    if form.uses_n:
        if n is None or int(n) != n or n < 0:
            raise ValueError("this F1 depends on the step index: pass an integer n >= 0 (or "
                             "stationary=True)")
        subs[n_sym] = sp.Integer(int(n))
    key = (*_key(declaration), bool(stationary), n,
           tuple(sorted((str(k), str(v)) for k, v in subs.items())))
    if key not in _POTENTIALS:
        witness = _asymmetry(form, subs)
        if witness is not None:
            E, pt, a, b = witness
            point = ", ".join(f"{x} = {v}" for x, v in pt.items())
            raise ValueError(
                f"{declaration.name}: its first correction F1 is not a gradient field, so there "
                f"is no penalty term (no modified loss E + h*Phi with grad Phi = F1): its "
                f"Jacobian is not symmetric, dF1_0/dtheta_1 = {sp.N(a, 8)} but dF1_1/dtheta_0 = "
                f"{sp.N(b, 8)} at ({point}) for the loss {E}.  Use implicit_correction() for "
                f"the correction itself")
        potential = _construct(form, subs)
        if potential is None:
            raise NotImplementedError(
                f"{declaration.name}: F1 passes the symmetry test but is not of the form "
                f"sum_j phi(g_j, theta_j) + a E that modeq integrates")
        _POTENTIALS[key] = potential
    return _POTENTIALS[key]


def implicit_penalty(optimizer, loss, params=None, stationary=True, n=None):
    """The penalty term ``h Φ`` of the modified loss, ``F1 = ∇Φ``, of a configured
    ``torch.optim`` ``optimizer`` at the current parameters: a scalar tensor that keeps its
    graph (double backprop: its gradient is ``h F1``, :func:`implicit_correction`).

    ``ValueError`` naming why when ``F1`` is not a gradient (Adam, AdamW, NAdam, RMSprop: their
    componentwise preconditioning makes the Jacobian asymmetric; :func:`penalty_potential`).
    SGD in every supported setting (momentum, dampening, Nesterov, L2, maximize) has one: for
    plain SGD ``h Φ = (h/4) |∇E|^2``.

    >>> import torch
    >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    >>> loss = (w ** 4).sum() / 4                 # g = w^3: (h/4) |g|^2 = 0.025 * 65
    >>> round(float(implicit_penalty(torch.optim.SGD([w], lr=0.1), loss).detach()), 6)
    1.625
    """
    import torch
    declaration, values, params = _read_optimizer(optimizer, params)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise ValueError("loss must be a scalar tensor")
    potential = penalty_potential(declaration, values, stationary, n)
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    total = 0
    for g, p in zip(grads, params):
        g = torch.zeros_like(p) if g is None else g
        out = potential.kernel(p.dtype)(g, p)[0]
        total = total + torch.broadcast_to(torch.as_tensor(out, dtype=p.dtype,
                                                           device=p.device), p.shape).sum()
    if potential.a != 0:
        total = total + float(potential.a) * loss
    return values["h"] * total


class ImplicitCorrectionLogger:
    """Records ``‖h F1‖`` (Euclidean, over all parameters) and ``‖∇E‖`` each time it is called
    with the current loss: ``logger(loss)`` during training, ``logger.history`` afterwards.

    >>> import torch
    >>> w = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    >>> log = ImplicitCorrectionLogger(torch.optim.SGD([w], lr=0.1))
    >>> log((w ** 2).sum() / 2)["correction_norm"]
    0.05
    """

    def __init__(self, optimizer, params=None):
        self.optimizer, self.params = optimizer, params
        self.history = []

    def __call__(self, loss):
        params = self.params or [p for g in self.optimizer.param_groups for p in g["params"]]
        corr = implicit_correction(self.optimizer, loss, params)
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        entry = {"correction_norm": float(torch.sqrt(sum((c * c).sum() for c in corr))),
                 "grad_norm": float(torch.sqrt(sum((g * g).sum() for g in grads
                                                   if g is not None)))}
        self.history.append(entry)
        return entry

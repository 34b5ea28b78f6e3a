"""Numeric check of epoch flows (``modeq.symbolic.epoch``): the optimizer's mean iterate over
epoch orders against the epoch flow, in mpmath.

:func:`mean_epoch_path` runs the optimizer's own recursion (from the declaration: states
``s <- d s + c of(g, theta)``, bias correction ``s / (1 - d^(k+1))`` if declared, step
``theta <- theta - h step``) and averages over **all** ``m!`` orders of each epoch exactly:
``x_{e+1} = (1/m!) sum_pi Phi_pi(x_e)`` on the extended state ``x = (theta, states)``.  For a
quadratic loss and a step linear in ``g`` and the states (SGD, heavy-ball) every ``Phi_pi`` is
affine, so this is exactly the mean iterate over the ``(m!)^K`` order sequences of ``K``
independent epochs.  Otherwise it is the iterated mean map ``Psi^K``: equal to the mean iterate up
to ``O(h^5)`` per epoch for memoryless steps, up to ``O(h^3)`` per epoch with memory.

:func:`sampled_mean_path` is the check for steps nonlinear in the states (Adam, RMSProp), where
neither the mean map nor the ``(m!)^K`` order sequences can be enumerated: ``runs`` independent
order sequences drawn with a seeded generator, each run exactly in mpmath, and the sample mean
with its standard error (which a check must compare with the differences it measures).
:func:`sampled_drift` estimates the exact order-0 epoch drift of such a step at a frozen point
(the stationary mean over random orders of the step), the quantity the epoch flow's ``F0``
expands in the spread of the batches: where the two differ, the expansion does not hold.

:func:`flow_path` integrates an :class:`~modeq.symbolic.epoch.EpochFlow` over ``K`` epochs of time
``m h`` each; :func:`loglog_slope` fits ``log(error)`` against ``log(h)``.
"""
from __future__ import annotations

from itertools import permutations

import mpmath
import sympy as sp

from modeq.symbolic.epoch_memory import outside_state_family
from modeq.symbolic.family import g as G, theta as THETA
from .integrate import integrate

__all__ = ["mean_epoch_path", "sampled_mean_path", "sampled_drift", "flow_path", "loglog_slope"]


def _exact(v):
    """A hyperparameter value as an exact SymPy number (a float is its binary value)."""
    if isinstance(v, mpmath.mpf):
        return sp.Float(v, mpmath.mp.dps)
    return sp.Rational(v)


def _mp(e):
    """A constant SymPy expression as an ``mpf`` at the working precision."""
    return sp.lambdify([], e, "mpmath")() * mpmath.mpf(1)


def _compile(optimizer, losses, params, values, module="mpmath"):
    """The declaration's pieces with the hyperparameters ``values`` substituted: per-batch
    gradients of ``params``, each state's input and the step as functions of
    ``(g, theta, *states)``, the decays and scales; in ``module`` ("mpmath": mpf constants,
    "numpy": floats)."""
    byname = {str(k): _exact(v) for k, v in values.items()}
    fix = lambda e: sp.sympify(e).xreplace(  # noqa: E731
        {s: byname[str(s)] for s in sp.sympify(e).free_symbols if str(s) in byname})
    number = _mp if module == "mpmath" else (lambda e: float(e))
    grads = [sp.lambdify(params, [sp.diff(E, p) for p in params], module) for E in losses]
    states = list(optimizer.states)
    svars = [sp.Symbol(f"_s{i}") for i in range(len(states))]
    ren = dict(zip(states, svars))
    ofs = [sp.lambdify([G, THETA] + svars, fix(s.of.xreplace(ren)), module) for s in states]
    step = sp.lambdify([G, THETA] + svars, fix(optimizer.step.xreplace(ren)), module)
    dec = [number(fix(s.decay)) for s in states]
    sc = [number(fix(s.scale)) for s in states]
    bc = [s.bias_correction for s in states]
    return grads, ofs, step, dec, sc, bc


def _run_epoch(x, order, h, comp, k0):
    grads, ofs, step, dec, sc, bc = comp
    theta, S = list(x[0]), [list(s) for s in x[1]]
    p = len(theta)
    for i, b in enumerate(order):
        k = k0 + i
        gk = grads[b](*theta)
        hats = []
        for si in range(len(S)):
            for j in range(p):
                # an input reads only earlier states (already updated this step)
                earlier = [hats[e][j] if e < si else S[e][j] for e in range(len(S))]
                S[si][j] = dec[si] * S[si][j] + sc[si] * ofs[si](gk[j], theta[j], *earlier)
            hats.append([S[si][j] / (1 - dec[si] ** (k + 1)) if bc[si] else S[si][j]
                         for j in range(p)])
        theta = [theta[j] - h * step(gk[j], theta[j], *[hh[j] for hh in hats])
                 for j in range(p)]
    return theta, S


def mean_epoch_path(optimizer, losses, params, theta0, h, epochs, values=None, burn_in=0,
                    dps=40):
    """``[mean theta after burn_in + e epochs for e = 0..epochs]`` (module docstring); states
    start at 0; ``values``: hyperparameters by name (``h`` is the argument)."""
    values = dict(values or {})
    m = len(losses)
    with mpmath.workdps(dps):
        comp = _compile(optimizer, losses, params, values)
        h = _mp(_exact(h))
        orders = list(permutations(range(m)))
        p = len(params)
        x = ([_mp(_exact(t)) for t in theta0], [[mpmath.mpf(0)] * p for _ in optimizer.states])
        out = []
        for e in range(burn_in + epochs):
            if e >= burn_in:
                out.append(list(x[0]))
            runs = [_run_epoch(x, o, h, comp, e * m) for o in orders]
            x = ([sum(r[0][j] for r in runs) / len(runs) for j in range(p)],
                 [[sum(r[1][si][j] for r in runs) / len(runs) for j in range(p)]
                  for si in range(len(optimizer.states))])
        out.append(list(x[0]))
        return out


def sampled_mean_path(optimizer, losses, params, theta0, h, epochs, runs, seed=0, values=None,
                      burn_in=0, dps=30):
    """``(path, stderr)``: ``path[e]`` the sample mean over ``runs`` reshuffled runs of theta
    after ``burn_in + e`` epochs (``e = 0..epochs``), every epoch's order drawn uniformly and
    independently (``numpy.random.default_rng(seed)``); ``stderr`` the largest standard error of
    the final mean's components.  States start at 0; ``values``: hyperparameters by name."""
    import numpy as np
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 2:
        raise ValueError(f"runs must be an integer >= 2 (a mean and its standard error), "
                         f"got {runs!r}")
    values = dict(values or {})
    m = len(losses)
    rng = np.random.default_rng(seed)
    with mpmath.workdps(dps):
        comp = _compile(optimizer, losses, params, values)
        h = _mp(_exact(h))
        p = len(params)
        paths = []
        for _ in range(runs):
            x = ([_mp(_exact(t)) for t in theta0],
                 [[mpmath.mpf(0)] * p for _ in optimizer.states])
            path = []
            for e in range(burn_in + epochs):
                if e >= burn_in:
                    path.append(list(x[0]))
                x = _run_epoch(x, [int(b) for b in rng.permutation(m)], h, comp, e * m)
            path.append(list(x[0]))
            paths.append(path)
        mean = [[sum(run[e][j] for run in paths) / runs for j in range(p)]
                for e in range(epochs + 1)]
        last = [[run[-1][j] for run in paths] for j in range(p)]
        stderr = max(mpmath.sqrt(sum((v - mu) ** 2 for v in col) / (runs - 1) / runs)
                     for col, mu in zip(last, mean[-1]))
        return mean, stderr


def sampled_drift(optimizer, losses, params, theta, values, chains=1000, steps=6000,
                  burn_in=None, seed=0):
    """``(drift, stderr)``: the mean over random epoch orders of the step at the frozen point
    ``theta`` in the stationary regime (states from their recursion ``s <- d s + c of(g)``, no
    bias correction: stationary), NumPy float64, ``chains`` independent reshuffled chains of
    ``steps`` steps after ``burn_in`` steps (default: until the slowest decay is below 1e-12).
    ``stderr`` per component by batch means: each chain's run cut into 10 blocks, the spread
    of the block means (blocks much longer than the states' memory ``1/(1 - d)`` are nearly
    independent; ``ValueError`` if ``steps`` does not allow blocks of 5 memories)."""
    import numpy as np
    why = outside_state_family(optimizer)
    if why is not None:
        raise ValueError(f"sampled_drift: {optimizer.name!r}: {why} (parameter terms or states "
                         f"reading states); covered: steps psi(g, states), states EMAs of g")
    for name, v in (("chains", chains), ("steps", steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"{name} must be an integer >= 2, got {v!r}")
    grad_of, ofs, step, dec, sc, _ = _compile(optimizer, losses, params, dict(values), "numpy")
    point = [float(_exact(t)) for t in theta]
    grads = np.array([np.asarray(gr(*point), dtype=float) for gr in grad_of])
    slowest = max(dec + [0.0])
    blocks = 10
    memory = 1 / (1 - slowest)
    if steps < blocks * 5 * memory:
        raise ValueError(f"steps must be at least {int(np.ceil(blocks * 5 * memory))} (10 "
                         f"blocks of 5 state memories 1/(1 - {slowest})) for the standard "
                         f"error, got {steps}")
    if burn_in is None:
        burn_in = int(np.ceil(np.log(1e-12) / np.log(slowest))) if slowest > 0 else 1
    m = len(losses)
    rng = np.random.default_rng(seed)
    # no state reads another and nothing reads theta (checked above): inputs of g alone
    S = [np.broadcast_to(c / (1 - d) * np.mean(f(grads, 0, *[0] * len(ofs)) * np.ones_like(grads),
                                                axis=0), (chains, len(params))).copy()
         for c, d, f in zip(sc, dec, ofs)]
    length = steps // blocks
    sums = np.zeros((blocks, chains, len(params)))
    order = None
    for k in range(burn_in + length * blocks):
        if k % m == 0:
            order = np.argsort(rng.random((chains, m)), axis=1)
        gb = grads[order[:, k % m]]
        S = [d * s + c * f(gb, 0, *S) for s, d, c, f in zip(S, dec, sc, ofs)]
        if k >= burn_in:
            sums[(k - burn_in) // length] += step(gb, 0, *S) * np.ones_like(gb)
    means = (sums / length).reshape(blocks * chains, len(params))
    return means.mean(axis=0), means.std(axis=0, ddof=1) / np.sqrt(blocks * chains)


def flow_path(epoch_flow, h, epochs, theta0, values=None, substeps=4, dps=40,
              method="ck45"):
    """The epoch flow ``d theta/dt = -F`` at ``t = e m h``, ``e = 0..epochs`` (mpmath)."""
    values = dict(values or {})
    values["h"] = h
    with mpmath.workdps(dps):
        field = epoch_flow.field()
        byname = {str(k): _exact(v) for k, v in values.items()}
        field = field.xreplace({s: byname[str(s)] for s in field.free_symbols
                                if str(s) in byname})
        f = sp.lambdify(epoch_flow.params, list(field), "mpmath", cse=True)
        th0 = [_mp(_exact(t)) for t in theta0]
        run = integrate(lambda n, th: list(f(*th)), th0, epoch_flow.m * _mp(_exact(h)),
                        epochs, method, substeps=substeps)
        return run.path, run.error_estimate


def loglog_slope(hs, errors):
    """Least-squares slope of ``log(error)`` against ``log(h)`` (``numpy.polyfit``)."""
    import numpy as np
    return float(np.polyfit(np.log([float(x) for x in hs]),
                            np.log([float(e) for e in errors]), 1)[0])

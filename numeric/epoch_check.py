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

:func:`flow_path` integrates an :class:`~modeq.symbolic.epoch.EpochFlow` over ``K`` epochs of time
``m h`` each; :func:`loglog_slope` fits ``log(error)`` against ``log(h)``.
"""
from __future__ import annotations

from itertools import permutations

import mpmath
import sympy as sp

from modeq.symbolic.family import g as G, theta as THETA
from .integrate import integrate

__all__ = ["mean_epoch_path", "flow_path", "loglog_slope"]


def _exact(v):
    """A hyperparameter value as an exact SymPy number (a float is its binary value)."""
    if isinstance(v, mpmath.mpf):
        return sp.Float(v, mpmath.mp.dps)
    return sp.Rational(v)


def _mp(e):
    """A constant SymPy expression as an ``mpf`` at the working precision."""
    return sp.lambdify([], e, "mpmath")() * mpmath.mpf(1)


def _compile(optimizer, losses, params, values):
    byname = {str(k): _exact(v) for k, v in values.items()}
    fix = lambda e: sp.sympify(e).xreplace(  # noqa: E731
        {s: byname[str(s)] for s in sp.sympify(e).free_symbols if str(s) in byname})
    grads = [sp.lambdify(params, [sp.diff(E, p) for p in params], "mpmath") for E in losses]
    states = list(optimizer.states)
    svars = [sp.Symbol(f"_s{i}") for i in range(len(states))]
    ren = dict(zip(states, svars))
    ofs = [sp.lambdify([G, THETA] + svars, fix(s.of.xreplace(ren)), "mpmath") for s in states]
    step = sp.lambdify([G, THETA] + svars, fix(optimizer.step.xreplace(ren)), "mpmath")
    dec = [_mp(fix(s.decay)) for s in states]
    sc = [_mp(fix(s.scale)) for s in states]
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
        f = sp.lambdify(epoch_flow.params, list(field), "mpmath")
        th0 = [_mp(_exact(t)) for t in theta0]
        run = integrate(lambda n, th: list(f(*th)), th0, epoch_flow.m * _mp(_exact(h)),
                        epochs, method, substeps=substeps)
        return run.path, run.error_estimate


def loglog_slope(hs, errors):
    """Least-squares slope of ``log(error)`` against ``log(h)`` (``numpy.polyfit``)."""
    import numpy as np
    return float(np.polyfit(np.log([float(x) for x in hs]),
                            np.log([float(e) for e in errors]), 1)[0])

"""Coupled weight decay as a shifted loss.

An optimizer whose states and step read the gradient only as ``d = s g + lam theta``
(``s = 1``, or ``-1`` when maximizing: torch's coupled ``weight_decay``) runs the same
recursion as its plain declaration (``d = s g``) on the loss ``E + s lam |theta|^2 / 2``,
whose gradient is ``g + s lam theta``, Hessian ``H + s lam I`` and third derivative ``T``.  Every
term of the plain derivation, written in the component algebra (:mod:`.operators`), becomes the
coupled one by

    Grad(b) -> Grad(b) + s lam theta,   Hess(b, u) -> Hess(b, u') + s lam u',   D3(b, u, w) -> D3(b, u', w')

(``u'``, ``w'`` the arguments shifted in turn), in full and in mini batch alike (each batch loss
gains the same term).  The pipeline derives a step that reads the step index with such states
this way (:func:`~.pipeline.derivation`): NAdam's coupled variant, derived directly, took
203 s in full batch and 11 min in mini batch at order 2 (its coefficients rational in ``lam``
as well), against 7.5 s for the plain declaration, which the shift then reuses.
"""
from __future__ import annotations

from dataclasses import replace

import sympy as sp

from .dag import contains, rebuilt
from .family import g, theta
from .operators import ATOMS, D3, Grad, Hess, linearize
from .optimizers import lam, rebuild

__all__ = ["plain_of_coupled", "shifted", "shifted_derivation"]


def plain_of_coupled(optimizer):
    """``(plain, c)``: the declaration with ``g`` in place of ``g + c theta`` in every state
    input and the step (``c = s lam``, module docstring), or ``None`` where ``theta`` is read
    otherwise or not at all."""
    if not any(theta in s.of.free_symbols for s in optimizer.states):
        return None
    for sign in (1, -1):
        back = {g: g - sign * lam * theta}
        parts = [s.of.xreplace(back) for s in optimizer.states] + [optimizer.step.xreplace(back)]
        if not any(theta in p.free_symbols for p in parts):
            sub = lambda e: e.xreplace(back)  # noqa: E731
            return rebuild(optimizer, optimizer.name, sub, sub), sign * lam
    return None


def shifted(e, c):
    """``e`` (a component expression of the plain derivation) on the loss shifted by
    ``c |theta|^2 / 2`` (module docstring), operators in normal form again."""
    done = {}

    def walk(x):
        if not x.args or not contains(x, ATOMS):
            return x
        if x not in done:
            if isinstance(x, Grad):
                done[x] = x + c * theta
            elif isinstance(x, Hess):
                u = walk(x.args[1])
                done[x] = Hess(x.args[0], u) + c * u
            elif isinstance(x, D3):
                done[x] = D3(x.args[0], walk(x.args[1]), walk(x.args[2]))
            else:
                done[x] = rebuilt(x, [walk(a) for a in x.args])
        return done[x]

    return linearize(walk(sp.sympify(e)))


def shifted_derivation(plain, optimizer, c):
    """The :class:`~.pipeline.Derivation` of ``optimizer`` from its plain declaration's
    (``plain``): every term shifted, the states named as the optimizer's own, ``shift = c``."""
    own = {s.name: s for s in optimizer.states}
    return replace(
        plain, optimizer=optimizer,
        F=[shifted(f, c) for f in plain.F],
        psi=[shifted(p, c) for p in plain.psi],
        F_opaque=None if plain.F_opaque is None else shifted(plain.F_opaque, c),
        states=[replace(s, state=own[s.state.name], terms=[shifted(t, c) for t in s.terms],
                        raw=[shifted(t, c) for t in s.raw]) for s in plain.states],
        flow_step={}, shift=c)

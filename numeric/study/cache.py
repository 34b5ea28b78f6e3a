"""A small per-process cache of compiled fields and iterators, keyed by a study's problem.

The key is the optimizer, the loss(es), the parameters, ``stationary``, the schedule and the
hyperparameter values (iterators also by the current mpmath precision); at most
:data:`CACHE_SIZE` entries, the oldest dropped first.
"""
from __future__ import annotations

from typing import Dict

import mpmath
import sympy as sp

from ..iterate import Iterator
from .fields import FieldFactory

__all__ = ["field_factory_for", "iterator_for", "CACHE_SIZE"]

CACHE_SIZE = 32
_CACHE: Dict[str, object] = {}


def _key(spec, what):
    loss = spec["loss_or_losses"]
    return what + repr((repr(spec["optimizer"]), spec["optimizer"].name,
                        [sp.srepr(e) for e in loss] if isinstance(loss, list) else sp.srepr(loss),
                        [str(p) for p in spec["params"]], spec["stationary"], spec["schedule"],
                        sorted((k, str(v)) for k, v in spec["values"].items())))


def _cached(key, make):
    if key not in _CACHE:
        while len(_CACHE) >= CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = make()
    return _CACHE[key]


def field_factory_for(spec) -> FieldFactory:
    """The (cached) :class:`FieldFactory` of a study spec (:func:`.run.study_spec`)."""
    return _cached(_key(spec, "factory"), lambda: FieldFactory(
        spec["optimizer"], spec["loss_or_losses"], spec["params"], spec["stationary"],
        spec["schedule"], **spec["values"]))


def iterator_for(spec) -> Iterator:
    """The (cached) :class:`~modeq.numeric.iterate.Iterator` of a study spec, compiled at the
    current mpmath precision."""
    return _cached(_key(spec, "iterator") + str(mpmath.mp.prec), lambda: Iterator(
        spec["optimizer"], spec["loss_or_losses"], spec["params"], spec["schedule"],
        **spec["values"]))

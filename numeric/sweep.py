"""Sweeps: order studies over a grid of hyperparameters x problems x step sizes, in parallel.

Every (problem, hyperparameter combination, step size) is one task -- the iterates and each
requested flow for that ``h`` (:func:`modeq.numeric.study.run_step_size`) -- so the grid spreads
over workers at the finest grain that needs no communication.  Tasks run through joblib: local
processes (``loky``) by default, or a Dask cluster when a scheduler address is given (joblib's
``dask`` backend; ``dask.distributed`` must be installed).  Results are regrouped per problem
and combination and judged exactly like :func:`modeq.numeric.study.order_study`.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

from modeq.symbolic.emit import normalize_values
from . import problems as _problems
from .atomic import atomic_write
from .study import (StudyResult, judge_study, run_tasks, study_spec, tolerances,
                    validate_inputs)

__all__ = ["sweep", "SweepResult", "grid_points", "dask_client"]


def grid_points(grid: Dict[str, Sequence]) -> List[Dict[str, object]]:
    """All combinations of a ``{name: [values]}`` grid, as dicts (the empty grid gives one).

    >>> grid_points({"rho": [0.5, 0.9], "beta": [0.25]})
    [{'beta': 0.25, 'rho': 0.5}, {'beta': 0.25, 'rho': 0.9}]
    """
    names = sorted(grid)
    for k in names:
        if isinstance(grid[k], (str, bytes)) or not len(grid[k]):
            raise ValueError(f"grid[{k!r}] must be a non-empty list of values")
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[k] for k in names))]


@dataclass
class SweepResult:
    """One :class:`~modeq.numeric.study.StudyResult` per (problem, combination).

    >>> from modeq.symbolic import optimizers
    >>> res = sweep(optimizers.gd(), ["logcosh2d"], hs=["1/8", "1/16", "1/32"], orders=(0,),
    ...             dps=20)
    >>> res.passed, len(res.studies)
    (True, 1)
    """
    studies: List[StudyResult] = field(default_factory=list)

    @property
    def passed(self):
        return all(s.passed for s in self.studies)

    def table(self, fmt="markdown") -> str:
        """One line per study: problem, hyperparameters, slope and verdict per order."""
        head = ["problem", "optimizer", "hyperparameters"]
        orders = sorted({r for s in self.studies for r in s.orders})
        head += [f"order {r}" for r in orders]
        rows = []
        for s in self.studies:
            vals = ", ".join(f"{k}={v}" for k, v in sorted(s.values.items()))
            row = [s.problem, s.optimizer, vals]
            for r in orders:
                o = s.orders.get(r)
                row.append("" if o is None else
                           f"{'n/a' if o.slope is None else f'{o.slope:.3f}'} {o.verdict}")
            rows.append(row)
        if fmt == "markdown":
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        else:
            widths = [max(len(x) for x in col) for col in zip(head, *rows)]
            lines = ["  ".join(x.ljust(w) for x, w in zip(r, widths)) for r in [head] + rows]
        return "\n".join(lines) + "\n"

    def to_json(self, path=None) -> str:
        text = json.dumps([s.to_dict() for s in self.studies], indent=2, sort_keys=True,
                          default=str)
        if path is not None:
            atomic_write(path, text + "\n")
        return text


def sweep(optimizer, problem_names: Sequence[str], grid: Dict[str, Sequence] = None,
          hs=_problems.DEFAULT_HS, orders=(0, 1), dps=30, stationary=False, *, tol=None,
          method="auto", jobs=1, scheduler=None, progress=None) -> SweepResult:
    """Order studies of ``optimizer`` on each named problem and each combination of ``grid``
    (hyperparameter name -> list of values; the problem's own values fill the rest), at step
    sizes ``hs``.  ``jobs``: joblib worker count (``-1``: all cores).  ``scheduler``: the address
    of a Dask scheduler (``"tcp://host:8786"``) or a ``dask.distributed.Client``; the tasks then
    run on that cluster.  ``progress(done, total)`` is called as tasks finish.  mpmath's
    precision is per process, so tasks sharing a process (threaded workers) are serialized:
    parallelism comes from processes (``loky`` workers, Dask workers with ``processes=True``).

    >>> from modeq.symbolic import optimizers
    >>> res = sweep(optimizers.gd(), ["logcosh2d"], hs=["1/8", "1/16", "1/32"], orders=(0,),
    ...             dps=20)
    >>> [(s.problem, s.verdicts) for s in res.studies]
    [('logcosh2d', {0: 'pass'})]
    """
    combos = grid_points(grid or {})
    specs = []
    for name in problem_names:
        prob = _problems.get(name)
        for combo in combos:
            values = prob.values_for(optimizer, normalize_values(combo))
            unknown = set(combo) - {str(s) for s in optimizer.hyperparameters}
            if unknown:
                raise ValueError(f"grid names {sorted(unknown)} are not hyperparameters of "
                                 f"{optimizer.name!r}")
            T, hs_ = validate_inputs(optimizer, prob.loss_or_losses, prob.params, prob.theta0,
                                     prob.T, hs, orders, dps, tol)
            optimizer.check_values(values)
            if prob.mini and stationary:
                raise ValueError(f"problem {name!r} is mini batch: stationary flows are for "
                                 f"full batch")
            specs.append((name, study_spec(optimizer, prob.loss_or_losses, prob.params,
                                           prob.theta0, T, orders, dps, stationary, None, values,
                                           method), hs_))
    tasks = [(spec, h) for _, spec, hs_ in specs for h in hs_]
    if scheduler is not None:
        client = dask_client(scheduler)
        try:
            results = run_tasks(tasks, -1, "dask", progress)
        finally:
            if client is not scheduler:
                client.close()
    else:
        results = run_tasks(tasks, jobs, None, progress)
    results = iter(results)
    return SweepResult([judge_study(spec, [next(results) for _ in hs_], tolerances(tol), name)
                        for name, spec, hs_ in specs])


def dask_client(scheduler, timeout=10):
    """A ``dask.distributed.Client`` connected to ``scheduler`` (an address, or a client returned
    as is); ``ValueError`` for a malformed address, ``OSError`` when it cannot be reached."""
    from dask.distributed import Client
    if isinstance(scheduler, Client):
        return scheduler
    if not isinstance(scheduler, str) or not scheduler:
        raise ValueError(f"scheduler must be an address such as 'tcp://127.0.0.1:8786', got "
                         f"{scheduler!r}")
    try:
        return Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise OSError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None

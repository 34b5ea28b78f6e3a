"""The ρ and β sweeps with full-batch Adam: every swept value × every seed, the same number of
steps, optionally repeated with the cancelling penalty (the counter-experiment).

``adam_sweep("rho", ...)`` sweeps ``ρ`` with ``β`` fixed (default 0.99), ``adam_sweep("beta",
...)`` sweeps ``β`` with ``ρ`` fixed (default 0.999); :func:`rho_sweep` and :func:`beta_sweep`
are the two shorthands.  Inputs are validated before any training (``ValueError``).
"""
from __future__ import annotations

import sys
import time

from .data import load_digits_data, model_factory
from .results import AdamSweepResult
from .settings import (DEFAULTS, beta_rho, check_kind, check_lr, check_positive_int,
                       check_seeds, check_sweep_values)
from .train import train_run

__all__ = ["adam_sweep", "rho_sweep", "beta_sweep"]


def adam_sweep(kind, values=None, *, steps=DEFAULTS["steps"], seeds=DEFAULTS["seeds"],
               model=DEFAULTS["model"], data=None, beta=None, rho=None, lr=DEFAULTS["lr"],
               eps=DEFAULTS["eps"], counter=True, counter_weight=1.0, loss_fn=None,
               checkpoints=(), progress=True, num_threads=1,
               eps_placement="inside") -> AdamSweepResult:
    """Sweep ``ρ`` (``kind="rho"``, ``β`` fixed, default 0.99) or ``β`` (``kind="beta"``, ``ρ``
    fixed, default 0.999) with full-batch Adam, every value × every seed, the same ``steps``.

    ``values`` in (0, 1) (sorted ascending); ``seeds`` an int ``k`` (seeds 0…k-1) or a list;
    ``counter=True`` repeats every run with the cancelling penalty.  ``num_threads`` sets torch's
    intra-op threads for the sweep (restored afterwards): these models are so small that one
    thread is fastest, and it keeps the runs bitwise reproducible.  ``progress``: a tqdm bar on
    stderr.  Raises ``ValueError`` on bad input before any training.

    >>> res = adam_sweep("rho", [0.9, 0.999], steps=2, seeds=1, counter=False, progress=False)
    >>> res.finals("one_norm").shape
    (2, 1)
    """
    import torch
    from tqdm import tqdm
    from .. import torch as mt

    kind = check_kind(kind)
    values = check_sweep_values(kind, values)
    steps = check_positive_int("steps", steps)
    seeds = check_seeds(seeds)
    lr, eps = check_lr(lr), mt.check_eps(eps)
    counter_weight = mt.check_weight(counter_weight)
    num_threads = check_positive_int("num_threads", num_threads)
    if kind == "rho":
        if rho is not None:
            raise ValueError("rho is the swept hyperparameter of a rho sweep; pass values instead")
        fixed = {"beta": mt.check_beta(DEFAULTS["rho"]["fixed"]["beta"] if beta is None else beta)}
    else:
        if beta is not None:
            raise ValueError("beta is the swept hyperparameter of a beta sweep; pass values instead")
        fixed = {"rho": mt.check_rho(DEFAULTS["beta"]["fixed"]["rho"] if rho is None else rho)}
    _, model_name = model_factory(model)
    data = load_digits_data() if data is None else data
    penalties = ("none", "cancel") if counter else ("none",)

    settings = [(v, s, p) for p in penalties for v in values for s in seeds]
    old_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    runs = []
    t0 = time.perf_counter()
    try:
        with tqdm(total=len(settings) * steps, disable=not progress, file=sys.stderr,
                  unit="step", dynamic_ncols=True) as bar:
            for v, s, p in settings:
                b, r = beta_rho(kind, fixed, v)
                bar.set_description(f"{kind}={v:g} seed={s} {'cancel' if p == 'cancel' else 'adam'}")
                runs.append(train_run(model, data, beta=b, rho=r, eps=eps, lr=lr, steps=steps,
                                      seed=s, penalty=p, counter_weight=counter_weight,
                                      loss_fn=loss_fn, checkpoints=checkpoints,
                                      eps_placement=eps_placement,
                                      on_step=lambda: bar.update(1)))
    finally:
        torch.set_num_threads(old_threads)
    return AdamSweepResult(kind=kind, values=values, fixed=fixed, seeds=seeds, steps=steps, lr=lr,
                       eps=eps, model=model_name, counter_weight=counter_weight, runs=runs,
                       seconds=time.perf_counter() - t0)


def rho_sweep(values=None, **kwargs) -> AdamSweepResult:
    """:func:`adam_sweep` over ``ρ`` with ``β`` fixed (default 0.99).

    >>> rho_sweep([0.99], steps=1, seeds=1, counter=False, progress=False).kind
    'rho'
    """
    return adam_sweep("rho", values, **kwargs)


def beta_sweep(values=None, **kwargs) -> AdamSweepResult:
    """:func:`adam_sweep` over ``β`` with ``ρ`` fixed (default 0.999).

    >>> beta_sweep([0.5], steps=1, seeds=1, counter=False, progress=False).fixed
    {'rho': 0.999}
    """
    return adam_sweep("beta", values, **kwargs)

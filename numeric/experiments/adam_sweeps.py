"""The ρ and β sweeps with full-batch Adam: every swept value × every seed, the same number of
steps, optionally repeated with the cancelling penalty (the counter-experiment).

``adam_sweep("rho", ...)`` sweeps ``ρ`` with ``β`` fixed (default 0.99), ``adam_sweep("beta",
...)`` sweeps ``β`` with ``ρ`` fixed (default 0.999); :func:`rho_sweep` and :func:`beta_sweep`
are the two shorthands.  Inputs are validated before any training (``ValueError``).  Results:
"final" is the value logged at the last step (``n = steps``); ``finals(metric)`` is an array
``[len(values), len(seeds)]``; runs are told apart by the swept value and the penalty
(``"none"`` or ``"cancel"``).
"""
import csv
import io
import sys
import time
from dataclasses import dataclass

import numpy as np

from .data import (DEFAULTS, beta_rho, check_kind, check_lr, check_positive_int, check_seeds,
                   check_sweep_values, load_digits_data, model_factory)
from .report import judge_trend, summary_text
from .train import RunResult, train_run


CSV_COLUMNS = ("sweep", "model", "penalty", "seed", "beta", "rho", "eps", "lr", "step",
               "train_loss", "one_norm", "train_acc", "test_acc")


@dataclass
class AdamSweepResult:
    """All runs of a sweep, with the CSV rows, final values, plots and summary."""
    kind: str                                      # "rho" or "beta"
    values: tuple
    fixed: dict[str, float]
    seeds: tuple
    steps: int
    lr: float
    eps: float
    model: str
    counter_weight: float
    runs: list[RunResult]
    seconds: float = float("nan")

    @property
    def penalties(self):
        return tuple(p for p in ("none", "cancel") if any(r.penalty == p for r in self.runs))

    @property
    def n_params(self):
        """The number of trained parameters (0 if unknown)."""
        return self.runs[0].n_params if self.runs else 0

    def value_of(self, run):
        return run.rho if self.kind == "rho" else run.beta

    def select(self, value, penalty="none"):
        return [r for r in self.runs if self.value_of(r) == value and r.penalty == penalty]

    def finals(self, metric, penalty="none"):
        """Array ``[len(values), len(seeds)]`` of the value at the last step."""
        return np.array([[r.final(metric) for r in self.select(v, penalty)] for v in self.values])

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in self.runs:
            const = [f"{self.kind}-sweep", self.model, r.penalty, r.seed, repr(r.beta), repr(r.rho),
                     repr(r.eps), repr(r.lr)]
            L = r.log
            for i in range(len(L["step"])):
                w.writerow(const + [L["step"][i]] + [repr(float(L[k][i])) for k in
                                                     ("train_loss", "one_norm", "train_acc",
                                                      "test_acc")])
        return buf.getvalue()

    def trend(self, metric, penalty="none"):
        """The paper's trend for ``metric`` in this sweep (:func:`.report.judge_trend`)."""
        return judge_trend(self.kind, metric, self.finals(metric, penalty))

    def summary(self) -> str:
        """The Markdown summary (:func:`.report.summary_text`)."""
        return summary_text(self)


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
    given = {"beta": beta, "rho": rho}
    if given[kind] is not None:
        raise ValueError(f"{kind} is the swept hyperparameter of a {kind} sweep; pass values "
                         f"instead")
    (other, default), = DEFAULTS[kind]["fixed"].items()
    check = mt.check_beta if other == "beta" else mt.check_rho
    fixed = {other: check(default if given[other] is None else given[other])}
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

"""The result of a ρ or β sweep: all runs, their CSV rows, final values and trends.

Conventions: "final" is the value logged at the last step (``n = steps``); ``finals(metric)``
is an array ``[len(values), len(seeds)]``; runs are told apart by the swept value and the penalty
(``"none"`` or ``"cancel"``).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from .report import summary_text
from .train import RunResult
from .trends import judge_trend

__all__ = ["AdamSweepResult", "CSV_COLUMNS"]

CSV_COLUMNS = ("sweep", "model", "penalty", "seed", "beta", "rho", "eps", "lr", "step",
               "train_loss", "one_norm", "train_acc", "test_acc")


@dataclass
class AdamSweepResult:
    """All runs of a sweep, with the CSV rows, final values, plots and summary."""
    kind: str                                      # "rho" or "beta"
    values: tuple
    fixed: Dict[str, float]
    seeds: tuple
    steps: int
    lr: float
    eps: float
    model: str
    counter_weight: float
    runs: List[RunResult]
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
        """The paper's trend for ``metric`` in this sweep (:func:`.trends.judge_trend`)."""
        return judge_trend(self.kind, metric, self.finals(metric, penalty))

    def summary(self) -> str:
        """The Markdown summary (:func:`.report.summary_text`)."""
        return summary_text(self)

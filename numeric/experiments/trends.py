"""The paper's four trends and how a sweep is judged against them.

Verdicts (``observed``, ``partly observed``, ``not observed``) as stated in
:mod:`modeq.numeric.experiments`; the rank correlation is Spearman's; standard deviations are
sample ones (``ddof=1``; 0 for a single seed).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["PAPER_TRENDS", "spearman", "judge_trend"]

#: The paper's direction for each (sweep, metric): +1 rises with the swept value, -1 falls.
PAPER_TRENDS = {
    ("rho", "one_norm"): (+1, "1. as rho grows, the perturbed one-norm rises"),
    ("rho", "test_acc"): (-1, "2. as rho grows, test accuracy falls"),
    ("beta", "one_norm"): (-1, "3. as beta grows, the perturbed one-norm falls"),
    ("beta", "test_acc"): (+1, "4. as beta grows, test accuracy rises"),
}


def spearman(x, y):
    """Spearman's rank correlation (average ranks of ties; ``nan`` for a constant input).

    >>> spearman([1, 2, 3], [10, 30, 20])
    0.5
    """
    def ranks(a):
        a = np.asarray(a, dtype=float)
        order = a.argsort(kind="stable")
        r = np.empty(len(a))
        r[order] = np.arange(len(a))
        for v in np.unique(a):                          # average ranks of ties
            idx = a == v
            r[idx] = r[idx].mean()
        return r
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def judge_trend(kind, metric, finals):
    """The paper's trend for ``metric`` in a ``kind`` sweep, from ``finals`` (array
    ``[values, seeds]`` of final values), judged as the module docstring says.

    >>> judge_trend("rho", "one_norm", np.array([[1.0, 1.1], [2.0, 2.1]]))["verdict"]
    'observed'
    """
    direction, text = PAPER_TRENDS[(kind, metric)]
    mean = finals.mean(axis=1)
    std = finals.std(axis=1, ddof=1) if finals.shape[1] > 1 else np.zeros(len(mean))
    diffs = np.diff(mean) * direction
    monotone = bool(len(mean) > 1 and np.all(diffs > 0))
    change = float(mean[-1] - mean[0])
    beyond = bool(abs(change) > std[0] + std[-1])
    rank = spearman(np.arange(len(mean)), mean) if len(mean) > 1 else float("nan")
    if len(mean) < 2:
        verdict = "not testable (a single value)"
    elif monotone and beyond and change * direction > 0:
        verdict = "observed"
    elif math.isfinite(rank) and rank * direction > 0:
        verdict = "partly observed"
    else:
        verdict = "not observed"
    return {"text": text, "direction": direction, "mean": mean, "std": std,
            "monotone": monotone, "change": change, "beyond_spread": beyond,
            "spearman": rank, "verdict": verdict}

"""Results of an order study: one :class:`Point` per run, one :class:`OrderResult` per flow
order, the :class:`StudyResult` with its convergence table and JSON.

Conventions: step sizes are kept as exact rational strings (``Point.h``), discrepancies and
estimates as floats; ``rates[i]`` is the observed rate between points ``i - 1`` and ``i``
(``rates[0]`` is ``None``); verdicts are ``"pass"``, ``"fail"`` or ``"unresolved"``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import sympy as sp

from ..atomic import atomic_write
from .plot import plot_study

__all__ = ["Point", "OrderResult", "StudyResult"]


@dataclass
class Point:
    """One run: step size ``h``, ``steps = floor(T/h)``, the discrepancy ``error`` and the
    estimates that decide whether it is resolved."""
    h: str
    steps: int
    error: float
    integrator_error: float
    rounding_error: float
    resolved: bool
    reason: str
    method: str
    substeps: int
    evaluations: int
    seconds: float
    error_digits: str = ""

    @property
    def hf(self) -> float:
        return float(sp.Rational(self.h))


@dataclass
class OrderResult:
    """Points, observed rates, fitted slope and verdict (pass / fail / unresolved) of one
    flow order."""
    order: int
    expected: int
    tol: float
    points: List[Point]
    rates: List[Optional[float]]
    slope: Optional[float]
    fit_from: int
    verdict: str
    reason: str


@dataclass
class StudyResult:
    """The outcome of :func:`~modeq.numeric.study.order_study`; ``.table()``, ``.plot(path)``,
    ``.to_json()``."""
    optimizer: str
    problem: str
    batch: str
    stationary: bool
    dps: int
    T: str
    values: Dict[str, str]
    orders: Dict[int, OrderResult]
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def verdicts(self) -> Dict[int, str]:
        return {r: o.verdict for r, o in self.orders.items()}

    @property
    def passed(self) -> bool:
        return all(v == "pass" for v in self.verdicts.values())

    def title(self):
        kind = "stationary" if self.stationary else "exact-n"
        vals = ", ".join(f"{k}={v}" for k, v in sorted(self.values.items()))
        return (f"{self.optimizer} on {self.problem} ({self.batch} batch, {kind} flow; {vals}; "
                f"T={self.T}, dps={self.dps})")

    def table(self, fmt="text") -> str:
        """The convergence table: per ``h`` and order the discrepancy, the observed rate from
        the previous ``h``, and the integrator and rounding estimates; then slope and verdict
        per order.  ``fmt`` is ``"text"`` or ``"markdown"``."""
        if fmt not in ("text", "markdown"):
            raise ValueError(f"fmt must be 'text' or 'markdown', got {fmt!r}")
        orders = sorted(self.orders)
        head = ["h"]
        for r in orders:
            head += [f"error r={r}", "rate", "integ. est.", "round. est."]
        rows = []
        npts = len(self.orders[orders[0]].points)
        for i in range(npts):
            row = [self.orders[orders[0]].points[i].h]
            for r in orders:
                pt = self.orders[r].points[i]
                rate = self.orders[r].rates[i]
                mark = "" if pt.resolved else " (unresolved)"
                row += [f"{pt.error:.3e}{mark}", "" if rate is None else f"{rate:.3f}",
                        f"{pt.integrator_error:.1e}", f"{pt.rounding_error:.1e}"]
            rows.append(row)
        summary = []
        for r in orders:
            o = self.orders[r]
            slope = "n/a" if o.slope is None else f"{o.slope:.3f}"
            summary.append(f"order {r}: slope {slope} (expected {o.expected} +/- {o.tol}, fit "
                           f"from h={o.points[o.fit_from].h}) -> {o.verdict.upper()}"
                           f"{': ' + o.reason if o.reason else ''}")
        if fmt == "markdown":
            lines = [f"**{self.title()}**", "", "| " + " | ".join(head) + " |",
                     "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
            lines += [""] + [f"- {s}" for s in summary]
            return "\n".join(lines) + "\n"
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        fmt_row = lambda row: "  ".join(str(x).rjust(w) for x, w in zip(row, widths))  # noqa
        lines = [self.title(), fmt_row(head), "  ".join("-" * w for w in widths)]
        lines += [fmt_row(row) for row in rows] + summary
        return "\n".join(lines) + "\n"

    def to_dict(self):
        d = asdict(self)
        d["orders"] = {str(r): asdict(o) for r, o in self.orders.items()}
        d["verdicts"] = {str(r): v for r, v in self.verdicts.items()}
        d["passed"] = self.passed
        return d

    def to_json(self, path=None) -> str:
        """JSON text of the whole result; written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False,
                          default=str)
        if path is not None:
            atomic_write(path, text + "\n")
        return text

    def plot(self, path):
        """Log–log plot of the discrepancy against ``h`` per order (:func:`.plot.plot_study`);
        written atomically (PNG, PDF or SVG by the file suffix); returns ``path``."""
        return plot_study(self, path)


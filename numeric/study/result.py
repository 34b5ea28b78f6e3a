"""Results of an order study: one :class:`Point` per run, one :class:`OrderResult` per flow
order, the :class:`StudyResult` with its convergence table and JSON.

Conventions: step sizes are kept as exact rational strings (``Point.h``), discrepancies and
estimates as floats; ``rates[i]`` is the observed rate between points ``i - 1`` and ``i``
(``rates[0]`` is ``None``); verdicts are ``"pass"``, ``"fail"`` or ``"unresolved"``.
"""
import json
from dataclasses import asdict, dataclass, field

import sympy as sp

from ..atomic import atomic_savefig, atomic_write


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
    points: list[Point]
    rates: list[float | None]
    slope: float | None
    fit_from: int
    verdict: str
    reason: str


@dataclass
class StudyResult:
    """The outcome of :func:`~modeq.numeric.study.order_study`; ``.table()``, ``.plot(path)``,
    ``.to_json()``.

    >>> import sympy as sp
    >>> from modeq.numeric import order_study
    >>> from modeq.symbolic import optimizers
    >>> x = sp.Symbol("x")
    >>> res = order_study(optimizers.gd(), x**2 / 2, [x], [1], hs=["1/8", "1/16", "1/32"],
    ...                   orders=(0,), dps=20)
    >>> res.passed, res.orders[0].verdict, round(res.orders[0].slope)
    (True, 'pass', 1)
    """
    optimizer: str
    problem: str
    batch: str
    stationary: bool
    dps: int
    T: str
    values: dict[str, str]
    orders: dict[int, OrderResult]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def verdicts(self) -> dict[int, str]:
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
        """Log–log plot of the discrepancy against ``h`` per order: unresolved points crossed,
        the integrator + rounding estimate dotted, the reference slope ``h^(r+1)`` through the
        finest point dashed, ``h`` on a base-2 axis; written atomically (PNG, PDF or SVG by the
        file suffix).  matplotlib is imported here (Agg backend)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import LogFormatterMathtext, NullLocator

        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
        for r in sorted(self.orders):
            o = self.orders[r]
            c = colors[r % len(colors)]
            hs = [pt.hf for pt in o.points]
            es = [pt.error if pt.error > 0 else float("nan") for pt in o.points]
            label = f"order {r} flow: slope {o.slope:.2f} ({o.verdict})" if o.slope is not None \
                else f"order {r} flow ({o.verdict})"
            ax.loglog(hs, es, "o-", color=c, label=label)
            bad = [(hh, e) for hh, e, pt in zip(hs, es, o.points) if not pt.resolved]
            if bad:
                ax.loglog(*zip(*bad), "x", color="k", markersize=9)
            floor = [pt.integrator_error + pt.rounding_error for pt in o.points]
            ax.loglog(hs, [f if f > 0 else float("nan") for f in floor], ":", color=c,
                      label=f"order {r}: integrator + rounding estimate")
            anchor = o.points[-1]
            if anchor.error > 0:
                ref = [anchor.error * (hh / anchor.hf) ** (r + 1) for hh in hs]
                ax.loglog(hs, ref, "--", color=c, alpha=0.5, label=f"reference slope {r + 1}")
        ax.set_xscale("log", base=2)            # h = 2^-k: one labelled tick per step size
        ax.xaxis.set_major_formatter(LogFormatterMathtext(base=2))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("step size h")
        ax.set_ylabel(r"max$_{n \leq T/h}$ $\|\theta^{(n)} - \tilde\theta(nh)\|_\infty$")
        ax.set_title(self.title(), fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        try:
            atomic_savefig(fig, path, dpi=120)
        finally:
            plt.close(fig)
        return path

"""The log–log convergence plot of a :class:`~modeq.numeric.study.result.StudyResult`.

Per flow order ``r``: the discrepancy against ``h`` (unresolved points crossed), the integrator +
rounding estimate (dotted) and the reference slope ``h^(r+1)`` through the finest point (dashed);
``h`` on a base-2 axis.  matplotlib is imported only when a plot is drawn (Agg backend).
"""
from __future__ import annotations

from ..atomic import atomic_savefig

__all__ = ["plot_study"]


def plot_study(result, path):
    """Draw ``result`` (a ``StudyResult``) and save it atomically to ``path``; returns ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogFormatterMathtext, NullLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for r in sorted(result.orders):
        o = result.orders[r]
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
    ax.set_title(result.title(), fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        atomic_savefig(fig, path, dpi=120)
    finally:
        plt.close(fig)
    return path

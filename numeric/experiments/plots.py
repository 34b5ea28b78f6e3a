"""Figures of a sweep (pyplot-free ``matplotlib.figure.Figure`` objects, imported when drawn).

Conventions: one line per swept value (seed mean; band = min–max over seeds) against the step,
or final values against the swept value (error bars = sample std over seeds); a second panel or
column for the counter-experiment when it ran; the floor ``p·√ε`` of the norm dotted.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["plot_norm_vs_step", "plot_final_vs_value"]


def plot_norm_vs_step(res):
    """Figure: ‖∇E‖_(1,ε) against the step, one line per swept value (seed mean, band = min–max
    over seeds); a second panel for the counter-experiment when it ran."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    pens = res.penalties
    fig = Figure(figsize=(6.2 * len(pens), 4.2))
    axes = fig.subplots(1, len(pens), squeeze=False, sharey=True)
    cmap = colormaps["viridis"]
    for ax, pen in zip(axes[0], pens):
        for i, v in enumerate(res.values):
            runs = res.select(v, pen)
            Y = np.array([r.log["one_norm"] for r in runs])
            x = np.array(runs[0].log["step"])
            color = cmap(i / max(1, len(res.values) - 1))
            ax.plot(x, Y.mean(axis=0), color=color, label=f"{res.kind} = {v:g}")
            if len(runs) > 1:
                ax.fill_between(x, Y.min(axis=0), Y.max(axis=0), color=color, alpha=0.2)
        floor = res.n_params * math.sqrt(res.eps)
        if floor > 0:
            ax.axhline(floor, color="gray", ls=":", lw=1, label="floor p·√ε")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title("Adam" if pen == "none" else "Adam + cancelling penalty")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("‖∇E‖₁,ε (train loss)")
    axes[0][0].legend(fontsize=8)
    fixed = ", ".join(f"{n}={v:g}" for n, v in res.fixed.items())
    fig.suptitle(f"{res.model}, digits, full batch, {fixed}, h={res.lr:g}, ε={res.eps:g}")
    fig.tight_layout()
    return fig


def plot_final_vs_value(res):
    """Figure: final test accuracy (top) and final norm (bottom) against the swept value, error
    bars = std over seeds; one column for Adam and one for the counter-experiment (own scales)."""
    from matplotlib.figure import Figure
    pens = res.penalties
    fig = Figure(figsize=(5.8 * len(pens), 7.2))
    axes = fig.subplots(2, len(pens), squeeze=False, sharex=True)
    x = np.arange(len(res.values))
    for col, pen in enumerate(pens):
        for row, (metric, label) in enumerate((("test_acc", "final test accuracy"),
                                               ("one_norm", "final ‖∇E‖₁,ε"))):
            ax = axes[row][col]
            F_ = res.finals(metric, pen)
            sd = F_.std(axis=1, ddof=1) if F_.shape[1] > 1 else np.zeros(len(x))
            ax.errorbar(x, F_.mean(axis=1), yerr=sd, fmt="o-" if pen == "none" else "s--",
                        color="C0" if pen == "none" else "C1", capsize=4)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title("Adam" if pen == "none" else "Adam + cancelling penalty")
            else:
                ax.set_xticks(x)
                ax.set_xticklabels([f"{v:g}" for v in res.values])
                ax.set_xlabel(res.kind)
    fig.suptitle(f"{res.model}, digits, value at step {res.steps}, {len(res.seeds)} seeds "
                 f"(error bars: std over seeds)")
    fig.tight_layout()
    return fig

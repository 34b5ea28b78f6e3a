"""What a sweep shows: the paper's four trends judged, the Markdown summary, the figures, and
:func:`write_outputs` (CSV, plots, summary, each written atomically).

Trend verdicts (``observed``, ``partly observed``, ``not observed``) as stated in
:mod:`modeq.numeric.experiments`, with Spearman's rank correlation and sample standard deviations
(``ddof=1``; 0 for a single seed). The summary states the settings, the final values (seed mean ±
sample std), each of the paper's trends with its verdict and numbers, caveats (train loss moving
with the norm, the floor ``p·√ε`` of the norm, the regime ``h/(1-β)``, ``h/(1-ρ)``) and, when it
ran, the counter-experiment with the cancelling penalty. Figures are pyplot-free
``matplotlib.figure.Figure`` objects (matplotlib imported when drawn): one line per swept value
(seed mean; band = min–max over seeds) against the step, or final values against the swept value
(error bars = sample std over seeds); a second panel or column for the counter-experiment when it
ran; the floor ``p·√ε`` of the norm dotted.
"""
import math
import os

import numpy as np

from ..atomic import atomic_savefig, atomic_write_text
from .data import beta_rho


#: Before a trend is called observed (or partly observed): seeds per value, and the smallest
#: change between the first and last value, relative to the largest |seed mean|.
MIN_SEEDS = 2
MIN_RELATIVE_CHANGE = 0.01

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
    scale = float(np.abs(mean).max()) if len(mean) else 0.0
    if len(mean) < 2:
        verdict = "not testable (a single value)"
    elif monotone and beyond and change * direction > 0:
        verdict = "observed"
    elif math.isfinite(rank) and rank * direction > 0:
        verdict = "partly observed"
    else:
        verdict = "not observed"
    if verdict in ("observed", "partly observed"):
        if finals.shape[1] < MIN_SEEDS:
            verdict = f"not established (fewer than {MIN_SEEDS} seeds: no spread to compare with)"
        elif abs(change) < MIN_RELATIVE_CHANGE * scale:
            verdict = (f"not established (change {change:+.3g} below "
                       f"{MIN_RELATIVE_CHANGE:.0%} of the values)")
    return {"text": text, "direction": direction, "mean": mean, "std": std,
            "monotone": monotone, "change": change, "beyond_spread": beyond,
            "spearman": rank, "verdict": verdict}


def _fmt(x, digits=4):
    return "nan" if not math.isfinite(x) else f"{x:.{digits}g}"


def _coefficient(res, v):
    """``A = (1+β)/(1-β) − (1+ρ)/(1-ρ)`` of the runs at the swept value ``v``."""
    b, r = beta_rho(res.kind, res.fixed, v)
    return (1 + b) / (1 - b) - (1 + r) / (1 - r)


def summary_text(res) -> str:
    """The Markdown summary of a sweep result (module docstring)."""
    k = res.kind
    other = "beta" if k == "rho" else "rho"
    fixed_txt = ", ".join(f"{n} = {v:g}" for n, v in res.fixed.items())
    lines = [f"# Full-batch Adam, {k} sweep ({res.model}, digits)", ""]
    lines.append(f"Settings: {fixed_txt}; {k} in {{{', '.join(f'{v:g}' for v in res.values)}}}; "
                 f"lr h = {res.lr:g}; eps = {res.eps:g} (inside the square root); "
                 f"{res.steps} full-batch steps; seeds {list(res.seeds)}; float32 on CPU. "
                 f"'Final' = the value at step {res.steps}; ± = sample std over seeds.")
    if math.isfinite(res.seconds):
        lines.append(f"Wall time: {res.seconds:.1f} s.")
    lines += ["", "## Final values (Adam, no penalty)", "",
              f"| {k} | A = (1+β)/(1-β) − (1+ρ)/(1-ρ) | train loss | ‖∇E‖_(1,ε) | train acc | "
              f"test acc |", "|---|---|---|---|---|---|"]
    for i, v in enumerate(res.values):
        A = _coefficient(res, v)
        cells = []
        for m in ("train_loss", "one_norm", "train_acc", "test_acc"):
            F_ = res.finals(m)[i]
            sd = F_.std(ddof=1) if len(F_) > 1 else 0.0
            cells.append(f"{_fmt(F_.mean())} ± {_fmt(sd, 2)}")
        lines.append(f"| {v:g} | {A:.4g} | " + " | ".join(cells) + " |")
    lines += ["", "## The paper's trends", ""]
    for metric in ("one_norm", "test_acc"):
        t = res.trend(metric)
        means = ", ".join(_fmt(m) for m in t["mean"])
        lines.append(f"- Trend {t['text']}: **{t['verdict']}**. Seed means along increasing {k}: "
                     f"{means}; change first→last {t['change']:+.4g} (seed std at the ends "
                     f"{_fmt(t['std'][0], 2)}, {_fmt(t['std'][-1], 2)}); monotone in the paper's "
                     f"direction: {'yes' if t['monotone'] else 'no'}; Spearman rank correlation "
                     f"with {k}: {_fmt(t['spearman'], 3)}.")
    other_trends = "3 and 4" if k == "rho" else "1 and 2"
    lines.append(f"- Trends {other_trends} concern the {other} sweep "
                 f"(`modeq experiment {other}-sweep`).")
    loss_t = spearman(np.arange(len(res.values)), res.finals("train_loss").mean(axis=1)) \
        if len(res.values) > 1 else float("nan")
    norm_t = res.trend("one_norm")["spearman"]
    if math.isfinite(loss_t) and math.isfinite(norm_t) and loss_t * norm_t > 0:
        means = ", ".join(_fmt(m) for m in res.finals("train_loss").mean(axis=1))
        lines.append(f"- Caveat: the final train loss moves the same way as the norm (seed means "
                     f"{means}; Spearman {_fmt(loss_t, 3)}), so at an equal number of steps part "
                     f"of the norm's trend may be slower or faster convergence rather than a "
                     f"different implicit bias.")
    n_params = res.n_params
    if n_params:
        lines.append(f"- Floor: ‖v‖_(1,ε) ≥ p·√ε = {n_params}·{math.sqrt(res.eps):.3g} = "
                     f"{n_params * math.sqrt(res.eps):.4g} for p = {n_params} parameters, "
                     f"reached only when the gradient vanishes.")
    fixed_name, fixed_val = next(iter(res.fixed.items()))
    rhos = res.values if k == "rho" else (res.fixed["rho"],)
    lines += ["", "Regime: the first-order coefficients have the size of h/(1-β) and h/(1-ρ) "
              "(the averages' memory in units of time); the truncated expansion is trustworthy "
              f"only when both are small. Here h/(1-{fixed_name}) = "
              f"{res.lr / (1 - fixed_val):.3g} and h/(1-{k}) = "
              + ", ".join(f"{res.lr / (1 - v):.3g}" for v in res.values)
              + f" for {k} = " + ", ".join(f"{v:g}" for v in res.values) + ". "
              "The stationary coefficients also assume ρ^n small (bias correction); at the last "
              f"step ρ^{res.steps} = " + ", ".join(f"{r ** res.steps:.3g}" for r in rhos) + "."]
    if "cancel" in res.penalties:
        lines += ["", "## Counter-experiment: the penalty that cancels the first-order term", "",
                  f"Same runs trained on E + P with P = ImplicitBiasPenalty(sign=-1, "
                  f"weight={res.counter_weight:g}): its one-norm coefficient is "
                  f"−(h/2)·A, a penalty on ‖∇E‖_(1,ε) when A < 0 (ρ > β).", "",
                  f"| {k} | −(h/2)·A | ‖∇E‖ Adam | ‖∇E‖ cancelled | test acc Adam | "
                  f"test acc cancelled | train loss cancelled |", "|---|---|---|---|---|---|---|"]
        lowered, stalled, flat, coefs = 0, [], [], []
        floor = res.n_params * math.sqrt(res.eps)
        for i, v in enumerate(res.values):
            A = _coefficient(res, v)
            n0, n1 = res.finals("one_norm")[i], res.finals("one_norm", "cancel")[i]
            a0, a1 = res.finals("test_acc")[i], res.finals("test_acc", "cancel")[i]
            l0, l1 = res.finals("train_loss")[i], res.finals("train_loss", "cancel")[i]
            init = np.array([rr.log["train_loss"][0] for rr in res.select(v, "cancel")])
            lowered += int(n1.mean() < n0.mean())
            if np.all(l1 > 0.9 * init) and np.all(l0 < 0.5 * init):
                stalled.append(v)
                coefs.append(abs(res.lr / 2 * A * res.counter_weight))
                if floor > 0 and np.all(n1 < 2 * floor):
                    flat.append(v)
            lines.append(f"| {v:g} | {-res.lr / 2 * A * res.counter_weight + 0.0:.3g} | "
                         f"{_fmt(n0.mean())} | {_fmt(n1.mean())} | {_fmt(a0.mean())} | "
                         f"{_fmt(a1.mean())} | {_fmt(l1.mean())} |")
        lines += ["", f"Cancelling the term lowered the final norm at {lowered} of "
                      f"{len(res.values)} settings."]
        if stalled:
            lines.append(
                f"At {k} ∈ {{{', '.join(f'{v:g}' for v in stalled)}}} the cancelled runs did not "
                f"train (final train loss above 90% of the initial one, while plain Adam got "
                f"below 50%)" + (f"; at {k} ∈ {{{', '.join(f'{v:g}' for v in flat)}}} their "
                                 f"gradient norm ends within 2× of the floor p·√ε, a flat point "
                                 f"where the gradient vanishes" if flat else "")
                + ". The penalty's one-norm coefficient (h/2)|A| is "
                + ", ".join(f"{c:.3g}" for c in coefs)
                + " there, not small against the loss: the first-order term it cancels is as "
                  "large, a sign that these settings lie outside the regime where the truncated "
                  "expansion in h is accurate.")
        for metric in ("one_norm", "test_acc"):
            t = res.trend(metric, "cancel")
            lines.append(f"- With the cancelling penalty, trend {t['text'][3:]}: "
                         f"**{t['verdict']}** (means {', '.join(_fmt(m) for m in t['mean'])}).")
    return "\n".join(lines) + "\n"


def plot_norm_vs_step(res):
    """Figure: ‖∇E‖_(1,ε) against the step, one line per swept value (seed mean, band = min–max
    over seeds); a second panel for the counter-experiment when it ran.

    >>> from modeq.numeric.experiments import rho_sweep
    >>> res = rho_sweep([0.9, 0.99], steps=1, seeds=1, progress=False)
    >>> len(plot_norm_vs_step(res).axes)           # Adam, Adam + cancelling penalty
    2
    """
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
    bars = std over seeds; one column for Adam and one for the counter-experiment (own scales).

    >>> from modeq.numeric.experiments import beta_sweep
    >>> res = beta_sweep([0.5, 0.9], steps=1, seeds=1, counter=False, progress=False)
    >>> len(plot_final_vs_value(res).axes)
    2
    """
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


def write_outputs(res, out_dir) -> dict[str, str]:
    """Write ``{kind}-sweep.csv``, ``{kind}-norm-vs-step.png``, ``{kind}-final-vs-value.png`` and
    ``{kind}-summary.md`` into ``out_dir`` (created if needed), each atomically.  Returns the
    paths by role.

    >>> import tempfile
    >>> from modeq.numeric.experiments import rho_sweep
    >>> res = rho_sweep([0.9, 0.99], steps=1, seeds=1, counter=False, progress=False)
    >>> with tempfile.TemporaryDirectory() as out:
    ...     sorted(write_outputs(res, out))
    ['csv', 'final_plot', 'norm_plot', 'summary']
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    k = res.kind
    paths = {"csv": os.path.join(out_dir, f"{k}-sweep.csv"),
             "norm_plot": os.path.join(out_dir, f"{k}-norm-vs-step.png"),
             "final_plot": os.path.join(out_dir, f"{k}-final-vs-value.png"),
             "summary": os.path.join(out_dir, f"{k}-summary.md")}
    atomic_write_text(paths["csv"], res.csv_text())
    for key, make in (("norm_plot", plot_norm_vs_step), ("final_plot", plot_final_vs_value)):
        # a pyplot-free Figure: PNG through matplotlib's Agg renderer, whatever the global backend
        atomic_savefig(make(res), paths[key], dpi=110)
    atomic_write_text(paths["summary"], res.summary())
    return paths

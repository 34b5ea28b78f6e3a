"""The paper's empirical evidence, small and honest: ρ and β sweeps with full-batch Adam.

Cattaneo, Klusowski and Shigida (ICML 2024) train ResNet-50 on CIFAR-10 with full-batch Adam
(``ε = 1e-8``) and report four trends:

1. as ``ρ`` grows (``β = 0.99``) the perturbed one-norm ``‖∇E‖_{1,ε}`` rises,
2. ... and test accuracy falls;
3. as ``β`` grows (``ρ = 0.999``) the norm falls,
4. ... and test accuracy rises.

Their explanation is the first-order implicit-bias term of Adam's modified flow
(:mod:`modeq.numeric.torch`): for small ``ε`` it adds ``(h/2)·A·‖∇E‖_{1,ε}`` to the loss with
``A = (1+β)/(1-β) − (1+ρ)/(1-ρ)``, an anti-penalty when ``ρ > β``.

This module reruns the experiment on a laptop: scikit-learn's bundled 8×8 digits (no download,
fixed stratified train/test split 1257/540), a small MLP or CNN in float32 on the CPU, full-batch
Adam in the paper's convention (``ε`` inside the square root, bias correction:
:class:`modeq.numeric.torch.AdamEpsInside`), the same number of steps for every setting, several
seeds.  Logged at every step ``n = 0 … steps`` (values at the iterate ``θ⁽ⁿ⁾``, before update
``n``): train loss ``E``, ``‖∇E‖_{1,ε}`` of the train loss ``E`` alone (never of a penalty),
train and test accuracy.  The counter-experiment trains the same runs on
``E + ImplicitBiasPenalty(sign=-1)``, which cancels the first-order term.

"Final" always means the value logged at the last step (``n = steps``); the spread over seeds is
their sample standard deviation.  A trend is *observed* when the seed-mean moves monotonically in
the paper's direction across all swept values and the change from the first to the last value
exceeds the sum of their seed standard deviations; *partly observed* when the rank correlation
between the swept value and the seed-mean has the paper's sign but the stricter test fails; *not
observed* otherwise.  Neither of the first two is said with fewer than two seeds per value or a change
below 1 % of the values (*not established*, with the reason).  The summary states the numbers either way.

Python API: :func:`adam_sweep` (or :func:`rho_sweep`, :func:`beta_sweep`) returns an
:class:`AdamSweepResult`; :func:`write_outputs` writes the CSV, the plots and the summary
(atomically); :func:`train_run` is one training run. Bring your own model and data: ``model`` may
be a callable returning a fresh ``nn.Module`` (called after ``torch.manual_seed(seed)``) or a
module (deep-copied and re-initialised with ``reset_parameters()`` under the seed), ``data`` a
:class:`Data` or a tuple ``(X_train, y_train, X_test, y_test)``, ``loss_fn(output, target)`` any
scalar loss (default cross-entropy); accuracy is ``argmax(output) == target`` when the targets are
integer labels and ``nan`` otherwise.

Modules, in dependency order: :mod:`.data` (settings and their validation, digits, models),
:mod:`.train` (one run), :mod:`.report` (trends, summary, plots, outputs), :mod:`.adam_sweeps`
(:class:`AdamSweepResult`, the sweeps).  torch, scikit-learn and matplotlib are imported only
when a function needs them.
"""
from .adam_sweeps import CSV_COLUMNS, AdamSweepResult, adam_sweep, beta_sweep, rho_sweep
from .data import DEFAULTS, MODELS, Data, check_sweep_values, load_digits_data, make_model
from .report import PAPER_TRENDS, plot_final_vs_value, plot_norm_vs_step, write_outputs
from .train import RunResult, train_run

__all__ = [
    "Data", "RunResult", "AdamSweepResult", "load_digits_data", "make_model", "train_run",
    "adam_sweep", "rho_sweep", "beta_sweep", "write_outputs", "plot_norm_vs_step",
    "plot_final_vs_value", "check_sweep_values", "DEFAULTS", "MODELS", "CSV_COLUMNS",
    "PAPER_TRENDS",
]

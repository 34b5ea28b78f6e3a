"""modeq.numeric: high-precision iterates, flow integration, order-of-accuracy studies, torch.

What a user calls, importable from here (each has a docstring example):

* studies: :func:`order_study` (-> :class:`StudyResult`), :func:`sweep` over problems and a
  hyperparameter grid (-> :class:`SweepResult`), :func:`grid_points`, :func:`validate_inputs`;
* the pieces: :func:`iterates` / :class:`Iterator` (optimizer iterates in mpmath or exact),
  :func:`integrate` (piecewise flows, embedded Runge–Kutta pairs in :data:`TABLEAUX`),
  :func:`method_for`; the named problems :data:`PROBLEMS`, :func:`get_problem`,
  :func:`problem_names`, :data:`DEFAULT_HS`;
* the torch experiments (:mod:`modeq.numeric.experiments`, loaded on first use):
  :func:`adam_sweep`, :func:`rho_sweep`, :func:`beta_sweep`, :func:`train_run`,
  :func:`load_digits_data`, :func:`make_model`, :func:`write_outputs`.

Importing this package imports neither torch, matplotlib nor dask; the matrix-free torch path
is :mod:`modeq.numeric.torch` (imports torch).

>>> import subprocess, sys
>>> code = ("import sys, modeq.numeric; "
...         "print(sorted({'torch', 'matplotlib', 'dask'} & set(sys.modules)))")
>>> subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
'[]'
"""
from .integrate import TABLEAUX, FlowRun, integrate, method_for
from .iterate import Iterator, iterates
from .problems import DEFAULT_HS, PROBLEMS, Problem, get as get_problem, names as problem_names
from .study import StudyResult, order_study, validate_inputs
from .sweep import SweepResult, grid_points, sweep

_EXPERIMENTS = ("adam_sweep", "rho_sweep", "beta_sweep", "train_run", "load_digits_data",
                "make_model", "write_outputs")

__all__ = ["order_study", "StudyResult", "sweep", "SweepResult", "grid_points",
           "validate_inputs", "iterates", "Iterator", "integrate", "method_for", "TABLEAUX",
           "FlowRun", "Problem", "PROBLEMS", "DEFAULT_HS", "get_problem", "problem_names",
           *_EXPERIMENTS]


def __getattr__(name):
    # the experiments load on first use (they need torch and scikit-learn when they run)
    if name in _EXPERIMENTS:
        from . import experiments
        return getattr(experiments, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

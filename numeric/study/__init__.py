"""Order-of-accuracy studies: iterates against their modified flows (docs/conventions.md §3, §5).

For each step size ``h`` and flow order ``r`` the study runs the optimizer and integrates the
flow of order ``r`` on ``[0, T]`` in the same precision, and records the discrepancy

    e(h, r) = max_{0 <= n <= T/h} || theta^(n) - theta~(n h) ||_inf .

Theory: ``e = O(h^(r+1))``, so the least-squares slope of ``log e`` against ``log h`` over the
asymptotic points must be ``r + 1`` within ``tol``.

A point is *resolved* only if ``e >= RESOLUTION * (integrator estimate + rounding estimate)``
(``RESOLUTION = 1000``).  The integrator estimate is the run's sum of embedded local error
estimates (:mod:`modeq.numeric.integrate`); when it is too large and ``refine`` is on, the run is
repeated with more substeps per interval.  The rounding estimate is a model, not a measurement:
``ROUNDING_FACTOR * u * N * max(1, |theta|)`` for each of the two runs, with unit roundoff
``u = 2^(1 - prec)`` and ``N = T/h`` steps.  Any unresolved point makes the order's verdict
``unresolved``: a slope fitted where rounding or the integrator dominates is never reported as
pass or fail.

Asymptotic points: starting from all points, the coarsest is dropped while more than
``min_points`` remain and its observed rate differs from the slope fitted over the remaining
points by more than ``tol``.

Modules, in dependency order: :mod:`.result` (points, verdicts, table, JSON, plot),
:mod:`.fields` (the derived flows, compiled), :mod:`.run` (one step size, the cache, tasks
through joblib), :mod:`.judge` (rates, slope, verdict), :mod:`.api` (input validation,
:func:`order_study`).
"""
from ..atomic import atomic_write
from .api import order_study, validate_inputs
from .fields import FieldFactory, compiled_full_batch_field
from .judge import DEFAULT_TOL, judge_order, judge_study, tolerances
from .result import OrderResult, Point, StudyResult
from .run import RESOLUTION, ROUNDING_FACTOR, run_step_size, run_tasks, study_spec

__all__ = ["order_study", "StudyResult", "OrderResult", "Point", "DEFAULT_TOL", "RESOLUTION",
           "ROUNDING_FACTOR", "atomic_write", "validate_inputs", "FieldFactory",
           "compiled_full_batch_field", "judge_order", "judge_study", "tolerances",
           "run_step_size", "run_tasks", "study_spec"]

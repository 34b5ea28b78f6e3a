"""Hypothesis profiles for the property-based tests (tests/test_properties_*.py).

* ``ci`` (default): few examples per property, derandomized (fixed seed) so that a failure
  reproduces on every run, alone or in the suite (below: Hypothesis's constants from imported
  modules), no deadline (a derivation may take seconds); all properties in
  <= 3 minutes on a 2-core machine.
* ``long`` (``MODEQ_FUZZ=long``): 20x the examples of ``ci`` (each property scales its own
  count with :func:`examples`), still derandomized, for before releases.

Tests ask for their example count with ``settings(max_examples=examples(k))``: ``k`` in the
``ci`` profile, ``20 k`` in ``long``.
"""
import os
import sys

from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))          # tests/strategies.py, series_oracle.py

FUZZ = os.environ.get("MODEQ_FUZZ", "ci")
if FUZZ not in ("ci", "long"):
    raise ValueError(f"MODEQ_FUZZ must be 'ci' or 'long', got {FUZZ!r}")
SCALE = 20 if FUZZ == "long" else 1

_COMMON = dict(deadline=None, derandomize=True, print_blob=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
# Hypothesis (recent versions) also draws, with a small probability per choice, constants
# found in the source of the local modules imported so far (modeq's and the tests'), so a
# derandomized test drew other examples, of other sizes, depending on what had run before it
# in the process: the expand property took 9 s alone and 40 s in a CI worker, and a failure
# seen in CI need not reproduce alone.  The pool of local constants is kept empty for the
# suite (a private name of Hypothesis: if it goes, the guard leaves Hypothesis as it is;
# tests/test_hypothesis_examples.py then fails).
from hypothesis.internal.conjecture import providers as _providers  # noqa: E402

if callable(getattr(_providers, "_get_local_constants", None)) and \
        hasattr(_providers, "_local_constants"):
    _providers._get_local_constants = lambda: _providers._local_constants

settings.register_profile("ci", max_examples=10, **_COMMON)
settings.register_profile("long", max_examples=200, **_COMMON)
settings.load_profile(FUZZ)


def examples(k):
    """``k`` examples in the ci profile, ``20 k`` in the long one."""
    return k * SCALE


# -- the derivation cache: never the user's, shared by the run's workers ---------------------
# Set at import (derivations during collection included), so the suite never reads or writes
# the user's cache directory.  The first process of a run (pytest itself, or the xdist
# controller) creates the folder and exports it; xdist's workers and the subprocesses of tests
# inherit it, so a derivation made by one worker is read by the other (the cache is safe for
# concurrent processes: whole entries are renamed into place).  The creator removes it at exit.
import atexit
import shutil
import tempfile

import pytest

_OWNER = "MODEQ_TEST_CACHE_OWNER"
if os.environ.get(_OWNER) and os.path.isdir(os.environ.get("MODEQ_CACHE_DIR", "")):
    _CACHE_DIR = os.environ["MODEQ_CACHE_DIR"]
else:
    _CACHE_DIR = tempfile.mkdtemp(prefix="modeq-test-cache-")
    os.environ["MODEQ_CACHE_DIR"] = _CACHE_DIR
    os.environ[_OWNER] = str(os.getpid())
    atexit.register(shutil.rmtree, _CACHE_DIR, True)
os.environ.pop("MODEQ_NO_CACHE", None)


@pytest.fixture(autouse=True, scope="session")
def _private_derivation_cache():
    """Every test (and every subprocess it starts) uses the run's temporary cache directory."""
    os.environ["MODEQ_CACHE_DIR"] = _CACHE_DIR
    yield _CACHE_DIR


@pytest.fixture(autouse=True)
def _sympy_random_seeded():
    """SymPy's random state (factorisation's evaluation points, numeric checks) seeded per
    test: a test costs the same on every run, whatever ran before it in the worker."""
    from sympy.core.random import seed
    seed(0)
    yield


@pytest.fixture(autouse=True)
def _mpmath_precision_restored():
    """Tests that set ``mpmath.mp.dps`` globally leave it as they found it (a doctest that
    counts terms at the default precision must not see the 60 digits of another test)."""
    import mpmath
    saved = mpmath.mp.prec
    yield
    mpmath.mp.prec = saved

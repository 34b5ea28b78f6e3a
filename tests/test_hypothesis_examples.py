"""The suite's derandomized Hypothesis examples do not depend on what the process imported
before the test (``conftest.py`` keeps Hypothesis's pool of constants from the source of
imported local modules empty): a failure seen in CI reproduces when its test is run alone.

Oracle: the same property run in two fresh processes, one of which first imports every modeq
module; the drawn examples must be the same list.  Without the conftest setting they differ
(checked: modeq's sources hold hundreds of integer constants)."""
import os
import subprocess
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))

CODE = """
import importlib, sys
sys.path.insert(0, {tests!r})
import conftest                                  # the suite's Hypothesis profile and setting
if {import_all}:
    from test_doctests import MODULES            # every module of the package
    for name in MODULES:
        importlib.import_module(name)
from hypothesis import given, settings, strategies as st
seen = []

@settings(max_examples=60)
@given(st.lists(st.integers(-10**6, 10**6), max_size=6), st.floats(-1e6, 1e6))
def prop(xs, f):
    seen.append((xs, f))

prop()
print(repr(seen))
"""


def _examples(import_all):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, "-c", CODE.format(tests=TESTS, import_all=import_all)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_examples_do_not_depend_on_the_modules_imported_before():
    plain, after_imports = _examples(False), _examples(True)
    assert plain.startswith("[(") and plain == after_imports

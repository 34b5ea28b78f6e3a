"""Dependencies point one way: symbolic (pure SymPy) <- numeric <- proofs."""
import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
import modeq.symbolic as S
for m in pkgutil.iter_modules(S.__path__):
    importlib.import_module('modeq.symbolic.' + m.name)
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch')
             or m.startswith(('modeq.numeric', 'modeq.proofs')))
print(bad)
"""


def test_symbolic_imports_neither_numeric_nor_proofs_nor_numpy_nor_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_no_top_level_symbolic_package_leaks():
    r = subprocess.run([sys.executable, "-c", "import symbolic"], capture_output=True,
                       text=True, cwd="/")
    assert r.returncode != 0

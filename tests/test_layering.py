"""The module map holds: dependencies point one way, no import cycles, files with one job.

``symbolic`` (pure SymPy) <- ``numeric`` <- ``proofs``; inside ``symbolic`` the IR <- passes <-
pipeline <- flow <- recognize / emit chain.  Imports are read from the source with ``ast``,
including imports inside functions (a lazy import is still a dependency).
"""
import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = {"symbolic": "modeq.symbolic", "numeric": "modeq.numeric", "proofs": "modeq.proofs"}
# the symbolic layer, by role (module names relative to modeq.symbolic)
# expand, dag: SymPy helpers (expansion, cached queries on expressions)
IR = {"family", "operators", "components", "optimizers", "expand", "dag"}
PASSES = {"memory", "expansion", "solve", "batches", "epoch", "epoch_memory"}
MAX_LINES = 450

CODE = """
import importlib, pkgutil, sys
import modeq.symbolic as S
for m in pkgutil.walk_packages(S.__path__, 'modeq.symbolic.'):
    importlib.import_module(m.name)
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch')
             or m.startswith(('modeq.numeric', 'modeq.proofs')))
print(bad)
"""


def modules():
    """``{module name: path}`` of every production module."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def imports(name, path, known):
    """The modeq modules that module ``name`` imports anywhere in its source."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            mod = f"{base}.{node.module}" if node.level and node.module else \
                (base if node.level else node.module)
            # ``from package import submodule`` depends on the submodule, not on the
            # package's face; ``from module import name`` on the module
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod
                       for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


GRAPH = None


def graph():
    global GRAPH
    if GRAPH is None:
        mods = modules()
        GRAPH = {m: imports(m, p, mods) for m, p in mods.items()}
    return GRAPH


def _role(m):
    return m.split(".")[2] if m.startswith("modeq.symbolic.") else None


def test_symbolic_imports_neither_numeric_nor_proofs_nor_numpy_nor_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_no_top_level_symbolic_package_leaks():
    r = subprocess.run([sys.executable, "-c", "import symbolic"], capture_output=True,
                       text=True, cwd="/")
    assert r.returncode != 0


def test_the_reader_finds_the_imports():
    """The graph is not vacuous: known edges are seen (a lazy one included)."""
    G = graph()
    assert "modeq.symbolic.pipeline" in G["modeq.symbolic.flow"]
    assert "modeq.symbolic.emit.field" in G["modeq.symbolic.flow"]        # inside lambdify
    assert "modeq.symbolic.emit.kernel" in G["modeq.symbolic.emit.full_batch"]


def test_no_import_cycles():
    G = graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in G[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in G:
        if v not in index:
            visit(v)
    assert cycles == []


@pytest.mark.parametrize("lower, upper", [("modeq.symbolic", "modeq.numeric"),
                                          ("modeq.symbolic", "modeq.proofs"),
                                          ("modeq.numeric", "modeq.proofs")])
def test_dependencies_point_one_way(lower, upper):
    bad = {m: sorted(t for t in ts if t.startswith(upper))
           for m, ts in graph().items() if m.startswith(lower + ".") or m == lower}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_inside_symbolic_the_chain_points_one_way():
    G = graph()
    bad = []
    for m, ts in G.items():
        role = _role(m)
        if role is None:
            continue
        roles = {_role(t) for t in ts if _role(t)}
        if role in IR and roles - IR - {"emit"} - {None}:
            bad.append((m, "IR imports", sorted(roles - IR)))
        if role in PASSES and roles & {"pipeline", "flow", "emit", "recognize", "prove",
                                       "display", "regimes", "codegen"}:
            bad.append((m, "a pass imports a later stage", sorted(roles)))
        if role == "emit" and roles & (PASSES | {"pipeline", "flow", "codegen", "display"}):
            bad.append((m, "emit imports the derivation", sorted(roles)))
    assert bad == []


def test_production_files_have_one_job_and_stay_small():
    long = {str(p.relative_to(ROOT)): n for p in modules().values()
            if (n := sum(1 for ln in p.read_text().splitlines() if ln.strip())) > MAX_LINES}
    assert long == {}


def test_every_subpackage_ships_with_pip_install():
    """``pip install .`` installs only the packages pyproject lists: each folder with an
    ``__init__.py`` must be among them (a missing ``modeq.symbolic.emit`` broke the install)."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert found - listed == set()

"""The docstring examples of the package run, and every public name at the roots has one."""
import doctest
import importlib
import inspect
import pkgutil

import pytest

ROOTS = ("modeq.symbolic", "modeq.numeric", "modeq.proofs")


def _modules():
    names = []
    for root in ROOTS:
        pkg = importlib.import_module(root)
        names.append(root)
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, root + ".")]
    return sorted(set(names))


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)              # examples that write files write them here
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        if t.examples:
            runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0


@pytest.mark.parametrize("root", ROOTS)
def test_public_functions_have_an_example(root):
    pkg = importlib.import_module(root)
    missing = [n for n in pkg.__all__
               if (inspect.isfunction(obj := getattr(pkg, n)) or inspect.isclass(obj))
               and ">>>" not in (inspect.getdoc(obj) or "")]
    assert missing == []

"""The remembered output of ``modeq derive`` (proofs/output_cache.py): the same text as a run
that derives everything anew, printed without importing SymPy; never another command's or
another code's answer; stored where the derivation cache lives and cleared with it."""
import os
import subprocess
import sys

import pytest

from modeq.proofs import output_cache
from modeq.symbolic import cache

PY = [sys.executable, "-c"]
RUN = ("import sys; from modeq.proofs import cli; code = cli.main(); "
       "sys.stderr.write('sympy imported: %s\\n' % ('sympy' in sys.modules)); sys.exit(code)")


def _modeq(args, cache_dir, extra_env=None):
    env = dict(os.environ, MODEQ_CACHE_DIR=str(cache_dir))
    env.pop("MODEQ_NO_CACHE", None)
    env.update(extra_env or {})
    r = subprocess.run(PY + [RUN, *args], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout, "sympy imported: True" in r.stderr


def test_a_repeated_derive_prints_the_same_without_sympy(tmp_path):
    fresh, _ = _modeq(["derive", "gd", "--no-cache"], tmp_path / "other")   # derived anew
    first, first_sympy = _modeq(["derive", "gd"], tmp_path)
    again, again_sympy = _modeq(["derive", "gd"], tmp_path)
    assert first == fresh and again == fresh
    assert first_sympy and not again_sympy
    other, _ = _modeq(["derive", "gd", "--order", "0"], tmp_path)           # other arguments
    assert other != again and "F1" not in other


def test_callers_in_python_never_get_a_remembered_output(tmp_path, monkeypatch, capsys):
    from modeq.proofs.cli import main
    monkeypatch.setenv("MODEQ_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MODEQ_NO_CACHE", raising=False)
    output_cache.store(["derive", "gd"], "not the answer\n")
    assert main(["derive", "gd", "--no-recognize"]) == 0
    assert main(["derive", "gd"]) == 0 and "not the answer" not in capsys.readouterr().out
    assert len(list(tmp_path.glob(f"*{output_cache.SUFFIX}"))) == 1     # nothing stored


def test_no_cache_means_no_remembered_output(tmp_path):
    _modeq(["derive", "gd"], tmp_path)
    _, used_sympy = _modeq(["derive", "gd"], tmp_path, {"MODEQ_NO_CACHE": "1"})
    assert used_sympy
    assert not output_cache.cacheable(["derive", "gd", "--no-cache"])
    assert not output_cache.cacheable(["derive", "--torch", "SGD(lr=0.1)"])
    assert not output_cache.cacheable(["verify", "adam"])


def test_a_foreign_or_damaged_entry_is_not_printed(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEQ_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MODEQ_NO_CACHE", raising=False)
    argv = ["derive", "gd"]
    output_cache.store(argv, "the answer\n")
    assert output_cache.lookup(argv) == "the answer\n"
    (entry,) = tmp_path.glob(f"*{output_cache.SUFFIX}")
    entry.write_text("modeq-output 0000\nanother answer\n")
    assert output_cache.lookup(argv) is None
    output_cache.store(argv, "the answer\n")
    monkeypatch.setattr(output_cache, "_fingerprint", "another version of modeq")
    assert output_cache.lookup(argv) is None


def test_cache_clear_removes_remembered_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEQ_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MODEQ_NO_CACHE", raising=False)
    output_cache.store(["derive", "gd"], "text\n")
    assert cache.info()["entries"] == 1
    assert cache.clear() == 1
    assert output_cache.lookup(["derive", "gd"]) is None


@pytest.mark.parametrize("env", [{"MODEQ_CACHE_DIR": "somewhere"},
                                 {"XDG_CACHE_HOME": "xdg"}, {"HOME": "home"}])
def test_outputs_live_in_the_derivation_cache_directory(env, tmp_path, monkeypatch):
    """Under each rule of the cache location, a remembered output is an entry of
    ``modeq.symbolic.cache`` (counted by ``info``, removed by ``clear``) at the documented path."""
    for name in ("MODEQ_CACHE_DIR", "XDG_CACHE_HOME", "MODEQ_NO_CACHE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, str(tmp_path / value))
    expected = {"MODEQ_CACHE_DIR": tmp_path / "somewhere", "XDG_CACHE_HOME": tmp_path / "xdg" /
                "modeq", "HOME": tmp_path / "home" / ".cache" / "modeq"}[next(iter(env))]
    output_cache.store(["derive", "gd"], "text\n")
    assert len(list(expected.glob(f"*{output_cache.SUFFIX}"))) == 1
    assert cache.info()["directory"] == str(expected) and cache.clear() == 1


def test_the_light_modules_import_no_sympy():
    code = ("import sys, modeq.symbolic, modeq.proofs, modeq.proofs.output_cache, "
            "modeq.symbolic.cache_location; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('sympy', 'numpy', 'mpmath', 'torch')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"

"""The on-disk derivation cache never changes an answer, and the fast proofs never accept a
wrong identity.

Cache: a cached derivation equals the uncached one (several built-ins); a corrupted, truncated
or foreign entry is ignored with a warning and recomputed; ``--no-cache`` / ``MODEQ_NO_CACHE``
/ ``cache.disabled()`` neither read nor write; ``modeq cache clear`` empties the directory;
processes writing the same key concurrently leave a readable entry.  Fast proofs: a wrong
coefficient injected into a derived term is rejected by the exact random-point check.
"""
import multiprocessing
import os
import warnings

import pytest
import sympy as sp

from modeq.proofs.cli import main
from modeq.symbolic import cache, derive, optimizers, pipeline
from modeq.symbolic.family import EMA, beta, eps, g as g_sym, rho, theta
from modeq.symbolic.operators import D3, FULL, Grad, Hess
from modeq.symbolic.prove import agree_exactly_at_points, prove_equal
from modeq.symbolic.recognize import _candidates, recognize

g = Grad(FULL)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("MODEQ_CACHE_DIR", str(d))
    monkeypatch.delenv("MODEQ_NO_CACHE", raising=False)
    return d


def _entries(d):
    return sorted(p for p in d.glob("*.pickle")) if d.is_dir() else []


def _canonical(x):
    """``x`` with every Dummy replaced by a plain symbol of its name (dummies are re-created
    fresh when an entry is loaded, so only their names and places are comparable)."""
    if isinstance(x, sp.Basic):
        return x.xreplace({d: sp.Symbol("dummy_" + d.name, **d.assumptions0)
                           for d in x.atoms(sp.Dummy)})
    if isinstance(x, (list, tuple)):
        return [_canonical(y) for y in x]
    if isinstance(x, dict):
        return {k: _canonical(v) for k, v in x.items()}
    return x


def _summary(d):
    return dict(F=_canonical(d.F), psi=_canonical(d.psi), flow_step=_canonical(d.flow_step),
                states=[(s.state, _canonical(s.terms), _canonical(s.raw)) for s in d.states])


BUILTINS = [("gd", {}, 2), ("heavy_ball", {}, 1), ("rmsprop", {}, 1), ("adam", {}, 1),
            ("adam", dict(bias_correction=False), 1), ("adam", dict(eps_placement="outside"), 1)]


@pytest.mark.parametrize("name, kw, order", BUILTINS)
@pytest.mark.parametrize("stationary", [False, True])
def test_a_cached_derivation_equals_the_uncached_one(cache_dir, monkeypatch, name, kw, order,
                                                     stationary):
    with cache.disabled():
        fresh = pipeline.derivation(optimizers.get(name, **kw), order, "full", stationary)
    assert _entries(cache_dir) == []
    pipeline.derivation(optimizers.get(name, **kw), order, "full", stationary)   # stores
    assert len(_entries(cache_dir)) == 1
    # a new declaration object (no in-memory hit) must come from disk: computing is an error
    monkeypatch.setattr(pipeline, "solve_next", _no_computing)
    opt = optimizers.get(name, **kw)
    loaded = pipeline.derivation(opt, order, "full", stationary)
    assert loaded.optimizer is opt
    assert _summary(loaded) == _summary(fresh)


def _no_computing(*args, **kwargs):
    raise AssertionError("derived again although the entry is cached")


def _no_constructing(cls, *args, **kwargs):
    raise AssertionError(f"a {cls.__name__} constructed again while loading")


def test_a_cached_mini_batch_derivation_loads_its_sums_as_stored(cache_dir, monkeypatch):
    """The memory sums of a mini-batch field are rebuilt from their stored arguments, never
    passed through SymPy's constructor again (which walks every summand as a tree: loading
    AdaBelief's order-2 entry took 82 s that way, 2 s now), and equal the computed ones."""
    with cache.disabled():
        fresh = pipeline.derivation(optimizers.adam(), 1, "mini")
    pipeline.derivation(optimizers.adam(), 1, "mini")                 # stores
    with monkeypatch.context() as m:
        m.setattr(pipeline, "solve_next", _no_computing)
        m.setattr(sp.Sum, "__new__", _no_constructing)
        loaded = pipeline.derivation(optimizers.adam(), 1, "mini")
    assert any(F.has(sp.Sum) for F in loaded.F)
    sums = [s for F in loaded.F for s in F.atoms(sp.Sum)]
    assert all(s.is_commutative and s.free_symbols for s in sums)
    assert _summary(loaded) == _summary(fresh)


def test_cached_display_and_proofs_equal_the_uncached_ones(cache_dir):
    def answers():
        flow = derive(optimizers.adam(), 1)
        from modeq.symbolic.display import flow_latex, flow_text
        recs = recognize(flow, stationary=True, dims=(1, 2))
        return (flow_text(flow), flow_latex(flow, stationary=True),
                [(r.name, r.closed_form, list(r.checks), [c.kind for c in r.checks])
                 for r in recs])
    with cache.disabled():
        ref = answers()
    assert answers() == ref and len(_entries(cache_dir)) >= 4
    assert answers() == ref
    assert ref[2] and ref[2][0][3] == ["proof", "evidence", "evidence"]


def test_custom_classes_unpickle_equal():
    m = EMA("m", decay=beta, of=g_sym, bias_correction=True)
    u = EMA("u", decay=rho, of=(g_sym - m) ** 2 + theta, scale=3, normalized=False)
    exprs = [m, u, m / sp.sqrt(u + eps), Hess(FULL, g / sp.sqrt(g ** 2 + eps)),
             D3(FULL, g, Hess(FULL, g)), sp.Sum(beta ** sp.Symbol("k") * g, (sp.Symbol("k"), 0, 3)),
             sp.Product(1 - beta ** sp.Symbol("k"), (sp.Symbol("k"), 1, sp.Symbol("n")))]
    for x in exprs:
        y = cache._loads(cache._dumps(x))
        assert y == x and type(y) is type(x)
    y = cache._loads(cache._dumps(u))
    assert (y.decay, y.of, y.custom_scale, y.normalized, y.start) == \
        (u.decay, u.of, u.custom_scale, u.normalized, u.start)


def test_dummies_are_fresh_after_loading_and_consistent_within_an_entry():
    k = sp.Dummy("k", integer=True)
    expr = [sp.Sum(beta ** k, (k, 0, 3)), k + 1]
    a, b = cache._loads(cache._dumps(expr))
    (k2,) = b.atoms(sp.Dummy)
    assert k2 != k and k2.name == "k" and k2.is_integer
    assert list(a.variables) == [k2]                     # the same dummy in both places
    assert a.doit() == expr[0].doit()


def test_the_key_is_the_declarations_content():
    a, b = optimizers.adam(), optimizers.adam()
    assert a is not b and cache.declaration_text(a) == cache.declaration_text(b)
    assert cache.declaration_text(a) != cache.declaration_text(optimizers.adam("outside"))
    m = EMA("m", decay=beta, of=g_sym)
    m2 = EMA("m", decay=beta, of=g_sym, normalized=False)
    from modeq.symbolic import Optimizer
    assert cache.declaration_text(Optimizer("x", [m], m)) != \
        cache.declaration_text(Optimizer("x", [m2], m2))


@pytest.mark.parametrize("damage", ["garbage", "truncate", "flip"])
def test_a_corrupted_entry_warns_and_gives_the_same_answer(cache_dir, damage):
    ref = derive(optimizers.rmsprop(), 1).terms()
    (path,) = _entries(cache_dir)
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a cache entry at all")
    elif damage == "truncate":
        path.write_bytes(data[: len(data) - 40])
    else:
        path.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    with pytest.warns(cache.CacheWarning):
        again = derive(optimizers.rmsprop(), 1).terms()
    assert again == ref
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # rewritten: read without a warning
        assert derive(optimizers.rmsprop(), 1).terms() == ref


def test_a_foreign_version_or_key_is_ignored(cache_dir, monkeypatch):
    ref = derive(optimizers.heavy_ball(), 1).terms()
    (path,) = _entries(cache_dir)
    # another version keys its entries differently: it never reads this one ...
    monkeypatch.setattr(cache, "_FINGERPRINT", "modeq 0.0.1; another source")
    assert derive(optimizers.heavy_ball(), 1).terms() == ref
    (foreign,) = [p for p in _entries(cache_dir) if p != path]
    monkeypatch.undo()
    monkeypatch.setenv("MODEQ_CACHE_DIR", str(cache_dir))
    # ... and its entry found under this version's name is refused by its header
    foreign.replace(path)
    with pytest.warns(cache.CacheWarning, match="written by"):
        assert derive(optimizers.heavy_ball(), 1).terms() == ref
    # an entry of another key under this key's name (e.g. copied by hand)
    for p in _entries(cache_dir):
        p.unlink()
    derive(optimizers.gd(), 1).terms()
    (other,) = _entries(cache_dir)
    other.rename(path)
    with pytest.warns(cache.CacheWarning, match="another key"):
        assert derive(optimizers.heavy_ball(), 1).terms() == ref


def test_an_unwritable_cache_warns_once_and_still_answers(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("MODEQ_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(cache.CacheWarning, match="cannot store"):
        assert derive(optimizers.gd(), 1).terms()[1] == Hess(FULL, g) / 2


def test_no_cache_on_the_command_line_and_in_python(cache_dir, monkeypatch, capsys):
    assert main(["derive", "gd", "--no-cache"]) == 0
    assert _entries(cache_dir) == [] and os.environ.get("MODEQ_NO_CACHE") is None
    monkeypatch.setenv("MODEQ_NO_CACHE", "1")
    assert main(["derive", "gd"]) == 0
    assert _entries(cache_dir) == []
    monkeypatch.delenv("MODEQ_NO_CACHE")
    with cache.disabled():
        derive(optimizers.sgd(), 1).terms()
    assert _entries(cache_dir) == []
    capsys.readouterr()
    assert main(["derive", "gd"]) == 0
    first = capsys.readouterr().out
    assert _entries(cache_dir)
    assert main(["derive", "gd"]) == 0 and capsys.readouterr().out == first
    for command in (["verify", "--help"], ["latex", "--help"], ["codegen", "--help"],
                    ["reproduce", "--help"]):
        with pytest.raises(SystemExit):
            main(command)
        assert "--no-cache" in capsys.readouterr().out


def test_cache_info_and_clear(cache_dir, capsys):
    assert main(["derive", "heavy_ball"]) == 0
    n = len(_entries(cache_dir))
    assert n >= 2
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(cache_dir) in out and f"entries:   {n}" in out
    (cache_dir / "notes.txt").write_text("not ours")
    assert main(["cache", "clear"]) == 0
    assert f"removed {n} entries" in capsys.readouterr().out
    assert _entries(cache_dir) == [] and (cache_dir / "notes.txt").exists()


def _writer(args):
    directory, rounds = args
    os.environ["MODEQ_CACHE_DIR"] = directory
    opt = optimizers.adam()
    value = {"F": [sp.Symbol("x") ** 2 / 3, Hess(FULL, g / sp.sqrt(g ** 2 + eps))]}
    seen = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # a torn or unreadable entry would warn
        for _ in range(rounds):
            cache.store("test", opt, value, order=1)
            got = cache.lookup("test", opt, order=1)
            assert got is not cache.MISS and got == value
            seen += 1
    return seen


def test_concurrent_writers_of_the_same_key(cache_dir):
    cache_dir.mkdir()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        counts = pool.map(_writer, [(str(cache_dir), 25)] * 4)
    assert counts == [25] * 4
    assert len(_entries(cache_dir)) == 1
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".tmp-")]
    assert cache.lookup("test", optimizers.adam(), order=1)["F"][0] == sp.Symbol("x") ** 2 / 3


def _asker(args):
    """One process asking for an entry that takes 0.5 s to compute; each computation leaves
    a line in ``log``."""
    import time
    directory, log = args
    os.environ["MODEQ_CACHE_DIR"] = directory

    def compute():
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        return sp.Symbol("x") ** 2 / 3
    return cache.cached("test", optimizers.adam(), compute, order=1)


def test_processes_asking_for_one_entry_at_once_compute_it_once(cache_dir, tmp_path):
    """Three processes ask for the same missing entry at the same time: one computes it while
    the others wait on its lock (:func:`modeq.symbolic.cache.computing`), then read it; a
    second round reads it too.  The lock files are not entries: ``clear`` removes them
    uncounted."""
    cache_dir.mkdir()
    log = tmp_path / "computed.log"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(3) as pool:
        for _ in range(2):
            got = pool.map(_asker, [(str(cache_dir), str(log))] * 3)
            assert got == [sp.Symbol("x") ** 2 / 3] * 3
    assert len(log.read_text().split()) == 1
    assert [p.name[:6] for p in cache_dir.iterdir() if not p.name.endswith(".pickle")] \
        == [".lock-"]
    assert cache.clear() == 1 and not list(cache_dir.iterdir())


def test_a_derivation_waits_for_the_process_deriving_it(cache_dir, monkeypatch):
    """``derivation`` computes under the key's lock and looks the entry up again inside it:
    an entry another process stored while this one waited is read, not derived again."""
    from dataclasses import replace
    other = derive(optimizers.heavy_ball(), 1).derivation()      # "the other process's"
    for p in cache_dir.glob("*.pickle"):
        p.unlink()
    computing, solved = cache.computing, []

    def waited(kind, optimizer, **variant):     # the other process stores while we wait
        cache.store(kind, optimizer, replace(other, optimizer=None), **variant)
        return computing(kind, optimizer, **variant)
    monkeypatch.setattr(cache, "computing", waited)
    monkeypatch.setattr(pipeline, "_solve_terms", lambda *a: solved.append(a))
    d = pipeline.derivation(optimizers.heavy_ball(), 1)
    assert not solved and _summary(d) == _summary(other)


# -- fast proofs -------------------------------------------------------------------------------
@pytest.mark.parametrize("stationary", [False, True])
@pytest.mark.parametrize("factor", [sp.Rational(1, 10**12), sp.Rational(-1, 7)])
def test_a_wrong_coefficient_in_adams_correction_is_rejected_fast(stationary, factor):
    with cache.disabled():
        flow = derive(optimizers.adam(), 1)
        F1 = flow.terms(stationary=stationary)[1]
        ref = _candidates(flow, stationary)[0][3]
        assert agree_exactly_at_points(F1, ref, 2) is True
        terms = sp.Add.make_args(sp.expand(F1))
        wrong = F1 + factor * terms[0]                       # one term's coefficient changed
        for p in (1, 2, 3):
            assert agree_exactly_at_points(wrong, ref, p) is False
        checks = prove_equal(wrong, ref, dims=(1, 2))
        assert len(checks) == 1 and not checks[0][1] and "exact arithmetic" in checks[0][0]


def test_a_wrong_coefficient_in_the_explicit_euler_term_is_rejected():
    F2 = derive(optimizers.gd(), 2).terms("full", stationary=True)[2]
    right = D3(FULL, g, g) / 12 + Hess(FULL, Hess(FULL, g)) / 3
    wrong = D3(FULL, g, g) / 13 + Hess(FULL, Hess(FULL, g)) / 3
    assert [c.label for c in prove_equal(F2, right, (1, 2))] == ["proved", "checked", "checked"]
    assert [c.label for c in prove_equal(F2, wrong, (1, 2))] == ["FAILED"]


def test_a_tampered_flow_is_not_recognized(monkeypatch):
    with cache.disabled():
        flow = derive(optimizers.rmsprop(), 1)
        good = flow.terms(stationary=True)
        monkeypatch.setattr(type(flow), "terms",
                            lambda self, b="full", s=False: [good[0], good[1] * (1 + sp.S(10) ** -9)])
        assert recognize(flow, stationary=True, dims=(1, 2)) == []


def test_full_component_proofs_on_request(capsys):
    with cache.disabled():
        flow = derive(optimizers.rmsprop(), 1)
        (rec,) = recognize(flow, stationary=True, dims=(1, 2), components="prove")
    assert [c.kind for c in rec.checks] == ["proof"] * 3 and rec.proved
    assert main(["derive", "rmsprop", "--stationary", "--full-proofs", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert out.count("[proved]") == 5 and "[checked]" not in out


def test_roots_that_are_not_exactly_evaluable_fall_back_to_high_precision():
    x = Hess(FULL, (1 + g) * sp.tanh(g))
    y = Hess(FULL, sp.tanh(g) + g * sp.tanh(g))
    assert agree_exactly_at_points(x, y, 1) is None
    checks = prove_equal(x, y, (1,))
    assert [c.label for c in checks] == ["proved", "checked"] and "60 digits" in checks[1][0]
    assert not all(ok for _, ok in prove_equal(x, 2 * y, (1,)))

"""Array / matrix-free forms and emitted modules against independent values: the paper's
formula and the published GD / heavy-ball forms written here with NumPy, the engine's component
form evaluated exactly, and the symbolic field of a concrete loss evaluated exactly."""
import ast
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

from modeq.proofs.cli import main
from modeq.symbolic import derive, optimizers
from modeq.symbolic.emit.forms import (MatrixFreeFlow, first_order_form, flow_forms, matrix_free,
                                      verify)
from modeq.symbolic.codegen import generate_module
from modeq.symbolic.family import h as h_sym

import torch

B, R, EPS, H = 0.8, 0.9, 1e-3, 0.02


def _sym_batch(p, N, seed):
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((p, N))
    A = rng.standard_normal((p, p, N))
    return g, A + A.transpose(1, 0, 2)


def _paper_F1(g, Hm, b, r, e):
    """F1 of Adam from the paper's correction: h F1 = correction / sqrt(g^2+eps)."""
    s = np.sqrt(g**2 + e)
    dnorm = np.einsum("ji...,i...->j...", Hm, g / s)
    return 0.5 * ((1 + b) / (1 - b) - (1 + r) / (1 - r) + (1 + r) / (1 - r) * e / s**2) \
        * dnorm / s


def _rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


# ------------------------------------------------------------------ structure and proofs
def test_adam_first_order_form_is_one_hvp_of_the_normalised_gradient():
    form = first_order_form(derive(optimizers.adam(), 1), stationary=True)
    assert form.is_linear and form.n_hvp == 1 and form.n_d3 == 0
    (c, u), = form.pairs
    gs = sp.Symbol("g")
    assert sp.simplify(u - gs / sp.sqrt(gs**2 + sp.Symbol("eps", positive=True))) == 0


@pytest.mark.parametrize("make, order, stationary, dims", [
    (lambda: optimizers.adam(), 1, True, (1, 2, 3, 4)),
    (lambda: optimizers.adam(), 1, False, (1, 2, 3)),
    (lambda: optimizers.adam(eps_placement="outside"), 1, True, (1, 2, 3, 4)),
    (lambda: optimizers.heavy_ball(), 2, True, (1, 2, 3)),
    (lambda: optimizers.gd(), 2, False, (1, 2, 3, 4)),
], ids=["adam", "adam-n", "adam-outside", "heavy-ball-2", "gd-2"])
def test_forms_are_proved_equal_to_the_component_form(make, order, stationary, dims):
    for form in flow_forms(derive(make(), order), stationary)[1:]:
        checks = verify(form, dims)
        assert checks and all(ok for _, ok in checks), checks


def test_gd_second_order_structure_is_nested_hvp_and_third_derivative():
    F2 = flow_forms(derive(optimizers.gd(), 2))[2]
    kinds = sorted(c.kind for c in F2.contractions)
    assert kinds == ["d3", "hvp", "hvp"] and not F2.is_linear
    with pytest.raises(ValueError, match="not of the form"):
        F2.pairs


def test_mini_batch_terms_have_no_array_form():
    F1 = derive(optimizers.sgd(), 1).terms("mini")[1]
    with pytest.raises(ValueError, match="full-batch"):
        matrix_free(F1)


# ---------------------------------------------------------------------- numeric forms
@pytest.mark.parametrize("p", [1, 3, 10])
def test_adam_array_and_matrix_free_forms_match_the_papers_formula(p):
    form = first_order_form(derive(optimizers.adam(), 1), stationary=True)
    g, Hm = _sym_batch(p, 7, seed=p)
    ref = _paper_F1(g, Hm, B, R, EPS)
    for backend in ("numpy", "torch"):
        f = form.array_function(backend=backend, beta=B, rho=R, eps=EPS)
        mf = form.lambdify(backend=backend, beta=B, rho=R, eps=EPS)
        if backend == "torch":
            gt, Ht = torch.tensor(g), torch.tensor(Hm)
            out = f(gt, Ht).numpy()
            out2 = mf(gt, lambda v: torch.einsum("ji...,i...->j...", Ht, v)).numpy()
        else:
            out = f(g, Hm)
            out2 = mf(g, lambda v: np.einsum("ji...,i...->j...", Hm, v))
        assert _rel(out, ref) < 1e-12 and _rel(out2, ref) < 1e-12
    # one point, shape (p,)
    f = form.array_function(beta=B, rho=R, eps=EPS)
    assert _rel(f(g[:, 0], Hm[:, :, 0]), ref[:, 0]) < 1e-12


def test_flow_and_correction_of_gd_and_heavy_ball_against_published_forms():
    p = 4
    rng = np.random.default_rng(3)
    g = rng.standard_normal(p)
    A = rng.standard_normal((p, p))
    Hm = A + A.T
    T = rng.standard_normal((p, p, p))
    T = sum(T.transpose(perm) for perm in [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0),
                                            (2, 0, 1), (2, 1, 0)])
    hvp = lambda v: Hm @ v                                         # noqa: E731
    d3 = lambda u, w: np.einsum("ijk,j,k->i", T, u, w)             # noqa: E731
    gd = MatrixFreeFlow(derive(optimizers.gd(), 2)).lambdify(h=H)
    ref = -(g + H / 2 * Hm @ g + H**2 * (d3(g, g) / 12 + Hm @ Hm @ g / 3))
    assert _rel(gd(g, hvp, d3), ref) < 1e-13
    hb = MatrixFreeFlow(derive(optimizers.heavy_ball(), 1)).correction(h=H, beta=B)
    assert _rel(hb(g, hvp), H * (1 + B) / (2 * (1 - B) ** 3) * Hm @ g) < 1e-13


def test_adam_outside_array_form_against_the_exact_component_form():
    flow = derive(optimizers.adam(eps_placement="outside"), 1)
    f = first_order_form(flow).array_function(beta=B, rho=R, eps=EPS)
    p = 3
    gen = flow.generic(p, stationary=True, r=1)
    rng = np.random.default_rng(9)
    gv = [sp.Rational(int(a), 16) for a in rng.integers(-30, 30, size=p)]
    Hv = [[0] * p for _ in range(p)]
    subs = {sp.Symbol(f"g_{j + 1}", real=True): gv[j] for j in range(p)}
    for i in range(p):
        for j in range(i, p):
            Hv[i][j] = Hv[j][i] = sp.Rational(int(rng.integers(-40, 40)), 8)
            subs[sp.Symbol(f"H_{i + 1}{j + 1}", real=True)] = Hv[i][j]
    subs.update({sp.Symbol("beta", positive=True): sp.Rational(B),
                 sp.Symbol("rho", positive=True): sp.Rational(R),
                 sp.Symbol("eps", positive=True): sp.Rational(EPS)})
    exact = [float(sp.N(e.xreplace(subs), 30)) for e in gen]
    out = f(np.array([float(v) for v in gv]), np.array(Hv, dtype=float))
    assert _rel(out, exact) < 1e-12


def test_matrix_free_bad_input():
    form = first_order_form(derive(optimizers.adam(), 1))
    with pytest.raises(ValueError, match="no value given.*rho"):
        form.lambdify(beta=B, eps=EPS)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        form.lambdify(beta=B, rho=R, eps=EPS, gamma=1)
    with pytest.raises(ValueError, match="rho must be in"):
        form.lambdify(beta=B, rho=1.0, eps=EPS)
    with pytest.raises(ValueError, match="backend must be one of"):
        form.lambdify(backend="jax", beta=B, rho=R, eps=EPS)
    with pytest.raises(TypeError, match="dtype must be a real floating-point type"):
        form.lambdify(dtype="int32", beta=B, rho=R, eps=EPS)
    mf = form.lambdify(beta=B, rho=R, eps=EPS)
    with pytest.raises(ValueError, match="hvp returned shape"):
        mf(np.ones(3), lambda v: np.ones(2))
    f = form.array_function(beta=B, rho=R, eps=EPS)
    with pytest.raises(ValueError, match=r"H shape \(p, p\)"):
        f(np.ones(3), np.ones((2, 2)))


# ------------------------------------------------------------------------ emitted modules
x, y, z = sp.symbols("x y z")
PARAMS = [x, y, z]
LOSS = x**4 / 4 + x * y + sp.cos(y) + z**2 * y / 3 + sp.exp(z / 2)
POINT = {x: sp.Rational(1, 2), y: sp.Rational(-1, 5), z: sp.Rational(3, 10)}


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _derivatives():
    at = POINT
    g = np.array([float(sp.N(sp.diff(LOSS, v).subs(at), 30)) for v in PARAMS])
    Hm = np.array([[float(sp.N(sp.diff(LOSS, a, b).subs(at), 30)) for b in PARAMS]
                   for a in PARAMS])
    T = np.array([[[float(sp.N(sp.diff(LOSS, a, b, c).subs(at), 30)) for c in PARAMS]
                   for b in PARAMS] for a in PARAMS])
    return g, Hm, T


def _exact_field(opt, order, stationary, n, vals):
    F = derive(opt, order).field(LOSS, PARAMS, n=n, stationary=stationary)
    subs = {s: sp.Rational(vals[str(s)]) for s in opt.hyperparameters}
    subs[h_sym] = sp.Rational(vals["h"])
    subs.update(POINT)
    return np.array([float(sp.N(e.xreplace(subs).doit(), 30)) for e in F])


GEN_CASES = [
    (["adam"], 1, False, dict(h="1/50", beta="4/5", rho="9/10", eps="1/1000")),
    (["adam", "--eps-outside"], 1, True, dict(h="1/50", beta="4/5", rho="9/10", eps="1/1000")),
    (["rmsprop", "--no-bias-correction"], 1, True, dict(h="1/50", rho="9/10", eps="1/1000")),
    (["heavy_ball"], 2, True, dict(h="1/50", beta="4/5")),
    (["gd"], 2, False, dict(h="1/10")),
]
GEN_IDS = ["adam-n", "adam-outside", "rmsprop-nobc", "heavy-ball-2", "gd-2"]


@pytest.mark.parametrize("argv, order, stationary, vals", GEN_CASES, ids=GEN_IDS)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_written_module_matches_the_exact_field(tmp_path, backend, argv, order, stationary,
                                                vals):
    out = tmp_path / f"flow_{backend}.py"
    args = ["codegen", *argv, "--backend", backend, "--order", str(order), "--out", str(out)]
    if stationary:
        args.append("--stationary")
    assert main(args) == 0
    assert [p.name for p in tmp_path.iterdir()] == [out.name]        # no temporary left
    mod = _load(str(out))
    assert mod.ORDER == order and mod.STATIONARY == stationary
    opt = optimizers.get(argv[0], eps_placement="outside" if "--eps-outside" in argv
                         else "inside", bias_correction="--no-bias-correction" not in argv)
    n = 6
    exact = _exact_field(opt, order, stationary, None if stationary else n, vals)
    g, Hm, T = _derivatives()
    kw = {k: float(sp.Rational(v)) for k, v in vals.items()}
    if "n" in mod.flow.__code__.co_varnames:
        kw["n"] = n
    if backend == "numpy":
        cb = [lambda v: Hm @ v] + ([lambda u, w: np.einsum("ijk,j,k->i", T, u, w)]
                                   if order >= 2 else [])
        got = mod.flow(g, *cb, **kw)
    else:
        cb = _torch_callbacks(order)
        got = mod.flow(cb[0], *cb[1:], **kw).detach().numpy()
    assert _rel(got, exact) < 1e-12


def _torch_callbacks(order):
    """g, hvp (and d3) of the loss written in torch, by autograd at the point."""
    th = torch.tensor([float(POINT[v]) for v in PARAMS], dtype=torch.float64,
                      requires_grad=True)

    def loss(t):
        a, b, c = t[0], t[1], t[2]
        return a**4 / 4 + a * b + torch.cos(b) + c**2 * b / 3 + torch.exp(c / 2)

    (g,) = torch.autograd.grad(loss(th), th, create_graph=True)

    def hvp(v):
        return torch.autograd.grad(g, th, v, retain_graph=True, create_graph=True)[0]

    def d3(u, w):
        Hw = torch.autograd.grad(g, th, w, retain_graph=True, create_graph=True)[0]
        return torch.autograd.grad(Hw, th, u, retain_graph=True)[0]

    return [g.detach(), hvp] + ([d3] if order >= 2 else [])


def test_written_module_is_standalone_and_readable(tmp_path):
    src = generate_module(optimizers.adam(), 1, "numpy", stationary=True)
    tree = ast.parse(src)
    imported = {a.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for a in node.names}
    assert imported == {"numpy"}
    doc = ast.get_docstring(tree)
    assert "d theta/dt = -F(theta)" in doc and "hvp(v)" in doc and "Cattaneo" in doc
    path = tmp_path / "adam_flow.py"
    path.write_text(src)
    # run with modeq and sympy unimportable
    code = ("import sys; sys.modules['modeq'] = None; sys.modules['sympy'] = None\n"
            "import importlib.util, numpy as np\n"
            f"spec = importlib.util.spec_from_file_location('m', {str(path)!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "print(m.flow(np.ones(2), lambda v: 2 * v, h=0.1, beta=0.9, rho=0.99, eps=1e-8))\n")
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_written_module_bad_input_and_dtypes(tmp_path):
    path = tmp_path / "adam_np.py"
    path.write_text(generate_module(optimizers.adam(), 1, "numpy", stationary=True))
    m = _load(str(path))
    vals = dict(h=0.01, beta=0.9, rho=0.99, eps=1e-8)
    g32 = np.ones(4, dtype=np.float32)
    assert m.flow(g32, lambda v: v, **vals).dtype == np.float32
    with pytest.raises(TypeError, match="rho"):
        m.flow(np.ones(3), lambda v: v, h=0.01, beta=0.9, eps=1e-8)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        m.flow(np.ones(3), lambda v: v, **dict(vals, beta=1.0))
    with pytest.raises(ValueError, match="expected \\(3,\\)"):
        m.flow(np.ones(3), lambda v: v[:2], **vals)
    with pytest.raises(TypeError, match="real floating-point"):
        m.flow(np.array(["a"]), lambda v: v, **vals)
    tpath = tmp_path / "adam_t.py"
    tpath.write_text(generate_module(optimizers.adam(), 1, "torch", stationary=True))
    mt = _load(str(tpath))
    with pytest.raises(TypeError, match="floating-point tensor"):
        mt.flow(torch.ones(3, dtype=torch.int64), lambda v: v, **vals)
    with pytest.raises(TypeError, match="torch.Tensor"):
        mt.flow(np.ones(3), lambda v: v, **vals)
    out = mt.flow(torch.ones(3, dtype=torch.float32), lambda v: v, **vals)
    assert out.dtype == torch.float32


def test_codegen_cli_errors_and_stdout(capsys):
    assert main(["codegen", "adamx", "--backend", "numpy"]) == 2
    assert "unknown optimizer 'adamx'" in capsys.readouterr().err
    assert main(["codegen", "adam", "--backend", "jax"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backend must be one of numpy, torch" in err
    assert main(["codegen", "gd", "--backend", "numpy", "--order", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('"""Modified flow of gd') and "def flow(g, hvp, *, h):" in out
    r = subprocess.run([sys.executable, "-m", "modeq.proofs.cli", "codegen", "nope",
                        "--backend", "torch"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.slow
def test_adam_second_order_module_matches_the_exact_field(tmp_path):
    """Adam's derived h^2 term (no published form): 3 HVPs and one T contraction."""
    out = tmp_path / "adam2.py"
    assert main(["codegen", "adam", "--backend", "numpy", "--order", "2", "--stationary",
                 "--out", str(out)]) == 0
    mod = _load(str(out))
    vals = dict(h="1/50", beta="4/5", rho="9/10", eps="1/1000")
    exact = _exact_field(optimizers.adam(), 2, True, None, vals)
    g, Hm, T = _derivatives()
    got = mod.flow(g, lambda v: Hm @ v, lambda u, w: np.einsum("ijk,j,k->i", T, u, w),
                   **{k: float(sp.Rational(v)) for k, v in vals.items()})
    assert _rel(got, exact) < 1e-12


@pytest.mark.parametrize("backend", ["numpy"])
def test_nadam_module_matches_the_exact_field_and_says_when_it_overflows(tmp_path, backend):
    """torch's NAdam exact in ``n`` (its products ``mu_1 ... mu_t`` print as ``math.prod``,
    which the module imports): equal to the exact field at step 6 (SymPy, 30 digits).  At
    step 400 (psi = 1) its coefficients' parts (``600^(n psi)`` against ``24^(3 n psi)``) are
    past the float range: the module raises, naming the paths that balance them, instead of
    returning ``nan``.  (Generated without the symbolic check of its forms, which costs a
    minute here; the exact field checks the module.  NumPy only, for CI time: the torch
    module is printed by the same code, and its check runs in every torch module exact in
    ``n``, as Adam's above.)"""
    from modeq.symbolic.emit.source import module_source
    opt = optimizers.torch_nadam()
    out = tmp_path / f"nadam_{backend}.py"
    out.write_text(module_source(derive(opt, 1), backend, verify_dims=()))
    mod = _load(str(out))
    vals = dict(h="1/50", beta="4/5", rho="9/10", eps="1/1000", psi="1")
    kw = {k: float(sp.Rational(v)) for k, v in vals.items()}
    g, Hm, T = _derivatives()
    if backend == "numpy":
        args = [g, lambda v: Hm @ v]
    else:
        args = _torch_callbacks(1)

    def flow(n):
        got = mod.flow(*args, n=n, **kw)
        return got if backend == "numpy" else got.detach().numpy()

    assert _rel(flow(6), _exact_field(opt, 1, False, 6, vals)) < 1e-12
    with pytest.raises(FloatingPointError, match="overflowed.*flow.lambdify"):
        with np.errstate(all="ignore"):
            flow(400)

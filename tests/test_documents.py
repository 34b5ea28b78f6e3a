"""Derivation documents (modeq.proofs): regeneration, compilation, content, failure modes.

What these tests prove, and what they do not:

* drift: every committed ``proofs/tex/*.tex`` is regenerated from the engine (in two worker
  processes) and compared as a string — a regeneration check, not a correctness check;
* correctness against *independent* values: the coefficients stated by the documents are
  compared with published ones written here (Barrett & Dherin; Hairer-Lubich-Wanner; the
  heavy-ball coefficient; Cattaneo-Klusowski-Shigida's correction), numerically at sample
  points, never against the code's own output;
* every committed document compiles with ``pdflatex`` (LaTeX is required: a missing
  ``pdflatex`` fails the test) and ``pdftotext`` of the PDF shows the key results;
* a wrong coefficient injected into a built document makes rendering fail its check;
* output is atomic: a failed build or compile leaves the previous files intact;
* ``--out`` a file, or a path under a file: exit 2 with one line on stderr.  An *unwritable*
  folder cannot be produced for root with chmod, so that case monkeypatches ``os.access``
  (it proves the command checks writability and reports it, not the OS's permission model).
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import re
import shutil
import subprocess

import pytest
import sympy as sp
from run_shared import once_per_run

from modeq.proofs import latex as L
from modeq.proofs import registry as R
from modeq.proofs.build import build_document, document
from modeq.proofs.cli import main
from modeq.proofs.document import ProofError
from modeq.symbolic import optimizers
from modeq.symbolic.components import SymbolProvider, lower_vector
from modeq.symbolic.operators import Grad
from modeq.symbolic.family import beta, eps, h, n, rho

TEX_DIR = R.TEX_DIR

# this module's tests are one xdist group (``--dist loadgroup``); the documents are built once
# per run whichever worker asks first (run_shared.once_per_run), the PDFs once per worker
pytestmark = pytest.mark.xdist_group("documents")


STATED = ("F0", "F1", "F2", "Finf0", "Finf1", "K0", "Kinf")


def _regenerate_one(spec, folder):
    doc = R.build_builtin(spec)
    path = os.path.join(folder, R.builtin_filename(spec))
    L.write_tex(doc, path)
    # the results the document states, abbreviations expanded (for the tests below)
    return path, {k: doc.q(k) for k in STATED if k in doc.quantities}


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """All built-in documents regenerated into a temporary folder (two processes), once per
    run: ``{file name: (path, stated quantities)}``."""
    def make():
        folder = str(tmp_path_factory.mktemp("tex"))
        # slowest first so the two processes finish together
        specs = sorted(R.BUILTIN_DOCUMENTS, key=lambda s: (s[0] != "adam", -s[1]))
        with cf.ProcessPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(_regenerate_one, specs, [folder] * len(specs)))
        return {os.path.basename(p): (p, q) for p, q in results}
    return once_per_run(tmp_path_factory, "documents", make)


@pytest.fixture(scope="session")
def regenerated(built):
    return {name: path for name, (path, _) in built.items()}


@pytest.fixture(scope="session")
def pdf_texts(regenerated, tmp_path_factory):
    """Each regenerated document compiled with pdflatex; ``{name: pdftotext output}``."""
    assert shutil.which("pdflatex"), "pdflatex is required (LaTeX is installed in CI)"
    assert shutil.which("pdftotext"), "pdftotext (poppler-utils) is required"
    folder = str(tmp_path_factory.mktemp("pdf"))

    def one(item):
        name, tex = item
        pdf = os.path.join(folder, name.replace(".tex", ".pdf"))
        L.compile_pdf(tex, pdf, engine="pdflatex")
        out = subprocess.run(["pdftotext", "-layout", pdf, "-"], check=True,
                             stdout=subprocess.PIPE).stdout.decode("utf-8")
        return name, out

    with cf.ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, sorted(regenerated.items())))


# -- drift and compilation -------------------------------------------------------------------

def test_committed_documents_match_regeneration(regenerated):
    committed = sorted(f for f in os.listdir(TEX_DIR) if f.endswith(".tex"))
    assert committed == sorted(regenerated), "proofs/tex/ and BUILTIN_DOCUMENTS disagree"
    for name, path in regenerated.items():
        with open(os.path.join(TEX_DIR, name), encoding="utf-8") as f:
            old = f.read()
        with open(path, encoding="utf-8") as f:
            new = f.read()
        assert new == old, (f"{name} drifted from its regeneration; run "
                            f"'modeq latex --regenerate' and review the diff")


def test_every_document_compiles_and_lists_its_checks(pdf_texts):
    for name, text in pdf_texts.items():
        m = re.search(r"All (\d+) checks passed", text)
        assert m and int(m.group(1)) >= 10, name
        assert "Conventions" in text and "Checks run when this document" in text, name


def test_adam_pdf_shows_the_published_correction(pdf_texts):
    text = pdf_texts["adam-full-order1.tex"]
    assert "(1 + β)/(1 − β) − (1 + ρ)/(1 − ρ) + (1 + ρ)/(1 − ρ) · ε/(gj2 + ε)" in text
    assert "∥∇E∥1,ε" in text                       # the perturbed one-norm
    assert "Cattaneo, Klusowski" in text
    assert "negative exactly when ρ > β" in text
    assert "anti-penalises ∥∇E∥1" in text
    rms = pdf_texts["rmsprop-full-order1.tex"]
    assert "1 − (1 + ρ)/(1 − ρ)" in rms and "∥∇E∥1,ε" in rms


def test_other_pdfs_show_their_published_results(pdf_texts):
    assert "Barrett & Dherin" in pdf_texts["gd-full-order1.tex"]
    assert "Hairer, Lubich, Wanner" in pdf_texts["gd-full-order2.tex"]
    assert "heavy-ball momentum" in pdf_texts["heavy-ball-full-order1.tex"]
    assert "reduces to the full-batch" in pdf_texts["adam-mini-order1.tex"]
    assert "Smith, Dherin, Barrett, De" in pdf_texts["sgd-mini-order1.tex"]


# -- the stated results against independent values --------------------------------------------

def _num(expr, p=1, values=None):
    """Lower a component expression to p=1 generic symbols and evaluate at sample values."""
    P = SymbolProvider(p)
    v = lower_vector(expr, P)[0]
    subs = {beta: sp.Rational(3, 5), rho: sp.Rational(9, 10), eps: sp.Rational(1, 7),
            h: sp.Rational(1, 10)}
    subs.update(values or {})
    for s in v.free_symbols:
        if s.name == "g_1":
            subs[s] = sp.Rational(2, 3)
        elif s.name == "H_11":
            subs[s] = sp.Rational(-5, 4)
        elif s.name == "T_111":
            subs[s] = sp.Rational(7, 3)
    return sp.N(v.xreplace(subs), 30)


def test_adam_document_states_the_paper_correction(built):
    q = built["adam-full-order1.tex"][1]
    b_, r_ = sp.Rational(3, 5), sp.Rational(9, 10)
    g, H, e = sp.Rational(2, 3), sp.Rational(-5, 4), sp.Rational(1, 7)
    s = sp.sqrt(g ** 2 + e)
    # Cattaneo, Klusowski, Shigida (ICML 2024): h F1 = correction / s with
    # correction = (h/2){(1+b)/(1-b) - (1+r)/(1-r) + (1+r)/(1-r) e/(g^2+e)} d_j ||grad E||_{1,e}
    # and, for p = 1, d_j ||grad E||_{1,e} = H g / s.
    corr = (sp.Rational(1, 2) * ((1 + b_) / (1 - b_) - (1 + r_) / (1 - r_)
                                 + (1 + r_) / (1 - r_) * e / (g ** 2 + e)) * H * g / s)
    assert abs(_num(q["Finf1"]) - sp.N(corr / s, 30)) < 1e-25
    assert abs(_num(q["K0"]) - sp.N(sp.Rational(1, 20) * ((1 + b_) / (1 - b_)
                                                              - (1 + r_) / (1 - r_)), 30)) < 1e-25
    # exact in n: at n = 0 there is no memory, F1 = eps/(2 s^3) H g / s
    F1_at_0 = q["F1"].xreplace({n: 0})
    assert abs(_num(F1_at_0) - sp.N(e / (2 * s ** 3) * H * g / s, 30)) < 1e-25


def test_gd_and_heavy_ball_documents_state_published_coefficients(built):
    gd2 = built["gd-full-order2.tex"][1]
    g, H, T = sp.Rational(2, 3), sp.Rational(-5, 4), sp.Rational(7, 3)
    assert abs(_num(gd2["F1"]) - sp.N(H * g / 2, 30)) < 1e-25            # Barrett & Dherin
    assert abs(_num(gd2["F2"]) - sp.N(T * g * g / 12 + H * H * g / 3, 30)) < 1e-25   # HLW
    hb = built["heavy-ball-full-order1.tex"][1]
    b_ = sp.Rational(3, 5)
    assert abs(_num(hb["Finf0"]) - sp.N(g / (1 - b_), 30)) < 1e-25
    assert abs(_num(hb["Finf1"]) - sp.N((1 + b_) / (2 * (1 - b_) ** 3) * H * g, 30)) < 1e-25
    # Adam at order 2 (stationary): F1 is still the paper's; F2 exists and involves T[u, u]
    a2 = built["adam-full-order2-stationary.tex"][1]
    a1 = built["adam-full-order1.tex"][1]
    assert abs(_num(a2["F1"]) - _num(a1["Finf1"])) < 1e-25


# -- a wrong coefficient is caught ---------------------------------------------------------------

def test_injected_wrong_coefficient_fails_the_build(tmp_path):
    doc = document(optimizers.gd(), 1)
    doc.quantities["F1"] = doc.quantities["F1"] * sp.Rational(2, 3)     # 1/2 -> 1/3
    with pytest.raises(ProofError, match=r"F_1"):
        L.render(doc)
    assert not doc.verified


def test_injected_wrong_memory_coefficient_fails_the_build():
    doc = build_document(optimizers.heavy_ball(), 1)
    key = next(k for k in doc.quantities if k.startswith("coef:"))
    doc.abbreviations = [a if f"coef:{a.symbol.name}" != key else
                         type(a)(a.symbol, a.value * (1 + beta ** n), a.text, a.latex)
                         for a in doc.abbreviations]
    doc.quantities[key] = doc.quantities[key] * (1 + beta ** n)
    with pytest.raises(ProofError):
        doc.verify()


def test_mutation_after_verification_is_rechecked():
    doc = document(optimizers.gd(), 1)
    assert doc.verified
    doc.quantities["R1"] = 2 * doc.quantities["R1"]
    assert not doc.verified
    with pytest.raises(ProofError, match="R_1"):
        L.render(doc)


# -- atomic output and the command line -----------------------------------------------------------

def test_failed_build_leaves_previous_file_intact(tmp_path):
    path = str(tmp_path / "gd.tex")
    L.write_tex(document(optimizers.gd(), 1), path)
    before = open(path, encoding="utf-8").read()
    bad = document(optimizers.gd(), 1)
    bad.quantities["F0"] = 2 * bad.quantities["F0"]
    with pytest.raises(ProofError):
        L.write_tex(bad, path)
    assert open(path, encoding="utf-8").read() == before
    assert os.listdir(tmp_path) == ["gd.tex"]            # no temporary file left behind


def test_failed_compile_leaves_previous_pdf_intact(tmp_path):
    assert shutil.which("pdflatex"), "pdflatex is required"
    tex = tmp_path / "x.tex"
    tex.write_text("\\documentclass{article}\\begin{document}ok\\end{document}\n")
    pdf = L.compile_pdf(str(tex), engine="pdflatex")
    before = open(pdf, "rb").read()
    tex.write_text("\\documentclass{article}\\begin{document}\\undefinedmacro\\end{document}\n")
    with pytest.raises(RuntimeError, match="pdflatex failed"):
        L.compile_pdf(str(tex), engine="pdflatex")
    assert open(pdf, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["x.pdf", "x.tex"]


def test_cli_writes_the_committed_document(tmp_path, capsys):
    assert main(["latex", "gd", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gd-full-order1.tex" in out and "pdflatex" in out
    with open(os.path.join(TEX_DIR, "gd-full-order1.tex"), encoding="utf-8") as f:
        assert (tmp_path / "gd-full-order1.tex").read_text(encoding="utf-8") == f.read()


def test_cli_pdf_without_latex_writes_tex_and_says_how(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(L.shutil, "which", lambda name: None)
    assert main(["latex", "sgd", "--batch", "mini", "--out", str(tmp_path), "--pdf"]) == 0
    out = capsys.readouterr().out
    assert "no LaTeX found" in out and "pdflatex sgd-mini-order1.tex" in out
    assert sorted(os.listdir(tmp_path)) == ["sgd-mini-order1.tex"]


def test_cli_pdf_with_latex(tmp_path, capsys):
    assert main(["latex", "gd", "--order", "2", "--out", str(tmp_path), "--pdf"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["gd-full-order2.pdf", "gd-full-order2.tex"]


def _one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("modeq latex: error:"), err
    return err


def test_cli_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["latex", "gd", "--out", str(f)]) == 2
    assert "is a file" in _one_line_error(capsys)
    assert main(["latex", "gd", "--out", str(f / "sub")]) == 2
    assert "cannot create" in _one_line_error(capsys)
    assert f.read_text() == "x"


def test_cli_out_unwritable(tmp_path, capsys, monkeypatch):
    # root ignores permission bits, so os.access is patched: this proves the check and the
    # message, not the operating system's permissions
    folder = tmp_path / "ro"
    folder.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if os.fspath(p) == str(folder)
                        else real(p, m))
    assert main(["latex", "gd", "--out", str(folder)]) == 2
    assert "not writable" in _one_line_error(capsys)
    assert os.listdir(folder) == []


def test_cli_rejects_unsupported_variants(capsys):
    assert main(["latex", "adam", "--order", "2"]) == 2
    assert "--stationary" in _one_line_error(capsys)
    assert main(["latex", "adam", "--batch", "mini", "--stationary"]) == 2
    _one_line_error(capsys)


def test_reproduce_part_writes_adam_documents(tmp_path):
    from modeq.proofs.commands.latex import reproduce_part
    summary = reproduce_part(str(tmp_path), quick=True)
    assert "adam-full-order1.tex" in summary
    assert sorted(os.listdir(tmp_path)) == ["adam-full-order1.pdf", "adam-full-order1.tex"]
    with open(os.path.join(TEX_DIR, "adam-full-order1.tex"), encoding="utf-8") as f:
        assert (tmp_path / "adam-full-order1.tex").read_text(encoding="utf-8") == f.read()


# ------------------------------------------------------------------ mini batch, order 2
@pytest.mark.parametrize("key", ["F1", "F2", "Qform0"])
def test_mini_batch_order_2_document_reads_back_its_grouped_form(key):
    """The document's check evaluates the printed grouped terms (every past step written out)
    against the full-batch flow exact in n: it passes as built, and a small wrong term planted
    in any printed quantity fails it."""
    doc = build_document("heavy_ball", order=2, batch="mini")
    assert doc.verify().verified
    wrong = build_document("heavy_ball", order=2, batch="mini")
    g0 = next(a for a in wrong.quantities["F0"].atoms(Grad))
    wrong.quantities[key] = wrong.quantities[key] + sp.Rational(1, 1000) * g0 * (
        1 if key != "Qform0" else g0)
    with pytest.raises(ProofError):
        wrong.verify()


def test_cli_writes_the_mini_batch_order_2_document(tmp_path, capsys):
    assert main(["latex", "heavy_ball", "--batch", "mini", "--order", "2", "--out",
                 str(tmp_path), "--pdf"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["heavy-ball-mini-order2.pdf",
                                            "heavy-ball-mini-order2.tex"]
    text = subprocess.run(["pdftotext", str(tmp_path / "heavy-ball-mini-order2.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "grouped form" in text and "full-batch flow" in text
    capsys.readouterr()
    assert main(["latex", "adam", "--batch", "mini", "--order", "0"]) == 2
    assert "order 1 or 2" in _one_line_error(capsys)

"""The command line: ``modeq derive`` and the symbolic part of ``modeq reproduce``."""
import os

from modeq.proofs.cli import main


def test_derive_gd_prints_barrett_dherin(capsys):
    assert main(["derive", "gd", "--order", "1"]) == 0
    out = capsys.readouterr().out
    assert "F1 = (H.(g))/2" in out
    assert "[proved] difference simplifies to 0" in out and "FAILED" not in out


def test_derive_adam_stationary_recognizes_the_paper(capsys):
    assert main(["derive", "adam", "--stationary"]) == 0
    out = capsys.readouterr().out
    assert "Cattaneo, Klusowski, Shigida" in out
    assert out.count("[proved]") == 5 and "FAILED" not in out


def test_derive_eps_outside_states_its_validity(capsys):
    assert main(["derive", "adam", "--eps-outside", "--no-recognize"]) == 0
    assert "no gradient component vanishes" in capsys.readouterr().out


def test_derive_latex_and_mini_batch(capsys):
    assert main(["derive", "heavy_ball", "--batch", "mini", "--format", "latex"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("\\begin{align*}") and "\\sum" in out


def test_reproduce_symbolic_part_writes_the_report(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["reproduce", "--symbolic-only", "--out", str(out)]) == 0
    text = (out / "adam-correction.txt").read_text()
    assert "Recognized [stationary (n -> oo)]" in text
    assert "rho > beta | -||grad E||_1 penalized (anti)" in text
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


def test_reproduce_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main(["reproduce", "--symbolic-only", "--out", str(f)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_derive_prints_generic_components(capsys):
    assert main(["derive", "gd", "--dims", "2", "--no-recognize"]) == 0
    out = capsys.readouterr().out
    assert "j = 1: -g_1 - h*(H_11*g_1 + H_12*g_2)/2" in out
    assert main(["derive", "gd", "--dims", "9"]) == 2

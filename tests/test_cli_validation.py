"""Every option is checked before any work and named in the message (exit 2, one line);
progress of long commands; optional dependencies; help texts; test hygiene."""
import io
import json
import os
import subprocess
import sys
import time

import pytest

from modeq.proofs.cli import build_parser, main
from modeq.proofs.commands import _common, reproduce

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err, command):
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"modeq {command}: error:") and "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command starts deriving or studying."""
    import modeq.numeric.study as study
    import modeq.symbolic as symbolic
    import modeq.symbolic.codegen as codegen
    from modeq.proofs.commands import verify

    def boom(*a, **k):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(symbolic, "derive", boom)
    monkeypatch.setattr(study, "order_study", boom)
    monkeypatch.setattr(codegen, "generate_module", boom)
    monkeypatch.setattr(reproduce, "symbolic_part", boom)
    monkeypatch.setattr(verify, "problem_from_args", verify.problem_from_args)
    return boom


@pytest.mark.parametrize("argv, option, msg", [
    (["derive", "adam", "--dims", "0"], "--dims", "1..6"),
    (["derive", "adam", "--dims", "2", "--batch", "mini"], "--dims", "full"),
    (["verify", "gd", "--plot", "out.xyz"], "--plot", "unsupported file type '.xyz'"),
    (["verify", "gd", "--json", "/proc/modeq-test/r.json"], "--json", "does not exist"),
    (["verify", "gd", "--json", "/proc/r.json"], "--json", "cannot write into the folder /proc"),
    (["verify", "gd", "--plot", "/proc/p.png"], "--plot", "cannot write"),
    (["verify", "gd", "--orders", "0,,1"], "--orders", "empty item"),
    (["verify", "gd", "--orders", "0,a"], "--orders", "not an integer"),
    (["verify", "gd", "--hs", "1/16,,1/32"], "--hs", "empty item"),
    (["verify", "gd", "--jobs", "0"], "--jobs", ">= 1"),
    (["reproduce", "--out", "/proc/nope"], "--out", "cannot create the folder"),
    (["codegen", "gd", "--backend", "numpy", "--out", "/proc/mod.py"], "--out",
     "cannot write into the folder /proc"),
    (["codegen", "gd", "--backend", "numpy", "--out", "/proc/nope/mod.py"], "--out",
     "does not exist"),
])
def test_options_are_checked_before_any_work(argv, option, msg, no_work, capsys):
    t0 = time.perf_counter()
    code, out, err = run(argv, capsys)
    assert code == 2, out + err
    line = one_error_line(err, argv[0])
    assert option in line and msg in line, line
    assert out == "" and time.perf_counter() - t0 < 20


def test_codegen_out_into_a_missing_folder_names_the_option(tmp_path, capsys):
    # no temporary file name in the message, nothing left in the folder
    folder = tmp_path / "ro"
    folder.mkdir()
    target = folder / "sub" / "m.py"
    code, out, err = run(["codegen", "gd", "--backend", "numpy", "--out", str(target)], capsys)
    assert code == 2 and "--out" in one_error_line(err, "codegen") and ".tmp" not in err
    assert os.listdir(folder) == []


def test_negative_step_sizes_are_a_clear_error(capsys):
    code, _, err = run(["verify", "gd", "--hs", "-1/16,-1/32"], capsys)
    line = one_error_line(err, "verify")
    assert code == 2 and "> 0" in line and "expected one argument" not in err


def test_loss_parse_error_is_one_line(capsys):
    code, _, err = run(["verify", "gd", "--loss", "x**2 +\n* y", "--params", "x,y",
                        "--theta0", "1,2"], capsys)
    assert code == 2 and "--loss" in one_error_line(err, "verify")


# -- reproduce: parts imported normally, failing loudly; progress --------------------------
class _Part:
    def __init__(self, exc):
        self.__name__ = "fake_part"
        self.exc = exc

    def reproduce_part(self, out_dir, quick=False):
        raise self.exc


def test_reproduce_fails_loudly_when_a_part_cannot_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "symbolic_part", lambda: "symbolic text")
    monkeypatch.setattr(reproduce, "PARTS", ((_Part(ImportError("cannot import name 'x'")),
                                              "a part"),))
    code, out, err = run(["reproduce", "--out", str(tmp_path / "r"), "--no-progress"], capsys)
    assert code == 1 and "ImportError" in err and "bug" in err
    assert "report written" not in out


def test_reproduce_part_missing_its_optional_dependency(tmp_path, monkeypatch, capsys):
    exc = ModuleNotFoundError("No module named 'torch'", name="torch")
    monkeypatch.setattr(reproduce, "symbolic_part", lambda: "symbolic text")
    monkeypatch.setattr(reproduce, "PARTS", ((_Part(exc), "a part"),))
    code, _, err = run(["reproduce", "--out", str(tmp_path / "r"), "--no-progress"], capsys)
    assert code == 2 and 'pip install "modeq[experiments]"' in one_error_line(err, "reproduce")


def test_reproduce_imports_its_parts_normally():
    from modeq.proofs.commands import latex, verify
    assert [m for m, _ in reproduce.PARTS] == [verify, latex]
    assert "importlib" not in open(reproduce.__file__).read()


def test_reproduce_progress_in_a_log_is_plain_lines(tmp_path, monkeypatch, capsys):
    class Counting:
        __name__ = "counting"

        @staticmethod
        def reproduce_part(out_dir, quick=False, progress=None):
            for k in range(3):
                progress(k + 1, 3, f"study {k + 1}/3")
            return "part done"

    monkeypatch.setattr(reproduce, "symbolic_part", lambda: "symbolic text")
    monkeypatch.setattr(reproduce, "PARTS", ((Counting, "studies"),))
    code, out, err = run(["reproduce", "--out", str(tmp_path / "r")], capsys)
    assert code == 0 and "part done" in out
    assert "\r" not in err and "\x1b" not in err
    assert "[1/2] derivation, proof and regime table ..." in err
    assert "[2/2] studies: 2/3 done (study 2/3)" in err and "[2/2] studies: done in" in err


class _First:
    __name__ = "first"

    @staticmethod
    def reproduce_part(out_dir, quick=False):
        return f"first part in process {os.getpid()}"


class _InWorker:
    __name__ = "in_worker"

    @staticmethod
    def reproduce_part(out_dir, quick=False):
        return f"second part in process {os.getpid()}"


class _WorkerBug:
    __name__ = "worker_bug"

    @staticmethod
    def reproduce_part(out_dir, quick=False):
        raise RuntimeError("a bug in the second part")


def test_reproduce_builds_the_later_parts_in_a_worker_process(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "symbolic_part", lambda: "symbolic text")
    monkeypatch.setattr(reproduce, "PARTS", ((_First, "first"), (_InWorker, "second")))
    code, out, _ = run(["reproduce", "--out", str(tmp_path / "r"), "--no-progress"], capsys)
    assert code == 0
    first, second = out.index("--- first ---"), out.index("--- second ---")
    assert first < second < out.index("report written")
    pids = [int(line.split()[-1]) for line in out.splitlines() if "part in process" in line]
    assert pids[0] == os.getpid() and pids[1] != os.getpid()


def test_reproduce_fails_loudly_when_the_worker_part_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "symbolic_part", lambda: "symbolic text")
    monkeypatch.setattr(reproduce, "PARTS", ((_First, "first"), (_WorkerBug, "second")))
    code, out, err = run(["reproduce", "--out", str(tmp_path / "r"), "--no-progress"], capsys)
    assert code == 1 and "a bug in the second part" in err and "report written" not in out


def test_progress_on_a_terminal_draws_a_bar():
    stream = io.StringIO()
    p = _common.Progress("modeq demo", 2, stream=stream, terminal=True)
    with p.step("first") as update:
        update(1, 4, "study 1/4")
    text = stream.getvalue()
    assert "[1/2] first" in text and "1/4" in text and "\r" in text


# -- optional dependencies, help ------------------------------------------------------------
def test_experiment_without_torch_names_the_extra():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from modeq.proofs.cli import main\n"
            "sys.exit(main(['experiment', 'rho-sweep', '--steps', '5', '--no-progress']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc.stderr, "experiment")
    assert 'pip install "modeq[experiments]"' in line and "torch" in line


def test_readme_mentions_the_extras():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert 'modeq[experiments]' in text and "modeq[torch]" in text


def test_help_texts_have_no_markup():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        text = p.format_help()
        assert "``" not in text and ":func:" not in text and ":mod:" not in text, name


# -- test hygiene -----------------------------------------------------------------------------
def test_notebooks_remove_their_temporary_folders():
    import re
    for name in sorted(os.listdir(os.path.join(ROOT, "notebooks"))):
        if not name.endswith(".ipynb"):
            continue
        nb = json.load(open(os.path.join(ROOT, "notebooks", name), encoding="utf-8"))
        src = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        for var in re.findall(r"(\w+) = tempfile\.mkdtemp\(", src):
            assert f"shutil.rmtree({var}" in src, f"{name} leaves {var} behind"


def test_notebooks_readme_has_no_escaped_newlines():
    text = open(os.path.join(ROOT, "notebooks", "README.md"), encoding="utf-8").read()
    assert "\\n" not in text and text.startswith("# Notebooks\n\n")


def test_verify_log_has_no_progress_bar():
    # not a terminal: no tqdm bar (carriage returns) in the log
    proc = subprocess.run([sys.executable, "-m", "modeq.proofs.cli", "verify", "gd", "--orders",
                           "0", "--hs", "1/16,1/32", "--dps", "20"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "verify gd" not in proc.stderr


def test_experiment_out_is_checked_before_training(monkeypatch, capsys):
    from modeq.numeric import experiments

    def boom(*a, **k):
        raise AssertionError("training started before --out was checked")

    monkeypatch.setattr(experiments, "adam_sweep", boom)
    code, _, err = run(["experiment", "rho-sweep", "--out", "/proc/nope/sweep", "--no-progress"],
                       capsys)
    assert code == 2 and "--out" in one_error_line(err, "experiment")


def test_latex_pdf_shows_its_stages_in_a_log(tmp_path, capsys):
    """`modeq latex --pdf` was silent while it built, checked and compiled."""
    assert main(["latex", "gd", "--pdf", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "[1/2] derive, build and check the document" in err and "checks passed" in err
    assert "[2/2] compile the PDF" in err and "\r" not in err
    assert (tmp_path / "gd-full-order1.pdf").exists()


def test_latex_without_optimizer_is_a_usage_error(capsys):
    assert main(["latex"]) == 2
    assert capsys.readouterr().err.count("\n") == 1

"""User expressions are parsed by a whitelist (``modeq.proofs.expressions``), never evaluated
as Python: random strings and random syntax trees never run code and never raise anything but
the documented ``ExpressionError``; the command line refuses them with one line and exit 2."""
import builtins
import os
import subprocess
import sys

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeq.proofs.cli import main
from modeq.proofs.expressions import (SMOOTH_FUNCTIONS, ExpressionError, parse_expression,
                                      parse_names, parse_number)

x, y = sp.symbols("x y", real=True)
NAMES = {"x": x, "y": y}
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

PAYLOADS = [
    '__import__("os").system("echo PWNED")',
    "__import__('sys').modules",
    "().__class__.__bases__[0].__subclasses__()",
    "eval('1')", "exec('x=1')", "open('/etc/passwd')", "x.__class__",
    "lambda: 0", "[x for x in ()]", "globals()", "getattr(x, 'diff')",
    "x if y else 1", "Symbol('z')", "Integer(2)", "S('x')", "sympify('x')", "f'{x}'",
    "x; import os", "x + (yield)", "(a := 1)",
]


@pytest.fixture
def no_eval(monkeypatch):
    """Record every eval/exec while the parser runs, and every compile to code (compiling to a
    syntax tree only, as ``ast.parse`` does, runs nothing)."""
    import ast
    calls = []
    for name in ("eval", "exec", "compile"):
        real = getattr(builtins, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            flags = args[3] if len(args) > 3 else kwargs.get("flags", 0)
            if _name != "compile" or not flags & ast.PyCF_ONLY_AST:
                calls.append((_name, args[0] if args else None))
            return _real(*args, **kwargs)

        monkeypatch.setattr(builtins, name, spy)
    return calls


def _parse(text):
    try:
        return parse_expression(text, NAMES, "--loss")
    except ExpressionError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith("--loss")
        return None


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_are_refused_without_running(payload, no_eval):
    with pytest.raises(ExpressionError) as info:
        parse_expression(payload, NAMES, "--loss")
    assert "\n" not in str(info.value)
    assert no_eval == []


@pytest.mark.parametrize("text, expected", [
    ("x**4/4 + x*y + y**2", x**4 / 4 + x * y + y**2),
    ("2*x + 3*y + log(cosh(x - y)) + (x**2 + y**2)/4",
     2 * x + 3 * y + sp.log(sp.cosh(x - y)) + (x**2 + y**2) / 4),
    ("x^2 - 0.1*y", x**2 - y / 10),
    ("-(x - 1)**2 + exp(-y) + sqrt(1 + x**2) + atan(y) + tanh(x)*sinh(y)/cosh(y)",
     -(x - 1)**2 + sp.exp(-y) + sp.sqrt(1 + x**2) + sp.atan(y) + sp.tanh(x) * sp.sinh(y)
     / sp.cosh(y)),
    ("log1p(x**2) + expm1(y) + pi*sin(x)*cos(y)",
     sp.log(1 + x**2) + sp.exp(y) - 1 + sp.pi * sp.sin(x) * sp.cos(y)),
    ("1e-3*x", x / 1000),
])
def test_smooth_expressions_are_read_exactly(text, expected, no_eval):
    assert sp.simplify(parse_expression(text, NAMES) - expected) == 0
    assert no_eval == []


@pytest.mark.parametrize("text", ["Abs(x) + y", "sign(x)*y", "Max(x, y)", "abs(x)", "Min(x,y)"])
def test_non_smooth_functions_are_refused_with_the_package_message(text):
    with pytest.raises(ExpressionError, match="non-smooth"):
        parse_expression(text, NAMES, "--loss")


@SETTINGS
@given(st.text(max_size=80))
def test_random_strings_never_run_code(text):
    calls = []
    real = builtins.eval
    builtins.eval = lambda *a, **k: calls.append(a) or real(*a, **k)
    try:
        result = _parse(text)
    finally:
        builtins.eval = real
    assert calls == []
    assert result is None or isinstance(result, sp.Basic)


TOKENS = st.sampled_from(["x", "y", "z", "1", "2.5", "0", "(", ")", "+", "-", "*", "/", "**",
                          "^", ",", ".", "[", "]", "'", '"', "__import__", "os", "system",
                          "lambda", ":", "exp", "log", "Abs", "sign", " ", "=", "@", "%",
                          "if", "else", "__class__", "1e999", "j", "\n", ";", "{", "}"])


@SETTINGS
@given(st.lists(TOKENS, max_size=25))
def test_random_token_soup_never_runs_code(tokens):
    calls = []
    real = builtins.eval
    builtins.eval = lambda *a, **k: calls.append(a) or real(*a, **k)
    try:
        result = _parse("".join(tokens))
    finally:
        builtins.eval = real
    assert calls == []
    assert result is None or isinstance(result, sp.Basic)


# random syntax trees of the allowed grammar (and of forbidden constructs mixed in)
LEAVES = st.one_of(st.sampled_from(["x", "y", "pi"]), st.integers(-20, 20).map(str))


def _node(children):
    unary = st.tuples(st.sampled_from(["-", "+"]), children).map(lambda t: f"{t[0]}({t[1]})")
    binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/"]), children).map(
        lambda t: f"({t[0]}) {t[1]} ({t[2]})")
    power = st.tuples(children, st.integers(-3, 4)).map(lambda t: f"({t[0]})**{t[1]}")
    call = st.tuples(st.sampled_from(sorted(SMOOTH_FUNCTIONS)), children).map(
        lambda t: f"{t[0]}({t[1]})")
    return st.one_of(unary, binary, power, call)


ALLOWED = st.recursive(LEAVES, _node, max_leaves=12)
FORBIDDEN = st.sampled_from(["x.real", "x[0]", "Abs(x)", "q", "f(x)", "lambda: x",
                             "__import__('os')", "(x, y)", "x < y", "'s'", "x % 2",
                             "exp(x, y)", "exp(x=1)"])


@SETTINGS
@given(ALLOWED)
def test_random_allowed_trees_match_sympy(text):
    result = _parse(text)
    if result is None:       # only refused for a documented reason (e.g. division by zero)
        with pytest.raises(ExpressionError, match="not finite|not real|exponent"):
            parse_expression(text, NAMES)
        return
    # the same expression read by SymPy (safe here: the test wrote the string itself)
    ref = sp.sympify(text, locals={"x": x, "y": y, "log1p": lambda a: sp.log(1 + a),
                                   "expm1": lambda a: sp.exp(a) - 1})
    assert result == ref or sp.simplify(result - ref) == 0


@SETTINGS
@given(ALLOWED, FORBIDDEN, st.sampled_from(["+", "*", "-"]))
def test_random_trees_with_a_forbidden_part_are_refused(good, bad, op):
    with pytest.raises(ExpressionError) as info:
        parse_expression(f"({good}) {op} {bad}", NAMES, "--loss")
    assert "\n" not in str(info.value)


@SETTINGS
@given(st.text(max_size=40))
def test_random_numbers_never_run_code(text):
    try:
        value = parse_number(text, "--hs")
    except ExpressionError as exc:
        assert "\n" not in str(exc)
    else:
        assert value.is_Rational


def test_names_and_numbers():
    assert parse_names("x, y", "--params") == ["x", "y"]
    for bad in ("x,,y", "1x", "x y", "exp", "x,x", "lambda"):
        with pytest.raises(ExpressionError):
            parse_names(bad, "--params")
    assert parse_number("2^-4") == sp.Rational(1, 16) and parse_number("0.1") == sp.Rational(1, 10)
    for bad in ("2^99999", "1e-99999", "nan", "inf", "1/0", "__import__('os')"):
        with pytest.raises(ExpressionError):
            parse_number(bad)


# -- the command line ------------------------------------------------------------------------
def _modeq(*argv, cwd=None):
    exe = os.path.join(os.path.dirname(sys.executable), "modeq")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "modeq.proofs.cli"]
    return subprocess.run(cmd + list(argv), capture_output=True, text=True, timeout=300, cwd=cwd)


def test_verify_loss_does_not_run_code(tmp_path):
    marker = tmp_path / "PWNED"
    proc = _modeq("verify", "adam", "--loss", f'__import__("os").system("touch {marker}")',
                  "--params", "x,y", "--theta0", "1,1/2", cwd=tmp_path)
    assert not marker.exists()
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--loss" in lines[0] and "refused" in lines[0], proc.stderr
    assert "PWNED" not in proc.stdout


@pytest.mark.parametrize("option, value", [
    ("--T", "__import__('os').getcwd()"), ("--beta", "__import__('os')"),
    ("--theta0", "__import__('os'),1"), ("--hs", "1/16,__import__('os')"),
])
def test_numeric_options_are_not_evaluated(option, value, capsys):
    argv = ["verify", "gd", "--loss", "x**2 + y**2", "--params", "x,y", "--theta0", "1,2",
            option, value]
    if option == "--theta0":
        argv = ["verify", "gd", "--loss", "x**2 + y**2", "--params", "x,y", option, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0] and "cannot read" in err[0], err


@pytest.mark.parametrize("loss, what", [
    ("Abs(x) + y**2", "non-smooth function Abs"),
    ("x**2 +* y", "cannot parse"),
    ("x**2 + z", "refused the name 'z'"),
    ("x.real + y", "refused attribute access"),
    ("1if x else y", "refused 'if ... else'"),   # Python warns about '1if': no second line
])
def test_bad_loss_is_one_line_exit_2(loss, what, capsys):
    code = main(["verify", "gd", "--loss", loss, "--params", "x,y", "--theta0", "1,2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and what in err[0], err


def test_python_syntax_warnings_do_not_add_lines():
    proc = _modeq("verify", "gd", "--loss", "1if x else y", "--params", "x,y", "--theta0", "1,2")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "refused" in lines[0], proc.stderr

"""Property: bad input gets the documented exception, naming the parameter, from modeq itself.

What users get wrong, generated at random: hyperparameters outside their ranges
(``docs/conventions.md`` §1: ``beta`` and every EMA decay in ``[0, 1)``, ``rho`` in ``(0, 1)``,
``eps > 0``, ``h > 0``, ``lam >= 0``), NaN and infinities in every numeric type users pass
(float, NumPy, mpmath, SymPy), strings that are not numbers and objects that are not numbers;
non-smooth functions (``Abs``, ``sign``, ``Max``, ``Min``, ``floor``, ``ceiling``,
``Heaviside``) in a loss, a state's input or a step; symbols that are not declared; malformed
mini-batch schedules (an index out of range, negative, not an integer, an empty list, not a
list at all, too short for the step asked for).

The oracle is the documented contract, not the code's output:

* the exception is a ``ValueError`` (out of range, not finite, refused, unreadable text) or a
  ``TypeError`` (not a number / not an expression / not a sequence) — the families and
  ``symbolic.emit.values`` document which;
* its message names the parameter (``beta``, ``loss 1``, ``'of'``, ``schedule``, ...);
* it is raised by modeq: the innermost frame of the traceback is a modeq source file, never
  SymPy, NumPy, mpmath, fractions or torch internals;
* the command line (``modeq.proofs.cli.main``) answers such input with exit code 2 and exactly
  one line on stderr (no traceback).
"""
import contextlib
import fractions
import io
import os
import subprocess
import sys
import traceback

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import modeq.symbolic
from conftest import examples
from strategies import D1, LAM, X, losses, value_strategy
from modeq.numeric.iterate import iterates
from modeq.proofs.cli import main
from modeq.symbolic import EMA, Optimizer, derive, eps, g, h as H_SYM, optimizers, theta

MODEQ_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(modeq.symbolic.__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))


def assert_refused(call, types, *names):
    """``call()`` raises one of ``types`` whose message contains every one of ``names``, and
    the innermost frame of its traceback is in modeq's own source."""
    with pytest.raises(types) as info:
        call()
    exc = info.value
    message = str(exc)
    for name in names:
        assert name in message, f"message {message!r} does not name {name!r}"
    last = traceback.extract_tb(exc.__traceback__)[-1].filename
    last = os.path.abspath(last)
    assert last.startswith(MODEQ_ROOT + os.sep) and not last.startswith(TESTS + os.sep), \
        f"{type(exc).__name__} raised from {last}, not from modeq"
    return exc


# ------------------------------------------------------------------ declarations under test
_m = EMA("m_u", decay=D1, of=g, normalized=True, bias_correction=True)
USER = Optimizer("user", [_m], _m / sp.sqrt(g**2 + eps) + LAM * theta)
OPTIMIZERS = [optimizers.adam(), optimizers.rmsprop(), optimizers.heavy_ball(),
              optimizers.adam(eps_placement="outside"), USER]

#: (low, high, low closed) of every name the declarations above use (docs/conventions.md §1)
RANGES = {"beta": (0, 1, True), "rho": (0, 1, False), "eps": (0, None, False),
          "h": (0, None, False), "lam": (0, None, True), str(D1): (0, 1, True)}


# ------------------------------------------------------------------ invalid values
def out_of_range(name):
    """Exact rationals outside the range of ``name``, at least 1/100 away from it unless on a
    boundary that is excluded."""
    lo, hi, lo_closed = RANGES[name]
    k = st.integers(0 if not lo_closed else 1, 400)
    below = st.builds(lambda a, q: sp.Rational(lo) - sp.Rational(a, q), k, st.integers(1, 100))
    if hi is None:
        return below
    above = st.builds(lambda a, q: sp.Rational(hi) + sp.Rational(a, q), st.integers(0, 400),
                      st.integers(1, 100))
    return st.one_of(below, above)


def as_type(q, kind):
    """The exact rational ``q`` in a numeric type users pass (the conversion keeps it outside
    the range: every value is a multiple of 1/100 at least 1/100 from the range or on an
    excluded boundary, which float, float32 and mpmath keep on the same side)."""
    return {"rational": q, "int": int(q) if q.is_Integer else q,
            "fraction": fractions.Fraction(int(q.p), int(q.q)), "float": float(q),
            "str": str(q), "numpy": np.float64(float(q)), "float32": np.float32(float(q)),
            "mpmath": mpmath.mpf(int(q.p)) / int(q.q)}[kind]


NON_FINITE = [float("nan"), float("inf"), -float("inf"), np.float64("nan"), np.float64("inf"),
              np.float32("inf"), np.longdouble("nan"), np.longdouble("inf"), mpmath.mpf("nan"),
              mpmath.mpf("inf"), mpmath.mpf("-inf"), sp.nan, sp.oo, -sp.oo, sp.zoo]
NOT_NUMBERS = [None, "abc", "0.5.5", "", " ", "nan", "inf", "1/0", "0x10", "1,5", [0.5],
               (0.5,), {"v": 0.5}, 1 + 2j, sp.I, sp.Symbol("q"), True, False, object(),
               np.array([0.5, 0.5]), mpmath.mpc(1, 1)]


@st.composite
def invalid_value(draw, name):
    """``(value, expected exception types)`` of an invalid value of ``name``."""
    kind = draw(st.sampled_from(["range", "range", "range", "nonfinite", "notnumber"]))
    if kind == "range":
        form = draw(st.sampled_from(["rational", "int", "fraction", "float", "str", "numpy",
                                     "float32", "mpmath"]))
        return as_type(draw(out_of_range(name)), form), (ValueError,)
    if kind == "nonfinite":
        return draw(st.sampled_from(NON_FINITE)), (ValueError, TypeError)
    return draw(st.sampled_from(NOT_NUMBERS)), (ValueError, TypeError)


@st.composite
def bad_values_case(draw):
    """An optimizer, valid values for all its hyperparameters and ``h``, and one of them
    replaced by an invalid value."""
    opt = draw(st.sampled_from(OPTIMIZERS))
    names = [str(s) for s in opt.hyperparameters] + ["h"]
    values = {str(s): draw(value_strategy(s)) for s in [*opt.hyperparameters, H_SYM]}
    name = draw(st.sampled_from(names))
    bad, types = draw(invalid_value(name))
    values[name] = bad
    return opt, values, name, types


x, y = X[:2]
E = (x - 1)**2 + x * y + y**4 / 4


@settings(max_examples=examples(40))
@given(case=bad_values_case(), backend=st.sampled_from(["mpmath", "numpy"]),
       order=st.sampled_from([0, 1]))
def test_invalid_hyperparameters_are_refused_by_name(case, backend, order):
    """lambdify (every emitted field resolves its values there) and the numeric path
    (``Optimizer.check_values``, the iterates) refuse the value, naming it."""
    opt, values, name, types = case
    flow = derive(opt, order)          # (an order-0 field ignores h, but checks its value)
    assert_refused(lambda: flow.lambdify(E, [x, y], backend=backend, **values), types, name)
    if name != "h":
        assert_refused(lambda: opt.check_values(values), types, name)
    v = {k: w for k, w in values.items() if k != "h"}
    h = values["h"]
    assert_refused(lambda: iterates(opt, E, [x, y], [1, 0], h, 2, dps=20, **v), types,
                   name)


# ------------------------------------------------------------------ non-smooth expressions
NON_SMOOTH = {"Abs": lambda a, b: sp.Abs(a), "sign": lambda a, b: sp.sign(a) * b,
              "Max": lambda a, b: sp.Max(a, b), "Min": lambda a, b: sp.Min(a, b),
              "floor": lambda a, b: sp.floor(a), "ceiling": lambda a, b: sp.ceiling(a),
              "Heaviside": lambda a, b: sp.Heaviside(a) * b}


@st.composite
def non_smooth(draw, atoms):
    """``(expression, function name)``: a smooth part plus a non-smooth function of a smooth
    argument built from ``atoms`` (kept only if SymPy does not simplify the function away)."""
    name = draw(st.sampled_from(sorted(NON_SMOOTH)))
    a, b = draw(st.sampled_from(atoms)), draw(st.sampled_from(atoms))
    c = draw(st.sampled_from([1, 2, sp.Rational(1, 2), -1]))
    shift = draw(st.sampled_from([0, 1, sp.Rational(-1, 3)]))
    arg = draw(st.sampled_from([a + shift, a * b + shift, a - b, sp.sin(a) + shift]))
    bad = NON_SMOOTH[name](arg, b + 2)
    f = getattr(sp, name)
    assume(bad.has(f))
    return bad, name, c


@settings(max_examples=examples(25))
@given(data=st.data(), p=st.integers(1, 3), mini=st.booleans())
def test_non_smooth_losses_are_refused(data, p, mini):
    params = list(X[:p])
    bad, fname, c = data.draw(non_smooth(params))
    E0 = data.draw(losses(p))
    flow = derive(optimizers.sgd() if mini else optimizers.gd(), 1)
    if mini:
        k = data.draw(st.integers(0, 2))
        Es = [data.draw(losses(p)) for _ in range(3)]
        Es[k] = Es[k] + c * bad
        what = f"loss {k}"
        assert_refused(lambda: flow.field(Es, params, n=2), ValueError, what, fname,
                       "non-smooth")
        assert_refused(lambda: flow.lambdify(Es, params, backend="numpy", h=0.1), ValueError,
                       what, fname)
    else:
        Eb = E0 + c * bad
        assert_refused(lambda: flow.field(Eb, params), ValueError, "loss", fname, "non-smooth")
        assert_refused(lambda: flow.lambdify(Eb, params, backend="mpmath", h=0.1),
                       ValueError, "loss", fname)


@settings(max_examples=examples(25))
@given(data=st.data(), where=st.sampled_from(["of", "step"]))
def test_non_smooth_declarations_are_refused(data, where):
    bad, fname, c = data.draw(non_smooth([g, theta, g**2]))
    if where == "of":
        assert_refused(lambda: EMA("s", decay=D1, of=g + c * bad), ValueError, "'of'", fname,
                       "non-smooth")
    else:
        s = EMA("s", decay=D1, of=g**2)
        assert_refused(lambda: Optimizer("o", [s], g / sp.sqrt(s + eps) + c * bad),
                       ValueError, "step", fname, "non-smooth")


# ------------------------------------------------------------------ undeclared symbols
STRANGERS = [sp.Symbol(n) for n in ("z", "w", "alpha", "t0")] + \
    [sp.Symbol("kappa", positive=True), sp.Symbol("x4", real=True)]


@settings(max_examples=examples(25))
@given(data=st.data(), p=st.integers(1, 3), where=st.sampled_from(["loss", "mini", "step",
                                                                   "of", "value"]))
def test_undeclared_symbols_are_named(data, p, where):
    params = list(X[:p])
    z = data.draw(st.sampled_from(STRANGERS))
    c = data.draw(st.sampled_from([1, sp.Rational(1, 3), 2]))
    if where == "loss":
        E0 = data.draw(losses(p)) + c * z * params[0] ** 2
        assert_refused(lambda: derive(optimizers.gd(), 1).field(E0, params), ValueError,
                       str(z), "not in params")
    elif where == "mini":
        Es = [data.draw(losses(p)) for _ in range(2)]
        Es[1] = Es[1] + c * sp.exp(z * params[-1])
        assert_refused(lambda: derive(optimizers.sgd(), 1).field(Es, params, n=1),
                       ValueError, str(z), "loss 1")
    elif where in ("step", "of"):
        s = EMA("s", decay=D1, of=g**2 + (c * z * g if where == "of" else 0))
        step = g / sp.sqrt(s + eps) + (c * z * theta if where == "step" else 0)
        assert_refused(lambda: Optimizer("o", [s], step, hyperparameters=[D1, eps]),
                       ValueError, str(z), "undeclared")
    else:
        # not declared, so taken as a hyperparameter: its value must be given, by name
        s = EMA("s", decay=D1, of=g**2)
        opt = Optimizer("o", [s], g / sp.sqrt(s + eps) + c * z * theta)
        assert_refused(lambda: derive(opt, 1).lambdify(params[0] ** 2, params[:1],
                                                       backend="numpy", h=0.1, eps=1e-8,
                                                       **{str(D1): 0.9}),
                       ValueError, str(z))


# ------------------------------------------------------------------ malformed schedules
@st.composite
def bad_schedule(draw, m, length):
    """``(schedule, types)``: a list with one bad entry, or not a usable list at all."""
    kind = draw(st.sampled_from(["entry", "entry", "empty", "type"]))
    if kind == "entry":
        sched = draw(st.lists(st.integers(0, m - 1), min_size=length, max_size=length))
        bad = draw(st.one_of(st.integers(m, m + 5), st.integers(-5, -1),
                             st.sampled_from([0.0, 1.0, 0.5, float("nan"), np.float64(1.0),
                                              "0", "1", None, True, False, [0], sp.Rational(1, 2),
                                              sp.Float(1.0)])))
        sched[draw(st.integers(0, length - 1))] = bad
        return sched, (ValueError,)
    if kind == "empty":
        return draw(st.sampled_from([[], (), range(0)])), (ValueError,)
    return draw(st.sampled_from([0, 1, 2.5, "0101", b"01", {0: 1, 1: 0}, True,
                                 object()])), (TypeError,)


@settings(max_examples=examples(30))
@given(data=st.data(), p=st.integers(1, 2), m=st.integers(2, 3), n=st.integers(0, 3))
def test_malformed_schedules_are_refused(data, p, m, n):
    params = list(X[:p])
    Es = [data.draw(losses(p, transcendental=False)) for _ in range(m)]
    sched, types = data.draw(bad_schedule(m, n + 1))
    flow = derive(optimizers.sgd(), 1)
    assert_refused(lambda: flow.field(Es, params, n=n, schedule=sched), types, "schedule")
    assert_refused(lambda: flow.lambdify(Es, params, backend="mpmath", schedule=sched, h=0.1),
                   types, "schedule")
    assert_refused(lambda: iterates(optimizers.sgd(), Es, params, [1] * p, "1/8", n + 1,
                                    schedule=sched, dps=20), types, "schedule")


@settings(max_examples=examples(10))
@given(data=st.data(), m=st.integers(2, 3), length=st.integers(1, 3), extra=st.integers(0, 2))
def test_a_schedule_too_short_for_the_step_is_named(data, m, length, extra):
    """A well-formed schedule of ``length`` entries has no loss for step ``length + extra``."""
    Es = [data.draw(losses(1, transcendental=False)) for _ in range(m)]
    sched = data.draw(st.lists(st.integers(0, m - 1), min_size=length, max_size=length))
    flow = derive(optimizers.sgd(), 1)
    assert_refused(lambda: flow.field(Es, [X[0]], n=length + extra, schedule=sched),
                   ValueError, "schedule")
    f = flow.lambdify(Es, [X[0]], backend="mpmath", schedule=sched, h=0.1)
    assert_refused(lambda: f(length + extra, [1]), ValueError, "schedule")


# ------------------------------------------------------------------ the command line
def run_cli(argv):
    """``(exit code, stderr lines)`` of ``modeq argv`` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue().strip().splitlines()


def cli_number(q, style):
    """The text of the rational ``q`` as typed on a command line."""
    if style == "fraction":
        return f"{q.p}/{q.q}"
    if style == "decimal" and q.q in (1, 2, 4, 5, 10, 20, 25, 50, 100):
        return str(sp.Float(q, 10)).rstrip("0").rstrip(".") or "0"
    return f"{q.p}/{q.q}"


BAD_TEXT = ["nan", "inf", "-inf", "abc", "1/0", "0x10", "1e999", "2^x", "1,,2", "(1)", "1/2/3",
            "__import__('os')", "0.5.5", "1e-999"]
BAD_LOSSES = ["Abs(x)", "abs(x) + y**2", "sign(x)*y", "Max(x, y)", "min(x, y)", "floor(x)",
              "ceiling(y)", "Heaviside(x)", "x*z", "x + w**2", "x**2 +", "x**2 if x else y",
              "x.real", "x[0]", "lambda: x", "'x'", "x == y", "relu(x)"]


@st.composite
def bad_cli(draw):
    """``(argv, what the one line must name)`` for ``modeq verify`` with one bad option."""
    opt = draw(st.sampled_from(["adam", "rmsprop", "heavy_ball"]))
    kind = draw(st.sampled_from(["value", "value", "text", "hs", "T", "loss", "theta0"]))
    if kind in ("value", "text"):
        name = {"adam": ["beta", "rho", "eps"], "rmsprop": ["rho", "eps"],
                "heavy_ball": ["beta"]}[opt]
        name = draw(st.sampled_from(name))
        if kind == "value":
            text = cli_number(draw(out_of_range(name)), draw(st.sampled_from(["fraction",
                                                                               "decimal"])))
        else:
            text = draw(st.sampled_from(BAD_TEXT))
        return ["verify", opt, f"--{name}={text}"], name
    if kind == "hs":
        good = ["1/4", "1/8"]
        bad = draw(st.sampled_from(["0", "-1/16", "abc", "nan", "1/0", "", "1/2"]))
        hs = good + [bad] if bad != "1/2" else good + ["1/2"]      # 1/2 breaks the decrease
        return ["verify", opt, f"--hs={','.join(hs)}"], "step size" if bad in ("0", "-1/16",
                                                                                "1/2") else "hs"
    if kind == "T":
        return ["verify", opt, f"--T={draw(st.sampled_from(['0', '-1', 'abc', 'inf']))}"], "T"
    if kind == "loss":
        return ["verify", "gd", f"--loss={draw(st.sampled_from(BAD_LOSSES))}", "--params=x,y",
                "--theta0=1,1"], "loss"
    bad = draw(st.sampled_from(["1", "1,2,3", "a,1", "1,nan", "1,,2"]))
    return ["verify", "gd", "--loss=x**2 + y**2", "--params=x,y", f"--theta0={bad}"], "theta0"


@settings(max_examples=examples(30))
@given(case=bad_cli())
def test_cli_bad_input_exits_2_with_one_line(case):
    argv, what = case
    code, err = run_cli(argv)
    assert code == 2, (argv, err)
    assert len(err) == 1, (argv, err)
    assert "Traceback" not in err[0] and err[0].startswith("modeq verify: error: ")
    assert what in err[0], (argv, err)


@pytest.mark.parametrize("argv, what", [
    (["verify", "adam", "--eps=1/0"], "--eps"),
    (["verify", "gd", "--loss=floor(x)", "--params=x", "--theta0=1"], "floor"),
    (["verify", "heavy_ball", "--beta=3/2"], "beta"),
])
def test_cli_bad_input_in_a_process(argv, what):
    """The installed entry point behaves the same in its own process (no traceback)."""
    r = subprocess.run([sys.executable, "-m", "modeq.proofs.cli", *argv], capture_output=True,
                       text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and what in lines[0], r.stderr
    assert "Traceback" not in r.stderr

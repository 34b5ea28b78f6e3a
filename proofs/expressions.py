"""Safe parsing of the expressions and numbers users type on the command line.

``sympify`` and ``parse_expr`` evaluate Python code, so a string such as
``__import__("os").system(...)`` given to ``--loss`` would run.  This module never calls
``eval``, ``sympify`` or ``parse_expr`` on user text: :func:`parse_expression` reads the string
with Python's :mod:`ast` parser (which only builds a syntax tree) and translates a whitelist of
node types into SymPy objects:

* numbers (integers and decimals, read exactly: ``0.1`` is ``1/10``), the constant ``pi``;
* the declared parameter names;
* ``+ - * / **`` (``^`` is read as ``**``, as SymPy does), unary ``-``/``+``, parentheses;
* calls of the smooth functions in :data:`SMOOTH_FUNCTIONS` with one positional argument.

Everything else (attribute access, subscripts, other names, keyword arguments, strings,
comparisons, lambdas, ...) is refused with :class:`ExpressionError` (a ``ValueError``), whose
message is one line and names what was refused.  Non-smooth functions (``Abs``, ``sign``,
``Max``, ...) are refused with the package's non-smooth message.  Sizes are bounded (length of
the text, nesting depth, digits of a number, size of a numeric power) so that no input makes
the parser run for long.
"""
from __future__ import annotations

import ast
import re
import warnings

import sympy as sp

__all__ = ["ExpressionError", "SMOOTH_FUNCTIONS", "NON_SMOOTH_FUNCTIONS", "parse_expression",
           "parse_number", "parse_names", "MAX_LENGTH"]

MAX_LENGTH = 2000          # characters of an expression
MAX_DEPTH = 200            # nesting of the syntax tree
MAX_DIGITS = 60            # digits of one number literal
MAX_NUMERIC_EXPONENT = 64  # |k| in a power n**k of two numbers
MAX_DECIMAL_EXPONENT = 400  # |e| in a literal 1.5e-3


class ExpressionError(ValueError):
    """A user expression or number that is refused; the message is one line."""


def _log1p(x):
    return sp.log(1 + x)


def _expm1(x):
    return sp.exp(x) - 1


#: The functions an expression may call (all smooth on their domain), by the name typed.
SMOOTH_FUNCTIONS = {
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt,
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan,
    "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh,
    "asin": sp.asin, "acos": sp.acos, "atan": sp.atan,
    "asinh": sp.asinh, "acosh": sp.acosh, "atanh": sp.atanh,
    "log1p": _log1p, "expm1": _expm1,
}

#: Names of functions that are refused as non-smooth (backward error analysis needs
#: derivatives of the loss up to third order).
NON_SMOOTH_FUNCTIONS = ("Abs", "abs", "sign", "Max", "Min", "max", "min", "floor", "ceiling",
                        "ceil", "Heaviside", "Piecewise", "relu", "round", "frac", "Mod")

CONSTANTS = {"pi": sp.pi}

_BINARY = {ast.Add: sp.Add, ast.Sub: lambda a, b: a - b, ast.Mult: sp.Mul,
           ast.Div: lambda a, b: a / b, ast.Pow: "pow"}
_CHAINS = (ast.Add, ast.Sub, ast.Mult, ast.Div)

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")

# what a refused node is called in the message
_NODE_NAMES = {
    ast.Attribute: "attribute access ('.')", ast.Subscript: "subscripts ('[...]')",
    ast.Lambda: "lambda", ast.Compare: "comparisons", ast.BoolOp: "'and'/'or'",
    ast.IfExp: "'if ... else'", ast.List: "lists", ast.Tuple: "tuples", ast.Dict: "dicts",
    ast.Set: "sets", ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions", ast.GeneratorExp: "comprehensions",
    ast.JoinedStr: "strings", ast.Starred: "'*' unpacking", ast.NamedExpr: "':='",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "slices",
}


def _show(text, limit=60):
    """``text`` quoted on one line (newlines escaped), shortened."""
    s = repr(text)
    return s if len(s) <= limit else s[:limit - 4] + "...'"


def parse_expression(text, names, what="expression"):
    """The SymPy expression ``text`` denotes, with ``names`` (``{name: Symbol}``) as the only
    variables; :class:`ExpressionError` (one line, naming ``what`` and the refused part)
    otherwise.  Never evaluates the text as Python.

    >>> import sympy as sp
    >>> x, y = sp.symbols("x y", real=True)
    >>> parse_expression("x^2/2 + 0.1*log(cosh(y))", {"x": x, "y": y})
    x**2/2 + log(cosh(y))/10
    >>> parse_expression('__import__("os").system("ls")', {"x": x}, "--loss")
    Traceback (most recent call last):
    ...
    modeq.proofs.expressions.ExpressionError: --loss: refused the call of ...
    """
    if not isinstance(text, str):
        raise ExpressionError(f"{what}: expected a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"{what}: expression too long ({len(text)} characters; at most "
                              f"{MAX_LENGTH})")
    if not text.strip():
        raise ExpressionError(f"{what}: empty expression")
    if "\x00" in text:
        raise ExpressionError(f"{what}: cannot parse {_show(text)}: a NUL character")
    # '^' is read as '**' (as in SymPy's default); line breaks and tabs as spaces
    source = text.replace("^", "**")
    for ws in "\n\r\t\f\v":
        source = source.replace(ws, " ")
    source = source.strip()
    try:
        with warnings.catch_warnings():   # e.g. SyntaxWarning: a second line on stderr
            warnings.simplefilter("ignore")
            tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        reason = (exc.msg or "invalid syntax").splitlines()[0]
        raise ExpressionError(f"{what}: cannot parse {_show(text)}: {reason}{where}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError(f"{what}: cannot parse {_show(text)}: nested too deeply") from None
    result = _Translator(dict(names), what, text, source).visit(tree.body, 0)
    if result.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise ExpressionError(f"{what}: {_show(text)} is not finite (division by zero?)")
    if result.has(sp.I):
        raise ExpressionError(f"{what}: {_show(text)} is not real")
    return result


def parse_names(text, what="names"):
    """Comma-separated identifiers (``x,y``), each a valid name not reserved for a function
    or constant; :class:`ExpressionError` otherwise."""
    import keyword
    items = [s.strip() for s in str(text or "").split(",")]
    if not any(items):
        raise ExpressionError(f"{what}: give a comma-separated list of names")
    for s in items:
        if not s:
            raise ExpressionError(f"{what}: empty item in {_show(text)}")
        if not s.isidentifier() or keyword.iskeyword(s) or not s.isascii():
            raise ExpressionError(f"{what}: {s!r} is not a name (letters, digits, '_')")
        if s in SMOOTH_FUNCTIONS or s in CONSTANTS or s in NON_SMOOTH_FUNCTIONS:
            raise ExpressionError(f"{what}: the name {s!r} is reserved (a function or constant)")
    if len(set(items)) != len(items):
        raise ExpressionError(f"{what}: a name is repeated in {_show(text)}")
    return items


class _Translator:
    def __init__(self, names, what, text, source):
        for name in names:
            if name in SMOOTH_FUNCTIONS or name in CONSTANTS:
                raise ExpressionError(f"{what}: the parameter name {name!r} is reserved "
                                      f"(a function or constant)")
        self.names = names
        self.what = what
        self.text = text
        self.source = source

    def refuse(self, part):
        return ExpressionError(f"{self.what}: refused {part} in {_show(self.text)}; allowed: "
                               f"numbers, the parameters ({', '.join(self.names) or 'none'}), "
                               f"+ - * / **, parentheses and {', '.join(SMOOTH_FUNCTIONS)}")

    def visit(self, node, depth):
        if depth > MAX_DEPTH:
            raise ExpressionError(f"{self.what}: {_show(self.text)} is nested too deeply")
        if isinstance(node, ast.Constant):
            return self.constant(node.value, node)
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.UnaryOp):
            operand = self.visit(node.operand, depth + 1)
            if isinstance(node.op, ast.USub):
                return -operand
            if isinstance(node.op, ast.UAdd):
                return operand
            raise self.refuse(f"the operator {_op_symbol(node.op)!r}")
        if isinstance(node, ast.BinOp):
            # a chain a + b - c * d / ... is walked along its left spine without growing the
            # depth (left-to-right evaluation): long sums are fine, deep nesting is not
            chain = []
            while isinstance(node, ast.BinOp) and type(node.op) in _CHAINS:
                chain.append(node)
                node = node.left
            if chain:
                acc = self.visit(node, depth + 1)
                for link in reversed(chain):
                    acc = _BINARY[type(link.op)](acc, self.visit(link.right, depth + 1))
                return acc
            op = _BINARY.get(type(node.op))
            if op is None:
                raise self.refuse(f"the operator {_op_symbol(node.op)!r}")
            a = self.visit(node.left, depth + 1)
            b = self.visit(node.right, depth + 1)
            return self.power(a, b)
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        raise self.refuse(_NODE_NAMES.get(type(node), f"the construct {type(node).__name__}"))

    def constant(self, value, node=None):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = "strings" if isinstance(value, (str, bytes)) else repr(value)
            raise self.refuse(kind if kind == "strings" else f"the constant {kind}")
        if isinstance(value, int):
            if len(str(abs(value))) > MAX_DIGITS:
                raise self.refuse(f"a number with more than {MAX_DIGITS} digits")
            return sp.Integer(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise self.refuse("a number beyond the floating-point range")
        literal = ast.get_source_segment(self.source, node) if node is not None else None
        return parse_number(literal or repr(value), self.what)

    def name(self, ident):
        if ident in self.names:
            return self.names[ident]
        if ident in CONSTANTS:
            return CONSTANTS[ident]
        if ident in NON_SMOOTH_FUNCTIONS:
            raise self.non_smooth(ident)
        if ident in SMOOTH_FUNCTIONS:
            raise self.refuse(f"the function {ident} without an argument")
        raise self.refuse(f"the name {ident!r}")

    def non_smooth(self, ident):
        return ExpressionError(
            f"{self.what} uses the non-smooth function {ident}; backward error analysis needs "
            f"a smooth loss (derivatives up to third order)")

    def call(self, node, depth):
        if not isinstance(node.func, ast.Name):
            called = _show(ast.unparse(node.func), 40)   # printed, never run
            raise self.refuse(f"the call of {called} (only the functions listed can be called)")
        ident = node.func.id
        if ident in NON_SMOOTH_FUNCTIONS:
            raise self.non_smooth(ident)
        if ident not in SMOOTH_FUNCTIONS:
            raise self.refuse(f"the function {ident!r}")
        if node.keywords:
            raise self.refuse(f"keyword arguments in {ident}(...)")
        if len(node.args) != 1:
            raise self.refuse(f"{ident} with {len(node.args)} arguments (it takes one)")
        return SMOOTH_FUNCTIONS[ident](self.visit(node.args[0], depth + 1))

    def power(self, a, b):
        if a.is_Number and b.is_Number:
            if abs(b) > MAX_NUMERIC_EXPONENT:
                raise self.refuse(f"the numeric power {a}**{b} (exponent beyond "
                                  f"{MAX_NUMERIC_EXPONENT})")
        elif b.is_Number and b.is_Integer and abs(b) > 1000:
            raise self.refuse(f"the power **{b} (exponent beyond 1000)")
        return sp.Pow(a, b)


def _op_symbol(op):
    return {ast.BitAnd: "&", ast.BitOr: "|", ast.LShift: "<<", ast.RShift: ">>",
            ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.Invert: "~",
            ast.Not: "not"}.get(type(op), type(op).__name__)


def parse_number(text, what="number"):
    """An exact SymPy rational from ``text``: an integer, a decimal (``0.1`` is ``1/10``), a
    fraction ``a/b`` of those, or a power of two ``2^k``; :class:`ExpressionError` otherwise.
    Never evaluates the text.

    >>> parse_number("2^-4"), parse_number("1e-3"), parse_number("3/8")
    (1/16, 1/1000, 3/8)
    """
    t = str(text).replace(" ", "")
    if len(t) > 2 * MAX_DIGITS + 20:
        raise ExpressionError(f"{what}: cannot read {_show(text)} as a number (too long)")
    if t.startswith("2^"):
        k = t[2:]
        if not re.fullmatch(r"[+-]?\d{1,4}", k) or abs(int(k)) > 10000:
            raise ExpressionError(f"{what}: cannot read {_show(text)} as a number (2^k needs "
                                  f"an integer k, |k| <= 10000)")
        return sp.Integer(2) ** int(k)
    parts = t.split("/")
    if len(parts) > 2 or not all(_NUMBER.match(p) for p in parts):
        raise ExpressionError(f"{what}: cannot read {_show(text)} as a number (integers, "
                              f"decimals, a/b or 2^k)")
    values = []
    for p in parts:
        mantissa, _, exponent = p.lower().partition("e")
        if exponent and abs(int(exponent)) > MAX_DECIMAL_EXPONENT:
            raise ExpressionError(f"{what}: cannot read {_show(text)} as a number (decimal "
                                  f"exponent beyond {MAX_DECIMAL_EXPONENT})")
        if len(mantissa.lstrip("+-").replace(".", "")) > MAX_DIGITS:
            raise ExpressionError(f"{what}: cannot read {_show(text)} as a number (more than "
                                  f"{MAX_DIGITS} digits)")
        values.append(sp.Rational(p))   # a string: read by fractions.Fraction, never evaluated
    if len(values) == 2:
        if values[1] == 0:
            raise ExpressionError(f"{what}: {_show(text)} divides by zero")
        return values[0] / values[1]
    return values[0]

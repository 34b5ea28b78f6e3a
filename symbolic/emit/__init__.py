"""modeq.symbolic.emit: every numeric and source target of a derived flow, one way through.

The lowering chain, top to bottom::

    values    resolve and validate hyperparameter values (exact), step indices
    prepare   lift constants, share square roots, hoist step-index coefficients, CSE
    printers  SymPy printers for mpmath / NumPy / torch / exact SymPy, and source literals
    kernel    one compiled list of expressions (``Kernel``), also in interval arithmetic
    mpfr      an mpmath kernel's code on MPFR numbers (gmpy2): same rounding, faster
    products  finite products over a step index from running tables
    running_sums  step-index memory sums geometric in ``n``, by their recurrence in ``n``
    intervals enclosures of a kernel over a range of step indices (``mpmath.iv``)
    windowed  memory sums at a cost bounded in ``n``, truncated below the working precision
    past_sums the sums over past steps of a field: node tables (``nested_sums``), windowed
    full_batch ``f(n, theta)`` full batch (``FullBatchField``)
    arithmetic the mini-batch loops' two arithmetics: the backend's numbers, or MPFR
    minibatch ``f(n, theta)`` mini batch by the batch grouping (``MiniBatchField``)
    step_indexed ``f(n, theta)`` mini batch step by step, for declarations outside the grouping
    field     ``lambdify_flow``: the one entry point
    forms     matrix-free forms of the terms (contractions ``H.u``, ``T[u, w]``)
    matrixfree evaluation of a form from ``g`` and ``hvp``/``d3`` callbacks or arrays
    source    a standalone generated module

It receives a flow (anything with ``optimizer``, ``order``, ``terms``, ``F`` and
``grouped_terms``) and never imports the derivation passes.
"""
from .arrays import to_number
from .blockwise import BlockwiseFunction
from .field import FullBatchField, lambdify_flow
from .forms import MatrixFreeFlow, MatrixFreeForm, first_order_form, flow_forms, matrix_free, verify
from .kernel import Kernel, compile_exprs
from .matrixfree import ArrayFunction, MatrixFreeFunction
from .minibatch import MiniBatchField
from .source import module_source
from .values import exact_value, normalize_values, resolve_symbols, resolve_values

__all__ = ["lambdify_flow", "FullBatchField", "MiniBatchField", "Kernel", "compile_exprs",
           "matrix_free", "flow_forms", "first_order_form", "verify", "MatrixFreeForm",
           "MatrixFreeFlow", "MatrixFreeFunction", "ArrayFunction", "BlockwiseFunction",
           "module_source",
           "exact_value", "normalize_values", "resolve_symbols", "resolve_values", "to_number"]

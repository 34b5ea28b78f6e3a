"""Reading a torch optimizer as torch users write it: ``"AdamW(lr=1e-3, betas=(0.9, 0.999))"``.

The text is parsed with ``ast`` (never evaluated): one call of a ``torch.optim`` class name
(``AdamW``, ``optim.AdamW`` or ``torch.optim.AdamW``) with keyword arguments whose values are
literals (numbers, booleans, tuples of numbers).  The optimizer is then built by torch itself on
a one-element float64 parameter, so torch checks the values, and read back with
:func:`modeq.numeric.torch_optim.from_torch`.
"""
from __future__ import annotations

import ast

__all__ = ["parse_torch_spec", "optimizer_from_spec"]


def parse_torch_spec(text, option="--torch"):
    """``(class name, keyword arguments)`` of ``text``; ``ValueError`` naming ``option``.

    >>> parse_torch_spec("AdamW(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01)")
    ('AdamW', {'lr': 0.001, 'betas': (0.9, 0.999), 'weight_decay': 0.01})
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(f"{option}: cannot read {text!r}; write e.g. "
                         f"\"AdamW(lr=1e-3, weight_decay=0.01)\"") from None
    if not isinstance(node, ast.Call):
        raise ValueError(f"{option}: expected a call such as \"Adam(lr=1e-3)\", got {text!r}")
    func = node.func
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        raise ValueError(f"{option}: expected a torch.optim class name, got {text!r}")
    parts.append(func.id)
    name, prefix = parts[0], parts[:0:-1]
    if prefix not in ([], ["optim"], ["torch", "optim"]):
        raise ValueError(f"{option}: expected a torch.optim class, got {'.'.join(parts[::-1])}")
    if node.args:
        raise ValueError(f"{option}: give the hyperparameters by keyword (lr=..., betas=...); "
                         f"the parameters are not needed")
    kwargs = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise ValueError(f"{option}: ** arguments are not accepted")
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, SyntaxError):
            raise ValueError(f"{option}: {kw.arg} must be a number, a boolean or a tuple of "
                             f"numbers") from None
    return name, kwargs


def optimizer_from_spec(text, option="--torch"):
    """``(declaration, values)`` of the torch optimizer ``text`` describes (module docstring).

    >>> decl, values = optimizer_from_spec("SGD(lr=0.1, momentum=0.5)")
    >>> decl.name, values["h"]
    ('torch_sgd', 0.1)
    """
    from modeq.numeric.torch_optim import from_torch
    import torch
    name, kwargs = parse_torch_spec(text, option)
    cls = getattr(torch.optim, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"{option}: torch.optim has no optimizer {name!r}")
    param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    try:
        optimizer = cls([param], **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{option}: torch.optim.{name} refused the settings: {exc}") from None
    return from_torch(optimizer)

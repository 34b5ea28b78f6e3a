"""A package face whose public names are loaded on first use (PEP 562 module ``__getattr__``).

``modeq.symbolic`` and ``modeq.proofs`` use it so that importing one light submodule (the
cache location, the output cache) does not import SymPy through the package's ``__init__``.
Standard library only.
"""
from __future__ import annotations

import importlib
import sys
import types

__all__ = ["install"]


class _LazyPackage(types.ModuleType):
    """The import system records a loaded submodule as an attribute of its package; a
    submodule sharing its name with a public function (``recognize``, ``document``) must not
    hide the function."""

    def __setattr__(self, name, value):
        if self.__dict__.get("_lazy_exports", {}).get(name) is not None \
                and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


def install(package_name: str, exports: dict) -> None:
    """Load each public name of package ``package_name`` on first access:
    ``exports[name]`` is the submodule (relative to the package) that defines ``name``, or
    ``None`` when the public name is itself a submodule (``modeq.symbolic.optimizers``)."""
    package = sys.modules[package_name]

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package_name!r} has no attribute {name!r}")
        if exports[name] is None:
            value = importlib.import_module(f"{package_name}.{name}")
        else:
            value = getattr(importlib.import_module(f"{package_name}.{exports[name]}"), name)
        package.__dict__[name] = value
        return value

    def __dir__():
        return sorted(set(package.__dict__) | set(exports))

    package.__dict__.update(_lazy_exports=dict(exports), __getattr__=__getattr__,
                            __dir__=__dir__)
    package.__class__ = _LazyPackage

"""Lazy package attributes (PEP 562), so that importing a package does not import torch or transformers."""

from __future__ import annotations

import importlib


def lazy_getattr(package: str, table: dict, namespace: dict):
    """A module `__getattr__` for `package`: `table` maps a public name to the module that defines it (absolute, or
    relative to `package` with a leading dot); the value is imported on first access and cached in `namespace`
    (the package's `globals()`), so later accesses are plain lookups."""

    def __getattr__(name: str):
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    return __getattr__

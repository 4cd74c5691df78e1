"""
Names a package exports but imports only on first use, as TRL and transformers do: `trl-irl --help` answers without
importing torch, and a config does not import the trainers. A leaf: it imports nothing of the package.
"""

from collections.abc import Callable
from importlib import import_module


def lazy_exports(package: str, exports: dict[str, str], namespace: dict) -> tuple[Callable, Callable]:
    """
    The module-level `__getattr__` and `__dir__` of `package`, whose `exports` map each name to the (relative) module
    that defines it; a name is imported once, then kept in the package's `namespace`.
    """

    def __getattr__(name: str):
        if name in exports:
            value = getattr(import_module(exports[name], package), name)
            namespace[name] = value  # imported once
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*namespace, *exports])

    return __getattr__, __dir__

"""aifactory: the control plane and digital twin for national-scale GPU AI factories.

The Python API (:mod:`aifactory.api`) is here: ``load_fleet``, ``read_trace``,
``simulate``, ``compare``, ``plan_training`` and their ``Result`` and ``Comparison``. They
are imported on first use (PEP 562), so ``import aifactory`` (and the CLI) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aifactory import native

if TYPE_CHECKING:
    __version__: str

    from aifactory.api import (
        Comparison,
        Result,
        compare,
        load_fleet,
        plan_training,
        read_trace,
        simulate,
    )

# Compiled hot path (mypyc) if built and fresh, else pure Python: see aifactory/native.py.
BUILD = native.install()

_API = frozenset(
    {"Comparison", "Result", "compare", "load_fleet", "plan_training", "read_trace", "simulate"}
)


def _version() -> str:
    """The installed distribution's version (importlib.metadata costs ~25 ms to import, so
    it is read only when asked: ``aifactory --version``)."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("aifactory")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    """``__version__``, and the Python API's names from :mod:`aifactory.api`, on first use."""
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    if name not in _API:
        msg = f"module 'aifactory' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module("aifactory.api"), name)
    globals()[name] = value
    return value


__all__ = [
    "BUILD",
    "Comparison",
    "Result",
    "__version__",
    "compare",
    "load_fleet",
    "plan_training",
    "read_trace",
    "simulate",
]

"""Casting Arrow columns to a schema's types without importing :mod:`pyarrow.compute`.

``Array.cast`` and ``ChunkedArray.cast`` import ``pyarrow.compute`` on first use, and that
import wraps every registered compute function in Python (about 40 ms, a few per cent of
``aifactory simulate`` on the full Philly trace, issue #21 §4) just to call one kernel.
:func:`cast` calls the same kernel, with the same safe options ``pc.cast`` uses, through
``pyarrow._compute`` (the compiled module ``pyarrow.compute`` itself wraps), and returns a
column that already has the type unchanged, as a cast to its own type would be.

Where ``pyarrow._compute`` lacks those names (another pyarrow), the public cast is used.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pyarrow as pa

Column = TypeVar("Column", pa.Array, pa.ChunkedArray)

try:
    from pyarrow._compute import CastOptions, call_function
except ImportError:  # pragma: no cover (pyarrow moved them: use the public cast)
    _KERNEL: Any = None
else:
    _KERNEL = (CastOptions, call_function)


def cast(values: Column, target: pa.DataType) -> Column:
    """``values.cast(target)`` (safe: an overflow or a lossy conversion raises)."""
    if values.type == target:
        return values
    if _KERNEL is None:
        return values.cast(target)
    options, call = _KERNEL
    out: Column = call("cast", [values], options.safe(target))
    return out

"""Arrow speed tricks of the twin's batch commands (issue #21 §4), each with its way out.

:func:`cast` casts a column to a schema's type without importing :mod:`pyarrow.compute`.
``Array.cast`` and ``ChunkedArray.cast`` import it on first use, and that import wraps
every registered compute function in Python (about 40 ms, a few per cent of ``aifactory
simulate`` on the full Philly trace) just to call one kernel. :func:`cast` calls the same
kernel, with the same safe options ``pc.cast`` uses, through ``pyarrow._compute`` (the
compiled module ``pyarrow.compute`` wraps), and returns a column that already has the type
unchanged, as a cast to its own type would. Where ``pyarrow._compute`` lacks those names
(another pyarrow), the public cast is used.

:func:`use_system_pool` makes glibc's malloc Arrow's default allocator for a one-shot
command. Arrow's default here, mimalloc, hands freed pages back to the system and faults
them in again: writing ``jobs.parquet`` cost about as much system time as user time, and
``simulate`` on the full Philly trace spent 0.3 s of system CPU (of 0.7 s) more than with
the system pool, for byte-identical files. A long-lived process (the service) keeps
mimalloc. ``ARROW_DEFAULT_MEMORY_POOL`` set by the user (any value) wins: nothing changes.
"""

from __future__ import annotations

import os
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


POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def use_system_pool() -> None:
    """Make the system allocator Arrow's default pool for the rest of this process, unless
    the user chose a pool (``ARROW_DEFAULT_MEMORY_POOL``). For one-shot commands only:
    call it before their Arrow work (buffers already made keep the pool they came from)."""
    if os.environ.get(POOL_ENV) is not None:
        return
    pa.set_memory_pool(pa.system_memory_pool())

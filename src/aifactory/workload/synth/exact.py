"""``exp`` and ``log`` of arrays that give the same bits on every x86-64 CPU.

NumPy's float64 ``exp`` and ``log`` loops are dispatched by CPU: where AVX-512 is present
they run NumPy's own vectorised implementation, elsewhere the C library's. The two differ
in the last bit for some inputs, so the same seed synthesised a different workload on a
machine with AVX-512 (a few hundred of 33,705 jobs of the national golden run differed by
one ulp in duration or size) than on one without. Here both go through the C library's
``exp``/``log`` (Python's :mod:`math`), one value at a time: a few tens of nanoseconds a
job, and the workload depends on the seed alone.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def exp(x: FloatArray) -> FloatArray:
    """``e**x`` elementwise, through the C library."""
    return np.fromiter(map(math.exp, x.tolist()), dtype=np.float64, count=len(x))


def log(x: FloatArray) -> FloatArray:
    """The natural logarithm elementwise (any shape), through the C library."""
    flat = np.fromiter(map(math.log, x.ravel().tolist()), dtype=np.float64, count=x.size)
    return flat.reshape(x.shape)

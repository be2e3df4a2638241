"""Normalised hours: how many B200-equivalent GPU-hours one hour of each GPU class is.

A grant may name one GPU class (charged in that class's GPU-hours) or none, in which case
it is granted in B200-equivalent hours and a job on any class draws ``rate x GPU-hours``.

The rate of a class is its dense BF16 peak over the B200's: the GPU catalogue's figures
(``aifactory/fleet/data/gpus.yaml``, vendor datasheets, facts.md §2: B200 2,250 TFLOP/s,
H100/H200 989, A100 312, GB200 2,500). That delivered training throughput scales with peak
BF16 is an **assumption** (memory bandwidth, NVLink domain size and MFU differ by class);
a platform that measures its own ratios passes them instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

B200_TFLOPS = 2250.0  # dense BF16 peak of one B200 (NVIDIA HGX B200 datasheet; facts.md §2)
RATE_SOURCE = (
    "dense BF16 peak relative to B200 (2,250 TFLOP/s), from the GPU catalogue "
    "(vendor datasheets, facts.md §2); assumption: throughput scales with peak BF16"
)


def b200_rates(bf16_tflops: Mapping[str, float]) -> dict[str, float]:
    """B200-equivalents per GPU of each class, from each class's dense BF16 TFLOP/s."""
    rates: dict[str, float] = {}
    for gpu_class, tflops in bf16_tflops.items():
        if not math.isfinite(tflops) or tflops <= 0:
            msg = f"bf16_tflops[{gpu_class}]: must be a positive number, not {tflops!r}"
            raise ValueError(msg)
        rates[gpu_class] = tflops / B200_TFLOPS
    return rates

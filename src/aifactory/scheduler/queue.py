"""A tenant's queue: its pending jobs as a binary heap in policy order.

An entry holds the policy's key of the job when it was queued (a tuple of floats, see
``Policy.job_key``), a sequence number (FIFO among equal keys, and the entry's identity:
a job whose ``qseq`` no longer matches has left the queue, and its entry is skipped when
it reaches the top) and the job. The heap is :mod:`aifactory.heap`: the key's first two
floats are unboxed fields of the compiled entry, where ``heapq`` over nested tuples
compared generically at every level (the largest single cost of a busy korea-2025
pass). Longer keys still compare correctly, by their remaining items.
"""

from __future__ import annotations

from typing import final

from aifactory.heap import Keyed, before, pop, push
from aifactory.workload.job import Job

__all__ = ["Entry", "before", "pop", "push"]


@final
class Entry(Keyed):
    """One queued job and its place in the order."""

    __slots__ = ("job",)

    def __init__(self, key: tuple[float, ...], seq: int, job: Job) -> None:
        n = len(key)
        super().__init__(key[0] if n > 0 else 0.0, key[1] if n > 1 else 0.0, key[2:], seq)
        self.job = job

"""A tenant's queue: its pending jobs as a binary heap in policy order.

An entry holds the policy's key of the job when it was queued (a tuple of floats, see
``Policy.job_key``), a sequence number (FIFO among equal keys, and the entry's identity:
a job whose ``qseq`` no longer matches has left the queue, and its entry is skipped when
it reaches the top) and the job.

The heap is written here rather than ``heapq`` over tuples: the key's first two floats
are unboxed fields of a compiled class, so most comparisons are two machine compares,
where a nested tuple comparison went through the generic rich-compare path at every
level (the largest single cost of a busy korea-2025 pass). Longer keys still compare
correctly, by their remaining items.
"""

from __future__ import annotations

import heapq
from typing import Final, final

from aifactory.workload.job import Job


@final
class Entry:
    """One queued job and its place in the order."""

    __slots__ = ("job", "k0", "k1", "rest", "seq")

    def __init__(self, key: tuple[float, ...], seq: int, job: Job) -> None:
        n = len(key)
        self.k0 = key[0] if n > 0 else 0.0
        self.k1 = key[1] if n > 1 else 0.0
        self.rest = key[2:]
        self.seq = seq
        self.job = job

    def __lt__(self, other: Entry) -> bool:
        """The queue's order, for ``heapq`` (used when this module runs uncompiled)."""
        return before(self, other)

    def order(self) -> tuple[float, float, tuple[float, ...], int]:
        """The entry's place as a plain tuple (for merging queue heads across tenants)."""
        return (self.k0, self.k1, self.rest, self.seq)


def before(a: Entry, b: Entry) -> bool:
    """Policy key first, then sequence."""
    if a.k0 != b.k0:
        return a.k0 < b.k0
    if a.k1 != b.k1:
        return a.k1 < b.k1
    if a.rest != b.rest:
        return a.rest < b.rest
    return a.seq < b.seq


def push(heap: list[Entry], entry: Entry) -> None:
    """Add an entry."""
    if COMPILED:
        heap.append(entry)
        _bubble_up(heap, len(heap) - 1)
    else:
        heapq.heappush(heap, entry)


def pop(heap: list[Entry]) -> Entry:
    """Remove and return the first entry (the heap must not be empty)."""
    if not COMPILED:
        return heapq.heappop(heap)
    first = heap[0]
    last = heap.pop()
    if heap:
        _sink(heap, last)
    return first


def _bubble_up(heap: list[Entry], pos: int) -> None:
    item = heap[pos]
    while pos > 0:
        parent = (pos - 1) >> 1
        above = heap[parent]
        if not before(item, above):
            break
        heap[pos] = above
        pos = parent
    heap[pos] = item


def _sink(heap: list[Entry], item: Entry) -> None:
    """Put ``item`` at the root: the hole walks down along the earlier children to a
    leaf, then ``item`` bubbles up from there (fewer comparisons than stopping early, as
    the replacement comes from the end of the heap and usually belongs near the bottom)."""
    end = len(heap)
    pos = 0
    child = 1
    while child < end:
        right = child + 1
        if right < end and not before(heap[child], heap[right]):
            child = right
        heap[pos] = heap[child]
        pos = child
        child = 2 * pos + 1
    heap[pos] = item
    _bubble_up(heap, pos)


# Whether this module runs compiled: then its own sift functions are fastest; as plain
# Python, C's heapq calling Entry.__lt__ is (the same order either way).
COMPILED: Final = type(_bubble_up).__name__ != "function"

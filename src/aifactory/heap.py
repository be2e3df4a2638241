"""One binary min-heap, shared by the twin's event kernel and the scheduler's queues.

Items are :class:`Keyed` objects ordered by two floats, then a tuple of further floats
(compared only on a tie), then a sequence number that makes the order total. Compiled
(mypyc), a comparison reads unboxed fields, where ``heapq`` over tuples went through
the generic rich-compare path at every level of the heap: about a tenth of a busy
korea-2025 run for the kernel, and the largest single cost of a busy pass for the
queues. As plain Python, C's ``heapq`` calling :meth:`Keyed.__lt__` is faster than
sifting in Python, so that is used there. Any correct heap pops a strict total order
in the same sequence, so both give the same results.
"""

from __future__ import annotations

import heapq
from typing import Final, TypeVar


class Keyed:
    """An item's place in a heap: ``(k0, k1, rest, seq)``, compared in that order."""

    __slots__ = ("k0", "k1", "rest", "seq")

    def __init__(self, k0: float, k1: float, rest: tuple[float, ...], seq: int) -> None:
        self.k0 = k0
        self.k1 = k1
        self.rest = rest
        self.seq = seq

    def __lt__(self, other: Keyed) -> bool:
        """The heap's order, for ``heapq`` (used when this module runs uncompiled)."""
        return before(self, other)


K = TypeVar("K", bound=Keyed)


def before(a: Keyed, b: Keyed) -> bool:
    """Whether ``a`` comes first."""
    if a.k0 != b.k0:
        return a.k0 < b.k0
    if a.k1 != b.k1:
        return a.k1 < b.k1
    if a.rest != b.rest:
        return a.rest < b.rest
    return a.seq < b.seq


def push(heap: list[K], item: K) -> None:
    """Add an item."""
    if COMPILED:
        heap.append(item)
        _bubble_up(heap, len(heap) - 1)
    else:
        heapq.heappush(heap, item)


def pop(heap: list[K]) -> K:
    """Remove and return the first item (the heap must not be empty)."""
    if not COMPILED:
        return heapq.heappop(heap)
    first = heap[0]
    last = heap.pop()
    if heap:
        _sink(heap, last)
    return first


def heapify(heap: list[K]) -> None:
    """Make a list a heap in place, in linear time."""
    if not COMPILED:
        heapq.heapify(heap)
        return
    end = len(heap)
    for start in range(end // 2 - 1, -1, -1):
        item = heap[start]
        pos = start
        child = 2 * pos + 1
        while child < end:
            right = child + 1
            if right < end and not before(heap[child], heap[right]):
                child = right
            if not before(heap[child], item):
                break
            heap[pos] = heap[child]
            pos = child
            child = 2 * pos + 1
        heap[pos] = item


def _bubble_up(heap: list[K], pos: int) -> None:
    """Move the item at ``pos`` towards the root until its parent comes before it."""
    item = heap[pos]
    while pos > 0:
        parent = (pos - 1) >> 1
        above = heap[parent]
        if not before(item, above):
            break
        heap[pos] = above
        pos = parent
    heap[pos] = item


def _sink(heap: list[K], item: K) -> None:
    """Put ``item`` at the root: the hole walks down along the earlier children to a
    leaf, then ``item`` bubbles up from there (heapq's way: about half the comparisons
    of stopping as soon as it fits, as the replacement comes from the end of the heap
    and usually belongs near the bottom)."""
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


# Whether this module runs compiled: then its own sift functions are fastest.
COMPILED: Final = type(_bubble_up).__name__ != "function"

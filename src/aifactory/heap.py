"""The twin's two binary min-heaps.

:class:`RowHeap` holds rows of numbers in unboxed vectors: the big heaps of a run (the
event kernel, the tenant queues, EASY's index of running jobs by estimated end,
preemption's cost order), where a heap of objects read each compared object where it lay
in memory.

``push``/``pop`` keep a list of :class:`Keyed` objects, ordered by two floats, then a
tuple of further floats (compared only on a tie), then a sequence number that makes the
order total: for small heaps of objects that carry more than numbers (a pass's merge of
queue heads). Compiled (mypyc), a comparison reads unboxed fields, where ``heapq`` over
tuples went through the generic rich-compare path at every level. As plain Python, C's
``heapq`` calling :meth:`Keyed.__lt__` is faster than sifting in Python, so that is
used there. Any correct heap pops a strict total order in the same sequence, so both
give the same results.
"""

from __future__ import annotations

import heapq
from typing import Final, TypeVar, final

from librt.vecs import append, vec
from librt.vecs import pop as vec_pop
from mypy_extensions import i64


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


@final
class RowHeap:
    """A min-heap of rows ``(k0, k1, seq, ref)`` held in unboxed vectors, one per field,
    ordered by ``(k0, k1, seq)``; ``ref`` is the caller's (an index into its own table).

    For the large heaps of a busy run (EASY's index of 100,000 and more running jobs by
    estimated end): a heap of objects reads each compared object's fields, scattered over
    memory, so a pop on a heap that size missed the CPU's cache at nearly every level;
    here a level reads neighbouring floats of one array, and moving a row touches no
    object (no reference count). The top row is ``k0[0]``, ``k1[0]``, ``seq[0]``,
    ``ref[0]`` (read them before :meth:`pop`).
    """

    __slots__ = ("k0", "k1", "ref", "seq")

    def __init__(self) -> None:
        self.k0 = vec[float]()
        self.k1 = vec[float]()
        self.seq = vec[i64]()
        self.ref = vec[i64]()

    def __len__(self) -> int:
        return len(self.k0)

    def push(self, k0: float, k1: float, seq: int, ref: int) -> None:
        """Add a row."""
        self.k0 = append(self.k0, k0)
        self.k1 = append(self.k1, k1)
        self.seq = append(self.seq, seq)
        self.ref = append(self.ref, ref)
        self._place(len(self.k0) - 1, k0, k1, seq, ref)

    def pop(self) -> None:
        """Remove the top row (the heap must not be empty)."""
        self.k0, a0 = vec_pop(self.k0)
        self.k1, a1 = vec_pop(self.k1)
        self.seq, s = vec_pop(self.seq)
        self.ref, r = vec_pop(self.ref)
        end: i64 = len(self.k0)
        if end == 0:
            return
        # heapq's way (see _sink): the hole walks down the earlier children to a leaf,
        # then the last row moves up from there.
        k0, k1, seq, ref = self.k0, self.k1, self.seq, self.ref
        pos: i64 = 0
        child: i64 = 1
        while child < end:
            right = child + 1
            if right < end and not self._before(child, right):
                child = right
            k0[pos] = k0[child]
            k1[pos] = k1[child]
            seq[pos] = seq[child]
            ref[pos] = ref[child]
            pos = child
            child = 2 * pos + 1
        self._place(pos, a0, a1, s, r)

    def heapify(self) -> None:
        """Restore the heap order after rows were appended with :meth:`extend`."""
        k0, k1, seq, ref = self.k0, self.k1, self.seq, self.ref
        end: i64 = len(k0)
        start: i64 = end // 2 - 1
        while start >= 0:
            a0, a1, s, r = k0[start], k1[start], seq[start], ref[start]
            pos = start
            child = 2 * pos + 1
            while child < end:
                right = child + 1
                if right < end and not self._before(child, right):
                    child = right
                if self._first(a0, a1, s, child):
                    break
                self._copy(pos, child)
                pos = child
                child = 2 * pos + 1
            k0[pos] = a0
            k1[pos] = a1
            seq[pos] = s
            ref[pos] = r
            start -= 1

    def extend(self, k0: float, k1: float, seq: int, ref: int) -> None:
        """Append a row without ordering it (call :meth:`heapify` after a batch)."""
        self.k0 = append(self.k0, k0)
        self.k1 = append(self.k1, k1)
        self.seq = append(self.seq, seq)
        self.ref = append(self.ref, ref)

    def _before(self, i: i64, j: i64) -> bool:
        """Whether row ``i`` comes before row ``j``."""
        a = self.k0[i]
        b = self.k0[j]
        if a != b:
            return a < b
        a = self.k1[i]
        b = self.k1[j]
        if a != b:
            return a < b
        return self.seq[i] < self.seq[j]

    def _first(self, a0: float, a1: float, s: i64, i: i64) -> bool:
        """Whether the row (a0, a1, s) comes before row ``i`` (for heapify; the per-event
        sifts, pop and _place, compare and move rows inline: a call per level there cost
        a few per cent of a 1M-job run)."""
        b = self.k0[i]
        if a0 != b:
            return a0 < b
        b = self.k1[i]
        if a1 != b:
            return a1 < b
        return s < self.seq[i]

    def _copy(self, dst: i64, src: i64) -> None:
        """Row ``src`` to position ``dst``."""
        self.k0[dst] = self.k0[src]
        self.k1[dst] = self.k1[src]
        self.seq[dst] = self.seq[src]
        self.ref[dst] = self.ref[src]

    def _place(self, pos: i64, a0: float, a1: float, s: i64, r: i64) -> None:
        """Put the row (a0, a1, s, r) at ``pos``, moving it up past later parents."""
        k0, k1, seq, ref = self.k0, self.k1, self.seq, self.ref
        while pos > 0:
            parent = (pos - 1) >> 1
            b0 = k0[parent]
            if a0 > b0 or (
                a0 == b0 and (a1 > k1[parent] or (a1 == k1[parent] and s > seq[parent]))
            ):
                break
            k0[pos] = b0
            k1[pos] = k1[parent]
            seq[pos] = seq[parent]
            ref[pos] = ref[parent]
            pos = parent
        k0[pos] = a0
        k1[pos] = a1
        seq[pos] = s
        ref[pos] = r


# Whether this module runs compiled: then its own sift functions are fastest.
COMPILED: Final = type(_bubble_up).__name__ != "function"

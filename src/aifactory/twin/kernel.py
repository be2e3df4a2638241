"""A small discrete-event kernel: one heap, one total order, no knowledge of GPUs.

Events are ordered by ``(time, class, sequence)``. The class fixes the order of
simultaneous events once, here, for the whole twin:

1. ``END``      - completions, failures and repairs: capacity is freed first;
2. ``ARRIVAL``  - new jobs join the queues;
3. ``DECIDE``   - the scheduling pass, which then sees both of the above;
4. ``OBSERVE``  - metric samples, which see the state after the pass.

Within a class, events keep the order they were scheduled in (the sequence number),
so a run is deterministic. The kernel's clock only moves forward; scheduling an event
in the past is an error.

The heap is a :class:`~aifactory.heap.RowHeap`: rows ``(time, class, sequence, slot)``
in unboxed vectors, the event's kind, tag and payload in slot tables beside it (a freed
slot is used again). No object is made per event: a heap of event objects made and freed
one per end, and its sifts read each compared object where it lay in memory. Any correct
heap pops a strict total order in the same sequence, so results are those of ``heapq``.
:meth:`Kernel.pop` hands out one :class:`Event` object, updated for each event: read a
popped event before the next pop.

The heap holds only the events of the current *window* (``WINDOW_S`` of simulated time);
later ones wait as unordered rows, one set per window, and a window's rows become the heap
(heapified in linear time) when the clock gets there. A busy korea-2025 day has one end
event per running job, 150,000 and more, mostly of long jobs; a heap that size misses
the CPU's cache at every level of every pop, while the events of the next minutes make
a small one. Every event of an earlier window precedes every event of a later one, so
the order is the same total order. The waiting windows' numbers are a RowHeap too (rows
ordered by the number alone): on a sparse trace most end events open a window of their
own, and ``heapq`` over boxed ints would cost a generic call and comparisons per window.

A class is taken as an ``int`` (an :class:`EventClass` is one): compiled, converting
an enum object to the heap's float key would be a generic ``float()`` call per event.

A *feed* is a sorted sequence of times known up front (a trace's arrivals): its events
are merged with the heap on the way out instead of being pushed, so a million-job trace
costs no heap operations for its arrivals and the heap stays O(running jobs). A feed's
event comes after heap events of the same time and class, and is handed out in a second
reused :class:`Event` object (a million arrivals made and freed a million objects).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any, Final, final

from librt.vecs import append, vec
from librt.vecs import pop as vec_pop
from mypy_extensions import i64, mypyc_attr

from aifactory.heap import Keyed, RowHeap

WINDOW_S: Final = 60.0  # simulated seconds per window of the event heap (tuned on korea-2025:
# at 600 s the heap's share of a busy run fell from 10% to 8%, at 60 s to 5%)
INF: Final = float("inf")
_NEVER: Final = 1 << 62  # the window of events at infinity (none expected; kept correct)
_NEVER_S: Final = _NEVER * WINDOW_S  # later finite times share that window (a window
# number stays an i64; its horizon is infinite, so the order is kept)


def _window(time: float) -> int:
    """The window a finite time falls in: floor(time / WINDOW_S), without a float modulo."""
    w = int(time / WINDOW_S)
    return w - 1 if w * WINDOW_S > time else w


class EventClass(IntEnum):
    """Tie-break for simultaneous events (lower first)."""

    END = 0
    ARRIVAL = 1
    DECIDE = 2
    OBSERVE = 3


@final
class Event(Keyed):
    """One event: when, its class and sequence (its place in the order, as a
    :class:`~aifactory.heap.Keyed`), and the caller's kind, payload and an int tag (e.g.
    which run of a job an end belongs to: no tuple per event to carry it)."""

    __slots__ = ("kind", "payload", "tag")

    def __init__(
        self, time: float, cls: int, seq: int, kind: int, payload: Any, tag: int = 0
    ) -> None:
        super().__init__(time, float(cls), (), seq)  # seq: order of scheduling, -1: feed
        self.kind = kind
        self.payload = payload
        self.tag = tag

    @property
    def time(self) -> float:
        """When the event happens."""
        return self.k0

    @property
    def cls(self) -> int:
        """Its :class:`EventClass` (the tie-break at equal times)."""
        return int(self.k1)

    def __repr__(self) -> str:
        return f"Event({self.k0}, cls={self.cls}, seq={self.seq}, kind={self.kind})"


@mypyc_attr(allow_interpreted_subclasses=True)  # tests wrap it with invariant checks
class Kernel:
    """The event heap and the simulated clock."""

    __slots__ = (
        "_event",
        "_feed",
        "_feed_cls",
        "_feed_event",
        "_feed_i",
        "_feed_kind",
        "_free",
        "_heap",
        "_horizon",
        "_kind",
        "_later",
        "_later_n",
        "_payload",
        "_seq",
        "_tag",
        "_windows",
        "now",
        "processed",
    )

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap = RowHeap()  # the events before the horizon: (time, class, seq, slot)
        # The end of the heap's window; later events wait in _later by window number (as
        # unordered rows), and _windows is a heap of those numbers.
        self._horizon = (_window(start) + 1) * WINDOW_S if start < INF else INF
        self._later: dict[int, RowHeap] = {}
        self._later_n = 0
        self._windows = RowHeap()  # rows (0, 0, window, window): the waiting windows' numbers
        self._seq = 0
        self.processed = 0
        # Each scheduled event's kind, tag and payload, by slot; freed slots wait in _free.
        self._kind = vec[i64]()
        self._tag = vec[i64]()
        self._payload: list[Any] = []
        self._free = vec[i64]()
        self._event = Event(INF, 0, 0, 0, None)  # what pop() hands out for a heap event
        self._feed = vec[float]()  # unboxed: no float object per arrival
        self._feed_i = 0
        self._feed_cls = 0
        self._feed_kind = 0
        self._feed_event = Event(INF, 0, -1, 0, None)

    def feed(self, times: Sequence[float], cls: int, kind: int) -> None:
        """Deliver an event of ``kind`` at each of ``times`` (ascending, not in the past);
        its tag is the position in ``times`` (an unboxed int; the payload is None). One
        feed per kernel."""
        if self._feed:
            msg = "the kernel already has a feed"
            raise ValueError(msg)
        # (checked on the unboxed copy: indexing a NumPy array is a generic call per item)
        got = vec[float]([float(t) for t in times])
        if len(got) and got[0] < self.now:
            msg = f"feed starts at {got[0]}, in the past (now {self.now})"
            raise ValueError(msg)
        for i in range(1, len(got)):
            if got[i] < got[i - 1]:
                msg = f"feed times must not decrease: {got[i]} after {got[i - 1]} at {i}"
                raise ValueError(msg)
        self._feed = got
        self._feed_i = 0
        self._feed_cls = int(cls)
        self._feed_kind = kind
        self._feed_event = Event(INF, int(cls), -1, kind, None)

    def at(self, time: float, cls: int, kind: int, payload: Any = None, tag: int = 0) -> None:
        """Schedule an event of ``kind`` (the caller's own code) and :class:`EventClass`
        ``cls`` at ``time``."""
        if time < self.now:
            msg = f"event at {time} is in the past (now {self.now})"
            raise ValueError(msg)
        self._seq += 1
        slot = self._slot(kind, payload, tag)
        if time < self._horizon:
            self._heap.push(time, float(cls), self._seq, slot)
            return
        window = _window(time) if time < _NEVER_S else _NEVER
        waiting = self._later.get(window)
        if waiting is None:
            waiting = self._later[window] = RowHeap()
            self._windows.push(0.0, 0.0, window, window)
        waiting.extend(time, float(cls), self._seq, slot)
        self._later_n += 1

    def _slot(self, kind: int, payload: Any, tag: int) -> int:
        """A slot holding an event's kind, payload and tag (a freed one if any)."""
        if len(self._free):
            self._free, slot = vec_pop(self._free)
            self._kind[slot] = kind
            self._tag[slot] = tag
            self._payload[slot] = payload
            return slot
        self._kind = append(self._kind, kind)
        self._tag = append(self._tag, tag)
        self._payload.append(payload)
        return len(self._payload) - 1

    def _next_window(self) -> None:
        """The heap is empty: make the earliest waiting window's events the heap."""
        window = int(self._windows.ref[0])
        self._windows.pop()
        heap = self._later[window]
        del self._later[window]
        self._later_n -= len(heap)
        heap.heapify()
        self._heap = heap
        self._horizon = (window + 1) * WINDOW_S if window != _NEVER else INF

    def pop(self) -> Event | None:
        """Next event, advancing the clock; None when the heap and the feed are empty. The
        event is valid until the next pop (one object is handed out, updated each time)."""
        if not len(self._heap) and len(self._windows):
            self._next_window()
        heap = self._heap
        i = self._feed_i
        if i < len(self._feed):
            t = self._feed[i]
            if not len(heap):
                return self._take_feed(t, i)
            top = heap.k0[0]
            if t < top or (t == top and self._feed_cls < heap.k1[0]):
                return self._take_feed(t, i)
        if not len(heap):
            return None
        slot = heap.ref[0]
        event = self._event
        event.k0 = heap.k0[0]
        event.k1 = heap.k1[0]
        event.seq = heap.seq[0]
        heap.pop()
        event.kind = self._kind[slot]
        event.tag = self._tag[slot]
        event.payload = self._payload[slot]
        self._payload[slot] = None  # (the event holds it now; the slot keeps nothing alive)
        self._free = append(self._free, slot)
        self.now = event.k0
        self.processed += 1
        return event

    def _take_feed(self, t: float, i: int) -> Event:
        """Hand out the feed's event ``i`` at ``t``."""
        if t >= self._horizon:
            # Past the heap's window: the heap and the later windows are empty here (pop
            # fills the heap from them first), so the window moves on to the clock's.
            self._horizon = (_window(t) + 1) * WINDOW_S if t < INF else INF
        self._feed_i = i + 1
        self.now = t
        self.processed += 1
        event = self._feed_event  # (one object for the whole feed: see the module's doc)
        event.k0 = t
        event.tag = i
        return event

    def next_is_later(self, now: float, cls: int) -> bool:
        """Whether nothing is due before an event of class ``cls`` at ``now``: the
        heap is empty, or its next event is later, or of the same or a later class. A
        caller may then handle such an event at once instead of scheduling it."""
        i = self._feed_i
        if i < len(self._feed) and self._feed[i] == now and self._feed_cls < cls:
            return False
        heap = self._heap
        return not len(heap) or heap.k0[0] > now or heap.k1[0] >= cls

    def handled_inline(self) -> None:
        """Count an event the caller handled at once (see :meth:`next_is_later`)."""
        self.processed += 1

    def peek_time(self) -> float | None:
        """Time of the next event without taking it."""
        times = [self._heap.k0[0]] if len(self._heap) else []
        if not times and len(self._windows):
            times.append(min(self._later[self._windows.ref[0]].k0))
        if self._feed_i < len(self._feed):
            times.append(self._feed[self._feed_i])
        return min(times, default=None)

    def __len__(self) -> int:
        """Events still to come (heap, later windows and feed)."""
        return len(self._heap) + self._later_n + len(self._feed) - self._feed_i

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
"""

from __future__ import annotations

import heapq
from enum import IntEnum
from typing import Any


class EventClass(IntEnum):
    """Tie-break for simultaneous events (lower first)."""

    END = 0
    ARRIVAL = 1
    DECIDE = 2
    OBSERVE = 3


Event = tuple[float, int, int, int, Any]  # time, class, sequence, kind, payload


class Kernel:
    """The event heap and the simulated clock."""

    __slots__ = ("_heap", "_seq", "now", "processed")

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[Event] = []
        self._seq = 0
        self.processed = 0

    def at(self, time: float, cls: EventClass, kind: int, payload: Any = None) -> None:
        """Schedule an event of ``kind`` (the caller's own code) at ``time``."""
        if time < self.now:
            msg = f"event at {time} is in the past (now {self.now})"
            raise ValueError(msg)
        self._seq += 1
        heapq.heappush(self._heap, (time, cls, self._seq, kind, payload))

    def pop(self) -> Event | None:
        """Next event, advancing the clock; None when the heap is empty."""
        if not self._heap:
            return None
        event = heapq.heappop(self._heap)
        self.now = event[0]
        self.processed += 1
        return event

    def next_is_later(self, now: float, cls: EventClass) -> bool:
        """Whether nothing is due before an event of class ``cls`` at ``now``: the
        heap is empty, or its next event is later, or of the same or a later class. A
        caller may then handle such an event at once instead of scheduling it."""
        heap = self._heap
        return not heap or heap[0][0] > now or heap[0][1] >= cls

    def handled_inline(self) -> None:
        """Count an event the caller handled at once (see :meth:`next_is_later`)."""
        self.processed += 1

    def peek_time(self) -> float | None:
        """Time of the next event without taking it."""
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)

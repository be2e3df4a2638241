"""The event kernel (issue #3 §1): one documented total order for simultaneous events.

Order: time, then class END < ARRIVAL < DECIDE < OBSERVE, then the order of scheduling
(FIFO within a class). Scheduling an event in the past is an error.
"""

from __future__ import annotations

import pytest

from aifactory.twin.kernel import EventClass, Kernel


def drain(kernel: Kernel) -> list[tuple[float, int, object]]:
    out = []
    while (ev := kernel.pop()) is not None:
        out.append((ev.time, ev.cls, ev.payload))
    return out


def test_simultaneous_events_follow_end_arrival_decide_observe() -> None:
    k = Kernel()
    # Scheduled in the "wrong" order on purpose.
    k.at(5.0, EventClass.OBSERVE, 0, "observe")
    k.at(5.0, EventClass.DECIDE, 0, "decide")
    k.at(5.0, EventClass.ARRIVAL, 0, "arrival")
    k.at(5.0, EventClass.END, 0, "end")
    assert [p for _, _, p in drain(k)] == ["end", "arrival", "decide", "observe"]


def test_class_order_is_the_documented_one() -> None:
    assert EventClass.END < EventClass.ARRIVAL < EventClass.DECIDE < EventClass.OBSERVE


def test_fifo_within_a_class_at_the_same_time() -> None:
    k = Kernel()
    for i in range(10):
        k.at(1.0, EventClass.ARRIVAL, 0, i)
        k.at(1.0, EventClass.END, 0, -i)
    got = [p for _, _, p in drain(k)]
    assert got == [-i for i in range(10)] + list(range(10))


def test_time_comes_before_class() -> None:
    k = Kernel()
    k.at(2.0, EventClass.END, 0, "late end")
    k.at(1.0, EventClass.OBSERVE, 0, "early observe")
    assert [p for _, _, p in drain(k)] == ["early observe", "late end"]


def test_clock_advances_and_counts_processed_events() -> None:
    k = Kernel(start=10.0)
    assert k.now == 10.0
    k.at(10.0, EventClass.DECIDE, 7, None)
    k.at(12.5, EventClass.END, 3, "x")
    assert len(k) == 2
    assert k.peek_time() == 10.0
    ev = k.pop()
    assert ev is not None
    assert (ev.time, ev.kind) == (10.0, 7)
    assert k.now == 10.0
    ev = k.pop()
    assert ev is not None
    assert k.now == 12.5
    assert k.processed == 2
    assert k.pop() is None
    assert k.peek_time() is None
    assert k.now == 12.5  # an empty pop does not move the clock


def test_scheduling_in_the_past_raises() -> None:
    k = Kernel()
    k.at(5.0, EventClass.END, 0)
    k.pop()
    with pytest.raises(ValueError, match="past"):
        k.at(4.999, EventClass.ARRIVAL, 0)
    k.at(5.0, EventClass.DECIDE, 0)  # "now" itself is allowed


def test_events_scheduled_while_draining_keep_the_order() -> None:
    """An END scheduled at the current instant from an ARRIVAL handler still runs before the
    DECIDE already queued for that instant (the class, not insertion time, decides)."""
    k = Kernel()
    k.at(1.0, EventClass.ARRIVAL, 0, "arrival")
    k.at(1.0, EventClass.DECIDE, 0, "decide")
    seen = []
    while (ev := k.pop()) is not None:
        seen.append(ev.payload)
        if ev.payload == "arrival":
            k.at(1.0, EventClass.END, 0, "end-now")
    assert seen == ["arrival", "end-now", "decide"]


def test_a_feed_merges_with_the_heap_in_the_documented_order() -> None:
    k = Kernel()
    k.feed([1.0, 2.0, 2.0, 5.0], EventClass.ARRIVAL, 9)
    k.at(2.0, EventClass.DECIDE, 0, "decide@2")
    k.at(2.0, EventClass.END, 0, "end@2")
    k.at(3.0, EventClass.OBSERVE, 0, "observe@3")
    k.at(5.0, EventClass.ARRIVAL, 0, "heap-arrival@5")  # same time and class: heap first
    assert len(k) == 8
    got = []
    while (ev := k.pop()) is not None:
        feed = ev.kind == 9
        got.append((ev.time, ev.kind if feed else ev.payload, ev.payload if feed else None))
    assert got == [
        (1.0, 9, 0),
        (2.0, "end@2", None),
        (2.0, 9, 1),
        (2.0, 9, 2),
        (2.0, "decide@2", None),
        (3.0, "observe@3", None),
        (5.0, "heap-arrival@5", None),
        (5.0, 9, 3),
    ]
    assert k.processed == 8
    assert len(k) == 0


def test_next_is_later_sees_a_feed_event_due_at_the_same_instant() -> None:
    k = Kernel()
    k.feed([4.0, 6.0], EventClass.ARRIVAL, 1)
    k.at(4.0, EventClass.END, 0, "end")
    assert k.pop() is not None  # the END at 4
    assert not k.next_is_later(4.0, EventClass.DECIDE)  # the arrival at 4 comes first
    assert k.peek_time() == 4.0
    assert k.pop() is not None  # the arrival at 4
    assert k.next_is_later(4.0, EventClass.DECIDE)
    assert k.peek_time() == 6.0


@pytest.mark.parametrize(
    ("times", "start", "match"),
    [([3.0, 2.0], 0.0, "must not decrease: 2.0 after 3.0 at 1"), ([1.0], 5.0, "in the past")],
)
def test_a_bad_feed_is_refused(times: list[float], start: float, match: str) -> None:
    k = Kernel(start=start)
    with pytest.raises(ValueError, match=match):
        k.feed(times, EventClass.ARRIVAL, 0)
    assert len(k) == 0


def test_only_one_feed() -> None:
    k = Kernel()
    k.feed([1.0], EventClass.ARRIVAL, 0)
    with pytest.raises(ValueError, match="already has a feed"):
        k.feed([2.0], EventClass.ARRIVAL, 0)

"""The event kernel (issue #3 §1): one documented total order for simultaneous events.

Order: time, then class END < ARRIVAL < DECIDE < OBSERVE, then the order of scheduling
(FIFO within a class). Scheduling an event in the past is an error.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
        got.append((ev.time, ev.kind if feed else ev.payload, ev.tag if feed else None))
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


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 1.0, 599.0, 600.0, 601.5, 1800.0, 5000.0]), max_size=12),
    st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.5, 600.0, 1200.0, 3599.0, 86400.0]),  # delay from now
            st.sampled_from(list(EventClass)),
            st.integers(0, 2),  # how many further events this one schedules when popped
        ),
        max_size=30,
    ),
)
def test_pops_in_total_order_across_windows(
    feed: list[float], plan: list[tuple[float, EventClass, int]]
) -> None:
    """Events scheduled up front and while the run goes on, far apart (many windows of the
    heap) and at equal times, merged with a feed: the kernel pops exactly the order of a
    sorted reference, and next_is_later agrees with what is actually next."""
    k = Kernel()
    feed = sorted(feed)
    k.feed(feed, EventClass.ARRIVAL, 9)
    ref: list[tuple[float, int, int, str]] = []  # (time, class, order of scheduling, id)
    todo = list(plan)
    seq = 0

    def schedule(now: float) -> None:
        nonlocal seq
        if not todo:
            return
        delay, cls, more = todo.pop(0)
        name = f"e{seq}"
        seq += 1
        k.at(now + delay, cls, more, name)
        ref.append((now + delay, int(cls), seq, name))

    for _ in range(len(plan) // 2):
        schedule(0.0)
    for i, t in enumerate(feed):
        # a feed event comes after heap events of its time and class
        ref.append((t, int(EventClass.ARRIVAL), 10**9 + i, f"feed{i}"))
    got: list[str] = []
    expect: list[str] = []
    while True:
        ev = k.pop()
        if ev is None:
            break
        pending = sorted(r for r in ref if r[3] not in got)
        expect.append(pending[0][3])
        got.append(f"feed{ev.tag}" if ev.kind == 9 else str(ev.payload))
        for _ in range(ev.kind if ev.kind != 9 else 1):
            schedule(ev.time)
        rest = sorted(r for r in ref if r[3] not in got)
        later = not rest or rest[0][0] > ev.time or rest[0][1] >= int(EventClass.DECIDE)
        assert k.next_is_later(ev.time, EventClass.DECIDE) == later
    assert got == expect
    assert len(got) == len(ref)
    assert len(k) == 0


def test_an_event_at_the_clock_after_a_feed_event_beyond_the_window() -> None:
    """The clock jumps past the heap's window on a feed event; an end event scheduled for
    that same instant is still due before a scheduling pass there."""
    k = Kernel()
    k.feed([700.0, 5000.0], EventClass.ARRIVAL, 1)
    ev = k.pop()
    assert ev is not None
    assert ev.time == 700.0
    k.at(700.0, EventClass.END, 2)
    assert not k.next_is_later(700.0, EventClass.DECIDE)
    nxt = k.pop()
    assert nxt is not None
    assert (nxt.time, nxt.kind) == (700.0, 2)
    assert k.next_is_later(700.0, EventClass.DECIDE)
    k.at(4000.0, EventClass.END, 3)
    assert [e.kind for e in iter(k.pop, None)] == [3, 1]


def test_far_future_times_share_the_last_window_in_order() -> None:
    """Finite times past the last numbered window (and infinity) wait in one window whose
    horizon is infinite; they still pop in time order, after every nearer event, and an
    event scheduled meanwhile between them keeps its place."""
    k = Kernel()
    k.at(1e22, EventClass.END, 1)
    k.at(float("inf"), EventClass.END, 2)
    k.at(5e21, EventClass.END, 3)
    k.at(7200.0, EventClass.END, 4)
    k.at(90.0, EventClass.END, 5)
    order = []
    while (ev := k.pop()) is not None:
        order.append(ev.kind)
        if ev.kind == 3:
            k.at(6e21, EventClass.END, 6)
    assert order == [5, 4, 3, 6, 1, 2]

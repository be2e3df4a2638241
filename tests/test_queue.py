"""Tenant queues (scheduler/queue.py): a heap that pops in (policy key, sequence) order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aifactory.scheduler.queue import Entry, before, pop, push
from builders import make_job


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 3).flatmap(
        lambda n: st.lists(
            st.tuples(*[st.sampled_from([0.0, 1.0, 2.5, -1.0])] * n), min_size=0, max_size=40
        )
    ),
)
def test_pops_in_key_then_sequence_order(keys: list[tuple[float, ...]]) -> None:
    """Keys of one length (as one policy gives), many ties; pushes interleaved with pops."""
    job = make_job("j")
    heap: list[Entry] = []
    popped: list[Entry] = []
    for seq, key in enumerate(keys):
        push(heap, Entry(key, seq, job))
        if seq % 3 == 2:
            popped.append(pop(heap))
    while heap:
        popped.append(pop(heap))
    assert len(popped) == len(keys)
    # each pop was the least of what was in the heap: replay with a sorted list
    heap2: list[tuple[tuple[float, ...], int]] = []
    expect: list[tuple[tuple[float, ...], int]] = []
    for seq, key in enumerate(keys):
        heap2.append((key, seq))
        if seq % 3 == 2:
            heap2.sort()
            expect.append(heap2.pop(0))
    expect.extend(sorted(heap2))
    assert [(keys[e.seq], e.seq) for e in popped] == expect


def test_before_compares_keys_beyond_two_items() -> None:
    job = make_job("j")
    a = Entry((1.0, 2.0, 3.0), 5, job)
    b = Entry((1.0, 2.0, 4.0), 1, job)
    assert before(a, b)
    assert not before(b, a)
    assert before(Entry((1.0,), 1, job), Entry((1.0,), 2, job))  # equal keys: sequence
    assert a.order() == (1.0, 2.0, (3.0,), 5)

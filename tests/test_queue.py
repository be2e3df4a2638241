"""Tenant queues (scheduler/queue.py): a heap that pops in (policy key, sequence) order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aifactory.scheduler.core import Head
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
    assert (a.k0, a.k1, a.rest, a.seq) == (1.0, 2.0, (3.0,), 5)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda n: st.lists(
            st.tuples(
                st.sampled_from([0.0, 0.5, 2.0]),  # tenant key
                st.tuples(*[st.sampled_from([0.0, 1.0, 2.5, -1.0])] * n),  # job key
            ),
            min_size=1,
            max_size=20,
        )
    ),
    st.booleans(),
)
def test_heads_merge_by_tenant_key_then_entry_order(
    items: list[tuple[float, tuple[float, ...]]], keyed: bool
) -> None:
    """A pass merges tenants' queue heads by (tenant key, job key, sequence); without tenant
    keys, by (job key, sequence). Head keeps exactly that order, compared as Keyed items."""
    job = make_job("j")
    heads: list[Head] = []
    for seq, (tkey, key) in enumerate(items):
        push(heads, Head(Entry(key, seq, job), seq, tkey if keyed else None))
    got = [pop(heads).tix for _ in items]
    expect = sorted(
        range(len(items)),
        key=lambda i: ((items[i][0],) if keyed else ()) + items[i][1] + (i,),
    )
    assert got == expect

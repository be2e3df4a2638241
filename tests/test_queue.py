"""Tenant queues (scheduler/queue.py): rows that pop in (policy key, sequence) order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifactory.heap import pop, push
from aifactory.scheduler.cycle import Head
from aifactory.scheduler.queue import RowHeap, key_pair, row_first

_keys = st.integers(0, 2).flatmap(
    lambda n: st.lists(
        st.tuples(*[st.sampled_from([0.0, 1.0, 2.5, -1.0])] * n), min_size=0, max_size=40
    )
)


@settings(max_examples=200, deadline=None)
@given(_keys)
def test_pops_in_key_then_sequence_order(keys: list[tuple[float, ...]]) -> None:
    """Keys of one length (as one policy gives), many ties; pushes interleaved with pops."""
    q = RowHeap()
    popped: list[int] = []
    for seq, key in enumerate(keys):
        k0, k1 = key_pair(key)
        q.push(k0, k1, seq, 100 + seq)
        if seq % 3 == 2:
            assert q.ref[0] == 100 + q.seq[0]  # the job index travels with its row
            popped.append(int(q.seq[0]))
            q.pop()
    while len(q):
        popped.append(int(q.seq[0]))
        q.pop()
    # each pop was the least of what was queued: replay with a sorted list
    live: list[tuple[tuple[float, ...], int]] = []
    expect: list[int] = []
    for seq, key in enumerate(keys):
        live.append((key, seq))
        if seq % 3 == 2:
            live.sort()
            expect.append(live.pop(0)[1])
    expect.extend(seq for _, seq in sorted(live))
    assert popped == expect


def test_key_pair_pads_short_keys_and_refuses_long_ones() -> None:
    assert key_pair(()) == (0.0, 0.0)
    assert key_pair((3.0,)) == (3.0, 0.0)
    assert key_pair((3.0, -1.0)) == (3.0, -1.0)
    with pytest.raises(ValueError, match=r"job_key: 3 items; a queue orders by at most 2"):
        key_pair((1.0, 2.0, 3.0))


def test_row_first_compares_with_the_top_row() -> None:
    q = RowHeap()
    q.push(1.0, 2.0, 5, 0)
    assert row_first(0.5, 9.0, 9, q)  # first float first
    assert row_first(1.0, 1.0, 9, q)  # then the second
    assert row_first(1.0, 2.0, 4, q)  # equal keys: the earlier sequence
    assert not row_first(1.0, 2.0, 6, q)
    assert not row_first(1.0, 3.0, 0, q)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 2).flatmap(
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
def test_heads_merge_by_tenant_key_then_row_order(
    items: list[tuple[float, tuple[float, ...]]], keyed: bool
) -> None:
    """A pass merges tenants' queue heads by (tenant key, job key, sequence); without tenant
    keys, by (job key, sequence). Head keeps exactly that order, compared as Keyed items."""
    heads: list[Head] = []
    for seq, (tkey, key) in enumerate(items):
        k0, k1 = key_pair(key)
        push(heads, Head(k0, k1, seq, seq, tkey if keyed else None))
    got = [pop(heads).tix for _ in items]
    expect = sorted(
        range(len(items)),
        key=lambda i: ((items[i][0],) if keyed else ()) + items[i][1] + (i,),
    )
    assert got == expect

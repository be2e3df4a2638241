"""RowHeap (aifactory/heap.py): rows in unboxed vectors, popped in (k0, k1, seq) order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aifactory.heap import RowHeap

# Few distinct values, so ties on k0 and on (k0, k1) are common.
_rows = st.lists(
    st.tuples(
        st.sampled_from([0.0, 1.0, 2.5, -1.0, float("inf")]),
        st.sampled_from([0.0, 3.0, -2.0]),
        st.integers(-5, 5),
    ),
    max_size=60,
)


def _top(heap: RowHeap) -> tuple[float, float, int, int]:
    return (heap.k0[0], heap.k1[0], int(heap.seq[0]), int(heap.ref[0]))


@settings(max_examples=300, deadline=None)
@given(_rows, st.integers(2, 5))
def test_pushes_and_pops_interleaved_pop_the_least_row(
    rows: list[tuple[float, float, int]], every: int
) -> None:
    """Each pop takes the least (k0, k1, seq) of what is in the heap (replayed on a sorted
    list); ``ref`` travels with its row."""
    heap = RowHeap()
    live: list[tuple[float, float, int, int]] = []
    for ref, (k0, k1, seq) in enumerate(rows):
        heap.push(k0, k1, seq, ref)
        live.append((k0, k1, seq, ref))
        if ref % every == every - 1:
            live.sort()
            want = live.pop(0)
            got = _top(heap)
            assert got[:3] == want[:3]
            assert rows[got[3]] == got[:3]  # the popped row's ref names that row
            live = [r for r in [*live, want] if r[3] != got[3]]
            heap.pop()
    while len(heap):
        top = _top(heap)
        assert top[:3] == min(live)[:3]
        live.remove(next(r for r in live if r[3] == top[3]))
        heap.pop()
    assert not live


@settings(max_examples=300, deadline=None)
@given(_rows)
def test_heapify_after_extend_gives_the_sorted_order(rows: list[tuple[float, float, int]]) -> None:
    heap = RowHeap()
    for ref, (k0, k1, seq) in enumerate(rows):
        heap.extend(k0, k1, seq, ref)
    heap.heapify()
    popped = []
    while len(heap):
        popped.append(_top(heap))
        heap.pop()
    assert [r[:3] for r in popped] == sorted(rows)
    assert sorted(r[3] for r in popped) == list(range(len(rows)))

"""A tenant's queue: its pending jobs as a heap of rows in policy order.

A queue is a :class:`~aifactory.heap.RowHeap`. A row holds the policy's key of the job
when it was queued (``k0``, ``k1``: see ``Policy.job_key``), a sequence number (``seq``:
FIFO among equal keys, and the row's identity: a job whose ``qseq`` no longer matches has
left the queue, and its row is skipped when it reaches the top) and the job's index
(``ref``). Late in a busy korea-2025 run the queues hold 100,000 jobs and more: a heap of
entry objects read each compared entry where it lay in memory, while a level of this heap
reads neighbouring floats of one array. A pass merges the queues by their heads
(:class:`Head`).
"""

from __future__ import annotations

from typing import final

from aifactory.heap import Keyed, RowHeap

__all__ = ["KEY_ITEMS", "Head", "RowHeap", "key_pair", "row_first"]

KEY_ITEMS = 2  # a policy's job key holds at most this many floats


def key_pair(key: tuple[float, ...]) -> tuple[float, float]:
    """A policy's job key as the row's two floats (a shorter key is padded with 0.0, which
    keeps its order). Raises on a key with more items: the queues would not order by them."""
    n = len(key)
    if n > KEY_ITEMS:
        msg = f"job_key: {n} items; a queue orders by at most {KEY_ITEMS}"
        raise ValueError(msg)
    return (key[0] if n > 0 else 0.0, key[1] if n > 1 else 0.0)


def row_first(k0: float, k1: float, seq: int, q: RowHeap) -> bool:
    """Whether a row ``(k0, k1, seq)`` comes before the top row of the non-empty ``q``."""
    t0 = q.k0[0]
    if k0 != t0:
        return k0 < t0
    t1 = q.k1[0]
    if k1 != t1:
        return k1 < t1
    return seq < q.seq[0]


@final
class Head(Keyed):
    """A tenant queue's head in a pass, ordered by (tenant key, the row's order).

    A :class:`~aifactory.heap.Keyed` item, so the merge of heads compares unboxed
    fields when compiled. Policies
    without tenant keys order heads by the row's own key; ``fair`` puts the tenant key
    first and shifts the row's key one place along (the same lexicographic order).
    """

    __slots__ = ("tix",)

    def __init__(self, k0: float, k1: float, seq: int, tix: int, tenant_key: float | None) -> None:
        if tenant_key is None:
            super().__init__(k0, k1, (), seq)
        else:
            super().__init__(tenant_key, k0, (k1,), seq)
        self.tix = tix

"""A tenant's queue: its pending jobs as a heap of rows in policy order.

A queue is a :class:`~aifactory.heap.RowHeap`. A row holds the policy's key of the job
when it was queued (``k0``, ``k1``: see ``Policy.job_key``), a sequence number (``seq``:
FIFO among equal keys, and the row's identity: a job whose ``qseq`` no longer matches has
left the queue, and its row is skipped when it reaches the top) and the job's index
(``ref``). Late in a busy korea-2025 run the queues hold 100,000 jobs and more: a heap of
entry objects read each compared entry where it lay in memory, while a level of this heap
reads neighbouring floats of one array.
"""

from __future__ import annotations

from aifactory.heap import RowHeap

__all__ = ["KEY_ITEMS", "RowHeap", "key_pair", "row_first"]

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

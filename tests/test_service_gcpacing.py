"""The server's garbage-collector pacing: it freezes the heap, collects it fully when due,
and hands everything back to the collector when stopped."""

from __future__ import annotations

import gc
import weakref

from aifactory.service.gcpacing import GcPacer
from test_service_support import wait_for


def test_steps_freeze_the_heap_and_a_full_step_collects_first() -> None:
    pacer = GcPacer()
    try:
        pacer.step(full=False)
        assert gc.get_freeze_count() > 0
        assert (pacer.freezes, pacer.full_collections) == (1, 0)

        class Cycle:
            me: object = None

        garbage = Cycle()
        garbage.me = garbage
        gone = weakref.ref(garbage)
        pacer.step(full=False)  # frozen while still referenced
        del garbage  # now reachable from nothing but itself: only a full step frees it
        gc.collect()
        assert gone() is not None  # a frozen cycle outlives an ordinary collection
        pacer.step(full=True)
        assert (pacer.freezes, pacer.full_collections) == (3, 1)
        assert gone() is None
    finally:
        pacer.stop()
    assert gc.get_freeze_count() == 0


def test_the_thread_paces_until_stopped() -> None:
    pacer = GcPacer(freeze_every_s=0.01, full_every_s=0.05)
    pacer.start()
    try:
        wait_for(lambda: pacer.full_collections >= 1 and pacer.freezes >= 3, timeout=10)
    finally:
        pacer.stop()
    assert gc.get_freeze_count() == 0

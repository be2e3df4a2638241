"""Garbage-collector pacing for the ``aifactory serve`` process.

The leader's scheduler keeps every live job in memory, so the heap grows with the queue.
CPython's full (generation 2) collection walks every tracked object; with ~10,000 live
jobs on a small machine one walk took 100-150 ms and ran about once a second under a
submit burst, stalling every request in flight at once: it *was* the submit p99.

So, once a second, this moves every object alive at that moment into the permanent
generation (:func:`gc.freeze`), which automatic collections skip. Objects freed by
reference counting are still freed at once; what a frozen object can no longer do is be
reclaimed as part of a reference *cycle*. To bound that, every ``full_every_s`` (five
minutes) the permanent generation is released and one full collection runs. That
collection is the one long pause left, once per period instead of once a second.

Only the server process uses this (the CLI starts it); the library and the tests run
with CPython's defaults.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

log = logging.getLogger(__name__)

FREEZE_EVERY_S = 1.0
FULL_EVERY_S = 300.0


class GcPacer:
    """A daemon thread that freezes the heap often and collects it fully, rarely."""

    def __init__(
        self, *, freeze_every_s: float = FREEZE_EVERY_S, full_every_s: float = FULL_EVERY_S
    ) -> None:
        self.freeze_every_s = freeze_every_s
        self.full_every_s = full_every_s
        self.freezes = 0
        self.full_collections = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start pacing (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gc-pacer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop pacing and hand every frozen object back to the collector."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        gc.unfreeze()

    def step(self, *, full: bool) -> None:
        """One pacing step: a full collection first if ``full``, then a freeze."""
        if full:
            gc.unfreeze()
            t0 = time.perf_counter()
            gc.collect()
            self.full_collections += 1
            log.debug("full collection: %.1f ms", (time.perf_counter() - t0) * 1000)
        gc.freeze()
        self.freezes += 1

    def _run(self) -> None:
        last_full = time.monotonic()
        while not self._stop.wait(self.freeze_every_s):
            now = time.monotonic()
            full = now - last_full >= self.full_every_s
            if full:
                last_full = now
            self.step(full=full)

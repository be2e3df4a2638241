"""What-if removal: running jobs taken off the cluster, quota and usage for real, with an undo.

Decides nothing. Preemption asks "if these jobs stopped, would the gang fit?" by freeing
their GPUs for real (placement search reads the live cluster) and must leave nothing
changed when the answer is no, or when anything raises midway. :class:`WhatIf` is the one
place that does it: every :meth:`WhatIf.remove` is recorded, and leaving the ``with``
block without :meth:`WhatIf.keep` puts every removed job back on exactly its GPUs, in
reverse order, whether the block returned or raised. Kept removals stay detached for the
caller (preemption's caller evicts them, or withdraws their starts).

Invariant: between ``remove`` and the end of the block, a removed job is detached
(:meth:`~aifactory.scheduler.running.Running.detach`: its GPUs free, its quota and usage
released, its place in the running lists empty) and keeps its placement, so that
:meth:`~aifactory.scheduler.running.Running.reattach` gives it the same GPUs back. Usage
changes twice at the same ``now``, which adds nothing to a tenant's decayed usage.
"""

from __future__ import annotations

from types import TracebackType

from aifactory.scheduler.running import Running
from aifactory.scheduler.seat import Seat


class WhatIf:
    """Removals of running jobs that are undone unless kept (a context manager)."""

    __slots__ = ("now", "removed", "running")

    def __init__(self, running: Running, now: float) -> None:
        self.running = running
        self.now = now
        self.removed: list[Seat] = []

    def __enter__(self) -> WhatIf:
        return self

    def remove(self, seat: Seat) -> None:
        """Take the seat's job off the cluster, quota and usage (undone at the block's
        end)."""
        self.running.detach(seat, self.now)
        self.removed.append(seat)

    def put_back(self, seat: Seat) -> None:
        """Undo the removal of the seat's job now (it is no longer removed)."""
        self.removed.remove(seat)
        self.running.reattach(seat, self.now)

    def undo(self) -> None:
        """Put every removed job back, newest first."""
        removed = self.removed
        while removed:
            self.running.reattach(removed.pop(), self.now)

    def keep(self) -> list[Seat]:
        """Keep the removals (the jobs stay detached) and return them, oldest first."""
        kept = self.removed
        self.removed = []
        return kept

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Not kept, or an exception midway: nothing of the what-if survives it.
        self.undo()

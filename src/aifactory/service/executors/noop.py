"""An executor that runs nothing: jobs "run" until cancelled or past their time limit.

For benchmarks of the control plane itself (no process per job) and for dry runs of a
policy on a live queue. It remembers only which handles were cancelled since their last
start (the loop polls a saving victim after its cancel, and must see it end), so a restart
finds every job still running.
"""

from __future__ import annotations

from aifactory.service.executors.base import Launch, RunState, Status


class NoopExecutor:
    """Accepts every job; reports it running until it is cancelled."""

    name = "noop"

    def __init__(self) -> None:
        # Handles cancelled and not started since; one per job (a handle names the job, not
        # the attempt), so the set is bounded by the jobs the loop cancelled.
        self._cancelled: set[str] = set()

    def start(self, launch: Launch) -> str:
        """The handle is just the job id."""
        handle = f"noop:{launch.job_id}"
        self._cancelled.discard(handle)
        return handle

    def find(self, name: str) -> str | None:
        """Every attempt counts as started (the backend keeps no state to say otherwise)."""
        job_id = name.removeprefix("aif-").split("-", 1)[0]
        return f"noop:{job_id}"

    def poll(self, handle: str) -> Status:
        """Running (the loop's time-limit check ends such jobs) unless cancelled."""
        if handle in self._cancelled:
            return Status(RunState.CANCELLED)
        return Status(RunState.RUNNING)

    def cancel(self, handle: str) -> None:
        """Nothing to stop; the job reads cancelled from now on."""
        self._cancelled.add(handle)

"""An executor that runs nothing: jobs "run" until cancelled or past their time limit.

For benchmarks of the control plane itself (no process per job) and for dry runs of a
policy on a live queue. It keeps no state, so a restart finds every job still running.
"""

from __future__ import annotations

from aifactory.service.executors.base import Launch, RunState, Status


class NoopExecutor:
    """Accepts every job; reports it running."""

    name = "noop"

    def start(self, launch: Launch) -> str:
        """The handle is just the job id."""
        return f"noop:{launch.job_id}"

    def find(self, name: str) -> str | None:
        """Every attempt counts as started (the backend keeps no state to say otherwise)."""
        job_id = name.removeprefix("aif-").split("-", 1)[0]
        return f"noop:{job_id}"

    def poll(self, handle: str) -> Status:
        """Always running (the loop's time-limit check ends such jobs)."""
        del handle
        return Status(RunState.RUNNING)

    def cancel(self, handle: str) -> None:
        """Nothing to stop."""
        del handle

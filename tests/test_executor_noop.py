"""The noop executor runs nothing, but says what the loop did to a job: running until it is
cancelled, then cancelled (a saving victim is polled after its cancel; reported running,
it kept its GPUs until ``preempt.KILL_MARGIN_S`` after its grace on every noop service)."""

from __future__ import annotations

from pathlib import Path

from aifactory.service.executors.base import Launch, NodeSlice, RunState
from aifactory.service.executors.noop import NoopExecutor


def launch(job_id: str, attempt: int = 1) -> Launch:
    return Launch(
        job_id=job_id,
        command="true",
        gpus=1,
        nodes=(NodeSlice("s/p/n0", (0,)),),
        log_path=Path("/dev/null"),
        attempt=attempt,
    )


def test_a_cancelled_job_reads_cancelled_until_its_next_attempt_starts() -> None:
    ex = NoopExecutor()
    handle = ex.start(launch("5"))
    other = ex.start(launch("6"))
    assert ex.poll(handle).state is RunState.RUNNING
    ex.cancel(handle)
    assert ex.poll(handle).state is RunState.CANCELLED
    assert ex.poll(other).state is RunState.RUNNING
    again = ex.start(launch("5", attempt=2))  # requeued and started again
    assert ex.poll(again).state is RunState.RUNNING

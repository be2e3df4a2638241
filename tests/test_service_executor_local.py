"""The local executor: CUDA_VISIBLE_DEVICES, logs, exit status, cancel, and a fresh instance
(as after a service restart) still learning how a job it did not start ended."""

from __future__ import annotations

import json
import os
from pathlib import Path

from aifactory.service.executors.base import Launch, RunState
from aifactory.service.executors.local import LocalExecutor
from test_service_support import wait_for


def launch(tmp_path: Path, command: str, gpus: tuple[int, ...] = (2, 5)) -> Launch:
    return Launch(
        job_id="7",
        command=command,
        gpus=len(gpus),
        gpu_indices=gpus,
        node="n0",
        log_path=tmp_path / "logs" / "job-7.log",
        env={"EXTRA": "yes"},
    )


def test_runs_with_the_assigned_gpus_and_records_exit_status(tmp_path: Path) -> None:
    ex = LocalExecutor()
    job = launch(tmp_path, 'echo "gpus=$CUDA_VISIBLE_DEVICES extra=$EXTRA"; echo oops >&2; exit 3')
    handle = ex.start(job)
    wait_for(lambda: ex.poll(handle).state is not RunState.RUNNING)
    status = ex.poll(handle)
    assert status.state is RunState.FAILED
    assert status.exit_code == 3
    log = job.log_path.read_text()
    assert "gpus=2,5 extra=yes" in log
    assert "oops" in log


def test_success_is_completed(tmp_path: Path) -> None:
    ex = LocalExecutor()
    handle = ex.start(launch(tmp_path, "true"))
    wait_for(lambda: ex.poll(handle).state is RunState.COMPLETED)
    assert ex.poll(handle).exit_code == 0


def test_cancel_stops_the_whole_process_group(tmp_path: Path) -> None:
    ex = LocalExecutor()
    handle = ex.start(launch(tmp_path, "sleep 30 & sleep 30; wait"))
    assert ex.poll(handle).state is RunState.RUNNING
    ex.cancel(handle)
    wait_for(lambda: ex.poll(handle).state is not RunState.RUNNING)
    pgid = json.loads(handle)["pid"]
    wait_for(lambda: not _group_alive(pgid), timeout=10)
    ex.cancel(handle)  # idempotent


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_fresh_executor_reconciles_jobs_it_did_not_start(tmp_path: Path) -> None:
    handle = LocalExecutor().start(launch(tmp_path, "sleep 0.5; exit 4"))
    fresh = LocalExecutor()  # as after a restart: no child processes of its own
    assert fresh.poll(handle).state is RunState.RUNNING
    wait_for(lambda: fresh.poll(handle).state is RunState.FAILED)
    assert fresh.poll(handle).exit_code == 4


def test_unknown_or_vanished_processes_are_lost(tmp_path: Path) -> None:
    ex = LocalExecutor()
    assert ex.poll("not json").state is RunState.LOST
    gone = json.dumps({"pid": 999_999_999, "start": "1", "exit": str(tmp_path / "none.exit")})
    assert ex.poll(gone).state is RunState.LOST
    # a recycled pid (same pid, other start time) is not mistaken for the job
    me = json.dumps({"pid": os.getpid(), "start": "0", "exit": str(tmp_path / "none.exit")})
    assert ex.poll(me).state is RunState.LOST

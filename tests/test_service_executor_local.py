"""The local executor: CUDA_VISIBLE_DEVICES, logs, exit status, cancel, a fresh instance
(as after a service restart) still learning how a job it did not start ended, and
``find``: an attempt runs at most once, whenever the service crashed.

Jobs are real processes. As root they run as aifactory-job (made by
scripts/setup-job-user.sh if missing); otherwise as the test's own user.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifactory.service.executors import make_executor, supervise
from aifactory.service.executors.base import ExecutorError, Launch, NodeSlice, RunState
from aifactory.service.executors.local import SUPERVISE, LocalExecutor, LocalSetupError
from aifactory.service.settings import ServiceSettings
from local_sandbox_support import reachable_dir, require_job_user
from test_service_support import wait_for


@pytest.fixture
def ex() -> Iterator[LocalExecutor]:
    require_job_user()
    with reachable_dir() as base:
        yield LocalExecutor(base / "data", grace_s=0.5)


def launch(
    ex: LocalExecutor, command: str, *, job: str = "7", attempt: int = 1, **kw: object
) -> Launch:
    return Launch(
        job_id=job,
        command=command,
        gpus=2,
        nodes=(NodeSlice("n0", (2, 5)),),
        log_path=ex.logs_dir / f"job-{job}.log",
        attempt=attempt,
        tenant="lab",
        **({"env": {"EXTRA": "yes"}} | kw),  # type: ignore[arg-type]
    )


def ended(ex: LocalExecutor, handle: str) -> RunState:
    wait_for(lambda: ex.poll(handle).state is not RunState.RUNNING, timeout=10)
    return ex.poll(handle).state


def home(ex: LocalExecutor, job: Launch) -> Path:
    return ex.jobs_dir / job.name


def test_runs_with_the_assigned_gpus_and_records_exit_status(ex: LocalExecutor) -> None:
    job = launch(ex, 'echo "gpus=$CUDA_VISIBLE_DEVICES extra=$EXTRA"; echo oops >&2; exit 3')
    handle = ex.start(job)
    assert ended(ex, handle) is RunState.FAILED
    assert ex.poll(handle).exit_code == 3
    log = job.log_path.read_text()
    assert "gpus=2,5 extra=yes" in log
    assert "oops" in log


def test_success_is_completed(ex: LocalExecutor) -> None:
    handle = ex.start(launch(ex, "true"))
    assert ended(ex, handle) is RunState.COMPLETED
    assert ex.poll(handle).exit_code == 0


def _sleeping(pid: int) -> bool:
    try:
        return b"sleep" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_cancel_stops_every_process_of_the_job(ex: LocalExecutor) -> None:
    job = launch(
        ex, "sleep 30 & echo $! > a.pid; setsid sleep 31 & echo $! > b.pid; wait; sleep 32"
    )
    handle = ex.start(job)
    files = [home(ex, job) / "a.pid", home(ex, job) / "b.pid"]
    wait_for(lambda: all(f.exists() and f.read_text().strip() for f in files))
    pids = [int(f.read_text()) for f in files]
    # ($! is written as soon as the shell forks: the child may not have exec'd sleep yet)
    wait_for(lambda: all(_sleeping(p) for p in pids), timeout=5)
    ex.cancel(handle)
    ex.cancel(handle)  # idempotent
    assert ended(ex, handle) is RunState.CANCELLED
    wait_for(lambda: not any(_sleeping(p) for p in pids), timeout=5)
    ex.cancel(handle)  # and harmless once it is over


def test_cancel_kills_a_job_that_ignores_sigterm_after_the_grace(ex: LocalExecutor) -> None:
    job = launch(ex, "trap '' TERM; echo ready; sleep 30")
    handle = ex.start(job)
    wait_for(lambda: "ready" in job.log_path.read_text())
    began = time.monotonic()
    ex.cancel(handle)
    assert ended(ex, handle) is RunState.CANCELLED
    assert time.monotonic() - began < 5  # 0.5 s of grace, then SIGKILL


@pytest.mark.parametrize(("grace", "saved"), [(None, False), (4.0, True)])
def test_a_job_with_a_stop_grace_gets_it_to_save_before_sigkill(
    ex: LocalExecutor, grace: float | None, saved: bool
) -> None:
    """A preempted trainer saves on SIGTERM (here: 1.5 s, then a file). With its own grace
    (Launch.stop_grace_s, its preempt grace) it has the time; with the executor's 0.5 s it
    is killed first."""
    job = launch(
        ex,
        "trap 'sleep 1.5; echo saved > ckpt; exit 0' TERM; echo ready; sleep 30 & wait",
        stop_grace_s=grace,
    )
    handle = ex.start(job)
    wait_for(lambda: "ready" in job.log_path.read_text())
    ex.cancel(handle)
    assert ended(ex, handle) is RunState.CANCELLED
    assert (home(ex, job) / "ckpt").exists() is saved


def test_a_sigterm_to_the_supervisor_stops_the_job_but_is_no_cancel(ex: LocalExecutor) -> None:
    """A host shutting down signals everyone: the job stops, recorded as what happened."""
    job = launch(ex, "echo ready; sleep 30")
    handle = ex.start(job)
    wait_for(lambda: "ready" in job.log_path.read_text())
    os.kill(json.loads(handle)["pid"], signal.SIGTERM)
    assert ended(ex, handle) is RunState.FAILED
    assert ex.poll(handle).exit_code == 128 + signal.SIGTERM


def test_a_killed_supervisor_is_lost_and_cancel_still_stops_the_job(ex: LocalExecutor) -> None:
    job = launch(ex, "sleep 30 & echo $! > a.pid; wait")
    handle = ex.start(job)
    pid_file = home(ex, job) / "a.pid"
    wait_for(lambda: pid_file.exists() and bool(pid_file.read_text().strip()))
    child = int(pid_file.read_text())
    os.kill(json.loads(handle)["pid"], signal.SIGKILL)  # the OOM killer, say
    assert ended(ex, handle) is RunState.LOST  # no exit status: nobody saw the end
    ex.cancel(handle)  # the job's own record (its cgroup, or its group) still reaches it
    job_record = json.loads((ex.run_dir / job.name / "job.json").read_text())
    if job_record["cgroup"]:
        wait_for(lambda: not _sleeping(child), timeout=5)
    main = job_record["pid"]
    wait_for(lambda: supervise.start_time(main) is None, timeout=5)  # parent-death SIGKILL


def test_a_fresh_executor_reconciles_jobs_it_did_not_start(ex: LocalExecutor) -> None:
    handle = ex.start(launch(ex, "sleep 0.5; exit 4"))
    fresh = LocalExecutor(ex.data_dir)  # as after a restart: no child processes of its own
    assert fresh.poll(handle).state is RunState.RUNNING
    wait_for(lambda: fresh.poll(handle).state is RunState.FAILED)
    assert fresh.poll(handle).exit_code == 4
    assert fresh.find(launch(ex, "").name) == handle


def test_unknown_or_vanished_processes_are_lost(ex: LocalExecutor, tmp_path: Path) -> None:
    assert ex.poll("not json").state is RunState.LOST
    gone = json.dumps({"pid": 999_999_999, "start": "1", "run": str(tmp_path)})
    assert ex.poll(gone).state is RunState.LOST
    # a recycled pid (same pid, other start time) is not mistaken for the supervisor
    me = json.dumps({"pid": os.getpid(), "start": "0", "run": str(tmp_path)})
    assert ex.poll(me).state is RunState.LOST
    # a handle of the earlier sh wrapper still reads its exit file
    (tmp_path / "old.exit").write_text("0")
    legacy = json.dumps({"pid": 999_999_999, "start": "1", "exit": str(tmp_path / "old.exit")})
    assert ex.poll(legacy).state is RunState.COMPLETED


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"command": "echo a\0b"}, "NUL"),
        ({"env": {"BAD KEY": "x"}}, "environment"),
        ({"env": {"OK": "a\0b"}}, "environment"),
        ({"job": "../../etc"}, "attempt name"),
    ],
    ids=["nul-in-command", "bad-env-key", "nul-in-env", "path-in-job-id"],
)
def test_what_cannot_be_run_is_an_executor_error(
    ex: LocalExecutor, change: dict[str, object], why: str
) -> None:
    kw: dict[str, object] = {"command": "true", **change}
    command = str(kw.pop("command"))
    job = str(kw.pop("job", "7"))
    with pytest.raises(ExecutorError, match=why):
        ex.start(launch(ex, command, job=job, **kw))
    assert list(ex.run_dir.iterdir()) == []  # nothing was started


def test_a_log_replaced_by_a_link_fails_the_start_and_is_not_followed(ex: LocalExecutor) -> None:
    target = ex.data_dir / "precious"
    target.write_text("keep")
    job = launch(ex, "echo pwned")
    job.log_path.symlink_to(target)
    with pytest.raises(ExecutorError, match="cannot start"):
        ex.start(job)
    assert target.read_text() == "keep"
    assert ex.poll(ex.find(job.name) or "").state is RunState.FAILED


# -- find: each attempt at most once --------------------------------------------------------


def test_find_knows_the_started_attempt_and_start_never_runs_it_twice(ex: LocalExecutor) -> None:
    job = launch(ex, "echo ran >> runs; sleep 0.3")
    assert ex.find(job.name) is None
    handle = ex.start(job)
    assert ex.find(job.name) == handle
    assert ex.start(job) == handle  # started again by mistake: the same attempt
    assert ended(ex, handle) is RunState.COMPLETED
    assert (home(ex, job) / "runs").read_text() == "ran\n"
    assert ex.find(launch(ex, "", attempt=2).name) is None  # the next attempt is another


def test_find_after_a_crash_before_any_supervisor_claimed(ex: LocalExecutor) -> None:
    """The service died after making the state directory: find says "never started", and a
    supervisor that starts late for it runs nothing; starting the attempt then runs it once."""
    job = launch(ex, "echo ran >> runs")
    state = ex.run_dir / job.name
    state.mkdir(mode=0o700)  # what start() does first
    began = time.monotonic()
    assert ex.find(job.name) is None
    assert time.monotonic() - began < 1  # no supervisor was starting: no wait
    supervise.write_atomic(state / supervise.SPEC, ex._spec(job).to_json())
    late = subprocess.run(
        [sys.executable, "-I", "-S", str(SUPERVISE), str(state)],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert json.loads(late.stdout)["lost"] is True
    assert not (home(ex, job) / "runs").exists()
    assert ex.find(job.name) is None  # still: nobody ran it
    handle = ex.start(job)
    assert ended(ex, handle) is RunState.COMPLETED
    assert (home(ex, job) / "runs").read_text() == "ran\n"


def test_find_waits_for_a_supervisor_that_is_still_starting(ex: LocalExecutor) -> None:
    job = launch(ex, "true")
    state = ex.run_dir / job.name
    state.mkdir(mode=0o700)
    # A process whose command line is a supervisor's for this attempt, slow to claim.
    starting = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(5)", str(SUPERVISE), str(state)]
    )
    try:
        wait_for(lambda: supervise.start_time(starting.pid) is not None)
        record = {"pid": starting.pid, "start": supervise.start_time(starting.pid)}
        threading.Timer(0.3, supervise.claim, (state, record)).start()
        handle = ex.find(job.name)
        assert handle is not None
        assert json.loads(handle)["pid"] == starting.pid
    finally:
        starting.kill()
        starting.wait()


# -- configuration ------------------------------------------------------------------------------


def test_the_job_user_is_unprivileged_or_the_executor_refuses(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        with pytest.raises(LocalSetupError, match=r"setup-job-user\.sh"):
            LocalExecutor(tmp_path, run_as="aifactory-no-such-user")
        with pytest.raises(LocalSetupError, match="must not run as root"):
            LocalExecutor(tmp_path, run_as="root")
    else:
        with pytest.raises(LocalSetupError, match="cannot switch users"):
            LocalExecutor(tmp_path, run_as="root")


def test_make_executor_takes_the_data_dir_user_and_database_from_the_settings(
    tmp_path: Path,
) -> None:
    require_job_user()
    db = tmp_path / "elsewhere" / "x.db"
    settings = ServiceSettings(database_url=f"sqlite:///{db}", data_dir=tmp_path / "data")
    made = make_executor("local", settings)
    assert isinstance(made, LocalExecutor)
    assert made.data_dir == (tmp_path / "data").absolute()
    assert str(db) in made._hidden

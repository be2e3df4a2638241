"""SlurmExecutor against a real Slurm (scripts/slurm-up.sh: 2 nodes aif-n0 and aif-n1 of 8
placeholder GPUs): the single-node jobs. The multi-node ones are in test_slurm_multinode.py.

The session fixture starts Slurm when no controller answers. The tests skip only when Slurm
cannot be installed here (the script exits 3: not root, no apt-get, apt failed); any other
start-up failure fails the tests, with the script's output.
"""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from aifactory.service.executors.base import Launch, NodeSlice, RunState, Status
from aifactory.service.executors.slurm import SlurmExecutor, parse_scontrol_job, slurm_responds

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SLURM_UP = REPO / "scripts" / "slurm-up.sh"
CANNOT_INSTALL = 3
POLL_EVERY_S = 0.25
JOB_DEADLINE_S = 60.0


def has_our_nodes() -> bool:
    """Whether the Slurm that answers has scripts/slurm-up.sh's two nodes (not, say, a
    Slurm started by an older one-node version of the script, or someone else's)."""
    proc = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, timeout=30, check=False
    )
    return {"aif-n0", "aif-n1"} <= set(proc.stdout.split())


@pytest.fixture(scope="session")
def slurm() -> SlurmExecutor:
    """A SlurmExecutor on a running local Slurm, started (or reconfigured to its two nodes)
    by the repo script when needed."""
    if not slurm_responds() or not has_our_nodes():
        proc = subprocess.run(
            ["bash", str(SLURM_UP)], capture_output=True, text=True, timeout=600, check=False
        )
        if proc.returncode == CANNOT_INSTALL:
            pytest.skip(f"Slurm cannot be installed here: {proc.stderr.strip().splitlines()[-1]}")
        if proc.returncode != 0:
            pytest.fail(f"scripts/slurm-up.sh failed ({proc.returncode}):\n{proc.stderr}")
    return SlurmExecutor()


def launch(tmp_path: Path, name: str, command: str, gpus: int = 1, **kw: object) -> Launch:
    return Launch(
        job_id=f"test-{name}",
        command=command,
        gpus=gpus,
        nodes=(NodeSlice("n0", tuple(range(gpus))),),
        log_path=tmp_path / f"{name}.log",
        **kw,  # type: ignore[arg-type]  # test builder: optional Launch fields
    )


def wait_done(executor: SlurmExecutor, handle: str) -> Status:
    """Poll until the job leaves RUNNING (Slurm's queued and running both map to RUNNING)."""
    deadline = time.monotonic() + JOB_DEADLINE_S
    while time.monotonic() < deadline:
        status = executor.poll(handle)
        if status.state is not RunState.RUNNING:
            return status
        time.sleep(POLL_EVERY_S)
    executor.cancel(handle)
    pytest.fail(f"Slurm job {handle} still running after {JOB_DEADLINE_S} s")


def scontrol_times(handle: str) -> tuple[datetime, datetime]:
    """StartTime and EndTime of a finished job, from scontrol (accounting-independent)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", handle],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert parse_scontrol_job(out) is not None
    fields = dict(tok.partition("=")[::2] for tok in out.split() if "=" in tok)
    return datetime.fromisoformat(fields["StartTime"]), datetime.fromisoformat(fields["EndTime"])


def test_job_completes_with_its_gpus_and_env(slurm: SlurmExecutor, tmp_path: Path) -> None:
    job = launch(
        tmp_path,
        "ok",
        'echo "gpus=$CUDA_VISIBLE_DEVICES tag=$AIF_TAG"',
        gpus=2,
        env={"AIF_TAG": "hello"},
        time_limit_s=120,
    )
    handle = slurm.start(job)
    assert handle.isdigit()
    status = wait_done(slurm, handle)
    assert status == Status(RunState.COMPLETED, 0, "COMPLETED")
    log = job.log_path.read_text()
    assert "tag=hello" in log
    visible = log.split("gpus=", 1)[1].split()[0].split(",")
    assert len(visible) == 2, log


def test_a_job_sees_none_of_the_services_environment(
    slurm: SlurmExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sbatch exports the submitter's whole environment by default; the service's database
    URL (and any secret in its environment) must not reach tenant code."""
    monkeypatch.setenv("AIFACTORY_DATABASE_URL", "postgresql://secret@db/prod")
    job = launch(tmp_path, "env", 'echo "url=${AIFACTORY_DATABASE_URL:-none} id=$AIFACTORY_JOB_ID"')
    status = wait_done(slurm, slurm.start(job))
    assert status.state is RunState.COMPLETED
    log = job.log_path.read_text()
    assert "url=none" in log
    assert "id=test-env" in log


def test_nonzero_exit_is_failed_with_its_code(slurm: SlurmExecutor, tmp_path: Path) -> None:
    handle = slurm.start(launch(tmp_path, "exit3", "exit 3"))
    status = wait_done(slurm, handle)
    assert (status.state, status.exit_code) == (RunState.FAILED, 3)


def test_cancel_stops_a_running_job(slurm: SlurmExecutor, tmp_path: Path) -> None:
    handle = slurm.start(launch(tmp_path, "long", "sleep 120"))
    deadline = time.monotonic() + JOB_DEADLINE_S
    while slurm.poll(handle).detail.split()[0] != "RUNNING" and time.monotonic() < deadline:
        time.sleep(POLL_EVERY_S)
    slurm.cancel(handle)
    status = wait_done(slurm, handle)
    assert status.state is RunState.CANCELLED
    slurm.cancel(handle)  # idempotent on a finished job
    assert slurm.poll(handle).state is RunState.CANCELLED


def _wait_running(slurm: SlurmExecutor, handle: str, log: Path, mark: str) -> None:
    deadline = time.monotonic() + JOB_DEADLINE_S
    while time.monotonic() < deadline:
        if slurm.poll(handle).detail.split()[0] == "RUNNING" and (
            log.exists() and mark in log.read_text()
        ):
            return
        time.sleep(POLL_EVERY_S)
    pytest.fail(f"Slurm job {handle} did not start")


def test_a_stop_grace_gives_sigterm_then_cancels_after_it(
    slurm: SlurmExecutor, tmp_path: Path
) -> None:
    """With a stop grace (a preempted job's preempt grace) cancel sends SIGTERM to the
    steps and cancels when the grace ends: a trainer that saves in 1.5 s on SIGTERM saves
    and exits 0; one that ignores SIGTERM is cancelled after its 3 s."""
    saver = launch(
        tmp_path,
        "saver",
        f"trap 'sleep 1.5; echo saved > {tmp_path}/ckpt; exit 0' TERM; echo ready; "
        "sleep 120 & wait",
        stop_grace_s=20.0,
    )
    handle = slurm.start(saver)
    _wait_running(slurm, handle, saver.log_path, "ready")
    slurm.cancel(handle)
    status = wait_done(slurm, handle)
    assert (tmp_path / "ckpt").read_text().strip() == "saved"
    assert status.state is RunState.COMPLETED  # it saved and exited 0 before the cancel

    stubborn = launch(tmp_path, "stubborn", "trap '' TERM; echo ready; sleep 120", stop_grace_s=3.0)
    handle = slurm.start(stubborn)
    _wait_running(slurm, handle, stubborn.log_path, "ready")
    began = time.monotonic()
    slurm.cancel(handle)
    time.sleep(1.0)
    assert slurm.poll(handle).state is RunState.RUNNING  # within its grace
    assert wait_done(slurm, handle).state is RunState.CANCELLED
    assert time.monotonic() - began >= 3.0


def test_unknown_job_is_lost(slurm: SlurmExecutor) -> None:
    assert slurm.poll("999999999").state is RunState.LOST
    slurm.cancel("999999999")  # idempotent on an unknown job


def test_gpu4_and_gpu6_run_one_after_the_other(slurm: SlurmExecutor, tmp_path: Path) -> None:
    # Both on Slurm's aif-n0 (the fleet node "n0" of `launch` mapped to it): on the other
    # node the second would not wait.
    pinned = SlurmExecutor(node_map={"n0": "aif-n0"})
    first = pinned.start(launch(tmp_path, "g4", "sleep 2", gpus=4))
    second = pinned.start(launch(tmp_path, "g6", "sleep 2", gpus=6))
    # While the first holds 4 of aif-n0's 8 GPUs the second must wait for resources.
    deadline = time.monotonic() + JOB_DEADLINE_S
    while slurm.poll(first).detail.split()[0] != "RUNNING" and time.monotonic() < deadline:
        time.sleep(POLL_EVERY_S)
    waiting = slurm.poll(second)
    assert waiting.state is RunState.RUNNING
    assert waiting.detail.startswith("PENDING"), waiting.detail
    assert wait_done(slurm, first).state is RunState.COMPLETED
    assert wait_done(slurm, second).state is RunState.COMPLETED
    _, first_end = scontrol_times(first)
    second_start, _ = scontrol_times(second)
    assert second_start >= first_end


def test_sacct_records_gpu_allocations(slurm: SlurmExecutor, tmp_path: Path) -> None:
    handle = slurm.start(launch(tmp_path, "acct", "true", gpus=4))
    assert wait_done(slurm, handle).state is RunState.COMPLETED
    fmt = "JobIDRaw,State,AllocTRES,ReqTRES"
    deadline = time.monotonic() + JOB_DEADLINE_S
    while True:  # slurmdbd records asynchronously
        proc = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-j", handle, "-o", fmt],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if "accounting storage is disabled" in proc.stderr.lower():
            pytest.skip("this Slurm has no accounting database (no MySQL/MariaDB reachable)")
        # The end record and the requested TRES may land in separate slurmdbd writes.
        done = "COMPLETED" in proc.stdout and "gres/gpu=4" in proc.stdout.rsplit("|", 1)[-1]
        if done or time.monotonic() > deadline:
            break
        time.sleep(POLL_EVERY_S)
    job_id, state, alloc, req = proc.stdout.strip().split("|")
    assert (job_id, state) == (handle, "COMPLETED")
    assert "gres/gpu=4" in alloc.split(",")
    assert "gres/gpu=4" in req.split(",")

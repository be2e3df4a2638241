"""Multi-node jobs on a real Slurm of two 8-GPU nodes (scripts/slurm-up.sh: aif-n0, aif-n1,
one slurmd each on this host), and the service's loop driving them.

The job is tests/rendezvous.py: one process per node, the ranks meet over TCP at the
MASTER_ADDR:MASTER_PORT the launcher gave them. ``--gpu-count-only`` because Slurm's gres
plugin picks the device indices on each node (0..7 on both), not the scheduler.

Evidence is taken from Slurm itself (``sacct``: NNodes, State, AllocTRES) and from the
machine (each rank prints its pid; after a cancel or a time limit no such process is left).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from aifactory.fleet import compile_topology, load_fleet
from aifactory.service import store
from aifactory.service.db import Database
from aifactory.service.executors.base import Launch, NodeSlice, RunState, Status, attempt_name
from aifactory.service.executors.slurm import (
    SlurmExecutor,
    job_name,
    run_command,
    slurm_node_map,
)
from aifactory.service.loop import SchedulerLoop, job_nonce
from aifactory.service.schemas import JobSubmit
from aifactory.service.settings import ServiceSettings
from aifactory.service.tables import jobs
from test_service_support import migrated_database
from test_slurm import slurm  # noqa: F401 (the session fixture that starts Slurm)

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
RENDEZVOUS = f"{shlex.quote(sys.executable)} {shlex.quote(str(REPO / 'tests' / 'rendezvous.py'))}"
TOPO = compile_topology(load_fleet("slurm-local"))
NODE_MAP = slurm_node_map(TOPO)
N0, N1 = "local/hgx/d0/n0", "local/hgx/d1/n1"  # Slurm's aif-n0 and aif-n1
EIGHT = tuple(range(8))
POLL_S = 0.25
TERMINAL = {"completed", "failed", "cancelled"}
# Each rank says who and where it is before the rendezvous (then execs it: same pid).
WHOAMI = (
    'echo "who rank=$NODE_RANK node=$SLURMD_NODENAME pid=$$ world=$WORLD_SIZE '
    'local=$LOCAL_WORLD_SIZE master=$MASTER_ADDR:$MASTER_PORT"'
)


@pytest.fixture
def ex(slurm: SlurmExecutor) -> SlurmExecutor:  # noqa: F811 (the fixture imported above)
    """An executor that puts jobs on the Slurm nodes the scheduler chose."""
    return SlurmExecutor(node_map=NODE_MAP)


def two_node_launch(tmp_path: Path, name: str, args: str = "", **kw: object) -> Launch:
    """A 16-GPU job on both nodes, aif-n1 as rank 0: the placement's order, not Slurm's."""
    return Launch(
        job_id=f"mn-{name}-{time.time_ns()}",
        command=f"{WHOAMI}; exec {RENDEZVOUS} --gpu-count-only {args}",
        gpus=16,
        nodes=(NodeSlice(N1, EIGHT), NodeSlice(N0, EIGHT)),
        log_path=tmp_path / f"{name}.log",
        **kw,  # type: ignore[arg-type]  # test builder: optional Launch fields
    )


def wait(ex: SlurmExecutor, handle: str, deadline_s: float = 120.0) -> Status:
    """Poll until the job leaves RUNNING."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        status = ex.poll(handle)
        if status.state is not RunState.RUNNING:
            return status
        time.sleep(POLL_S)
    ex.cancel(handle)
    pytest.fail(f"Slurm job {handle} still running after {deadline_s} s")


def sacct_row(handle: str, want_state: str) -> dict[str, str]:
    """The job's accounting row once slurmdbd has its end (it records asynchronously)."""
    fmt = ["JobIDRaw", "State", "NNodes", "AllocTRES", "ExitCode"]
    end = time.monotonic() + 60
    while True:
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-j", handle, "-o", ",".join(fmt)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
        rows = [dict(zip(fmt, line.split("|"), strict=True)) for line in out.splitlines() if line]
        if rows and rows[-1]["State"].split(" ")[0] == want_state:
            return rows[-1]
        if time.monotonic() > end:
            pytest.fail(f"sacct never showed job {handle} as {want_state}: {out!r}")
        time.sleep(POLL_S)


def ranks_seen(log: Path) -> dict[int, dict[str, str]]:
    """rank -> what that rank said (``who`` line) in the job's log."""
    out: dict[int, dict[str, str]] = {}
    for line in log.read_text().splitlines():
        if line.startswith("who "):
            fields = dict(tok.split("=", 1) for tok in line.split()[1:])
            out[int(fields["rank"])] = fields
    return out


def wait_for_ranks(log: Path, pattern: str, count: int, deadline_s: float = 90.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if log.exists() and len(re.findall(pattern, log.read_text(), re.MULTILINE)) >= count:
            return
        time.sleep(POLL_S)
    pytest.fail(f"{count} lines matching {pattern!r} never appeared in {log}")


def alive(pid: int) -> bool:
    """Whether ``pid`` is still one of the rendezvous processes."""
    try:
        return "rendezvous.py" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    except OSError:
        return False


def wait_gone(pids: Sequence[int], deadline_s: float = 30.0) -> list[int]:
    """The pids still alive after the deadline (KillWait is 5 s)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(POLL_S)
    return [p for p in pids if alive(p)]


# ------------------------------------------------------------------- the executor alone


def test_rendezvous_as_a_16_gpu_job_on_two_nodes(ex: SlurmExecutor, tmp_path: Path) -> None:
    job = two_node_launch(tmp_path, "meet", time_limit_s=120)
    handle = ex.start(job)
    status = wait(ex, handle)
    log = job.log_path.read_text()
    assert status == Status(RunState.COMPLETED, 0, "COMPLETED"), log
    assert "world ok size=2" in log
    assert re.search(r"^rank 0/2 ok gpus=0,1,2,3,4,5,6,7 ", log, re.MULTILINE), log
    assert re.search(r"^rank 1/2 ok gpus=0,1,2,3,4,5,6,7 ", log, re.MULTILINE), log
    who = ranks_seen(job.log_path)
    # Rank order is the placement's (aif-n1 first), each rank on its own Slurm node.
    assert {r: w["node"] for r, w in who.items()} == {0: "aif-n1", 1: "aif-n0"}
    assert {w["world"] for w in who.values()} == {"2"}
    assert {w["local"] for w in who.values()} == {"8"}
    masters = {w["master"] for w in who.values()}
    assert len(masters) == 1
    assert masters.pop().startswith("127.0.0.1:")  # aif-n1's NodeAddr
    row = sacct_row(handle, "COMPLETED")
    assert row["NNodes"] == "2"
    assert "gres/gpu=16" in row["AllocTRES"].split(",")
    assert row["ExitCode"] == "0:0"


def test_one_failing_rank_fails_the_job_and_stops_the_other(
    ex: SlurmExecutor, tmp_path: Path
) -> None:
    job = two_node_launch(tmp_path, "fail", "--fail-rank 1 --hold 1", time_limit_s=120)
    handle = ex.start(job)
    wait_for_ranks(job.log_path, r"^who ", 2)
    pids = [int(w["pid"]) for w in ranks_seen(job.log_path).values()]
    status = wait(ex, handle)
    assert (status.state, status.exit_code) == (RunState.FAILED, 3), job.log_path.read_text()
    assert wait_gone(pids) == []


def test_cancel_stops_both_ranks(ex: SlurmExecutor, tmp_path: Path) -> None:
    job = two_node_launch(tmp_path, "cancel", "--hold 300", time_limit_s=600)
    handle = ex.start(job)
    wait_for_ranks(job.log_path, r"^rank \d/2 ok", 2)  # both met, both now hold
    pids = [int(w["pid"]) for w in ranks_seen(job.log_path).values()]
    assert len(pids) == 2
    assert all(alive(p) for p in pids)
    ex.cancel(handle)
    assert wait(ex, handle).state is RunState.CANCELLED
    assert wait_gone(pids) == []
    assert sacct_row(handle, "CANCELLED")["NNodes"] == "2"
    ex.cancel(handle)  # again, on an ended job: nothing to do, no error


def test_time_limit_stops_both_ranks(ex: SlurmExecutor, tmp_path: Path) -> None:
    """Slurm's limits are whole minutes and its controller checks them about every 30 s:
    1 s becomes 1 minute, and the job ends 60 to 90 s after its start."""
    job = two_node_launch(tmp_path, "limit", "--hold 600", time_limit_s=1)
    handle = ex.start(job)
    wait_for_ranks(job.log_path, r"^rank \d/2 ok", 2)
    pids = [int(w["pid"]) for w in ranks_seen(job.log_path).values()]
    status = wait(ex, handle, deadline_s=180)
    assert status.state is RunState.FAILED
    assert status.detail.startswith("TIMEOUT"), status
    assert wait_gone(pids) == []
    assert sacct_row(handle, "TIMEOUT")["NNodes"] == "2"


# ------------------------------------------------------------------- through the loop


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    yield from migrated_database("sqlite", tmp_path)


def submit(db: Database, gpus: int, command: str, time_limit_s: float = 300) -> int:
    req = JobSubmit(gpus=gpus, gpu_class="h100", command=command, time_limit_s=time_limit_s)
    done = store.submit(db, req, tenant="root", token_id=1, now=time.time(), idempotency_key=None)
    return int(done.job["id"])


def row(db: Database, job_id: int) -> sa.Row[tuple[object, ...]]:
    with db.read() as conn:
        return conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()


def slurm_ids_named(name: str) -> set[str]:
    """Slurm jobs submitted under an attempt's name, by Slurm's own records."""
    ids: set[str] = set()
    named = f"--name={job_name(name)}"
    for argv in (
        ["squeue", "-h", "-t", "all", named, "-o", "%i"],
        ["sacct", "-n", "-P", "-X", named, "-S", "2000-01-01", "-o", "JobIDRaw"],
    ):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        ids.update(line.strip() for line in out.stdout.splitlines() if line.strip())
    return ids


def cycle_until(loop: SchedulerLoop, db: Database, job_id: int, states: set[str]) -> None:
    end = time.monotonic() + 120
    while time.monotonic() < end:
        loop._last_poll = 0.0  # poll the executor in every cycle
        loop.cycle()
        current = row(db, job_id)
        if current.state in states and (current.state != "running" or current.handle):
            return
        time.sleep(0.3)
    pytest.fail(f"job {job_id} never reached {states}: {row(db, job_id)}")


def test_a_restart_during_a_multi_node_job_keeps_it_then_records_its_end(
    ex: SlurmExecutor, db: Database, tmp_path: Path
) -> None:
    settings = ServiceSettings(database_url=str(db.url), data_dir=tmp_path, tick_s=0.05)
    job_id = submit(db, 16, f"{WHOAMI}; exec {RENDEZVOUS} --gpu-count-only --hold 8")
    first = SchedulerLoop(db, TOPO, ex, settings)
    first.load()
    cycle_until(first, db, job_id, {"running"})
    started = row(db, job_id)
    assert [node for node, _gpus in started.placement] == [N0, N1]  # the scheduler's two
    log = Path(started.log_path)
    wait_for_ranks(log, r"^rank \d/2 ok", 2)
    del first  # the service stops in the middle of the job ...

    second = SchedulerLoop(db, TOPO, ex, settings)  # ... and a new one takes over
    second.load()
    kept = row(db, job_id)
    assert (kept.state, kept.handle, kept.attempts) == ("running", started.handle, 1)
    assert ex.poll(started.handle).detail == "RUNNING"
    del second  # stops again, while the job runs to its end

    assert wait(ex, started.handle).state is RunState.COMPLETED
    third = SchedulerLoop(db, TOPO, ex, settings)
    third.load()
    cycle_until(third, db, job_id, TERMINAL)
    ended = row(db, job_id)
    assert (ended.state, ended.exit_code, ended.attempts) == ("completed", 0, 1)
    name = attempt_name(str(job_id), 1, job_nonce(ended.submitted_at))
    assert slurm_ids_named(name) == {started.handle}  # ran once, on Slurm's word
    assert "world ok size=2" in log.read_text()
    assert sacct_row(started.handle, "COMPLETED")["NNodes"] == "2"


TIMED_OUT = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"
REFUSED = "sbatch: error: Batch job submission failed: Invalid account or account/partition"
UNREACHABLE = "scancel: error: Unable to contact slurm controller (connect failure)"


class FlakySlurm:
    """The real Slurm tools, with failures put in front of some calls: the first sbatch of
    job ``transient`` times out (and is not submitted), every sbatch of job ``refused`` is
    refused, the first scancel cannot reach the controller. Every call is recorded."""

    def __init__(self) -> None:
        self.transient = ""
        self.refused = ""
        self.scancel_failures = 0
        self.calls: list[tuple[list[str], int]] = []

    def __call__(
        self, argv: Sequence[str], env: Mapping[str, str], timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        job = env.get("AIFACTORY_JOB_ID", "")
        fake: str | None = None
        if argv[0] == "sbatch" and job == self.transient:
            self.transient, fake = "", TIMED_OUT
        elif argv[0] == "sbatch" and job == self.refused:
            fake = REFUSED
        elif argv[0] == "scancel" and self.scancel_failures > 0:
            self.scancel_failures -= 1
            fake = UNREACHABLE
        proc = (
            subprocess.CompletedProcess(list(argv), 1, "", fake)
            if fake is not None
            else run_command(argv, env, timeout_s)
        )
        self.calls.append((list(argv), proc.returncode))
        return proc


def test_failing_executor_calls_are_retried_or_recorded_and_the_leader_stays(
    slurm: SlurmExecutor,  # noqa: F811 (the fixture imported above)
    db: Database,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The scheduler loop leads in its thread, as in the service, while sbatch times out
    once (tried again: the job runs once), sbatch refuses a job (that job fails, the reason
    recorded), scancel cannot reach the controller once (tried again: the job is cancelled
    on Slurm). It never steps down."""
    caplog.set_level(logging.WARNING)
    flaky = FlakySlurm()
    ex = SlurmExecutor(node_map=NODE_MAP, runner=flaky)
    settings = ServiceSettings(database_url=str(db.url), data_dir=tmp_path, tick_s=0.2)
    refused = submit(db, 8, "true")
    transient = submit(db, 16, f"exec {RENDEZVOUS} --gpu-count-only")
    flaky.refused, flaky.transient = str(refused), str(transient)
    loop = SchedulerLoop(db, TOPO, ex, settings)
    loop.start()
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and row(db, transient).state not in TERMINAL:
            assert loop.leading or time.monotonic() < end - 110, "the loop never led"
            time.sleep(POLL_S)
        long = submit(db, 8, "sleep 300")
        loop.wake()
        while time.monotonic() < end and not row(db, long).handle:
            time.sleep(POLL_S)
        handle = str(row(db, long).handle)
        flaky.scancel_failures = 1
        store.request_cancel(db, long, time.time())
        loop.wake()
        assert wait(ex, handle).state is RunState.CANCELLED
        assert loop.leading
    finally:
        loop.stop()
    assert "stepping down" not in caplog.text
    r, t, c = row(db, refused), row(db, transient), row(db, long)
    assert r.state == "failed"
    assert "Invalid account" in r.reason
    assert (t.state, t.exit_code, t.attempts) == ("completed", 0, 1)
    name = attempt_name(str(transient), 1, job_nonce(t.submitted_at))
    assert slurm_ids_named(name) == {t.handle}  # submitted once, although sbatch "failed"
    assert c.state == "cancelled"
    scancels = [rc for argv, rc in flaky.calls if argv == ["scancel", handle]]
    assert scancels == [1, 0]  # failed, then tried again


def test_scancel_of_a_job_that_already_ended_is_no_error_for_the_loop(
    ex: SlurmExecutor, db: Database, tmp_path: Path
) -> None:
    """A cancel request that reaches the loop after the Slurm job ended (before the loop
    polled it): scancel of an ended job, then the next job still starts."""
    settings = ServiceSettings(database_url=str(db.url), data_dir=tmp_path, tick_s=0.05)
    calls: list[list[str]] = []

    def recording(
        argv: Sequence[str], env: Mapping[str, str], timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        return run_command(argv, env, timeout_s)

    loop = SchedulerLoop(db, TOPO, SlurmExecutor(node_map=NODE_MAP, runner=recording), settings)
    loop.load()
    quick = submit(db, 16, "true")
    cycle_until(loop, db, quick, {"running"})
    handle = str(row(db, quick).handle)
    assert wait(ex, handle).state is RunState.COMPLETED
    store.request_cancel(db, quick, time.time())
    loop.cycle()  # takes the cancel request first: scancel of the ended job
    assert ["scancel", handle] in calls
    assert row(db, quick).state in TERMINAL
    after = submit(db, 16, "true")
    cycle_until(loop, db, after, TERMINAL)
    assert row(db, after).state == "completed"


def test_the_rendezvous_env_never_carries_the_services_secrets(
    ex: SlurmExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """srun --export=ALL passes the batch step's environment on: that must still be only
    the job's named variables, on every node."""
    monkeypatch.setenv("AIFACTORY_DATABASE_URL", "postgresql://secret@db/prod")
    job = Launch(
        job_id=f"mn-env-{os.getpid()}",
        command='echo "rank=$NODE_RANK url=${AIFACTORY_DATABASE_URL:-none}"',
        gpus=16,
        nodes=(NodeSlice(N0, EIGHT), NodeSlice(N1, EIGHT)),
        log_path=tmp_path / "env.log",
        time_limit_s=60,
    )
    assert wait(ex, ex.start(job)).state is RunState.COMPLETED
    lines = sorted(job.log_path.read_text().split())
    assert lines == ["rank=0", "rank=1", "url=none", "url=none"]


def test_unequal_gpus_per_node_run_with_slurms_split_of_the_total(
    ex: SlurmExecutor, tmp_path: Path
) -> None:
    """8 on aif-n0 and 4 on aif-n1: Slurm has no per-node count that varies in one job, so
    the executor asks for 12 GPUs on the two nodes and each rank reports what Slurm gave it
    there (here, with both nodes free, Slurm fills aif-n0 first: the same split)."""
    job = Launch(
        job_id=f"mn-12-{time.time_ns()}",
        command=f"{WHOAMI}; exec {RENDEZVOUS} --gpu-count-only",
        gpus=12,
        nodes=(NodeSlice(N0, EIGHT), NodeSlice(N1, (0, 1, 2, 3))),
        log_path=tmp_path / "twelve.log",
        time_limit_s=120,
    )
    handle = ex.start(job)
    status = wait(ex, handle)
    who = ranks_seen(job.log_path)
    assert sum(int(w["local"]) for w in who.values()) == 12, who
    assert status == Status(RunState.COMPLETED, 0, "COMPLETED"), job.log_path.read_text()
    assert {r: (w["node"], w["local"]) for r, w in who.items()} == {
        0: ("aif-n0", "8"),
        1: ("aif-n1", "4"),
    }
    assert "gres/gpu=12" in sacct_row(handle, "COMPLETED")["AllocTRES"].split(",")


def test_slurm_up_again_leaves_the_running_daemons_alone(
    slurm: SlurmExecutor,  # noqa: F811 (the fixture imported above)
) -> None:
    run_dir = Path("/run/aifactory-slurm")
    before = {p.name: p.read_text() for p in run_dir.glob("*.pid")}
    assert {"slurmd-aif-n0.pid", "slurmd-aif-n1.pid", "slurmctld.pid"} <= set(before)
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm-up.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "starting" not in proc.stderr, proc.stderr
    assert {p.name: p.read_text() for p in run_dir.glob("*.pid")} == before

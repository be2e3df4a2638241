"""Multi-node gangs on the local executor, through the real scheduler loop (issue #16 §2).

Every job here runs tests/rendezvous.py as real processes: one rank per node of the
scheduler's placement, all on this host under one supervisor, meeting over TCP at
``MASTER_ADDR:MASTER_PORT``. Rank 0 checks the world (every rank once, each with exactly its
node's GPUs in ``CUDA_VISIBLE_DEVICES``) and exits 1 otherwise, so a completed job is the
proof; the log must also show every rank's own line. Each rank's shell prints its pid
(``pid N``) before it execs the program, so "every rank stopped" is checked on the processes
themselves, not on a status.

As root the ranks run as aifactory-job (tests/local_sandbox_support.py); the program and a
system python3 must therefore be reachable by that user, so the program is put beside the
service's data in a directory the job user can pass through.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from aifactory.fleet import compile_topology, load_fleet
from aifactory.service import store
from aifactory.service.api import Service, create_app
from aifactory.service.auth import Role, create_token
from aifactory.service.db import Database
from aifactory.service.executors import supervise
from aifactory.service.executors.base import Launch, NodeSlice, RunState, describe_nodes
from aifactory.service.executors.local import DEFAULT_PATH, SUPERVISE, LocalExecutor
from aifactory.service.loop import SchedulerLoop
from aifactory.service.schemas import JobSubmit
from aifactory.service.settings import ServiceSettings
from aifactory.service.tables import jobs
from local_sandbox_support import REPO, reachable_dir, require_job_user
from test_service_support import wait_for

TOPO = compile_topology(load_fleet("demo"))
TERMINAL = {"completed", "failed", "cancelled"}
PYTHON = shutil.which("python3", path=DEFAULT_PATH)


@dataclass
class Rig:
    """A database, the service's settings and the rendezvous program a job user can read."""

    db: Database
    settings: ServiceSettings
    program: Path

    def executor(self) -> LocalExecutor:
        """A fresh executor on the same data directory (as a restarted service makes)."""
        protect = [Path(str(self.db.url.database))]
        return LocalExecutor(self.settings.data_dir, protect=protect, grace_s=0.5)

    def loop(self) -> SchedulerLoop:
        """A fresh scheduler loop with a fresh executor: a (re)started service."""
        return SchedulerLoop(self.db, TOPO, self.executor(), self.settings)

    def submit(self, gpus: int, gpu_class: str, command: str, time_limit_s: float = 600) -> int:
        req = JobSubmit(gpus=gpus, gpu_class=gpu_class, command=command, time_limit_s=time_limit_s)
        done = store.submit(
            self.db, req, tenant="lab", token_id=1, now=time.time(), idempotency_key=None
        )
        return int(done.job["id"])

    def rendezvous(self, args: str = "") -> str:
        """A job command: print this rank's pid, then become the rendezvous program."""
        return f'echo "pid $$"; exec {PYTHON} -I {self.program} {args}'

    def row(self, job_id: int) -> sa.Row[tuple[object, ...]]:
        with self.db.read() as conn:
            return conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()

    def log(self, job_id: int) -> str:
        path = self.row(job_id).log_path
        try:
            return Path(str(path)).read_text()
        except OSError:
            return ""


@pytest.fixture
def rig() -> Iterator[Rig]:
    require_job_user()
    if PYTHON is None:
        pytest.skip(f"no python3 on the jobs' PATH ({DEFAULT_PATH})")
    with reachable_dir() as place:
        program = place / "rendezvous.py"
        shutil.copy(REPO / "tests" / "rendezvous.py", program)
        program.chmod(0o644)
        db = Database(f"sqlite:///{place}/aifactory.db")
        db.upgrade()
        settings = ServiceSettings(
            database_url=str(db.url), data_dir=place / "data", tick_s=0.05, lock_retry_s=0.05
        )
        made = Rig(db, settings, program)
        try:
            yield made
        finally:
            _stop_leftovers(made)
            db.dispose()


def _stop_leftovers(rig: Rig) -> None:
    """Cancel what a failed test left running, so that no rank outlives its test."""
    executor = rig.executor()
    with rig.db.read() as conn:
        handles = [h for (h,) in conn.execute(sa.select(jobs.c.handle)) if h]
    for handle in handles:
        executor.cancel(handle)


def drive(
    loop: SchedulerLoop, rig: Rig, ids: list[int], until: Callable[[str], bool], timeout: float
) -> dict[int, sa.Row[tuple[object, ...]]]:
    """Cycle the loop (polling the executor every cycle) until every job's state passes."""
    deadline = time.monotonic() + timeout
    while True:
        loop._last_poll = 0.0
        loop.cycle()
        rows = {j: rig.row(j) for j in ids}
        if all(until(str(r.state)) for r in rows.values()):
            return rows
        if time.monotonic() > deadline:
            states = {j: (r.state, r.reason) for j, r in rows.items()}
            msg = f"jobs did not get there in {timeout:g} s: {states}"
            raise AssertionError(msg)
        time.sleep(0.1)


def ended(state: str) -> bool:
    return state in TERMINAL


def rank_pids(log: str) -> dict[int, int]:
    """Each rank's pid, as its shell printed it before becoming the program."""
    return {int(r): int(p) for r, p in re.findall(r"^\[rank (\d+)\] pid (\d+)$", log, re.M)}


def ranks_met(log: str, world: int) -> dict[int, str]:
    """The ranks that passed the rendezvous, with the GPUs each saw."""
    found = re.findall(rf"^\[rank (\d+)\] rank \1/{world} ok gpus=(\S+) ", log, re.M)
    return {int(r): gpus for r, gpus in found}


def runs_program(pid: int) -> bool:
    """Whether ``pid`` is still a rendezvous rank (not another process that got the pid)."""
    try:
        return b"rendezvous.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def placement_of(row: sa.Row[tuple[object, ...]]) -> tuple[NodeSlice, ...]:
    entries = row.placement
    assert isinstance(entries, list)
    return tuple(NodeSlice(str(node), tuple(int(g) for g in gpus)) for node, gpus in entries)


def assert_world_met(log: str, nodes: tuple[NodeSlice, ...]) -> None:
    """Rank 0 saw the whole world, and every rank printed its line with its node's GPUs."""
    world = len(nodes)
    assert f"[rank 0] world ok size={world} placement={describe_nodes(nodes)} " in log, log
    met = ranks_met(log, world)
    assert met == {r: ",".join(map(str, s.gpus)) for r, s in enumerate(nodes)}, log
    for rank in range(world):  # each rank ran once: one pid line, one rendezvous line
        assert len(re.findall(rf"^\[rank {rank}\] rank {rank}/", log, re.M)) == 1


def start_and_wait_met(
    rig: Rig, loop: SchedulerLoop, job: int, timeout: float = 60
) -> tuple[tuple[NodeSlice, ...], dict[int, int]]:
    """Start ``job`` and wait until all of its ranks met; its placement and rank pids."""
    row = drive(loop, rig, [job], lambda s: s != "pending", timeout)[job]
    assert row.state == "running", row.reason
    nodes = placement_of(row)
    wait_for(lambda: len(ranks_met(rig.log(job), len(nodes))) == len(nodes), timeout=timeout)
    pids = rank_pids(rig.log(job))
    assert sorted(pids) == list(range(len(nodes)))
    assert all(runs_program(p) for p in pids.values())
    return nodes, pids


# -- the gangs complete ----------------------------------------------------------------------


def test_a_16_gpu_job_on_two_8_gpu_nodes_meets_and_completes(rig: Rig) -> None:
    job = rig.submit(16, "h100", rig.rendezvous())
    loop = rig.loop()
    loop.load()
    nodes = placement_of(drive(loop, rig, [job], lambda s: s != "pending", 30)[job])
    assert len(nodes) == 2
    assert len({s.node for s in nodes}) == 2
    assert all(len(s.gpus) == 8 for s in nodes)
    row = drive(loop, rig, [job], ended, 60)[job]
    assert (row.state, row.exit_code) == ("completed", 0), row.reason
    assert_world_met(rig.log(job), nodes)


def test_a_288_gpu_job_on_four_nvl72_domains_runs_a_rank_on_every_node(rig: Rig) -> None:
    """An NVL72 domain is 18 trays of 4 GPUs in the fleet: the job is 72 nodes, 72 ranks."""
    job = rig.submit(288, "gb200", rig.rendezvous("--timeout 120"))
    loop = rig.loop()
    loop.load()
    nodes = placement_of(drive(loop, rig, [job], lambda s: s != "pending", 60)[job])
    assert sum(len(s.gpus) for s in nodes) == 288
    assert len({s.node for s in nodes}) == len(nodes) == 72
    assert len({s.node.rsplit("/", 1)[0] for s in nodes}) == 4  # seoul/nvl/d<k>: 4 domains
    row = drive(loop, rig, [job], ended, 150)[job]
    assert (row.state, row.exit_code) == ("completed", 0), row.reason
    assert_world_met(rig.log(job), nodes)


# -- one job: a rank's failure, a cancel and a time limit stop every rank ---------------------


def test_a_failing_rank_fails_the_job_and_the_other_ranks_are_stopped(rig: Rig) -> None:
    fail_one = (
        f'echo "pid $$"; if [ "$NODE_RANK" = 1 ]; then exec {PYTHON} -I {rig.program} '
        f"--fail-rank 1; else exec {PYTHON} -I {rig.program} --hold 120; fi"
    )
    job = rig.submit(16, "h100", fail_one)
    loop = rig.loop()
    began = time.monotonic()
    loop.load()
    row = drive(loop, rig, [job], ended, 60)[job]
    assert time.monotonic() - began < 60  # rank 0 would hold for 120 s: it was stopped
    assert (row.state, row.exit_code) == ("failed", 3)
    assert "rank 1 exited with status 3" in str(row.reason)
    log = rig.log(job)
    assert "[rank 1] rank 1 fails on purpose" in log
    pids = rank_pids(log)
    assert sorted(pids) == [0, 1]
    assert not any(runs_program(p) for p in pids.values())  # recorded only once all are gone


def test_cancel_stops_every_rank(rig: Rig) -> None:
    job = rig.submit(16, "h100", rig.rendezvous("--hold 120"))
    loop = rig.loop()
    loop.load()
    _nodes, pids = start_and_wait_met(rig, loop, job)
    assert store.request_cancel(rig.db, job, time.time()) == "running"
    row = drive(loop, rig, [job], ended, 30)[job]
    assert row.state == "cancelled"
    wait_for(lambda: not any(runs_program(p) for p in pids.values()), timeout=10)
    handle = str(row.handle)
    wait_for(lambda: rig.executor().poll(handle).state is RunState.CANCELLED, timeout=10)


def test_a_time_limit_stops_every_rank(rig: Rig) -> None:
    job = rig.submit(16, "h100", rig.rendezvous("--hold 120"), time_limit_s=4)
    loop = rig.loop()
    loop.load()
    _nodes, pids = start_and_wait_met(rig, loop, job)
    row = drive(loop, rig, [job], ended, 60)[job]
    assert row.state == "failed"
    assert "time limit of 4 s exceeded" in str(row.reason)
    wait_for(lambda: not any(runs_program(p) for p in pids.values()), timeout=10)


# -- a restart in the middle ---------------------------------------------------------------------


def test_a_restart_keeps_a_running_gang_and_records_one_that_finished_meanwhile(rig: Rig) -> None:
    """The service goes away (its loop and executor dropped, its supervisors detached) while
    two multi-node jobs run; one finishes before a new service starts. The new one keeps the
    running job with its ranks untouched (same processes, each rank once) and records the
    finished one; its cancel then still stops every rank of the kept job."""
    kept = rig.submit(16, "h100", rig.rendezvous("--hold 120"))
    done = rig.submit(16, "h100", rig.rendezvous())
    first = rig.loop()
    first.load()
    kept_nodes, kept_pids = start_and_wait_met(rig, first, kept)
    done_nodes = placement_of(rig.row(done))
    handle = str(rig.row(kept).handle)
    done_handle = str(rig.row(done).handle)
    # The service is down from here: nothing polls while the second job ends.
    del first
    watcher = rig.executor()
    wait_for(lambda: watcher.poll(done_handle).state is RunState.COMPLETED, timeout=60)
    assert rig.row(done).state == "running"  # nobody has recorded it yet

    second = rig.loop()
    second.load()
    kept_row, done_row = rig.row(kept), rig.row(done)
    assert (done_row.state, done_row.exit_code) == ("completed", 0), done_row.reason
    assert_world_met(rig.log(done), done_nodes)
    assert (kept_row.state, kept_row.handle, kept_row.attempts) == ("running", handle, 1)
    assert placement_of(kept_row) == kept_nodes
    assert rank_pids(rig.log(kept)) == kept_pids  # the same ranks: none started again
    assert all(runs_program(p) for p in kept_pids.values())
    assert_world_met(rig.log(kept), kept_nodes)

    store.request_cancel(rig.db, kept, time.time())
    assert drive(second, rig, [kept], ended, 30)[kept].state == "cancelled"
    wait_for(lambda: not any(runs_program(p) for p in kept_pids.values()), timeout=10)


# -- the executor alone: what each rank is given, and its output -------------------------------


def test_each_rank_gets_the_contract_and_its_output_reaches_the_log_by_line(rig: Rig) -> None:
    """The job's env cannot override the contract nor smuggle in an AIFACTORY_ variable; a
    line written in pieces reaches the log whole, under its rank's prefix."""
    ex = rig.executor()
    nodes = (NodeSlice("a", (0, 1)), NodeSlice("b", (3,)), NodeSlice("c", (5, 6, 7)))
    show = " ".join(
        f"{k}=${k}"
        for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_WORLD_SIZE")
    )
    command = (
        f'printf "part-$NODE_RANK "; sleep 0.2; echo "{show} '
        "CUDA=$CUDA_VISIBLE_DEVICES P=$AIFACTORY_PLACEMENT J=$AIFACTORY_JOB_ID "
        'T=$AIFACTORY_TENANT X=$EXTRA S=${AIFACTORY_SECRET-unset}"; printf tail-$NODE_RANK'
    )
    launch = Launch(
        job_id="41",
        command=command,
        gpus=6,
        nodes=nodes,
        log_path=ex.logs_dir / "job-41.log",
        tenant="lab",
        env={
            "EXTRA": "yes",
            "NODE_RANK": "9",
            "CUDA_VISIBLE_DEVICES": "0-7",
            "AIFACTORY_SECRET": "x",
        },
    )
    handle = ex.start(launch)
    wait_for(lambda: ex.poll(handle).state is not RunState.RUNNING, timeout=20)
    assert ex.poll(handle).state is RunState.COMPLETED
    lines = launch.log_path.read_text().splitlines()
    ports = set()
    for rank, node in enumerate(nodes):
        mine = [ln for ln in lines if ln.startswith(f"[rank {rank}] ")]
        assert len(mine) == 2, lines  # the pieced-together line, and the unterminated tail
        fields = dict(f.split("=", 1) for f in mine[0].split()[3:])
        assert mine[0].split()[2] == f"part-{rank}"
        assert fields == {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": fields["MASTER_PORT"],
            "WORLD_SIZE": "3",
            "NODE_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(len(node.gpus)),
            "CUDA": ",".join(map(str, node.gpus)),
            "P": "a:0,1;b:3;c:5,6,7",
            "J": "41",
            "T": "lab",
            "X": "yes",
            "S": "unset",
        }
        assert mine[1] == f"[rank {rank}] tail-{rank}"
        ports.add(int(fields["MASTER_PORT"]))
    assert len(ports) == 1  # one rendezvous port for the whole job


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended)."""
    return supervise.start_time(pid) is not None


def _background(rig: Rig, job: str, extra: str = "") -> tuple[LocalExecutor, Launch, str]:
    """A two-node job whose ranks each leave a plain and a daemonised ``sleep`` behind and
    print their pids (``bg R PID``), then wait; started on a fresh executor."""
    ex = rig.executor()
    command = (
        'sleep 60 & echo "bg $NODE_RANK $!"; setsid sleep 61 & echo "bg $NODE_RANK $!"; '
        f"{extra}echo ready; wait"
    )
    launch = Launch(
        job_id=job,
        command=command,
        gpus=2,
        nodes=(NodeSlice("a", (0,)), NodeSlice("b", (1,))),
        log_path=ex.logs_dir / f"job-{job}.log",
    )
    handle = ex.start(launch)
    wait_for(lambda: launch.log_path.read_text().count("] ready") == 2, timeout=20)
    return ex, launch, handle


def _sleepers(log: str) -> list[int]:
    pids = [int(p) for p in re.findall(r"^\[rank \d\] bg \d (\d+)$", log, re.M)]
    assert len(pids) == 4, log
    return pids


def test_cancel_kills_every_rank_and_what_it_left_even_when_it_ignores_sigterm(rig: Rig) -> None:
    ex, launch, handle = _background(rig, "42", extra="trap '' TERM; ")
    sleepers = _sleepers(launch.log_path.read_text())
    ranks = json.loads((ex.run_dir / launch.name / "job.json").read_text())["ranks"]
    assert all(_alive(p) for p in [*sleepers, *(r["pid"] for r in ranks)])
    began = time.monotonic()
    ex.cancel(handle)
    wait_for(lambda: ex.poll(handle).state is not RunState.RUNNING, timeout=10)
    assert ex.poll(handle).state is RunState.CANCELLED
    assert time.monotonic() - began < 5  # 0.5 s of grace, then SIGKILL for every rank
    assert not any(_alive(p) for p in [*sleepers, *(r["pid"] for r in ranks)])


def test_a_killed_supervisor_is_lost_and_cancel_still_stops_every_rank(rig: Rig) -> None:
    """The supervisor dies (the OOM killer, say): each rank's leader dies with it (its
    parent-death signal); what the ranks left is reached through the job's record."""
    ex, launch, handle = _background(rig, "43")
    sleepers = _sleepers(launch.log_path.read_text())
    record = json.loads((ex.run_dir / launch.name / "job.json").read_text())
    assert len(record["ranks"]) == 2
    os.kill(json.loads(handle)["pid"], signal.SIGKILL)
    wait_for(lambda: ex.poll(handle).state is RunState.LOST, timeout=10)
    wait_for(lambda: not any(_alive(r["pid"]) for r in record["ranks"]), timeout=10)
    ex.cancel(handle)
    if record["cgroup"]:  # without a cgroup, the daemonised sleepers are out of reach
        wait_for(lambda: not any(_alive(p) for p in sleepers), timeout=10)
    else:
        for pid in sleepers:  # not this test's to leave behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_rank_that_cannot_be_set_up_fails_the_start_before_any_rank_ran(rig: Rig) -> None:
    """Every rank is set up before any execs: rank 2's environment is refused (the executor
    never writes such a spec; here the supervisor is handed one), and no rank ran."""
    ex = rig.executor()
    launch = Launch(
        job_id="44",
        command="echo ran > ran-$NODE_RANK",
        gpus=3,
        nodes=(NodeSlice("a", (0,)), NodeSlice("b", (1,)), NodeSlice("c", (2,))),
        log_path=ex.logs_dir / "job-44.log",
    )
    spec = ex._spec(launch)
    ranks = [dict(r) for r in spec.ranks]
    ranks[2]["NODE_RANK"] = "2\0"
    state = ex.run_dir / launch.name
    state.mkdir(mode=0o700)
    supervise.write_atomic(state / supervise.SPEC, replace(spec, ranks=ranks).to_json())
    answer = subprocess.run(
        [sys.executable, "-I", "-S", str(SUPERVISE), str(state)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(answer.stdout) == {
        "ok": False,
        "error": "cannot start: rank 2: environment: invalid variable 'NODE_RANK'",
    }
    status = ex.poll(str(ex.find(launch.name)))
    assert status.state is RunState.FAILED
    assert "rank 2: environment" in status.detail
    assert list((ex.jobs_dir / launch.name).iterdir()) == []  # no rank ran the command


# -- the whole service: REST API, its loop thread, the local executor ---------------------------


def test_through_the_api_a_gang_completes_and_a_cancel_stops_every_rank(rig: Rig) -> None:
    """What a tenant sees: submit over HTTP, the job's log tail shows every rank, and
    DELETE stops every rank of a running gang (the service's own loop thread does it all)."""
    settings = replace(rig.settings, fleet="demo")
    service = Service(settings, executor=rig.executor())
    with TestClient(create_app(service)) as client:
        token = create_token(service.db, tenant="lab", role=Role.MEMBER, now=time.time())[1]
        auth = {"Authorization": f"Bearer {token}"}

        def submit(command: str) -> int:
            body = {"gpus": 16, "gpu_class": "h100", "command": command}
            answer = client.post("/v1/jobs", json=body, headers=auth)
            assert answer.status_code == 201, answer.text
            return int(answer.json()["id"])

        def show(job: int) -> dict[str, object]:
            answer = client.get(f"/v1/jobs/{job}", params={"log_lines": 100}, headers=auth)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert isinstance(body, dict)
            return body

        done = submit(rig.rendezvous())
        wait_for(lambda: show(done)["state"] in TERMINAL, timeout=60)
        shown = show(done)
        assert shown["state"] == "completed", shown
        assert_world_met(str(shown["log_tail"]), placement_of(rig.row(done)))

        held = submit(rig.rendezvous("--hold 120"))
        wait_for(lambda: len(ranks_met(rig.log(held), 2)) == 2, timeout=60)
        pids = rank_pids(rig.log(held))
        assert len(pids) == 2
        assert all(runs_program(p) for p in pids.values())
        assert client.delete(f"/v1/jobs/{held}", headers=auth).status_code == 202
        wait_for(lambda: show(held)["state"] == "cancelled", timeout=30)
        wait_for(lambda: not any(runs_program(p) for p in pids.values()), timeout=10)

"""The Ray executor against a real local Ray head (issue #16 §4).

One head for the module (``ray start --head --block``, 4 CPUs, 32 fake GPUs, and the marker
resources ``aifactory-node:n1``/``n2`` of two 8-GPU fleet nodes), in its own session so that
its teardown stops exactly the processes it started. Every job runs tests/rendezvous.py as
real processes, one Ray actor per node rank: rank 0 checks the world (every rank once, each
with exactly its node's GPUs in ``CUDA_VISIBLE_DEVICES``) and exits 1 otherwise, so a
completed job is the proof; the log must show every rank's own line. Each rank's shell
prints its pid before it becomes the program, so "every rank stopped" is checked on the
processes themselves.

The head is started with a database URL and a token in its environment, as a head started
from the service's own shell would be: none of it may reach a job's environment. (A rank
runs as Ray's user and could still read it from ``/proc/<worker>/environ``: the service
starts its own head with a clean environment, see aifactory.service.executors.ray.)

Skipped, saying so, only where Ray cannot be imported (``pip install 'aifactory[ray]'``;
``make test`` installs it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

pytest.importorskip(
    "ray.job_submission",
    reason="Ray is not installed: pip install 'aifactory[ray]' (make test installs it)",
)

from aifactory.fleet import compile_topology, load_fleet
from aifactory.service import store
from aifactory.service.db import Database
from aifactory.service.executors import make_executor
from aifactory.service.executors.base import (
    CONTRACT_ENV,
    Launch,
    NodeSlice,
    RunState,
    Status,
    describe_nodes,
    rank_env,
)
from aifactory.service.executors.ray import STOP_WAIT_MARGIN_S, RayExecutor
from aifactory.service.loop import SchedulerLoop
from aifactory.service.schemas import JobSubmit
from aifactory.service.settings import ExecutorKind, ServiceSettings
from aifactory.service.tables import jobs

REPO = Path(__file__).resolve().parent.parent
PROGRAM = REPO / "tests" / "rendezvous.py"
SECRETS = {
    "AIFACTORY_DATABASE_URL": "postgresql://svc:hunter2@db.internal/aifactory",
    "AIFACTORY_TOKEN": "tok-do-not-leak",
}
TWO_NODES = (NodeSlice("n1", tuple(range(8))), NodeSlice("n2", tuple(range(8))))
HEAD_START_S = 120.0
JOB_S = 90.0  # one job's start and end on a loaded 2-core host


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rfind(")") + 2 :].split()[3]) == sid:
                    members.append(int(entry.name))
    return members


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=2) as reply:
            return bool(json.loads(reply.read()).get("ray_version"))
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A local Ray head for this module's tests; its dashboard URL (the Job Submission API's).

    Module-scoped, not session-scoped: in ``make test`` the head (about 1.5 GB and some CPU)
    is gone before the next module's tests run.
    """
    temp = Path(f"/tmp/aif-ray-{os.getpid()}")
    temp.mkdir(mode=0o700)
    gcs, dashboard, client, agent = _free_ports(4)
    bindir = Path(sys.executable).parent
    argv = [
        str(bindir / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
        "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
        "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
        "--num-cpus", "4", "--num-gpus", "32", "--object-store-memory", str(200 << 20),
        "--resources", json.dumps({"aifactory-node:n1": 1, "aifactory-node:n2": 1}),
        "--temp-dir", str(temp), "--disable-usage-stats",
    ]  # fmt: skip
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(temp),
        "LANG": "C.UTF-8",
        "RAY_USAGE_STATS_ENABLED": "0",
        **SECRETS,  # as if started from the service's shell
    }
    out = (temp / "head.log").open("ab")
    head = subprocess.Popen(
        argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=temp
    )
    url = f"http://127.0.0.1:{dashboard}"
    try:
        started = time.monotonic()
        while not _answers(url):
            if head.poll() is not None or time.monotonic() - started > HEAD_START_S:
                tail = (temp / "head.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"the Ray head did not come up (exit {head.poll()}):\n{tail}")
            time.sleep(0.25)
        print(f"Ray head up in {time.monotonic() - started:.1f} s at {url}")
        yield url
    finally:
        head.send_signal(signal.SIGTERM)  # --block stops every process it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=30)
        for pid in _session_members(head.pid):  # anything of its session still there
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=5)
        out.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def executor(url: str, data_dir: Path) -> RayExecutor:
    """A fresh executor on the head (as a restarted service makes); logs copied every poll."""
    return RayExecutor(url, data_dir=data_dir, log_sync_s=0.0, grace_s=1.0)


def launch(
    data_dir: Path,
    command: str,
    *,
    nodes: tuple[NodeSlice, ...] = TWO_NODES,
    time_limit_s: float | None = None,
    env: dict[str, str] | None = None,
) -> Launch:
    """A launch of a fresh job (a unique nonce: names never collide across runs)."""
    job = f"{uuid.uuid4().int % 10**6}"
    return Launch(
        job_id=job,
        command=command,
        gpus=sum(len(s.gpus) for s in nodes),
        nodes=nodes,
        log_path=data_dir / "logs" / f"job-{job}.log",
        time_limit_s=time_limit_s,
        env=env or {},
        tenant="lab",
        nonce=uuid.uuid4().hex[:8],
    )


def rendezvous(args: str = "", before: str = "") -> str:
    """A job command: print this rank's pid, then become the rendezvous program."""
    return f'{before}echo "pid $$"; exec {sys.executable} -I {PROGRAM} {args}'


def wait_status(
    ex: RayExecutor, handle: str, until: Callable[[Status], bool], timeout: float = JOB_S
) -> Status:
    deadline = time.monotonic() + timeout
    while True:
        status = ex.poll(handle)
        if until(status):
            return status
        if time.monotonic() > deadline:
            log = _read(ex, handle)
            pytest.fail(f"{handle}: still {status} after {timeout:g} s; log:\n{log}")
        time.sleep(0.3)


def ended(status: Status) -> bool:
    return status.state is not RunState.RUNNING


def _read(ex: RayExecutor, handle: str) -> str:
    for path in (ex.data_dir / "logs").glob("*.log"):
        text = path.read_text(errors="replace")
        if f"==== ray job {handle} ====" in text:
            return text
    return ""


def rank_pids(log: str) -> dict[int, int]:
    return {int(r): int(p) for r, p in re.findall(r"^\[rank (\d+)\] pid (\d+)$", log, re.M)}


def ranks_met(log: str, world: int) -> dict[int, str]:
    found = re.findall(rf"^\[rank (\d+)\] rank \1/{world} ok gpus=(\S+) ", log, re.M)
    return {int(r): gpus for r, gpus in found}


def runs_program(pid: int) -> bool:
    """Whether ``pid`` is still a rendezvous rank (not another process that got the pid)."""
    try:
        return b"rendezvous.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def assert_world_met(log: str, nodes: tuple[NodeSlice, ...]) -> None:
    world = len(nodes)
    assert f"[rank 0] world ok size={world} placement={describe_nodes(nodes)} " in log, log
    assert ranks_met(log, world) == {r: ",".join(map(str, s.gpus)) for r, s in enumerate(nodes)}
    for rank in range(world):  # each rank ran once
        assert len(re.findall(rf"^\[rank {rank}\] rank {rank}/", log, re.M)) == 1, log


def wait_met(ex: RayExecutor, handle: str, world: int) -> dict[int, int]:
    """Wait until every rank passed the rendezvous; their pids, each still running."""
    wait_status(ex, handle, lambda s: ended(s) or len(ranks_met(_read(ex, handle), world)) == world)
    log = _read(ex, handle)
    assert ex.poll(handle).state is RunState.RUNNING, log
    pids = rank_pids(log)
    assert sorted(pids) == list(range(world)), log
    assert all(runs_program(p) for p in pids.values()), log
    return pids


def wait_gone(pids: list[int], program: bytes, timeout: float = 15.0) -> None:
    """Wait until none of ``pids`` runs ``program`` any more."""

    def runs(pid: int) -> bool:
        try:
            return program in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    deadline = time.monotonic() + timeout
    while any(runs(p) for p in pids):
        if time.monotonic() > deadline:
            pytest.fail(f"still running {timeout:g} s later: {[p for p in pids if runs(p)]}")
        time.sleep(0.2)


def assert_all_gone(pids: dict[int, int], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while any(runs_program(p) for p in pids.values()):
        if time.monotonic() > deadline:
            alive = {r: p for r, p in pids.items() if runs_program(p)}
            pytest.fail(f"ranks still running {timeout:g} s after the job ended: {alive}")
        time.sleep(0.2)


# -- the gang completes, with the contract and nothing else ---------------------------------


def test_a_16_gpu_job_on_two_8_gpu_nodes_meets_and_completes(
    ray_head: str, data_dir: Path, tmp_path: Path
) -> None:
    ex = executor(ray_head, data_dir)
    seen = tmp_path / "env"
    seen.mkdir()
    seen.chmod(0o777)
    job = launch(
        data_dir,
        # Each rank also leaves a daemon behind (its own session): it ends with its rank.
        rendezvous(before=f'env > {seen}/rank-$NODE_RANK; setsid sleep 300 & echo "bg $!"; '),
        env={"TRAINER_FLAG": "on", "AIFACTORY_TOKEN": "from-the-job", "MASTER_PORT": "1"},
    )
    handle = ex.start(job)
    assert handle == job.name
    status = wait_status(ex, handle, ended)
    log = job.log_path.read_text()
    assert status == Status(RunState.COMPLETED, exit_code=0), log
    assert_world_met(log, TWO_NODES)
    assert "pinned to its node" in log  # the head advertises aifactory-node:n1 and n2
    assert log.rstrip().endswith("aifactory-ray: every rank exited 0")
    daemons = [int(p) for p in re.findall(r"^\[rank \d\] bg (\d+)$", log, re.M)]
    assert len(daemons) == 2, log
    wait_gone(daemons, b"sleep")
    allowed = CONTRACT_ENV | {"PATH", "LANG", "HOME", "TMPDIR", "TRAINER_FLAG"}
    for rank in (0, 1):
        env = dict(line.split("=", 1) for line in (seen / f"rank-{rank}").read_text().splitlines())
        extra = set(env) - allowed - {"PWD", "SHLVL", "_", "OLDPWD"}
        assert extra == set(), f"rank {rank} was given {sorted(extra)}"
        assert env["TRAINER_FLAG"] == "on"
        assert env["NODE_RANK"] == str(rank)
        assert env["WORLD_SIZE"] == "2"
        assert env["LOCAL_WORLD_SIZE"] == "8"
        assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
        assert env["AIFACTORY_TENANT"] == "lab"
        assert env["MASTER_PORT"] != "1"  # the job's own value cannot override the contract
        for secret in SECRETS.values():
            assert secret not in (seen / f"rank-{rank}").read_text()
        assert "AIFACTORY_TOKEN" not in env


# -- one failing rank, cancel and the time limit stop every rank ----------------------------


def test_one_failing_rank_fails_the_job_and_stops_the_other(ray_head: str, data_dir: Path) -> None:
    ex = executor(ray_head, data_dir)
    fail_one = rendezvous(
        "--hold 120",
        before=f'if [ "$NODE_RANK" = 1 ]; then exec {sys.executable} -I {PROGRAM} '
        "--fail-rank 1; fi; ",
    )
    job = launch(data_dir, fail_one)
    handle = ex.start(job)
    started = time.monotonic()
    status = wait_status(ex, handle, ended)
    log = job.log_path.read_text()
    assert status.state is RunState.FAILED, log
    assert status.exit_code == 3
    assert "rank 1 exited with status 3" in status.detail
    assert "ranks [0] stopped" in status.detail
    assert time.monotonic() - started < 60  # rank 0 holds 120 s: it was stopped
    assert "[rank 1] rank 1 fails on purpose" in log
    assert_all_gone(rank_pids(log))


def test_a_rank_whose_ray_worker_dies_fails_the_job_and_leaves_nothing_running(
    ray_head: str, data_dir: Path
) -> None:
    ex = executor(ray_head, data_dir)
    job = launch(data_dir, rendezvous("--hold 120"))
    handle = ex.start(job)
    pids = wait_met(ex, handle, 2)
    # The rank's shell is its guard's child, the guard the actor's: kill the actor's worker
    # process outright, as a crashed or OOM-killed worker would be.
    guard = _parent(pids[1])
    worker = _parent(guard)
    assert b"aifactory_ray_driver.py" in Path(f"/proc/{guard}/cmdline").read_bytes()
    os.kill(worker, signal.SIGKILL)
    status = wait_status(ex, handle, ended)
    log = job.log_path.read_text()
    assert status.state is RunState.FAILED, log
    assert "rank 1 was lost" in status.detail
    assert_all_gone(pids)  # rank 1 by its guard, rank 0 by the driver


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def test_cancel_stops_every_rank(ray_head: str, data_dir: Path) -> None:
    ex = executor(ray_head, data_dir)
    # rank 1 ignores SIGTERM: it is killed after the grace
    stubborn = '[ "$NODE_RANK" = 1 ] && trap "" TERM; '
    job = launch(data_dir, rendezvous("--hold 120", before=stubborn))
    handle = ex.start(job)
    pids = wait_met(ex, handle, 2)
    ex.cancel(handle)
    status = wait_status(ex, handle, ended)
    assert status.state is RunState.CANCELLED, job.log_path.read_text()
    assert_all_gone(pids)
    ex.cancel(handle)  # idempotent: an ended job is left as it is
    assert ex.poll(handle).state is RunState.CANCELLED


def test_a_stopped_job_keeps_its_grace_past_rays_3_s_and_runs_until_its_ranks_saved(
    ray_head: str, data_dir: Path
) -> None:
    """A job with an 8 s stop grace whose ranks take 5 s to save on SIGTERM (issue #18 §2):
    Ray's supervisor, which kills a stopped driver after 3 s by default, waits for it, so
    every rank's save is in the log and the job reads RUNNING until the ranks exited."""
    ex = executor(ray_head, data_dir)
    saving = "trap 'sleep 5; echo saved; exit 0' TERM; echo \"pid $$\"; while :; do sleep 0.2; done"
    job = dataclasses.replace(launch(data_dir, saving), stop_grace_s=8.0)
    assert ex.spec(job)["grace_s"] == 8.0
    handle = ex.start(job)
    wait_status(ex, handle, lambda s: ended(s) or len(rank_pids(_read(ex, handle))) == 2)
    assert ex.poll(handle).state is RunState.RUNNING, _read(ex, handle)
    asked = time.monotonic()
    ex.cancel(handle)
    status = wait_status(ex, handle, ended)
    took = time.monotonic() - asked
    log = job.log_path.read_text()
    assert status.state is RunState.CANCELLED, log
    assert "[rank 0] saved" in log, log
    assert "[rank 1] saved" in log, log
    assert took >= 5.0, (took, log)  # not cut at Ray's 3 s
    assert_all_gone(rank_pids(log))


def test_the_runtime_env_makes_ray_wait_for_the_jobs_grace(data_dir: Path) -> None:
    (port,) = _free_ports(1)
    ex = RayExecutor(f"http://127.0.0.1:{port}", data_dir=data_dir, grace_s=2.0)  # never contacted
    plain = launch(data_dir, "train")
    saving = dataclasses.replace(plain, stop_grace_s=600.5)
    waits = [
        int(ex.runtime_env(j, data_dir)["env_vars"]["RAY_JOB_STOP_WAIT_TIME_S"])
        for j in (plain, saving)
    ]
    assert waits == [2 + STOP_WAIT_MARGIN_S, 601 + STOP_WAIT_MARGIN_S]


def test_the_time_limit_stops_every_rank(ray_head: str, data_dir: Path) -> None:
    ex = executor(ray_head, data_dir)
    job = launch(data_dir, rendezvous("--hold 120"), time_limit_s=6)
    handle = ex.start(job)
    status = wait_status(ex, handle, ended)
    log = job.log_path.read_text()
    assert status.state is RunState.FAILED, log
    assert status.exit_code == 124
    assert "time limit of 6 s exceeded" in status.detail
    assert len(ranks_met(log, 2)) == 2, log  # both ran, and held, until the limit
    assert_all_gone(rank_pids(log))


# -- a restart reconciles; a launch is idempotent --------------------------------------------


def test_starting_the_same_attempt_twice_runs_it_once(ray_head: str, data_dir: Path) -> None:
    # Fleet nodes the head does not advertise: Ray places the ranks by their GPUs alone.
    nodes = (NodeSlice("x1", (0, 1, 2, 3)), NodeSlice("x2", (4, 5, 6, 7)))
    job = launch(data_dir, rendezvous(), nodes=nodes)
    first = executor(ray_head, data_dir).start(job)
    again = executor(ray_head, data_dir).start(job)  # as after a crash before the handle
    assert again == first == job.name
    ex = executor(ray_head, data_dir)
    assert wait_status(ex, first, ended) == Status(RunState.COMPLETED, exit_code=0)
    log = job.log_path.read_text()
    assert "placed by Ray" in log
    assert_world_met(log, nodes)
    assert log.count("Running entrypoint for job") == 1
    assert ex.start(job) == first  # and after it ended: still that one attempt
    assert job.log_path.read_text().count("aifactory-ray: every rank exited 0") == 1


def test_unknown_attempts_are_lost_and_cancelling_them_is_harmless(
    ray_head: str, data_dir: Path
) -> None:
    ex = executor(ray_head, data_dir)
    name = f"aif-999-1-{uuid.uuid4().hex[:8]}"
    assert ex.find(name) is None
    assert ex.poll(name).state is RunState.LOST
    ex.cancel(name)
    assert ex.poll(name).state is RunState.LOST  # cancelling made nothing of it
    assert ex.poll("not a name; rm -rf /").state is RunState.LOST
    assert ex.find("../etc") is None


def test_an_unreachable_ray_is_an_executor_error_not_a_verdict(data_dir: Path) -> None:
    from aifactory.service.executors.base import ExecutorError  # noqa: PLC0415

    (port,) = _free_ports(1)
    ex = RayExecutor(f"http://127.0.0.1:{port}", data_dir=data_dir)
    with pytest.raises(ExecutorError, match="cannot reach Ray"):
        ex.poll("aif-1-1")
    with pytest.raises(ExecutorError):
        ex.find("aif-1-1")
    with pytest.raises(ExecutorError):
        ex.start(launch(data_dir, "true"))


def test_the_spec_gives_each_rank_the_contract_and_grows_with_the_placement_once(
    data_dir: Path,
) -> None:
    (port,) = _free_ports(1)
    ex = RayExecutor(f"http://127.0.0.1:{port}", data_dir=data_dir)  # never contacted
    nodes = tuple(NodeSlice(f"gb200-{i:02d}", (0, 1, 2, 3)) for i in range(72))
    job = launch(data_dir, "train", nodes=nodes, env={"WANDB_MODE": "off", "NODE_RANK": "9"})
    spec = ex.spec(job)
    assert json.dumps(spec).count(job.placement) == 1
    for rank in range(72):
        given = {**spec["env"], **spec["ranks"][rank]["env"]}
        given |= {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
        want = rank_env(job, rank, "10.0.0.1", 29500)
        assert {k: given[k] for k in want} == want
        assert set(given) - set(want) == {"PATH", "LANG", "WANDB_MODE"}
        assert spec["ranks"][rank]["node"] == f"gb200-{rank:02d}"


# -- through the real control-plane loop ----------------------------------------------------


def test_across_a_restart_the_loop_keeps_a_running_gang_and_records_one_that_ended(
    ray_head: str, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path}/aifactory.db")
    db.upgrade()
    settings = ServiceSettings(
        database_url=str(db.url),
        data_dir=tmp_path / "data",
        executor=ExecutorKind.RAY,
        ray_address=ray_head,
        tick_s=0.05,
        lock_retry_s=0.05,
    )
    topo = compile_topology(load_fleet("demo"))
    watch = executor(ray_head, settings.data_dir)

    def submit(command: str) -> int:
        req = JobSubmit(gpus=16, gpu_class="h100", command=command, time_limit_s=600)
        done = store.submit(
            db, req, tenant="lab", token_id=1, now=time.time(), idempotency_key=None
        )
        return int(done.job["id"])

    def row(job_id: int) -> sa.Row[tuple[object, ...]]:
        with db.read() as conn:
            return conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()

    def service() -> SchedulerLoop:
        """A (re)started service: a fresh loop with a fresh executor from the settings."""
        ex = make_executor("ray", settings)
        assert isinstance(ex, RayExecutor)
        assert ex.address == ray_head
        return SchedulerLoop(db, topo, ex, settings)

    def drive(loop: SchedulerLoop, until: Callable[[], bool]) -> None:
        deadline = time.monotonic() + JOB_S
        while not until():
            assert time.monotonic() < deadline, {j: (row(j).state, row(j).reason) for j in ids}
            loop._last_poll = 0.0
            loop.cycle()
            time.sleep(0.3)

    try:
        short, long = submit(rendezvous("--hold 1")), submit(rendezvous("--hold 10"))
        ids = [short, long]
        first = service()
        first.load()
        drive(first, lambda: all(row(j).handle for j in ids))
        handles = {j: str(row(j).handle) for j in ids}
        for job_id in ids:
            wait_met(watch, handles[job_id], 2)
        # The service dies; the short gang ends while it is down (watched from elsewhere:
        # only the restarted service may write its log). The long one's handle was "not
        # recorded", as after a crash between the start and its commit: found by name.
        del first
        Path(str(row(short).log_path)).unlink()
        blind = RayExecutor(ray_head, data_dir=tmp_path / "elsewhere")
        wait_status(blind, handles[short], ended)
        with db.write() as conn:
            conn.execute(sa.update(jobs).where(jobs.c.id == long).values(handle=None))
        second = service()
        second.load()
        assert row(short).state == "completed", row(short).reason
        assert row(long).state == "running"  # kept: same attempt, found by its name
        assert row(long).attempts == 1
        assert str(row(long).handle) == handles[long]
        drive(second, lambda: row(long).state != "running")
        assert row(long).state == "completed", row(long).reason
        for job_id in ids:
            r = row(job_id)
            log = Path(str(r.log_path)).read_text()
            assert isinstance(r.placement, list)
            nodes = tuple(NodeSlice(str(n), tuple(int(g) for g in gs)) for n, gs in r.placement)
            assert len(nodes) == 2
            assert_world_met(log, nodes)
            assert log.count("Running entrypoint for job") == 1  # one attempt ran, once
            assert handles[job_id].startswith(f"aif-{job_id}-1-")
    finally:
        db.dispose()

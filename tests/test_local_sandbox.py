"""Tenant code never runs with the service's privileges: attacks by real jobs on the local
executor, with the service as root (jobs as aifactory-job) and as the non-root aifactory-svc
(jobs as that same user, kept out by Landlock). Each attack must fail and leave the data
directory and the jobs root as they were; see tests/sandbox_driver.py for the jobs.

Also here: ``log_tail`` never follows a link nor leaves its root, and the SQLite files are
the service's alone.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aifactory.service.db import Database
from aifactory.service.executors.base import CONTRACT_ENV
from aifactory.service.store import log_tail
from local_sandbox_support import (
    REPO,
    SVC_USER,
    as_user,
    reachable_dir,
    require_job_user,
    svc_env,
    svc_python,
    svc_tree,
)

DRIVER = REPO / "tests" / "sandbox_driver.py"
# What a job's environment may hold: the executor's own variables and the launch contract's
# (the shell adds PWD and OLDPWD itself).
JOB_ENV = {"PATH", "HOME", "TMPDIR", "LANG", "PWD", "OLDPWD"} | CONTRACT_ENV


def run_driver(
    base: Path, prefix: list[str], python: str, env: dict[str, str] | None, driver: Path = DRIVER
) -> Any:
    report = base / "report.json"
    done = subprocess.run(
        [*prefix, python, str(driver), str(base), str(report), str(os.getpid())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    assert done.returncode == 0, f"the service died or failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(report.read_text())


@pytest.fixture(scope="module", params=["root", "non-root"])
def attacked(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The driver's report, as root with a job user or as the non-root service user."""
    if request.param == "root":
        if os.geteuid() != 0:
            pytest.skip("the service-as-root case needs root")
        require_job_user()
        with reachable_dir() as base:
            yield run_driver(base, [], sys.executable, None)
        return
    if os.geteuid() != 0:  # already not root: this test process is the non-root service
        yield run_driver(tmp_path_factory.mktemp("attacked"), [], sys.executable, None)
        return
    require_job_user()
    with svc_tree() as tree:
        python, why = svc_python(tree)
        if python is None:
            pytest.skip(why)
        with reachable_dir() as base:
            shutil.chown(base, SVC_USER, SVC_USER)
            driver = tree / DRIVER.name
            yield run_driver(base, as_user(SVC_USER), python, svc_env(tree), driver)


def test_attacks_by_jobs_fail_and_change_nothing(attacked: Any) -> None:
    r = attacked
    same_user = r["uid"] == r["job_uid"]
    if same_user and r["landlock"] < 6:
        pytest.skip(
            f"jobs run as the service's user and this kernel's Landlock ABI is {r['landlock']} "
            "(6+ keeps them out of its files and processes): nothing protects the service"
        )
    assert r["ended"], "an attack job did not end"
    logs = {int(k): v for k, v in r["logs_text"].items()}
    status = {int(k): v for k, v in r["statuses"].items()}

    # Nothing in the data directory or the jobs root changed but the attackers' own files
    # (their logs, state and working directories, all new). Known gap: a job running as
    # the service's own user can still change the mode bits of the service's files
    # (Landlock has no right for chmod), though not open, write, rename or delete them;
    # so there only contents are compared. With a job user, modes may not change either.
    def own(path: str) -> bool:
        return any(f"aif-{j}-1" in path or f"job-{j}.log" in path for j in range(2, 11))

    field = 1 if same_user else slice(None)
    before = {p: v[field] for p, v in r["before"].items()}
    after = {p: v[field] for p, v in r["after"].items() if not own(p)}
    assert after == before
    assert r["db"] in before
    for marker in ("WROTE", "READ /", "COPIED-DB", "SQL", "MKDIR", "FORGED", "REMOVED", "MOVED"):
        for job in (2, 3, 7):
            assert marker not in logs[job], (job, marker, logs[job])

    # No other job's log, home or environment, and no service secret, can be read.
    assert r["secret"] not in logs[4]
    assert r["token"] not in logs[4]
    assert r["token"] not in json.dumps(r["after"])
    # Nobody can be signalled: the service (this driver, still alive to write the report),
    # the test, the victim, its supervisor, or the attacker's own supervisor.
    assert "KILLED" not in logs[5]
    assert "COULD-SIGNAL" not in logs[5]
    assert r["victim_running_after_attacks"]
    assert status[5] == {"state": "failed", "exit_code": 5}  # its supervisor saw it end
    # A log swapped for a link: the log stays the service's regular file, log_tail serves
    # the job's own output only, and no link was planted.
    assert "LINKED" not in logs[6]
    assert "PLANTED" not in logs[6]
    tail = log_tail(str(Path(r["logs"], "job-6.log")), 50, root=Path(r["logs"]))
    assert tail is not None
    assert "SYMLINK-JOB-OUTPUT" in tail
    assert "root:" not in tail
    # The exit status is the supervisor's: the job's forged "exited 0" files count for nothing.
    assert status[7] == {"state": "failed", "exit_code": 7}


def test_jobs_run_as_the_job_user_with_a_clean_environment_and_limits(attacked: Any) -> None:
    r = attacked
    out = r["logs_text"]["8"]
    uid = out.split()[0]
    assert int(uid) == r["job_uid"]
    env_text = out.split("ENV-BEGIN\n", 1)[1].split("ENV-END", 1)[0]
    env = dict(line.split("=", 1) for line in env_text.splitlines() if "=" in line)
    assert set(env) <= JOB_ENV, set(env) - JOB_ENV
    assert env["HOME"] == env["TMPDIR"] == str(Path(r["jobs"], "aif-8-1"))
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert env["AIFACTORY_JOB_ID"] == "8"
    assert (env["WORLD_SIZE"], env["NODE_RANK"], env["LOCAL_WORLD_SIZE"]) == ("1", "0", "1")
    assert env["MASTER_ADDR"] == "127.0.0.1"
    assert 0 < int(env["MASTER_PORT"]) < 65536
    assert env["AIFACTORY_TENANT"] == "lab"
    assert r["token"] not in out
    assert "sqlite:" not in out
    limits = {
        line[:26].strip(): line[26:].split()[:2] for line in out.splitlines() if "Max " in line
    }
    soft, hard = limits["Max open files"]
    assert soft == hard
    assert int(soft) <= 65536
    soft, hard = limits["Max processes"]
    assert soft == hard
    assert int(soft) <= 8192
    assert "to-stderr" in out  # /dev/stderr still opens: it is the job's own pipe
    if r["cgroup"]:
        assert "/aifactory-jobs/aif-8-1." in out


def test_cancel_kills_every_descendant_and_the_end_kills_leftovers(attacked: Any) -> None:
    r = attacked
    assert r["tree"], "the tree job never got ready"
    assert all(r["tree_alive_before_cancel"])  # child, setsid'd daemon, reparented orphan
    assert r["tree_stopped"]
    assert r["tree_gone"]
    assert r["statuses"]["9"]["state"] == "cancelled"
    assert r["statuses"]["10"] == {"state": "completed", "exit_code": 0}
    assert not r["leftover_alive"]  # what a finished job left running was killed
    assert r["statuses"]["1"]["state"] == "cancelled"


# -- log_tail ------------------------------------------------------------------------------


def test_log_tail_never_follows_a_link_nor_leaves_its_root(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    secret = tmp_path / "secret"
    secret.write_text("root:x:0:0\n")
    log = logs / "job-1.log"
    log.write_text("one\ntwo\nthree\n")
    assert log_tail(str(log), 2, root=logs) == "two\nthree"
    assert log_tail(str(log), 2) == "two\nthree"
    log.unlink()
    log.symlink_to(secret)  # the log swapped for a link
    assert log_tail(str(log), 5, root=logs) is None
    assert log_tail(str(log), 5) is None
    assert log_tail(str(secret), 5, root=logs) is None  # outside the root
    assert log_tail(str(logs / ".." / "secret"), 5, root=logs) is None
    (logs / "sub").symlink_to(tmp_path)  # a linked directory on the way
    assert log_tail(str(logs / "sub" / "secret"), 5, root=logs) is None
    fifo = logs / "job-2.log"
    os.mkfifo(fifo)  # would block a plain open for ever
    assert log_tail(str(fifo), 5, root=logs) is None
    assert log_tail(str(logs / "job-3.log"), 5, root=logs) is None  # no log yet
    assert log_tail(None, 5, root=logs) is None


# -- the database ----------------------------------------------------------------------------


def test_sqlite_files_are_the_services_alone(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "aifactory.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    with db.write() as conn:
        conn.exec_driver_sql("SELECT 1")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for file in path.parent.iterdir():  # the database, its -wal and -shm
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
        assert file.stat().st_uid == os.geteuid()
    db.dispose()

    loose = tmp_path / "old.db"  # left world-readable by an earlier version
    loose.touch(mode=0o644)
    loose.chmod(0o644)
    Database(f"sqlite:///{loose}").dispose()
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600

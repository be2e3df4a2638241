"""A service that runs an attacker's jobs on the local executor and reports what happened.

``python sandbox_driver.py <base dir> <report.json> <test pid>``: this process plays the
service (its environment holds a database URL and a token, its data directory a SQLite file
with a token in it). It starts a victim job, takes a snapshot of the data directory and the
jobs root, runs the attacks, takes the snapshot again, cancels what still runs and writes a
JSON report for tests/test_local_sandbox.py, which runs it as root (jobs as aifactory-job)
and as the non-root aifactory-svc (jobs as that same user). Standard library only, besides
the executor itself: the service user may have no virtualenv to import from.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

from aifactory.service.executors.base import Launch, NodeSlice, RunState
from aifactory.service.executors.local import LocalExecutor

TOKEN = "aif_sandbox_test_token_4b1d"  # a fake secret that must not leak


def snapshot(*roots: Path) -> dict[str, list[str]]:
    """Every path under ``roots`` (and the roots): [mode and owner, content].

    The content is a file's sha256, a link's target or "dir".
    """
    seen: dict[str, list[str]] = {}
    for root in roots:
        paths = [root]
        for dirpath, dirnames, filenames in os.walk(root):
            paths.extend(Path(dirpath, name) for name in dirnames + filenames)
        for path in paths:
            st = path.lstat()
            meta = f"{st.st_mode:o} {st.st_uid}:{st.st_gid}"
            if path.is_symlink():
                seen[str(path)] = [meta, f"link -> {path.readlink()}"]
            elif path.is_dir():
                seen[str(path)] = [meta, "dir"]
            else:
                seen[str(path)] = [meta, hashlib.sha256(path.read_bytes()).hexdigest()]
    return seen


def wait(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def main() -> None:
    base, report_path, test_pid = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    data = base / "data"
    db = data / "aifactory.db"
    os.environ["AIFACTORY_DATABASE_URL"] = f"sqlite:///{db}"
    os.environ["AIFACTORY_TOKEN"] = TOKEN
    ex = LocalExecutor(data, grace_s=0.5)
    old = os.umask(0o077)  # as db.py makes it: 0600 in a 0700 directory
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE tokens (token TEXT)")
        conn.execute("INSERT INTO tokens VALUES (?)", (TOKEN,))
    conn.close()
    os.umask(old)
    logs, run, jobs = ex.logs_dir, ex.run_dir, ex.jobs_dir

    def launch(job: int, command: str) -> Launch:
        return Launch(
            job_id=str(job),
            command=command,
            gpus=1,
            nodes=(NodeSlice("n0", (job % 8,)),),
            log_path=logs / f"job-{job}.log",
            env={"AIFACTORY_PLACEMENT": f"n0:{job % 8}", "MASTER_ADDR": "127.0.0.1"},
            tenant="lab",
        )

    def log_of(job: int) -> str:
        try:
            return (logs / f"job-{job}.log").read_text(errors="replace")
        except OSError:
            return ""

    # The victim: a secret made at run time (never on a command line), in its log and home.
    victim = ex.start(
        launch(
            1,
            "s=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \\n'); echo \"VICTIM-$s\"; "
            'echo "VICTIM-$s" > "$HOME/secret.txt"; exec sleep 60',
        )
    )
    assert wait(lambda: "VICTIM-" in log_of(1)), "the victim never wrote its secret"
    secret = log_of(1).split()[0]
    victim_sup = json.loads(victim)["pid"]
    victim_state = run / "aif-1-1"
    victim_job = json.loads((victim_state / "job.json").read_text())["pid"]
    victim_home = jobs / "aif-1-1"
    assert wait((victim_home / "secret.txt").exists)
    before = snapshot(data, jobs)

    attacks = {
        2: "db",
        3: "data dir",
        4: "other logs",
        5: "kill",
        6: "symlink",
        7: "forge",
        8: "identity",
        9: "tree",
        10: "leftover",
    }
    commands = {
        2: f"""for f in {db} {db}-wal {db}-shm {db}-journal; do
                 printf pwn >> "$f" && echo "WROTE $f"; cat "$f" >/dev/null && echo "READ $f"
               done
               cp {db} "$HOME/db-copy" && echo COPIED-DB
               sqlite3 {db} "insert into tokens values ('forged')" 2>/dev/null && echo SQL
               exit 0""",
        3: f"""echo pwn > {data}/evil && echo WROTE-DATA
               mkdir {logs}/evil && echo MKDIR-LOGS
               echo pwn > {run}/evil && echo WROTE-RUN
               printf '{{"code": 0}}' > {victim_state}/exit.json && echo FORGED-VICTIM
               rm -rf {victim_state} && echo REMOVED-VICTIM-STATE
               mv {data} {data}.gone && echo MOVED-DATA
               chmod 777 {data} && echo CHMOD-DATA
               exit 0""",
        4: f"""cat {logs / "job-1.log"}; cat {logs}/*; ls {logs}
               cat {victim_home}/secret.txt; ls {victim_home}
               cat /proc/{victim_job}/cwd/secret.txt; cat /proc/{victim_sup}/fd/* 2>&1 | head -c 300
               tr '\\0' '\\n' < /proc/{os.getpid()}/environ
               tr '\\0' '\\n' < /proc/{victim_sup}/environ
               exit 0""",
        5: f"""kill -KILL {os.getpid()} && echo KILLED-SERVICE
               kill -0 {test_pid} && echo COULD-SIGNAL-TEST
               kill -KILL {victim_sup} && echo KILLED-VICTIM-SUPERVISOR
               kill -KILL {victim_job} && echo KILLED-VICTIM
               kill -KILL -{victim_job} && echo KILLED-VICTIM-GROUP
               kill -KILL $PPID && echo KILLED-OWN-SUPERVISOR
               exit 5""",
        6: f"""rm -f {logs}/job-6.log && echo REMOVED-LOG
               ln -sf /etc/passwd {logs}/job-6.log && echo LINKED-LOG
               ln -s /etc/passwd {logs}/job-99.log && echo PLANTED-LOG
               echo SYMLINK-JOB-OUTPUT
               exit 0""",
        7: f"""printf '{{"code": 0, "cancelled": false}}' > {run}/aif-7-1/exit.json && echo FORGED
               printf 0 > {logs}/job-7.exit && echo FORGED-OLD
               printf '{{"code": 0}}' > "$HOME/exit.json"
               exit 7""",
        8: """id -u; id -g; echo ENV-BEGIN; env; echo ENV-END
              cat /proc/self/limits; cat /proc/self/cgroup
              echo to-stderr >/dev/stderr
              exit 0""",
        9: """sleep 300 & echo $! > child.pid
              setsid sh -c 'sleep 301 & echo $! > daemon.pid; wait' &
              (setsid sleep 302 & echo $! > orphan.pid)
              while [ ! -s daemon.pid ] || [ ! -s orphan.pid ]; do sleep 0.05; done
              echo TREE-READY; wait""",
        10: """setsid sleep 303 & echo $! > left.pid
               exit 0""",
    }
    handles = {job: ex.start(launch(job, cmd)) for job, cmd in commands.items()}
    finished = [j for j in commands if j != 9]
    ended = wait(lambda: all(ex.poll(handles[j]).state is not RunState.RUNNING for j in finished))
    tree_ready = wait(lambda: "TREE-READY" in log_of(9))
    after = snapshot(data, jobs)
    victim_running = ex.poll(victim).state is RunState.RUNNING

    def pid_in(job: int, name: str) -> int:
        return int((jobs / f"aif-{job}-1" / name).read_text())

    def sleeping(pid: int) -> bool:  # alive, and still the sleep we started (not a reused pid)
        try:
            return b"sleep" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    tree = [pid_in(9, n) for n in ("child.pid", "daemon.pid", "orphan.pid")] if tree_ready else []
    tree_alive_before = [sleeping(p) for p in tree]
    ex.cancel(handles[9])
    ex.cancel(handles[9])  # idempotent
    tree_stopped = wait(lambda: ex.poll(handles[9]).state is not RunState.RUNNING)
    tree_gone = wait(lambda: not any(sleeping(p) for p in tree))
    left = pid_in(10, "left.pid")
    ex.cancel(victim)
    wait(lambda: ex.poll(victim).state is not RunState.RUNNING)
    statuses = {}
    for job, handle in {1: victim, **handles}.items():
        status = ex.poll(handle)
        statuses[job] = {"state": status.state.value, "exit_code": status.exit_code}
    report = {
        "attacks": attacks,
        "uid": os.geteuid(),
        "job_uid": ex.user.uid,
        "landlock": ex._landlock,  # what the sandbox could use here
        "cgroup": ex._cgroup,
        "data": str(data),
        "db": str(db),
        "logs": str(logs),
        "jobs": str(jobs),
        "token": TOKEN,
        "secret": secret,
        "before": before,
        "after": after,
        "ended": ended,
        "victim_running_after_attacks": victim_running,
        "tree": tree,
        "tree_alive_before_cancel": tree_alive_before,
        "tree_stopped": tree_stopped,
        "tree_gone": tree_gone,
        "leftover_alive": sleeping(left),
        "statuses": statuses,
        "logs_text": {job: log_of(job) for job in [1, *commands]},
    }
    report_path.write_text(json.dumps(report))


if __name__ == "__main__":
    main()

"""The local executor: each job is a subprocess on this host.

The command runs under a tiny ``sh`` wrapper that writes the exit status to a file next to
the log when the command ends. That file, not ``waitpid``, is the source of truth, so a
service restarted after ``kill -9`` can still learn how jobs it did not start ended: the
jobs run in their own session and outlive the service. The handle records the PID *and*
the process start time (from ``/proc``), so a recycled PID is never mistaken for the job.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
from pathlib import Path

from aifactory.service.executors.base import ExecutorError, Launch, RunState, Status

log = logging.getLogger(__name__)

KILL_GRACE_S = 5.0

# $1: the job's command, $2: the exit-status file. Written atomically (tmp + mv) so a
# reader never sees a half-written status.
_WRAPPER = 'sh -c "$1"; rc=$?; printf "%s" "$rc" > "$2.tmp" && mv "$2.tmp" "$2"; exit "$rc"'


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot; None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has finished: the job is not running
        return None
    return fields[19]


class LocalExecutor:
    """Runs jobs as local subprocesses with ``CUDA_VISIBLE_DEVICES`` set."""

    name = "local"

    def __init__(self, workdir: Path | None = None) -> None:
        self._workdir = workdir
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def start(self, launch: Launch) -> str:
        """Start the command; the handle is JSON with pid, start time and exit file."""
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        exit_file = launch.log_path.with_suffix(".exit")
        exit_file.unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(launch.env)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in launch.gpu_indices)
        env["AIFACTORY_JOB_ID"] = launch.job_id
        try:
            with launch.log_path.open("ab") as logf:
                proc = subprocess.Popen(  # noqa: S603 (running the tenant's command is the job)
                    ["/bin/sh", "-c", _WRAPPER, "aifactory-job", launch.command, str(exit_file)],
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self._workdir,
                    start_new_session=True,  # outlives the service; killable as a group
                )
        except OSError as exc:
            msg = f"job {launch.job_id}: cannot start: {exc}"
            raise ExecutorError(msg) from exc
        with self._lock:
            self._children[proc.pid] = proc
        started = _start_time(proc.pid) or ""
        return json.dumps({"pid": proc.pid, "start": started, "exit": str(exit_file)})

    def poll(self, handle: str) -> Status:
        """Exit file first; else whether the very same process is alive; else LOST."""
        try:
            info = json.loads(handle)
            pid, started, exit_file = int(info["pid"]), str(info["start"]), Path(info["exit"])
        except (ValueError, KeyError, TypeError):
            return Status(RunState.LOST, detail=f"unreadable handle {handle!r}")
        with self._lock:
            child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            with self._lock:
                self._children.pop(pid, None)
        done = _read_exit(exit_file)
        if done is not None:
            return done
        if _start_time(pid) == started and started:
            return Status(RunState.RUNNING)
        done = _read_exit(exit_file)  # it may have ended between the two looks
        if done is not None:
            return done
        return Status(RunState.LOST, detail=f"process {pid} is gone and left no exit status")

    def cancel(self, handle: str) -> None:
        """SIGTERM the job's process group, SIGKILL after a grace period."""
        try:
            info = json.loads(handle)
            pid, started = int(info["pid"]), str(info["start"])
        except (ValueError, KeyError, TypeError):
            return
        if not started or _start_time(pid) != started:
            return
        _signal_group(pid, signal.SIGTERM)
        timer = threading.Timer(KILL_GRACE_S, self._kill_if_alive, (pid, started))
        timer.daemon = True
        timer.start()

    def _kill_if_alive(self, pid: int, started: str) -> None:
        if _start_time(pid) == started:
            _signal_group(pid, signal.SIGKILL)
        with self._lock:
            child = self._children.pop(pid, None)
        if child is not None:
            child.poll()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        log.debug("process group %d already gone", pid)


def _read_exit(path: Path) -> Status | None:
    try:
        raw = path.read_text().strip()
    except OSError:
        return None
    try:
        code = int(raw)
    except ValueError:
        return Status(RunState.FAILED, detail=f"unreadable exit status {raw!r}")
    if code == 0:
        return Status(RunState.COMPLETED, exit_code=0)
    return Status(RunState.FAILED, exit_code=code, detail=f"exited with status {code}")

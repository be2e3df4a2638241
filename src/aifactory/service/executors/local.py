"""The local executor: each attempt is a sandboxed process tree on this host, under a supervisor.

A job placed on several nodes runs as one process (group) per node, all on this host and
under one supervisor: one job with one handle, which succeeds when every rank exits 0 and
fails, the other ranks stopped, when any fails; a cancel (or the service enforcing a time
limit, which cancels) stops every rank. Each rank is given the launch contract
(:func:`~aifactory.service.executors.base.rank_env`) with ``MASTER_ADDR=127.0.0.1`` and a
port that was free on this host when the job started. Each rank's output goes to the job's
log, line by line, prefixed ``[rank R]`` (a one-node job's as it comes).

Tenant code never runs with the service's privileges. Every rank of a job runs

- as an unprivileged user: ``run_as`` (``--run-as``), by default ``aifactory-job``, which
  ``scripts/setup-job-user.sh`` creates. A service running as root refuses to start the
  local executor without such a user. A service that is not root cannot switch users, so
  its jobs run as its own user; everything below still holds, and Landlock (where the
  kernel has it) is then what keeps them out of the service's files and processes;
- in a working directory of its own, ``<jobs root>/<attempt>/`` (0700, owned by the job's
  user; also its ``HOME`` and ``TMPDIR``; the job's ranks share it, as they would share a
  cluster file system). The jobs root defaults to ``<data dir>-jobs``
  (0711): beside the data directory, not in it, as the data directory is 0700 and the job
  must be able to reach its ``HOME`` by path;
- with a clean environment: ``PATH``, ``HOME``, ``TMPDIR``, ``LANG``, the launch contract's
  variables for its rank (``CONTRACT_ENV``) and what :class:`Launch` ``env`` carries besides
  (which can override none of these, nor add any other ``AIFACTORY_`` variable), and
  nothing of the service's environment (no database URL, no token);
- in its own session, with ``RLIMIT_NOFILE`` (65536) and ``RLIMIT_NPROC`` (8192; the kernel
  counts every process and thread of the job's user, so this bounds all of its jobs
  together) and, where the service may write its cgroup v2 directory, in a cgroup of its
  own, one leaf per rank (``cgroup.kill`` kills every descendant at once). Elsewhere the
  supervisor kills the process groups and every descendant (it is a child subreaper, so a
  daemonised grandchild is still its descendant); the executor says which, once, in its log.

The data directory and everything in it belong to the service: ``<data dir>/`` 0700,
``logs/`` 0700 with logs 0600 (the supervisor writes them; the job only writes into a pipe),
``run/<attempt>/`` 0700 with the supervisor's state. See :mod:`.supervise` for the
supervisor, the sandbox and the claim that makes :meth:`LocalExecutor.find` exact.

Known limits. Landlock has no right for metadata, so a job running as the service's own
user can still change the mode bits and times of the service's files (never open, write,
rename or delete them): prefer a root service with a job user. Command lines are visible to
every local user through ``/proc`` (jobs' and the service's: pass the database URL in
``AIFACTORY_DATABASE_URL``, not ``--database-url``, when it holds a password). Working
directories are kept after the job (nothing prunes them yet).

The handle is JSON with the supervisor's pid and ``/proc`` start time (a recycled pid is
never mistaken for it) and the state directory, whose ``exit.json`` is the source of truth
for how the job ended: a service restarted after ``kill -9`` learns it for jobs it did not
start.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aifactory.service.executors import sandbox, supervise
from aifactory.service.executors.base import (
    CONTRACT_ENV,
    SAFE_NAME,
    ExecutorError,
    Launch,
    RunState,
    Status,
    check_launch,
    rank_env,
    stop_grace,
)
from aifactory.service.executors.supervise import CLAIM, EXIT, JOB, SPEC, SUPERVISOR_LOG, Spec

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("aifactory-data")  # as aifactory.service.db.DEFAULT_DATA_DIR
DEFAULT_JOB_USER = "aifactory-job"
DEFAULT_NOFILE = 65536
DEFAULT_NPROC = 8192
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
KILL_GRACE_S = 5.0
START_TIMEOUT_S = 30.0  # for the supervisor's answer; a loaded host may take seconds
FIND_WAIT_S = 5.0  # for a supervisor that is starting to claim its attempt
SUPERVISE = Path(supervise.__file__).resolve()
# Where rank 0 of a job listens: every node of a local job is this host.
MASTER_ADDR = "127.0.0.1"
# Variables the executor sets itself; Launch.env cannot override them. The only AIFACTORY_*
# variables a job sees are the contract's (no URL, token or database of the service).
_OWN_ENV = frozenset({"PATH", "HOME", "TMPDIR", "LANG"}) | CONTRACT_ENV


class LocalSetupError(ValueError):
    """The local executor cannot be set up safely: no unprivileged user, an unusable data
    directory (a configuration error, reported by ``aifactory serve`` as such)."""


@dataclass(frozen=True, slots=True)
class JobUser:
    """Who jobs run as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    switch: bool  # False: the service is not root and jobs keep its uid


def job_user(run_as: str | None) -> JobUser:
    """The user jobs run as, or LocalSetupError saying why there is none.

    As root: ``run_as`` or ``aifactory-job``, which must exist and must not be root. Not
    as root: the service's own user (``run_as``, if given, must name it: switching users
    needs root).
    """
    euid = os.geteuid()
    if euid != 0:
        me = pwd.getpwuid(euid)
        if run_as not in (None, me.pw_name, str(euid)):
            msg = (
                f"--run-as {run_as}: the service runs as {me.pw_name} (not root) and cannot "
                f"switch users; its jobs run as {me.pw_name}"
            )
            raise LocalSetupError(msg)
        return JobUser(me.pw_name, euid, os.getegid(), tuple(os.getgroups()), switch=False)
    name = run_as or DEFAULT_JOB_USER
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        msg = (
            f"the local executor runs jobs as an unprivileged user and the service runs as "
            f"root, but user '{name}' does not exist: create it with "
            f"scripts/setup-job-user.sh, or name another with --run-as USER"
        )
        raise LocalSetupError(msg) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        msg = f"--run-as {name}: jobs must not run as root or with the root group"
        raise LocalSetupError(msg)
    groups = tuple(g for g in os.getgrouplist(entry.pw_name, entry.pw_gid) if g != 0)
    return JobUser(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, switch=True)


class LocalExecutor:
    """Runs jobs as sandboxed local process trees with ``CUDA_VISIBLE_DEVICES`` set."""

    name = "local"

    def __init__(
        self,
        data_dir: Path = DEFAULT_DATA_DIR,
        *,
        run_as: str | None = None,
        jobs_dir: Path | None = None,
        protect: Sequence[Path] = (),
        nofile: int = DEFAULT_NOFILE,
        nproc: int = DEFAULT_NPROC,
        grace_s: float = KILL_GRACE_S,
    ) -> None:
        """``protect``: more paths jobs must not reach (the SQLite files, when elsewhere)."""
        self.user = job_user(run_as)
        self.data_dir = Path(data_dir).absolute()
        self.logs_dir = self.data_dir / "logs"
        self.run_dir = self.data_dir / "run"
        beside = self.data_dir.with_name(f"{self.data_dir.name}-jobs")
        self.jobs_dir = (jobs_dir or beside).absolute()
        self._rlimits = {"NOFILE": nofile, "NPROC": nproc}
        self._grace_s = grace_s
        try:
            for private in (self.data_dir, self.logs_dir, self.run_dir):
                _own_dir(private, 0o700)
            _own_dir(self.jobs_dir, 0o711)  # jobs pass through to their own directory
        except OSError as exc:
            msg = f"local executor: cannot prepare {self.data_dir}: {exc}"
            raise LocalSetupError(msg) from exc
        self._cgroup, cgroup_why = sandbox.cgroup_base()
        self._landlock = sandbox.landlock_abi()
        hidden = [self.data_dir, self.jobs_dir, *protect]
        home = Path(pwd.getpwuid(os.geteuid()).pw_dir)
        if not self.user.switch and home.is_dir() and home != Path("/"):
            hidden.append(home)  # the service's own files (keys, configuration)
        self._hidden = sorted({os.path.realpath(p) for p in hidden})
        self._describe(cgroup_why)

    def _describe(self, cgroup_why: str) -> None:
        blocked = _unsearchable(self.jobs_dir, self.user)
        if blocked is not None:
            log.warning(
                "local executor: %s cannot pass through %s, so its jobs run in their working "
                "directory but cannot reach $HOME by path; make it searchable (chmod o+x)",
                self.user.name,
                blocked,
            )
        kill = (
            "cancel kills the job's cgroup"
            if self._cgroup
            else f"{cgroup_why}: cancel kills the job's process group and descendants instead"
        )
        log.info(
            "local executor: jobs run as %s (uid %d) in %s; %s; Landlock ABI %d",
            self.user.name,
            self.user.uid,
            self.jobs_dir,
            kill,
            self._landlock,
        )
        if not self.user.switch and self._landlock == 0:
            log.warning(
                "local executor: no Landlock in this kernel and jobs run as the service's own "
                "user %s: they can read and write the service's files; run the service as "
                "root with a job user (scripts/setup-job-user.sh)",
                self.user.name,
            )
        elif not self.user.switch and self._landlock < 6:
            log.warning(
                "local executor: Landlock ABI %d cannot scope signals: jobs running as %s can "
                "signal the service",
                self._landlock,
                self.user.name,
            )

    # -- start -------------------------------------------------------------------------

    def start(self, launch: Launch) -> str:
        """Start the attempt under a supervisor; the handle once the job's command runs.

        Starting an attempt that was already started returns that attempt's handle.
        """
        name = launch.name
        check_launch(launch)
        state = self.run_dir / name
        try:
            fresh = _mkdir_new(state)
            if not fresh:
                handle = self.find(name)
                if handle is not None:
                    return handle
                # find() left an "abandoned" claim: no supervisor ran this attempt, and the
                # one started now is, with any late one, the only claimant left (one wins).
                (state / CLAIM).unlink(missing_ok=True)
        except OSError as exc:
            msg = f"job {launch.job_id}: cannot make {state}: {exc}"
            raise ExecutorError(msg) from exc
        spec = self._spec(launch)
        try:
            launch.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            supervise.write_atomic(state / SPEC, spec.to_json())
            with (state / SUPERVISOR_LOG).open("ab") as errors:
                proc = subprocess.Popen(  # noqa: S603 (our own supervisor, by absolute path)
                    [sys.executable, "-I", "-S", str(SUPERVISE), str(state)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                    cwd="/",
                    start_new_session=True,
                )
        except OSError as exc:
            msg = f"job {launch.job_id}: cannot start its supervisor: {exc}"
            raise ExecutorError(msg) from exc
        answer = _answer(proc)
        if answer.get("ok") is True:
            return _handle(state, answer)
        if answer.get("ok") is False:
            msg = f"job {launch.job_id}: {answer.get('error')}"
            raise ExecutorError(msg)
        handle = self._settle(state)  # no answer: decide through the claim
        if handle is not None:
            return handle
        msg = f"job {launch.job_id}: its supervisor did not start ({_tail(state / SUPERVISOR_LOG)})"
        raise ExecutorError(msg)

    def _spec(self, launch: Launch) -> Spec:
        """The supervisor's orders: the environment the ranks share, and each rank's own."""
        workdir = self.jobs_dir / launch.name
        env = {
            k: v
            for k, v in launch.env.items()
            if k not in _OWN_ENV and not k.startswith("AIFACTORY_")
        }
        env |= {
            "PATH": DEFAULT_PATH,
            "HOME": str(workdir),
            "TMPDIR": str(workdir),  # private temporary files (/tmp is shared)
            "LANG": os.environ.get("LANG") or "C.UTF-8",
        }
        port = _free_port()
        ranks = [rank_env(launch, r, MASTER_ADDR, port) for r in range(launch.world_size)]
        return Spec(
            name=launch.name,
            command=launch.command,
            env=env,
            log=str(launch.log_path.absolute()),
            workdir=str(workdir),
            uid=self.user.uid,
            gid=self.user.gid,
            groups=list(self.user.groups),
            switch_user=self.user.switch,
            rlimits=dict(self._rlimits),
            grace_s=stop_grace(launch, self._grace_s),
            cgroup_base=self._cgroup,
            landlock_abi=self._landlock,
            hidden=self._hidden,
            ranks=ranks,
        )

    # -- find --------------------------------------------------------------------------

    def find(self, name: str) -> str | None:
        """The handle of the attempt started under ``name``; None if none was nor will be.

        ``start`` makes the state directory before anything else, so without it nothing
        ran. With it, the claim decides: a supervisor's claim is the attempt's handle;
        without a claim, a supervisor may still be starting (it is found by its command
        line, which names the state directory) and is given a moment; then ``find``
        claims the attempt as abandoned, and a supervisor coming later gives up.
        """
        if not SAFE_NAME.match(name):
            return None  # start refuses such names: never started
        state = self.run_dir / name
        try:
            if not state.is_dir():
                return None
            deadline = time.monotonic() + FIND_WAIT_S
            while not (state / CLAIM).exists() and time.monotonic() < deadline:
                if not _supervisor_starting(state):
                    break
                time.sleep(0.05)
        except OSError as exc:
            msg = f"local executor: cannot look at {state}: {exc}"
            raise ExecutorError(msg) from exc
        return self._settle(state)

    def _settle(self, state: Path) -> str | None:
        """The claimed attempt's handle, or None after claiming it as abandoned."""
        try:
            won = supervise.claim(state, {"abandoned": True})
        except OSError as exc:
            msg = f"local executor: cannot read the claim in {state}: {exc}"
            raise ExecutorError(msg) from exc
        if "pid" not in won:
            return None
        return _handle(state, won)

    # -- poll and cancel ---------------------------------------------------------------

    def poll(self, handle: str) -> Status:
        """The exit status if recorded; else RUNNING while the supervisor lives; else LOST."""
        parsed = _parse(handle)
        if parsed is None:
            return Status(RunState.LOST, detail=f"unreadable handle {handle!r}")
        pid, started, state = parsed
        if state is None:  # a handle of the earlier wrapper, from before an upgrade
            return _legacy_poll(handle, pid, started)
        done = _outcome(state)
        if done is not None:
            return done
        if supervise.alive(pid, started):
            return Status(RunState.RUNNING)
        done = _outcome(state)  # it may have ended between the two looks
        if done is not None:
            return done
        return Status(RunState.LOST, detail=f"supervisor {pid} is gone and left no exit status")

    def cancel(self, handle: str) -> None:
        """Ask the supervisor to stop the job (SIGTERM, SIGKILL after the grace); idempotent.

        Should the supervisor be gone while the job is not, the job is killed directly.
        """
        parsed = _parse(handle)
        if parsed is None:
            return
        pid, started, state = parsed
        if state is None:
            if supervise.alive(pid, started):
                _signal_group(pid, signal.SIGKILL)
            return
        if (state / EXIT).exists():
            return
        if supervise.alive(pid, started):
            with suppress(ProcessLookupError):
                os.kill(pid, supervise.CANCEL_SIGNAL)
            return
        job = supervise.read_json(state / JOB) or {}
        if job.get("cgroup"):
            sandbox.cgroup_signal(str(job["cgroup"]), signal.SIGKILL)
        ranks = job.get("ranks") or [job]  # one rank in the records of earlier supervisors
        for rank in ranks if isinstance(ranks, list) else []:
            with suppress(AttributeError, TypeError, ValueError):
                if supervise.alive(int(rank.get("pid", 0)), str(rank.get("start", ""))):
                    _signal_group(int(rank["pid"]), signal.SIGKILL)


# -- helpers ------------------------------------------------------------------------------


def _mkdir_new(path: Path) -> bool:
    """Make ``path`` (0700); False if it was already there."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return False
    return True


def _own_dir(path: Path, mode: int) -> None:
    """``path`` as a directory of this user with exactly ``mode`` (tightened if looser)."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        msg = f"{path} is not a directory"
        raise NotADirectoryError(msg)
    if st.st_uid != os.geteuid():
        msg = f"{path} belongs to uid {st.st_uid}, not to the service (uid {os.geteuid()})"
        raise PermissionError(msg)
    if stat.S_IMODE(st.st_mode) != mode:
        path.chmod(mode)


def _unsearchable(path: Path, user: JobUser) -> Path | None:
    """The first directory on the way to ``path`` that ``user`` may not pass through."""
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        if st.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.gid or st.st_gid in user.groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit and user.uid != 0:
            return directory
    return None


def _answer(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The supervisor's one-line answer ({} if it died or stayed silent too long)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        proc.stdout.close()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)  # the parent that detached the supervisor exits at once
    try:
        answer = json.loads(buf.split(b"\n", 1)[0])
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _handle(state: Path, record: dict[str, Any]) -> str:
    return json.dumps({"pid": int(record["pid"]), "start": str(record["start"]), "run": str(state)})


def _parse(handle: str) -> tuple[int, str, Path | None] | None:
    try:
        info = json.loads(handle)
        pid, started = int(info["pid"]), str(info["start"])
        state = Path(info["run"]) if "run" in info else None
        if state is None and "exit" not in info:
            return None
    except (ValueError, KeyError, TypeError):
        return None
    return pid, started, state


def _outcome(state: Path) -> Status | None:
    """How the job ended, from the supervisor's ``exit.json``; None while it runs.

    A multi-node job's status is that of its first rank to fail, which the detail names.
    """
    done = supervise.read_json(state / EXIT)
    if done is None:
        return None
    if done.get("cancelled"):
        return Status(RunState.CANCELLED, detail="cancelled")
    if "error" in done:
        return Status(RunState.FAILED, detail=str(done["error"]))
    who = f"rank {done['rank']} " if "rank" in done else ""
    if "signal" in done:
        sig = int(done["signal"])
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return Status(RunState.FAILED, exit_code=128 + sig, detail=f"{who}killed by {name}")
    code = int(done.get("code", -1))
    if code == 0:
        return Status(RunState.COMPLETED, exit_code=0)
    return Status(RunState.FAILED, exit_code=code, detail=f"{who}exited with status {code}")


def _free_port() -> int:
    """A TCP port free on this host now, for a job's rendezvous (``MASTER_PORT``).

    The kernel picks it from the ephemeral range. Another process could still take it before
    rank 0 listens, as with any launcher that picks a port for its trainer: the job's
    rendezvous then fails (a trainer's own rendezvous checks whom it meets, as the tests'
    program does with the job id).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((MASTER_ADDR, 0))
        return int(probe.getsockname()[1])


def _supervisor_starting(state: Path) -> bool:
    """Whether a supervisor of this state directory runs (found by its command line)."""
    marker = f"{SUPERVISE}\0{state}\0".encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with suppress(OSError):
                if (proc / "cmdline").read_bytes().endswith(marker):
                    return True
    return False


def _tail(path: Path, limit: int = 400) -> str:
    try:
        text = path.read_bytes()[-limit:].decode(errors="replace").strip()
    except OSError:
        return "no supervisor log"
    return text.replace("\n", " | ") or "no output"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        log.debug("process group %d already gone", pid)


def _legacy_poll(handle: str, pid: int, started: str) -> Status:
    """A handle of the earlier ``sh`` wrapper: its exit file, else whether it still runs."""
    exit_file = Path(json.loads(handle)["exit"])
    for _ in range(2):  # before and after the liveness look: it may end in between
        try:
            raw = exit_file.read_text().strip()
        except OSError:
            raw = None
        if raw is not None:
            if raw == "0":
                return Status(RunState.COMPLETED, exit_code=0)
            code = int(raw) if raw.lstrip("-").isdigit() else None
            return Status(RunState.FAILED, exit_code=code, detail=f"exited with status {raw}")
        if supervise.alive(pid, started):
            return Status(RunState.RUNNING)
    return Status(RunState.LOST, detail=f"process {pid} is gone and left no exit status")

"""The per-job supervisor: the only process with the service's privileges that stays with a job.

The local executor starts one supervisor per attempt, as
``python -I -S supervise.py <state dir>``: by path, standard library only, so it starts in
about 20 ms and 10 MB and no environment variable or site package can change what it
runs. It detaches (its own session, reparented away from the service), so it outlives a
service killed with ``kill -9`` just as the jobs do. It then

1. claims the attempt (see "At most once" below), recording its pid and start time;
2. opens the job's log (``O_NOFOLLOW``, 0600, owned by the service) and makes the job's
   working directory (0700, owned by the job's user);
3. forks the job: a new session, stdout and stderr on a pipe, stdin ``/dev/null``,
   resource limits, a cgroup of its own where cgroup v2 is writable, the job user's uid,
   gid and groups, ``no_new_privs`` and a Landlock domain (below), a clean environment,
   then ``exec /bin/sh -c <command>``;
4. copies the pipe into the log while the job runs; when the command ends, kills whatever
   it left behind (the cgroup, else every descendant: the supervisor is a child subreaper,
   so even a daemonised grandchild is reparented to it) and only then writes the exit
   status, atomically, into the state directory.

The state directory (``<data dir>/run/<attempt name>/``) and the logs belong to the service
(0700 directories, 0600 files), so the job can neither forge ``exit.json`` nor replace or
read a log: it holds only the write end of its output pipe (which it owns, so reopening
``/dev/stderr`` still works). Cancel is a SIGUSR1 to the supervisor, which passes SIGTERM
on to the whole job and SIGKILL after the grace period, even if the service has died since.
A plain SIGTERM to the supervisor (a host shutting down) stops the job the same way but
records what the job did, not a cancel.

Landlock confines the job when the kernel has it (5.13+; signal scoping 6.12+). It is what
protects the service when the service is not root and the job therefore runs as the same
user: the job may read the file system except the service's data directory, the jobs
root (but for its own working directory), the SQLite files and the service user's home,
may write only its working directory, ``/tmp``, ``/var/tmp``, ``/dev/shm`` and device
files, and may not signal or ptrace any process outside its own job (so neither read the service's
environment or fds through ``/proc``). With a job user it also keeps jobs of that one user
out of each other's working directories and processes. Landlock does not cover metadata:
chmod and utimes by path stay possible wherever Unix permissions allow them.

At most once. ``find`` must answer "was this attempt ever started?" after a crash at any
point, so every attempt has one token: the file ``claim``, made with ``link()`` of a
complete temporary file, which is atomic and fails if the name exists. A supervisor claims
(writing its pid and start time) before it forks the job and runs the job only if its
claim won; ``find`` claims ``{"abandoned": true}`` for an attempt nobody claimed, after
waiting for a supervisor still starting. Whoever links first decides; a supervisor that
loses exits without running anything. So an attempt runs at most once, and ``find``
answers None only when no supervisor ran it nor ever will.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import stat
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

SPEC = "spec.json"
CLAIM = "claim"
JOB = "job.json"
EXIT = "exit.json"
SUPERVISOR_LOG = "supervisor.log"
# How long the supervisor waits for what a job left behind to die after SIGKILL before it
# writes the exit status anyway (a process stuck in uninterruptible sleep cannot be waited).
REAP_WAIT_S = 5.0
RLIMITS = {"NPROC": resource.RLIMIT_NPROC, "NOFILE": resource.RLIMIT_NOFILE}
CANCEL_SIGNAL = signal.SIGUSR1  # the executor's "cancel": stop the job, record it cancelled

# Linux ABI numbers: prctl options and the Landlock system calls (the same number on every
# architecture, as they were added after the syscall tables were unified).
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_CHILD_SUBREAPER = 36
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_LANDLOCK_SCOPE_SIGNAL = 1 << 1  # ABI 6
# File-system access rights (ABI 1 has bits 0-12, REFER is ABI 2, TRUNCATE ABI 3). IOCTL_DEV
# (ABI 5) is left unhandled so that GPU drivers' ioctls are never refused.
_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_ABI1 = (1 << 13) - 1
_FS_REFER = 1 << 13
_FS_TRUNCATE = 1 << 14
_FS_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
_FS_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE
_FS_DEVICES = _FS_READ | _FS_WRITE_FILE | _FS_TRUNCATE
# Where any job may write besides its working directory (less whatever is hidden).
WRITABLE_ROOTS = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108 (granted to jobs, not used here)


@dataclass(frozen=True, slots=True)
class Spec:
    """What the executor asks the supervisor to run (``spec.json`` in the state directory)."""

    name: str  # the attempt's name, aif-<job>-<attempt>
    command: str
    env: dict[str, str]  # the job's whole environment
    log: str
    workdir: str
    uid: int
    gid: int
    groups: list[int]
    switch_user: bool  # False: the service is not root, the job keeps its uid
    rlimits: dict[str, int]  # RLIMITS name -> soft and hard limit
    grace_s: float
    cgroup_base: str | None = None  # where to make the job's cgroup; None: process tree
    landlock_abi: int = 0  # 0: no Landlock domain
    hidden: list[str] = field(default_factory=list)  # canonical paths the job must not reach

    def to_json(self) -> str:
        """The spec as one JSON document."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Spec:
        """The spec written by :meth:`to_json`."""
        return cls(**json.loads(text))


# -- shared with the executor --------------------------------------------------------------


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot; None if gone or a zombie."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has finished: it is not running
        return None
    return fields[19]


def alive(pid: int, started: str) -> bool:
    """Whether ``pid`` is still the very process that started at ``started``."""
    return bool(started) and start_time(pid) == started


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None if it is missing or not a complete object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees all of it or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def claim(state: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Claim the attempt for ``record``; return the winning record (``record`` if it won).

    ``link()`` of a complete file is atomic and fails if ``claim`` exists, so exactly one
    claimant ever wins and every reader sees a whole record.
    """
    tmp = state / f".claim.{os.getpid()}.{time.monotonic_ns()}"
    tmp.write_text(json.dumps(record))
    try:
        os.link(tmp, state / CLAIM)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    for _ in range(100):  # the winner's file is complete when linked; a read can only race
        won = read_json(state / CLAIM)  # with nothing, but be patient with a slow disk
        if won is not None:
            return won
        time.sleep(0.01)
    msg = f"{state / CLAIM} is unreadable"
    raise OSError(msg)


def cgroup_base() -> tuple[str | None, str]:
    """Where per-job cgroups can be made (this process's cgroup v2 directory), and why not.

    cgroup v2 is found in ``/proc/self/mountinfo`` (``/sys/fs/cgroup`` on a unified host,
    ``/sys/fs/cgroup/unified`` on a hybrid one); it is usable when this user may write the
    directory and its ``cgroup.procs`` (root, or a delegated subtree such as a systemd
    unit with ``Delegate=yes``).
    """
    mount = root = None
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            parts = line.split()
            sep = parts.index("-")
            if parts[sep + 1] == "cgroup2":
                root, mount = parts[3], parts[4].replace("\\040", " ")
                break
        cgroups = Path("/proc/self/cgroup").read_text().splitlines()
        own = next((ln[3:].strip() for ln in cgroups if ln.startswith("0::")), None)
    except (OSError, ValueError):
        return None, "cannot read /proc/self/mountinfo or /proc/self/cgroup"
    if mount is None or root is None or own is None:
        return None, "no cgroup v2 hierarchy is mounted"
    if root != "/":
        if not own.startswith(root):
            return None, f"this process's cgroup {own} is outside the mounted {root}"
        own = own[len(root) :] or "/"
    base = os.path.normpath(mount + own)
    if not os.access(base, os.W_OK) or not os.access(f"{base}/cgroup.procs", os.W_OK):
        return None, f"cgroup v2 at {base} is not writable by uid {os.geteuid()}"
    return base, f"cgroup v2 at {base}"


# -- Landlock --------------------------------------------------------------------------------


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _syscall(*args: Any) -> int:
    rc = int(_libc().syscall(*args))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is missing or disabled."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        return _syscall(
            ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET),
            None,
            ctypes.c_size_t(0),
            ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
        )
    except OSError:
        return 0


def _handled(abi: int) -> int:
    rights = _FS_ABI1
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    return rights


def _within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


class _Ruleset:
    """A Landlock ruleset being built: what a job may do, everything else refused."""

    def __init__(self, abi: int, hidden: list[str]) -> None:
        self.handled = _handled(abi)
        self.hidden = hidden
        attr = _RulesetAttr(self.handled, 0, _LANDLOCK_SCOPE_SIGNAL if abi >= 6 else 0)
        size = 24 if abi >= 6 else 16 if abi >= 4 else 8
        self.fd = _syscall(
            ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET),
            ctypes.byref(attr),
            ctypes.c_size_t(size),
            ctypes.c_uint32(0),
        )

    def allow(self, path: str, rights: int) -> None:
        """Allow ``rights`` beneath ``path`` (no questions asked: the job's own directory)."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        try:
            self._add(fd, rights)
        finally:
            os.close(fd)

    def grant(self, path: str, rights: int) -> None:
        """Allow ``rights`` beneath ``path`` except beneath the hidden paths.

        Landlock only allows, so a directory that holds a hidden path gets no rule itself:
        each of its entries is granted instead, recursively, all but the way to the hidden
        path. Decisions are made on the path of the opened fd (``/proc/self/fd``), not on
        the name, so a symlink can never smuggle a hidden path into a rule.
        """
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return  # gone, dangling or not reachable: nothing to allow
        try:
            real = str(Path(f"/proc/self/fd/{fd}").readlink())
            if any(_within(real, h) for h in self.hidden):
                return
            if any(_within(h, real) for h in self.hidden):
                if real != os.path.normpath(path):
                    return  # reached through a link: its real place is walked in its turn
                with os.scandir(real) as entries:
                    names = [e.name for e in entries]
                for name in names:
                    self.grant(f"{real.rstrip('/')}/{name}", rights)
                return
            self._add(fd, rights)
        except OSError:
            return
        finally:
            os.close(fd)

    def _add(self, fd: int, rights: int) -> None:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= _FS_FILE_ONLY
        rights &= self.handled
        if not rights:
            return
        attr = _PathBeneathAttr(rights, fd)
        _syscall(
            ctypes.c_long(_SYS_LANDLOCK_ADD_RULE),
            ctypes.c_int(self.fd),
            ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
            ctypes.byref(attr),
            ctypes.c_uint32(0),
        )


def job_ruleset(spec: Spec) -> int:
    """The fd of the Landlock ruleset for ``spec``'s job; -1 without Landlock."""
    if spec.landlock_abi <= 0:
        return -1
    rules = _Ruleset(spec.landlock_abi, spec.hidden)
    everything = rules.handled
    rules.grant("/", _FS_READ)
    rules.grant("/dev", _FS_DEVICES)
    for root in WRITABLE_ROOTS:
        rules.grant(root, everything)
    rules.allow(spec.workdir, everything)
    return rules.fd


# -- killing a whole job -----------------------------------------------------------------------


def descendants(root: int) -> list[int]:
    """Every living descendant of ``root``, from a scan of ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            line = (entry / "stat").read_text()
        except OSError:
            continue
        rest = line[line.rindex(")") + 2 :].split()
        if rest[0] != "Z":
            children.setdefault(int(rest[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def cgroup_signal(cgroup: str, sig: int) -> None:
    """Send ``sig`` to every process of a cgroup (SIGKILL through ``cgroup.kill``: atomic)."""
    kill_file = Path(cgroup, "cgroup.kill")
    if sig == signal.SIGKILL and kill_file.exists():
        with contextlib.suppress(OSError):
            kill_file.write_text("1")
        return
    try:
        pids = [int(p) for p in Path(cgroup, "cgroup.procs").read_text().split()]
    except OSError:
        return
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


# -- the supervisor ------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor {os.getpid()}: {msg}", file=sys.stderr)
    sys.stderr.flush()


class Supervisor:
    """One attempt: claim, start, relay the output, stop on request, record how it ended."""

    def __init__(self, state: Path, wake_r: int) -> None:
        self.state = state
        self.wake_r = wake_r  # readable when a signal arrived (``signal.set_wakeup_fd``)
        self.spec = Spec.from_json((state / SPEC).read_text())
        self.job_pid = 0
        self.cgroup: str | None = None
        self.cancelled = False
        self.stopping = False
        self.reaped = False
        self.log_failed = False
        self.log_fd = -1
        self.out_r = -1  # the read end of the job's stdout and stderr

    def run(self) -> int:
        """Supervise the attempt; the process's exit code."""
        record = {"pid": os.getpid(), "start": start_time(os.getpid()) or ""}
        won = claim(self.state, record)
        if won != record:
            _tell({"lost": True, "claim": won})
            return 0
        try:
            self._start()
        except Exception as exc:  # noqa: BLE001 (whatever failed, the attempt has failed)
            why = f"cannot start: {exc}"
            _log(why)
            self._finish({"error": why})
            _tell({"ok": False, "error": why})
            return 1
        _tell({"ok": True, **record, "cgroup": self.cgroup})
        self._finish(self._watch())
        return 0

    def stop(self, *, cancelled: bool) -> None:
        """SIGTERM to the whole job now, SIGKILL after the grace period (idempotent).

        ``cancelled``: the executor asked (SIGUSR1), and the exit status says so. A plain
        SIGTERM (the host shutting down, an operator) stops the job the same way, but its
        status is then what the job really did.
        """
        self.cancelled |= cancelled
        if self.stopping:
            return
        self.stopping = True
        if self.job_pid:
            self.kill(signal.SIGTERM)
            signal.setitimer(signal.ITIMER_REAL, max(self.spec.grace_s, 0.001))

    def kill(self, sig: int) -> None:
        """Send ``sig`` to every process of the job: its cgroup, group and descendants."""
        if self.cgroup is not None:
            cgroup_signal(self.cgroup, sig)
        if self.job_pid and not self.reaped:  # an unreaped leader keeps its group id
            with contextlib.suppress(OSError):
                os.killpg(self.job_pid, sig)
        for pid in descendants(os.getpid()):
            with contextlib.suppress(OSError):
                os.kill(pid, sig)

    def _start(self) -> None:
        spec = self.spec
        self.log_fd = os.open(
            spec.log,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
        if not stat.S_ISREG(os.fstat(self.log_fd).st_mode):
            msg = f"log {spec.log} is not a regular file"
            raise OSError(msg)
        _make_workdir(spec)
        ruleset = job_ruleset(spec)
        if spec.cgroup_base is not None:
            self.cgroup = _make_cgroup(spec.cgroup_base, f"{spec.name}.{os.getpid()}")
        # The job writes into a pipe that this process copies into the log: the log file
        # stays out of the job's reach (no fd of it, no way to reopen it), while the job can
        # still reopen /dev/stdout or /dev/stderr, whose pipe it owns.
        self.out_r, out_w = os.pipe2(os.O_CLOEXEC)
        if spec.switch_user:
            os.fchown(out_w, spec.uid, spec.gid)
        go_r, go_w = os.pipe()
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # the job, until exec
            os.close(go_w)
            os.close(err_r)
            _exec_job(spec, out_w, go_r, err_w, ruleset, os.getppid())
        for fd in (go_r, err_w, out_w, ruleset):
            if fd >= 0:
                os.close(fd)
        self.job_pid = pid
        if self.cgroup is not None:
            try:
                Path(self.cgroup, "cgroup.procs").write_text(str(pid))
            except OSError as exc:
                _log(f"cannot move the job into {self.cgroup} ({exc}): process tree instead")
                _remove_cgroup(self.cgroup)
                self.cgroup = None
        os.write(go_w, b"g")
        os.close(go_w)
        error = b""
        while chunk := os.read(err_r, 4096):
            error += chunk
        os.close(err_r)
        if error:  # the job never ran its command
            os.waitpid(pid, 0)
            self.reaped = True
            raise OSError(error.decode(errors="replace"))
        job = {"pid": pid, "start": start_time(pid) or "", "cgroup": self.cgroup}
        try:
            write_atomic(self.state / JOB, json.dumps(job))
        except OSError as exc:  # only cancel's fallback reads it; the job runs regardless
            _log(f"cannot record the job's pid: {exc}")
        if self.stopping:  # asked before the job existed
            self.stopping = False
            self.stop(cancelled=self.cancelled)

    def _watch(self) -> dict[str, Any]:
        """Relay output until the job's command ends; kill what it left; how it ended."""
        watched = [self.out_r, self.wake_r]
        while True:
            info = self._reap_orphans()
            if info is not None:
                break
            ready, _, _ = select.select(watched, [], [], 1.0)
            if self.wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 4096)
            if self.out_r in ready and not self._relay():
                watched = [self.wake_r]  # every writer closed its output; the job may go on
        self.kill(signal.SIGKILL)  # the command ended: nothing of it may stay behind
        os.waitpid(self.job_pid, 0)  # only now: until here the zombie held the group id
        self.reaped = True
        self._reap_all()
        signal.setitimer(signal.ITIMER_REAL, 0)
        os.set_blocking(self.out_r, False)
        with contextlib.suppress(BlockingIOError):
            while self._relay():
                pass
        if info.si_code == os.CLD_EXITED:
            return {"code": info.si_status}
        return {"signal": info.si_status}

    def _reap_orphans(self) -> Any:
        """Reap descendants reparented here; the job's exit (left unreaped) or None."""
        while True:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is None or info.si_pid == 0:
                return None
            if info.si_pid == self.job_pid:
                return info
            os.waitpid(info.si_pid, 0)

    def _relay(self) -> bool:
        """Copy what the job wrote into the log; False at end of file.

        A log that cannot be written (a full disk) loses output, never the job: the pipe
        is still drained so that the job does not block on it.
        """
        chunk = os.read(self.out_r, 65536)
        view = memoryview(chunk)
        while view and not self.log_failed:
            try:
                view = view[os.write(self.log_fd, view) :]
            except OSError as exc:
                self.log_failed = True
                _log(f"cannot write the log {self.spec.log} ({exc}): output dropped")
        return bool(chunk)

    def _reap_all(self) -> None:
        deadline = time.monotonic() + REAP_WAIT_S
        while time.monotonic() < deadline:
            try:
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
            except ChildProcessError:  # no child left: every descendant is gone
                if self.cgroup is None or not _cgroup_populated(self.cgroup):
                    return
            self.kill(signal.SIGKILL)
            time.sleep(0.02)
        _log(f"processes of the job outlived SIGKILL for {REAP_WAIT_S:g} s")

    def _finish(self, outcome: dict[str, Any]) -> None:
        outcome["cancelled"] = self.cancelled
        write_atomic(self.state / EXIT, json.dumps(outcome))
        if self.cgroup is not None:
            _remove_cgroup(self.cgroup)


def _tell(msg: dict[str, Any]) -> None:
    """The one-line answer to the executor waiting in ``start`` (it may have died since)."""
    try:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()
    except OSError:
        pass
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _make_workdir(spec: Spec) -> None:
    """The job's working directory: 0700, owned by the job's user, never a link."""
    workdir = Path(spec.workdir)
    with contextlib.suppress(FileExistsError):
        workdir.mkdir(0o700)
    if not stat.S_ISDIR(workdir.lstat().st_mode):
        msg = f"working directory {workdir} is not a directory"
        raise OSError(msg)
    if spec.switch_user:
        os.chown(workdir, spec.uid, spec.gid, follow_symlinks=False)
    workdir.chmod(0o700)


def _make_cgroup(base: str, name: str) -> str | None:
    path = Path(base, "aifactory-jobs", name)
    try:
        path.parent.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.rmdir()  # a stale one of an earlier supervisor with this pid
        path.mkdir()
    except OSError as exc:
        _log(f"cannot make cgroup {path} ({exc}): the job's process tree is killed instead")
        return None
    return str(path)


def _cgroup_populated(cgroup: str) -> bool:
    try:
        return bool(Path(cgroup, "cgroup.procs").read_text().strip())
    except OSError:
        return False


def _remove_cgroup(cgroup: str) -> None:
    try:
        Path(cgroup).rmdir()
    except OSError as exc:
        _log(f"cannot remove cgroup {cgroup}: {exc}")


def _prctl(option: int, value: int) -> None:
    if _libc().prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def _exec_job(spec: Spec, out_w: int, go_r: int, err_w: int, ruleset: int, parent: int) -> NoReturn:
    """In the forked child: become the job and exec its command; never returns.

    Every step that fails is reported on ``err_w`` (closed by a successful exec) and ends
    the child with 127, so the supervisor knows whether the command ever ran.
    """
    step = "wait for the cgroup"
    try:
        signal.set_wakeup_fd(-1)  # the supervisor's: about to be closed
        if os.read(go_r, 1) != b"g":  # the supervisor gave up (or died): run nothing
            os._exit(127)
        os.close(go_r)
        step = "new session"
        os.setsid()
        step = "standard streams"
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        step = f"chdir {spec.workdir}"
        os.chdir(spec.workdir)
        step = "resource limits"
        for name, wanted in spec.rlimits.items():
            _, hard = resource.getrlimit(RLIMITS[name])
            value = wanted  # never above the supervisor's own hard limit: even root may
            if hard != resource.RLIM_INFINITY:  # lack CAP_SYS_RESOURCE (in a container)
                value = min(wanted, hard)
            resource.setrlimit(RLIMITS[name], (value, value))
        if spec.switch_user:
            step = f"switch to uid {spec.uid}"
            os.setgroups(spec.groups)
            os.setresgid(spec.gid, spec.gid, spec.gid)
            os.setresuid(spec.uid, spec.uid, spec.uid)
            if os.getresuid() != (spec.uid,) * 3 or os.getresgid() != (spec.gid,) * 3:
                msg = "credentials did not change"
                raise OSError(msg)
        step = "parent-death signal"
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
        if os.getppid() != parent:
            msg = "the supervisor died"
            raise OSError(msg)
        step = "no_new_privs"
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
        if ruleset >= 0:
            step = "Landlock"
            restrict = ctypes.c_long(_SYS_LANDLOCK_RESTRICT_SELF)
            _syscall(restrict, ctypes.c_int(ruleset), ctypes.c_uint32(0))
        step = "signals"
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)  # Python ignores SIGPIPE; the job must not
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        step = "close inherited files"
        os.closerange(3, err_w)
        os.closerange(err_w + 1, 1 << 16)
        step = "exec /bin/sh"
        os.execve("/bin/sh", ["sh", "-c", spec.command], spec.env)  # noqa: S606 (the job)
    except BaseException as exc:  # noqa: BLE001 (the child must never return into Python)
        with contextlib.suppress(OSError):
            os.write(err_w, f"{step}: {exc}".encode())
    os._exit(127)


def main(argv: list[str]) -> int:
    """``supervise.py <state dir>``: detach, then supervise that attempt."""
    if len(argv) != 2:
        print("usage: supervise.py <state dir>", file=sys.stderr)
        return 2
    state = Path(argv[1])
    sup: Supervisor | None = None

    def on_cancel(_sig: int, _frame: object) -> None:
        if sup is not None:
            sup.stop(cancelled=True)

    def on_term(_sig: int, _frame: object) -> None:
        if sup is not None:
            sup.stop(cancelled=False)

    def on_alarm(_sig: int, _frame: object) -> None:
        if sup is not None:
            sup.kill(signal.SIGKILL)

    signal.signal(CANCEL_SIGNAL, on_cancel)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)  # only to wake the select
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    if os.fork():  # detach: the service reaps this parent at once; init (or a subreaper)
        os._exit(0)  # inherits the supervisor, which outlives the service
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    sup = Supervisor(state, wake_r)
    return sup.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))

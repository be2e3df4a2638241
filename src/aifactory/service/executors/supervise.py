"""The per-job supervisor: the only process with the service's privileges that stays with a job.

The local executor starts one supervisor per attempt, as
``python -I -S supervise.py <state dir>``: by path, standard library only, so it starts in
about 20 ms and 10 MB and no environment variable or site package can change what it
runs. It detaches (its own session, reparented away from the service), so it outlives a
service killed with ``kill -9`` just as the jobs do. It then

1. claims the attempt (see "At most once" below), recording its pid and start time;
2. opens the job's log (``O_NOFOLLOW``, 0600, owned by the service) and makes the job's
   working directory (0700, owned by the job's user);
3. forks one process per node rank of the job (one for a one-node job; all nodes of a local
   job are this host), each with a new session, stdout and stderr on a pipe of its own,
   stdin ``/dev/null``, resource limits, a cgroup of its own within the job's where cgroup
   v2 is writable, the job user's uid, gid and groups, ``no_new_privs``, a Landlock domain
   (below) and a clean environment with that rank's launch-contract variables. Every rank
   is set up before any runs: only when all are ready does each ``exec /bin/sh -c
   <command>``, so that a rank that cannot be set up fails the start before the command
   ran anywhere;
4. copies the pipes into the log while the ranks run (a multi-node job's lines prefixed
   ``[rank R]``). A rank whose command ends has whatever it left behind killed (its cgroup
   and process group). The job ends when every rank has ended; the first rank that fails
   (non-zero status or a signal) fails the job and the others are stopped at once as a
   cancel stops them. Then whatever is left is killed (the cgroups, else every descendant:
   the supervisor is a child subreaper, so even a daemonised grandchild is reparented to
   it) and only then is the exit status written, atomically, into the state directory:
   the failing rank's, or 0 when every rank exited 0.

The state directory (``<data dir>/run/<attempt name>/``) and the logs belong to the service
(0700 directories, 0600 files), so the job can neither forge ``exit.json`` nor replace or
read a log: it holds only the write ends of its output pipes (which it owns, so reopening
``/dev/stderr`` still works). Cancel is a SIGUSR1 to the supervisor, which passes SIGTERM
on to every rank and SIGKILL after the grace period, even if the service has died since.
A plain SIGTERM to the supervisor (a host shutting down) stops the job the same way but
records what the job did, not a cancel.

Landlock (:mod:`.sandbox`) confines the job when the kernel has it (5.13+; signal scoping
6.12+). It is what protects the service when the service is not root and the job therefore
runs as the same user: the job may read the file system except the service's data
directory, the jobs root (but for its own working directory), the SQLite files and the
service user's home, may write only its working directory (shared by its ranks, as a
shared file system is on a real cluster), ``/tmp``, ``/var/tmp``, ``/dev/shm`` and device
files, and may not signal or ptrace any process outside its own rank (so neither read the
service's environment or fds through ``/proc``). With a job user it also keeps jobs of that
one user out of each other's working directories and processes. Landlock does not cover
metadata: chmod and utimes by path stay possible wherever Unix permissions allow them.
Network access is not restricted: the ranks meet over TCP.

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

if __package__:
    from aifactory.service.executors import sandbox
else:  # run by path in isolated mode (-I -S), where no package can be imported: the
    # sandbox module is loaded from its file beside this one, never looked up on sys.path
    import importlib.util

    _BESIDE = importlib.util.spec_from_file_location(
        "aifactory_sandbox", Path(__file__).with_name("sandbox.py")
    )
    if _BESIDE is None or _BESIDE.loader is None:
        raise ImportError("sandbox.py is missing beside supervise.py")
    sandbox = importlib.util.module_from_spec(_BESIDE)
    _BESIDE.loader.exec_module(sandbox)

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
# A rank's output is logged a line at a time; a longer line is cut at this length so that
# a rank writing no newline cannot grow the supervisor's memory.
MAX_LINE = 65536
# What a rank writes on its error pipe once it is set up and waits for the go (an error
# report is text that never starts with a NUL byte).
_READY = b"\0"


@dataclass(frozen=True, slots=True)
class Spec:
    """What the executor asks the supervisor to run (``spec.json`` in the state directory)."""

    name: str  # the attempt's name, aif-<job>-<attempt>
    command: str
    env: dict[str, str]  # the environment every rank shares
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
    # One entry per node rank, in rank order: that rank's own variables (the launch
    # contract's), laid over ``env``. Empty: one rank with ``env`` alone.
    ranks: list[dict[str, str]] = field(default_factory=list)

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


# -- the supervisor ------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor {os.getpid()}: {msg}", file=sys.stderr)
    sys.stderr.flush()


@dataclass(slots=True)
class _Rank:
    """One node rank of the job: its process, its output and how it ended."""

    index: int
    env: dict[str, str]  # the job's whole environment for this rank
    cgroup: str | None = None  # its leaf in the job's cgroup
    pid: int = 0  # the rank's leader (its session and process group)
    reaped: bool = False  # once reaped, its pid and group id may belong to another process
    out_r: int = -1  # the read end of its stdout and stderr
    writing: bool = True  # the pipe still has a writer
    partial: bytes = b""  # the start of a line whose end has not come yet
    ended: dict[str, int] | None = None  # {"code": status} or {"signal": number}

    @property
    def failed(self) -> bool:
        return self.ended is not None and self.ended != {"code": 0}


class Supervisor:
    """One attempt: claim, start every rank, relay the output, stop on request or when a rank
    fails, record how it ended."""

    def __init__(self, state: Path, wake_r: int) -> None:
        self.state = state
        self.wake_r = wake_r  # readable when a signal arrived (``signal.set_wakeup_fd``)
        self.spec = Spec.from_json((state / SPEC).read_text())
        self.ranks = [_Rank(i, self.spec.env | extra) for i, extra in enumerate(self.spec.ranks)]
        if not self.ranks:
            self.ranks = [_Rank(0, dict(self.spec.env))]
        self.tagged = len(self.ranks) > 1  # a multi-node job's log lines name their rank
        self.cgroup: str | None = None  # the job's; the ranks' leaves are in it
        self.started = False
        self.cancelled = False
        self.stopping = False
        self.first_failed: _Rank | None = None
        self.log_failed = False
        self.log_fd = -1

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
        """SIGTERM to every rank now, SIGKILL after the grace period (idempotent).

        ``cancelled``: the executor asked (SIGUSR1), and the exit status says so. A plain
        SIGTERM (the host shutting down, an operator) or a failed rank stops the job the
        same way, but its status is then what the job really did.
        """
        self.cancelled |= cancelled
        if self.stopping:
            return
        self.stopping = True
        if self.started:
            self.kill(signal.SIGTERM)
            signal.setitimer(signal.ITIMER_REAL, max(self.spec.grace_s, 0.001))

    def kill(self, sig: int) -> None:
        """Send ``sig`` to every process of the job: its cgroups, groups and descendants."""
        for rank in self.ranks:
            self._kill_rank(rank, sig)
        for pid in sandbox.descendants(os.getpid()):
            with contextlib.suppress(OSError):
                os.kill(pid, sig)

    def _kill_rank(self, rank: _Rank, sig: int) -> None:
        if rank.cgroup is not None:
            sandbox.cgroup_signal(rank.cgroup, sig)
        if rank.pid and not rank.reaped:  # an unreaped leader keeps its group id
            with contextlib.suppress(OSError):
                os.killpg(rank.pid, sig)

    # -- start -------------------------------------------------------------------------

    def _start(self) -> None:
        """Start every rank, or none: OSError (every rank killed) if any cannot be set up."""
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
        if spec.cgroup_base is not None:
            try:
                name = f"{spec.name}.{os.getpid()}"
                self.cgroup, leaves = sandbox.make_cgroup(spec.cgroup_base, name, len(self.ranks))
            except OSError as exc:
                _log(f"cannot make the job's cgroup ({exc}): its process tree is killed instead")
            else:
                for rank, leaf in zip(self.ranks, leaves, strict=True):
                    rank.cgroup = leaf
        ruleset = sandbox.job_ruleset(spec.landlock_abi, spec.hidden, spec.workdir)
        gates: list[tuple[int, int]] = []  # per rank: the write end of its go pipe, its errors
        problems: list[str] = []
        try:
            try:
                for rank in self.ranks:
                    gates.append(self._fork(rank, ruleset, [fd for g in gates for fd in g]))
            except OSError as exc:
                problems.append(self._problem(self.ranks[len(gates)], f"fork: {exc}".encode()))
            finally:
                if ruleset >= 0:
                    os.close(ruleset)
            if not problems:
                self._join_cgroups()
                problems = self._go(gates)
        except BaseException:
            self._abort()  # no rank may outlive a start that failed
            raise
        finally:
            for go_w, err_r in gates:
                os.close(go_w)  # a rank still waiting for the go ends (end of file)
                os.close(err_r)
        if problems:
            self._abort()
            raise OSError("; ".join(problems))
        self.started = True
        ranks = [{"pid": r.pid, "start": start_time(r.pid) or ""} for r in self.ranks]
        job = {**ranks[0], "cgroup": self.cgroup, "ranks": ranks}
        try:
            write_atomic(self.state / JOB, json.dumps(job))
        except OSError as exc:  # only cancel's fallback reads it; the job runs regardless
            _log(f"cannot record the job's pids: {exc}")
        if self.stopping:  # asked before the job existed
            self.stopping = False
            self.stop(cancelled=self.cancelled)

    def _abort(self) -> None:
        """Kill and reap every rank forked so far (a start that failed)."""
        self.kill(signal.SIGKILL)
        for rank in self.ranks:
            if rank.pid and not rank.reaped:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(rank.pid, 0)
                rank.reaped = True

    def _fork(self, rank: _Rank, ruleset: int, held: list[int]) -> tuple[int, int]:
        """Fork ``rank``; it sets itself up and waits for the go. ``held``: this process's
        ends of the earlier ranks' pipes, which the new rank closes at once (a rank holding
        another's go pipe would keep it waiting should this supervisor die)."""
        spec = self.spec
        # The job writes into a pipe that this process copies into the log: the log file
        # stays out of the job's reach (no fd of it, no way to reopen it), while the job can
        # still reopen /dev/stdout or /dev/stderr, whose pipe it owns.
        rank.out_r, out_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        own = (rank.out_r, go_w, err_r)
        try:
            if spec.switch_user:
                os.fchown(out_w, spec.uid, spec.gid)
            pid = os.fork()
            if pid == 0:  # the rank, until exec
                pipes = _Pipes(out_w, go_r, err_w, sorted({*held, *own, *self._outputs()}))
                _exec_rank(spec, rank.env, pipes, ruleset, os.getppid())
        except OSError:
            for fd in own:
                os.close(fd)
            raise
        finally:
            for fd in (out_w, go_r, err_w):
                os.close(fd)
        rank.pid = pid
        return go_w, err_r

    def _outputs(self) -> list[int]:
        return [r.out_r for r in self.ranks if r.out_r >= 0]

    def _join_cgroups(self) -> None:
        """Move each rank into its cgroup (before it runs anything: it waits for the go)."""
        for rank in self.ranks:
            if rank.cgroup is None:
                continue
            try:
                Path(rank.cgroup, "cgroup.procs").write_text(str(rank.pid))
            except OSError as exc:
                _log(f"cannot move rank {rank.index} into {rank.cgroup} ({exc}): process tree")
                rank.cgroup = None

    def _go(self, gates: list[tuple[int, int]]) -> list[str]:
        """Once every rank is set up, let all of them exec; what went wrong, by rank."""
        problems = []
        for rank, (_go_w, err_r) in zip(self.ranks, gates, strict=True):
            first = os.read(err_r, 1)
            if first != _READY:
                problems.append(self._problem(rank, first + _read_all(err_r)))
        if problems:
            return problems
        for go_w, _err_r in gates:
            os.write(go_w, b"g")
        for rank, (_go_w, err_r) in zip(self.ranks, gates, strict=True):
            error = _read_all(err_r)  # end of file: the exec closed it
            if error:
                problems.append(self._problem(rank, error))
        return problems

    def _problem(self, rank: _Rank, error: bytes) -> str:
        text = error.decode(errors="replace") or "it ended before it was set up"
        return f"rank {rank.index}: {text}" if self.tagged else text

    # -- watch -------------------------------------------------------------------------

    def _watch(self) -> dict[str, Any]:
        """Relay output until every rank has ended; kill what is left; how the job ended."""
        # poll, not select: a job may have more ranks than select's 1024 descriptors
        poller = select.poll()
        reading = {r.out_r: r for r in self.ranks}
        for fd in [*reading, self.wake_r]:
            poller.register(fd, select.POLLIN)
        while not self._reap():
            for fd, _event in poller.poll(1000):
                if fd == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                elif not self._relay(reading[fd]):  # every writer closed it; the rank may go on
                    poller.unregister(fd)
        self.kill(signal.SIGKILL)  # every rank ended: nothing of the job may stay behind
        self._reap_all()
        signal.setitimer(signal.ITIMER_REAL, 0)
        for rank in self.ranks:
            os.set_blocking(rank.out_r, False)
            with contextlib.suppress(BlockingIOError):
                while rank.writing and self._relay(rank):
                    pass
            self._write(self._lines(rank, b"", end=True))
        return self._outcome()

    def _reap(self) -> bool:
        """Reap what ended: a rank (its leftovers killed first) or an orphan reparented
        here; True once every rank has ended. The first rank to fail stops the others."""
        leaders = {r.pid: r for r in self.ranks if not r.reaped}
        while leaders:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is None or info.si_pid == 0:
                break
            rank = leaders.pop(info.si_pid, None)
            if rank is not None:
                # Until reaped, the leader's zombie holds its group id: kill the group first.
                self._kill_rank(rank, signal.SIGKILL)
                exited = info.si_code == os.CLD_EXITED
                rank.ended = {"code" if exited else "signal": info.si_status}
            os.waitpid(info.si_pid, 0)
            if rank is None:
                continue
            rank.reaped = True
            if rank.failed and self.first_failed is None:
                self.first_failed = rank
                if leaders:
                    self.stop(cancelled=False)
        return not leaders

    def _outcome(self) -> dict[str, Any]:
        """The failing rank's status, else 0; a multi-node job's names its rank and all."""
        failed = self.first_failed
        outcome: dict[str, Any] = dict(failed.ended or {}) if failed else {"code": 0}
        if self.tagged:
            if failed is not None:
                outcome["rank"] = failed.index
            outcome["ranks"] = [r.ended for r in self.ranks]
        return outcome

    def _relay(self, rank: _Rank) -> bool:
        """Copy what a rank wrote into the log; False at end of file."""
        chunk = os.read(rank.out_r, 65536)
        if not chunk:
            rank.writing = False
        self._write(self._lines(rank, chunk, end=not chunk))
        return bool(chunk)

    def _lines(self, rank: _Rank, chunk: bytes, *, end: bool) -> bytes:
        """What of ``chunk`` goes into the log now: as it came for a one-node job; else its
        complete lines, each prefixed ``[rank R]`` (the rest waits for its end)."""
        if not self.tagged:
            return chunk
        data = rank.partial + chunk
        cut = data.rfind(b"\n") + 1
        if end or len(data) - cut > MAX_LINE:
            whole, rank.partial = data, b""
            if whole and not whole.endswith(b"\n"):
                whole += b"\n"
        else:
            whole, rank.partial = data[:cut], data[cut:]
        tag = f"[rank {rank.index}] ".encode()
        return b"".join(tag + line + b"\n" for line in whole.split(b"\n")[:-1])

    def _write(self, data: bytes) -> None:
        """Append to the log. A log that cannot be written (a full disk) loses output,
        never the job: the pipes are still drained so that no rank blocks on them."""
        view = memoryview(data)
        while view and not self.log_failed:
            try:
                view = view[os.write(self.log_fd, view) :]
            except OSError as exc:
                self.log_failed = True
                _log(f"cannot write the log {self.spec.log} ({exc}): output dropped")

    def _reap_all(self) -> None:
        deadline = time.monotonic() + REAP_WAIT_S
        while time.monotonic() < deadline:
            try:
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
            except ChildProcessError:  # no child left: every descendant is gone
                if self.cgroup is None or not sandbox.cgroup_populated(self.cgroup):
                    return
            self.kill(signal.SIGKILL)
            time.sleep(0.02)
        _log(f"processes of the job outlived SIGKILL for {REAP_WAIT_S:g} s")

    def _finish(self, outcome: dict[str, Any]) -> None:
        outcome["cancelled"] = self.cancelled
        write_atomic(self.state / EXIT, json.dumps(outcome))
        if self.cgroup is not None:
            why = sandbox.remove_cgroup(self.cgroup)
            if why is not None:
                _log(why)


@dataclass(frozen=True, slots=True)
class _Pipes:
    """A forked rank's pipes: its output, the go from the supervisor, its error reports,
    and the supervisor's descriptors it must close first."""

    out_w: int
    go_r: int
    err_w: int
    foreign: list[int]


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    return data


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


def _exec_rank(
    spec: Spec, env: dict[str, str], pipes: _Pipes, ruleset: int, parent: int
) -> NoReturn:
    """In a forked child: become one rank of the job and exec its command; never returns.

    Every step that fails is reported on ``err_w`` (closed by a successful exec) and ends
    the child with 127, so the supervisor knows whether the command ever ran. Once set up,
    the rank says so (``_READY``) and execs only on the supervisor's go.
    """
    step = "signals"
    try:
        signal.set_wakeup_fd(-1)  # the supervisor's: about to be closed
        for sig in (CANCEL_SIGNAL, signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)  # a stop before the exec ends this rank
        step = "close the supervisor's files"
        for fd in pipes.foreign:
            os.close(fd)
        step = "environment"  # checked here, where a failure still stops every rank's start
        for key, text in env.items():
            if not key or "=" in key or "\0" in key or "\0" in text:
                msg = f"invalid variable {key!r}"
                raise ValueError(msg)
        step = "new session"
        os.setsid()
        step = "standard streams"
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(pipes.out_w, 1)
        os.dup2(pipes.out_w, 2)
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
        sandbox.prctl(sandbox.PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
        if os.getppid() != parent:
            msg = "the supervisor died"
            raise OSError(msg)
        step = "no_new_privs"
        sandbox.prctl(sandbox.PR_SET_NO_NEW_PRIVS, 1)
        if ruleset >= 0:
            step = "Landlock"
            sandbox.restrict_self(ruleset)
        step = "signal mask"
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)  # Python ignores SIGPIPE; the job must not
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        step = "close inherited files"
        low, high = sorted((pipes.go_r, pipes.err_w))
        os.closerange(3, low)
        os.closerange(low + 1, high)
        os.closerange(high + 1, 1 << 16)
        step = "wait for the other ranks"
        os.write(pipes.err_w, _READY)
        if os.read(pipes.go_r, 1) != b"g":  # the supervisor gave up (or died): run nothing
            os._exit(127)
        step = "exec /bin/sh"
        os.execve("/bin/sh", ["sh", "-c", spec.command], env)  # noqa: S606 (the job)
    except BaseException as exc:  # noqa: BLE001 (the child must never return into Python)
        with contextlib.suppress(OSError):
            os.write(pipes.err_w, f"{step}: {exc}".encode())
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
    signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)  # only to wake the poll
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    if os.fork():  # detach: the service reaps this parent at once; init (or a subreaper)
        os._exit(0)  # inherits the supervisor, which outlives the service
    sandbox.prctl(sandbox.PR_SET_CHILD_SUBREAPER, 1)
    _, files = resource.getrlimit(resource.RLIMIT_NOFILE)  # three pipes per rank to start
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
    sup = Supervisor(state, wake_r)
    return sup.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))

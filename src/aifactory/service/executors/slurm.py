"""The Slurm executor: jobs go to a real Slurm with `sbatch`, are tracked and cancelled there.

Why through the command-line tools and not slurmrestd: the tools are present wherever Slurm is,
need no extra daemon or token, and their `--parsable` outputs are stable across releases.

Mapping to the Executor protocol:
- ``start`` submits ``sbatch --parsable --gres=gpu:N --job-name ... --output LOG --time ...
  --wrap COMMAND``; the handle is the Slurm job id. Slurm picks the GPUs itself
  (``CUDA_VISIBLE_DEVICES`` is set by Slurm's gres plugin), so ``Launch.gpu_indices`` and
  ``Launch.node`` are informational here: the fleet's node names need not be Slurm's.
- ``poll`` asks ``squeue`` first (cheap, knows queued and running jobs), then ``sacct`` for
  finished ones (the accounting database keeps them forever), then ``scontrol show job``
  (works without accounting, for ``MinJobAge`` seconds after the end). A job that Slurm still
  queues counts as RUNNING: it has been handed to the backend, and Slurm, not our scheduler,
  now decides when it starts; ``Status.detail`` says ``PENDING (Resources)``.
- ``cancel`` is ``scancel``; cancelling an unknown or finished job is not an error.

``poll`` returns LOST only when Slurm answers and has no trace of the job; when Slurm itself
cannot be asked (controller down, tool missing) it raises ExecutorError, so that a transient
outage never makes the service requeue or fail jobs that are in fact running.

Everything that parses tool output is a pure function, unit-tested without Slurm; the command
runner is injected so the executor itself can be tested with a fake.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from aifactory.service.executors.base import ExecutorError, Launch, RunState, Status

#: Runs one command: (argv, extra environment, timeout in s) -> finished process.
Runner = Callable[[Sequence[str], Mapping[str, str], float], "subprocess.CompletedProcess[str]"]

DEFAULT_TIMEOUT_S = 30.0
JOB_NAME_PREFIX = "aif-"
_JOB_ID = re.compile(r"^\d+$")
_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_MAX_JOB_NAME = 200
#: Taken from sbatch's environment into every job, so that its shell finds its tools.
JOB_BASE_ENV = ("PATH", "LANG")
# Messages with which the Slurm tools say "no such job" (as opposed to "cannot reach Slurm").
_NO_SUCH_JOB = ("invalid job id", "job/step already completing or completed")
_ACCOUNTING_OFF = ("accounting storage is disabled", "slurm accounting storage is disabled")


class SlurmState(StrEnum):
    """Slurm job states (``squeue %T``, ``sacct State``, ``scontrol JobState``)."""

    BOOT_FAIL = "BOOT_FAIL"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"
    COMPLETING = "COMPLETING"
    CONFIGURING = "CONFIGURING"
    DEADLINE = "DEADLINE"
    FAILED = "FAILED"
    NODE_FAIL = "NODE_FAIL"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    PENDING = "PENDING"
    PREEMPTED = "PREEMPTED"
    REQUEUED = "REQUEUED"
    REQUEUE_FED = "REQUEUE_FED"
    REQUEUE_HOLD = "REQUEUE_HOLD"
    RESIZING = "RESIZING"
    RESV_DEL_HOLD = "RESV_DEL_HOLD"
    REVOKED = "REVOKED"
    RUNNING = "RUNNING"
    SIGNALING = "SIGNALING"
    SPECIAL_EXIT = "SPECIAL_EXIT"
    STAGE_OUT = "STAGE_OUT"
    STOPPED = "STOPPED"
    SUSPENDED = "SUSPENDED"
    TIMEOUT = "TIMEOUT"


# Where each Slurm state lands in our RunState. Every non-terminal state is RUNNING: the job
# still holds (or waits for) Slurm resources. COMPLETING is non-terminal on purpose: the GPUs are
# not free until the epilog ends. Every failure flavour is FAILED; Status.detail keeps the name.
_STATE_MAP: dict[SlurmState, RunState] = {
    SlurmState.BOOT_FAIL: RunState.FAILED,
    SlurmState.CANCELLED: RunState.CANCELLED,
    SlurmState.COMPLETED: RunState.COMPLETED,
    SlurmState.COMPLETING: RunState.RUNNING,
    SlurmState.CONFIGURING: RunState.RUNNING,
    SlurmState.DEADLINE: RunState.FAILED,
    SlurmState.FAILED: RunState.FAILED,
    SlurmState.NODE_FAIL: RunState.FAILED,
    SlurmState.OUT_OF_MEMORY: RunState.FAILED,
    SlurmState.PENDING: RunState.RUNNING,
    SlurmState.PREEMPTED: RunState.FAILED,
    SlurmState.REQUEUED: RunState.RUNNING,
    SlurmState.REQUEUE_FED: RunState.RUNNING,
    SlurmState.REQUEUE_HOLD: RunState.RUNNING,
    SlurmState.RESIZING: RunState.RUNNING,
    SlurmState.RESV_DEL_HOLD: RunState.RUNNING,
    SlurmState.REVOKED: RunState.FAILED,
    SlurmState.RUNNING: RunState.RUNNING,
    SlurmState.SIGNALING: RunState.RUNNING,
    SlurmState.SPECIAL_EXIT: RunState.RUNNING,
    SlurmState.STAGE_OUT: RunState.RUNNING,
    SlurmState.STOPPED: RunState.RUNNING,
    SlurmState.SUSPENDED: RunState.RUNNING,
    SlurmState.TIMEOUT: RunState.FAILED,
}
assert set(_STATE_MAP) == set(SlurmState), "every Slurm state needs a RunState"


@dataclass(frozen=True, slots=True)
class SlurmJobRecord:
    """One job as a Slurm tool reports it."""

    job_id: str
    state: SlurmState
    exit_code: int | None = None  # shell convention: 128 + signal when killed by a signal
    reason: str = ""


# ---------------------------------------------------------------------------- pure helpers


def parse_state(text: str) -> SlurmState:
    """Parse a Slurm state word; ``CANCELLED by 0`` and ``CANCELLED+`` become CANCELLED."""
    word = text.strip().split(" ", 1)[0].rstrip("+").upper()
    try:
        return SlurmState(word)
    except ValueError:
        raise ValueError(f"unknown Slurm job state {text!r}") from None


def to_run_state(state: SlurmState) -> RunState:
    """Our RunState for a Slurm state."""
    return _STATE_MAP[state]


def parse_exit_code(text: str) -> int | None:
    """``sacct``/``scontrol`` ExitCode ``code:signal`` -> one shell-style exit status.

    Why 128 + signal: it is what a shell reports for a signalled child, so the service shows
    the same number for a job killed by SIGTERM under Slurm (15 -> 143) and as a local process.
    """
    text = text.strip()
    if not text:
        return None
    code_s, _, signal_s = text.partition(":")
    try:
        code = int(code_s)
        signal = int(signal_s) if signal_s else 0
    except ValueError:
        raise ValueError(f"malformed Slurm exit code {text!r} (want CODE:SIGNAL)") from None
    return 128 + signal if signal and not code else code


def parse_sbatch_output(stdout: str) -> str:
    """``sbatch --parsable`` prints ``JOBID`` or ``JOBID;CLUSTER``: return the job id."""
    line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job_id = line.split(";", 1)[0].strip()
    if not _JOB_ID.match(job_id):
        raise ValueError(f"sbatch printed no job id (output: {stdout.strip()!r})")
    return job_id


def format_time_limit(seconds: float) -> str:
    """Seconds -> Slurm ``--time`` ``D-HH:MM:SS``, rounded up (Slurm never cuts a job early).

    Slurm stores limits in whole minutes; it rounds up to the next minute itself.
    """
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"time_limit_s must be a positive number of seconds, got {seconds!r}")
    total = math.ceil(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def job_name(name: str) -> str:
    """Slurm job name for an attempt's name (``aif-<job>-<attempt>``, see
    :func:`~aifactory.service.executors.base.attempt_name`): made safe for Slurm, and
    prefixed so our jobs are easy to find in ``squeue``. ``find`` looks attempts up by it."""
    safe = _JOB_NAME_UNSAFE.sub("_", name)
    if not safe.startswith(JOB_NAME_PREFIX):
        safe = JOB_NAME_PREFIX + safe
    return safe[:_MAX_JOB_NAME]


def job_env(launch: Launch) -> dict[str, str]:
    """The variables a job is given (besides ``JOB_BASE_ENV`` and Slurm's own)."""
    return {
        **launch.env,
        "AIFACTORY_JOB_ID": launch.job_id,
        "AIFACTORY_PLACEMENT": launch.placement,
        "AIFACTORY_TENANT": launch.tenant,
    }


def sbatch_argv(launch: Launch, *, partition: str | None = None) -> list[str]:
    """The ``sbatch`` command line for a launch (pure, so it can be checked without Slurm)."""
    if launch.gpus < 0:
        raise ValueError(f"gpus must be >= 0, got {launch.gpus}")
    if not launch.command.strip():
        raise ValueError("command must not be empty")
    if "\0" in launch.command or any("\0" in k + v for k, v in launch.env.items()):
        raise ValueError("command and environment must not contain a NUL byte")
    # Only the job's own variables reach it (sbatch's default is the submitter's whole
    # environment: the service's database URL and tokens among them). Names only: Slurm
    # takes their values from sbatch's environment, which ``start`` sets to the launch's.
    exported = sorted({*JOB_BASE_ENV, *job_env(launch)})
    argv = [
        "sbatch",
        "--parsable",
        f"--export={','.join(exported)}",
        f"--job-name={job_name(launch.name)}",
        f"--output={launch.log_path}",
        "--open-mode=append",
        "--nodes=1",
    ]
    if launch.gpus > 0:
        argv.append(f"--gres=gpu:{launch.gpus}")
    if launch.time_limit_s is not None:
        argv.append(f"--time={format_time_limit(launch.time_limit_s)}")
    if partition:
        argv.append(f"--partition={partition}")
    argv.append(f"--wrap={launch.command}")
    return argv


def parse_squeue(stdout: str) -> SlurmJobRecord | None:
    """Parse ``squeue -h -o '%i|%T|%r'`` for one job; None when it lists nothing."""
    for line in stdout.splitlines():
        if not line.strip():
            continue
        fields = line.strip().split("|")
        if len(fields) != 3:
            raise ValueError(f"squeue line {line!r} has {len(fields)} fields, want 3")
        reason = "" if fields[2] in ("None", "(null)") else fields[2]
        return SlurmJobRecord(job_id=fields[0], state=parse_state(fields[1]), reason=reason)
    return None


def parse_sacct(stdout: str, job_id: str) -> SlurmJobRecord | None:
    """Parse ``sacct -n -P -X -o JobIDRaw,State,ExitCode`` for one job id.

    A requeued job has several rows with the same id; the last is the current attempt.
    """
    found: SlurmJobRecord | None = None
    for line in stdout.splitlines():
        if not line.strip():
            continue
        fields = line.strip().split("|")
        if len(fields) != 3:
            raise ValueError(f"sacct line {line!r} has {len(fields)} fields, want 3")
        if fields[0] != job_id:
            continue
        found = SlurmJobRecord(
            job_id=job_id, state=parse_state(fields[1]), exit_code=parse_exit_code(fields[2])
        )
    return found


def parse_scontrol_job(stdout: str) -> SlurmJobRecord | None:
    """Parse ``scontrol show job -o ID`` (one line of ``Key=Value`` pairs)."""
    fields: dict[str, str] = {}
    for token in stdout.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    if "JobId" not in fields or "JobState" not in fields:
        return None
    reason = fields.get("Reason", "")
    return SlurmJobRecord(
        job_id=fields["JobId"],
        state=parse_state(fields["JobState"]),
        exit_code=parse_exit_code(fields.get("ExitCode", "")),
        reason="" if reason in ("None", "(null)") else reason,
    )


def record_status(record: SlurmJobRecord) -> Status:
    """A Slurm record as the Executor protocol's Status."""
    run_state = to_run_state(record.state)
    exit_code = record.exit_code if run_state is not RunState.RUNNING else None
    detail = record.state.value + (f" ({record.reason})" if record.reason else "")
    return Status(state=run_state, exit_code=exit_code, detail=detail)


def _says_no_such_job(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in _NO_SUCH_JOB)


# ---------------------------------------------------------------------------- runner


def run_command(
    argv: Sequence[str], env: Mapping[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """Run a Slurm tool with a timeout; errors become ExecutorError naming the tool."""
    full_env = {**os.environ, **env}
    try:
        return subprocess.run(  # noqa: S603 -- argv is a list built here, never a shell string
            list(argv),
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        raise ExecutorError(
            f"{argv[0]} not found: Slurm's client tools are not installed "
            "(start a local Slurm with `bash scripts/slurm-up.sh`)"
        ) from None
    except subprocess.TimeoutExpired:
        raise ExecutorError(
            f"{argv[0]} did not answer within {timeout_s:g} s: is slurmctld running?"
        ) from None


# ---------------------------------------------------------------------------- executor


class SlurmExecutor:
    """Runs jobs on a Slurm cluster through sbatch/squeue/sacct/scancel."""

    name = "slurm"

    def __init__(
        self,
        *,
        partition: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        runner: Runner = run_command,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.partition = partition
        self.timeout_s = timeout_s
        self._run = runner

    def start(self, launch: Launch) -> str:
        """Submit with sbatch; the handle is the Slurm job id."""
        try:
            argv = sbatch_argv(launch, partition=self.partition)
        except ValueError as exc:
            raise ExecutorError(f"job {launch.job_id}: {exc}") from None
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            proc = self._run(argv, job_env(launch), self.timeout_s)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            raise ExecutorError(f"job {launch.job_id}: sbatch could not run: {exc}") from None
        if proc.returncode != 0:
            raise ExecutorError(
                f"sbatch refused job {launch.job_id} (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()}"
            )
        try:
            return parse_sbatch_output(proc.stdout)
        except ValueError as exc:
            raise ExecutorError(f"job {launch.job_id}: {exc}") from None

    def find(self, name: str) -> str | None:
        """The Slurm job id of the attempt submitted under ``name``, or None if Slurm has none.

        ``squeue -t all`` knows queued, running and recently ended jobs; ``sacct`` (when
        accounting is on) knows every job since the window's start. The lowest id is
        returned if there were several (there never should be: the loop asks before it
        submits again). Raises ExecutorError when squeue cannot be asked.
        """
        slurm_name = job_name(name)
        argv = ["squeue", "-h", "-t", "all", f"--name={slurm_name}", "-o", "%i"]
        proc = self._run(argv, {}, self.timeout_s)
        if proc.returncode != 0:
            raise ExecutorError(f"squeue failed (exit {proc.returncode}): {proc.stderr.strip()}")
        ids = [line.strip() for line in proc.stdout.splitlines() if _JOB_ID.match(line.strip())]
        if not ids:
            argv = [
                "sacct", "-n", "-P", "-X", f"--name={slurm_name}", "-S", "2000-01-01",
                "-o", "JobIDRaw",
            ]  # fmt: skip
            proc = self._run(argv, {}, self.timeout_s)
            if proc.returncode == 0:
                ids = [
                    line.strip() for line in proc.stdout.splitlines() if _JOB_ID.match(line.strip())
                ]
        return min(ids, key=int) if ids else None

    def poll(self, handle: str) -> Status:
        """squeue, then sacct, then scontrol; LOST only when Slurm answers and knows nothing."""
        if not _JOB_ID.match(handle):
            return Status(RunState.LOST, detail=f"{handle!r} is not a Slurm job id")
        queued = self._squeue(handle)
        if queued is not None and to_run_state(queued.state) is RunState.RUNNING:
            return record_status(queued)
        accounted = self._sacct(handle)
        if accounted is not None and to_run_state(accounted.state) is not RunState.RUNNING:
            return record_status(accounted)
        controlled = self._scontrol(handle)
        if controlled is not None:
            return record_status(controlled)
        # squeue saw it end but neither sacct nor scontrol has the exit code yet: the state
        # alone is still the truth (slurmdbd records asynchronously).
        for record in (queued, accounted):
            if record is not None:
                return record_status(record)
        return Status(RunState.LOST, detail=f"Slurm has no job {handle}")

    def cancel(self, handle: str) -> None:
        """scancel; a job Slurm no longer knows or that already ended is fine."""
        if not _JOB_ID.match(handle):
            return
        proc = self._run(["scancel", handle], {}, self.timeout_s)
        if proc.returncode != 0 and not _says_no_such_job(proc.stderr + proc.stdout):
            raise ExecutorError(
                f"scancel {handle} failed (exit {proc.returncode}): {proc.stderr.strip()}"
            )

    # ------------------------------------------------------------------------ queries

    def _squeue(self, handle: str) -> SlurmJobRecord | None:
        argv = ["squeue", "-h", "-t", "all", "-j", handle, "-o", "%i|%T|%r"]
        proc = self._run(argv, {}, self.timeout_s)
        if proc.returncode != 0:
            if _says_no_such_job(proc.stderr):
                return None
            raise ExecutorError(f"squeue failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return self._parsed(parse_squeue, proc.stdout, "squeue")

    def _sacct(self, handle: str) -> SlurmJobRecord | None:
        argv = ["sacct", "-n", "-P", "-X", "-j", handle, "-o", "JobIDRaw,State,ExitCode"]
        proc = self._run(argv, {}, self.timeout_s)
        if proc.returncode != 0:
            # Accounting off or slurmdbd down: scontrol may still know the job.
            return None
        if any(marker in proc.stderr.lower() for marker in _ACCOUNTING_OFF):
            return None
        return self._parsed(lambda out: parse_sacct(out, handle), proc.stdout, "sacct")

    def _scontrol(self, handle: str) -> SlurmJobRecord | None:
        proc = self._run(["scontrol", "show", "job", "-o", handle], {}, self.timeout_s)
        if proc.returncode != 0:
            if _says_no_such_job(proc.stderr):
                return None
            raise ExecutorError(
                f"scontrol show job failed (exit {proc.returncode}): {proc.stderr.strip()}"
            )
        return self._parsed(parse_scontrol_job, proc.stdout, "scontrol")

    @staticmethod
    def _parsed(
        parse: Callable[[str], SlurmJobRecord | None], stdout: str, tool: str
    ) -> SlurmJobRecord | None:
        try:
            return parse(stdout)
        except ValueError as exc:
            raise ExecutorError(f"could not read {tool} output: {exc}") from None


SACCT_TRACE_FORMAT = (
    "JobID,User,Account,Partition,Submit,Start,End,Elapsed,State,AllocTRES,ReqTRES,Timelimit"
)


def sacct_trace(
    job_ids: Sequence[str], *, timeout_s: float = DEFAULT_TIMEOUT_S, runner: Runner = run_command
) -> str:
    """The accounting records of these jobs as ``sacct --parsable2 --allocations`` text.

    This is the input of ``read_trace(path, "sacct")``: the history of jobs run through Slurm
    can be replayed in the twin and held against what really happened.
    """
    bad = [j for j in job_ids if not _JOB_ID.match(j)]
    if bad:
        raise ExecutorError(f"not Slurm job ids: {', '.join(map(repr, bad[:5]))}")
    if not job_ids:
        return SACCT_TRACE_FORMAT.replace(",", "|") + "\n"
    argv = [
        "sacct",
        "--parsable2",
        "--allocations",
        f"--format={SACCT_TRACE_FORMAT}",
        f"--jobs={','.join(job_ids)}",
    ]
    proc = runner(argv, {}, timeout_s)
    if proc.returncode != 0:
        raise ExecutorError(f"sacct failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def slurm_responds(timeout_s: float = 10.0, runner: Runner = run_command) -> bool:
    """True when a Slurm controller answers (``scontrol ping``) on this machine."""
    try:
        proc = runner(["scontrol", "ping"], {}, timeout_s)
    except ExecutorError:
        return False
    return proc.returncode == 0 and "UP" in proc.stdout

"""The Slurm executor: jobs go to a real Slurm with `sbatch`, are tracked and cancelled there.

Why through the command-line tools and not slurmrestd: the tools are present wherever Slurm is,
need no extra daemon or token, and their `--parsable` outputs are stable across releases.

Mapping to the Executor protocol:
- ``start`` submits one Slurm job for the whole placement: ``sbatch --parsable --nodes=N
  --ntasks-per-node=1 --gres=gpu:K [--nodelist=...] --job-name ... --output LOG --time ...
  --wrap LAUNCHER`` (see :func:`sbatch_argv`); the handle is the Slurm job id. The launcher
  (:func:`batch_script`) runs the command once per node under ``srun`` and gives each task the
  launch contract (:func:`~aifactory.service.executors.base.rank_env`'s variables), computed
  inside the job from what Slurm allocated. Slurm picks the GPU indices on each node itself
  (its gres plugin sets ``CUDA_VISIBLE_DEVICES``); the nodes are the scheduler's when the
  fleet file names the Slurm node of each fleet node (``slurm_nodes``, see
  :func:`slurm_node_map`), else Slurm's choice.
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

import logging
import math
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from aifactory.service.executors.base import CONTRACT_ENV, ExecutorError, Launch, RunState, Status

if TYPE_CHECKING:
    from aifactory.fleet.topology import Topology
    from aifactory.service.settings import ServiceSettings

log = logging.getLogger(__name__)

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
# sbatch's words for "could not talk to the controller now" (as opposed to "refused the job"):
# worth one more try, after asking whether the first one got through after all.
_TRANSIENT = (
    "socket timed out",
    "unable to contact slurm controller",
    "temporarily unable to accept job",
    "resource temporarily unavailable",
    "connection refused",
    "slurm_persist_conn_open",
    "did not answer within",
)
#: sbatch attempts for one launch (the first and the retries after a transient error).
SUBMIT_TRIES = 3
SUBMIT_BACKOFF_S = 1.0
#: Each job's MASTER_PORT is taken from here: from the Slurm job id, moved on while something
#: listens there. Below Linux's default ephemeral range (32768-60999), so that the kernel does
#: not hand it to an outgoing connection.
PORT_BASE = 20000
PORT_SPAN = 10000


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
    """The variables a job is given (besides ``JOB_BASE_ENV`` and Slurm's own).

    The contract's variables are the backend's: a job's own ``env`` cannot set them (the
    per-rank ones are set inside the job, by :func:`batch_script`).
    """
    return {
        **{k: v for k, v in launch.env.items() if k not in CONTRACT_ENV},
        "AIFACTORY_JOB_ID": launch.job_id,
        "AIFACTORY_PLACEMENT": launch.placement,
        "AIFACTORY_TENANT": launch.tenant,
    }


def slurm_node_map(topo: Topology) -> dict[str, str]:
    """Fleet node name -> Slurm node name, from the fleet file's ``slurm_nodes``.

    The fleet names nodes ``site/pod/d<domain>/n<node>`` (the scheduler's names, which the
    placement carries); a group's ``slurm_nodes`` lists its nodes' Slurm names in the same
    node order. Groups without ``slurm_nodes`` map nothing (Slurm picks their nodes).
    """
    from aifactory.scheduler.cluster import ClusterState  # noqa: PLC0415 (the names' owner)

    names = ClusterState(topo)
    out: dict[str, str] = {}
    node = 0
    for _site, _pod, group in topo.fleet.iter_groups():
        count = int(topo.domain_nodes[topo.node_domain[node]]) * group.domains
        if group.slurm_nodes is not None:
            for i, slurm_name in enumerate(group.slurm_nodes[:count]):
                out[names.node_name(node + i)] = slurm_name
        node += count
    return out


def _gpus_per_node(launch: Launch) -> list[int]:
    """GPUs on each node of the placement, in rank order."""
    counts = [len(s.gpus) for s in launch.nodes]
    if sum(counts) == launch.gpus:
        return counts
    if launch.world_size == 1:  # a single node named without its GPU indices
        return [launch.gpus]
    raise ValueError(
        f"the placement {launch.placement!r} holds {sum(counts)} GPUs, the job asks {launch.gpus}"
    )


def slurm_nodes_of(launch: Launch, node_map: Mapping[str, str]) -> list[str]:
    """The Slurm names of the launch's nodes in rank order; [] when the map names none.

    A map that names some of the nodes but not all is an error: half a ``--nodelist`` would
    let Slurm put the rest anywhere, against the scheduler's placement.
    """
    if not node_map:
        return []
    names = [node_map.get(s.node) for s in launch.nodes]
    missing = [s.node for s, n in zip(launch.nodes, names, strict=True) if n is None]
    if missing:
        raise ValueError(f"no Slurm node for fleet node(s) {', '.join(missing)} in the fleet file")
    found = [n for n in names if n is not None]
    if len(set(found)) != len(found):
        raise ValueError(f"the placement names a Slurm node twice: {', '.join(found)}")
    return found


# What each task (one per node) runs under srun: the rank's variables of the launch contract,
# then the command under /bin/sh as sbatch --wrap would. $1 is the command, passed as an
# argument so that it is never parsed as part of this script. NODE_RANK is the node's place
# in the scheduler's placement when the Slurm nodes were named, else Slurm's node index
# (which follows Slurm's node order, not the placement's).
_TASK = r"""rank=$SLURM_NODEID
if [ -n "${AIFACTORY_RANK_NODES:-}" ]; then
  i=0
  for n in $AIFACTORY_RANK_NODES; do
    if [ "$n" = "$SLURMD_NODENAME" ]; then rank=$i; fi
    i=$((i + 1))
  done
fi
unset AIFACTORY_RANK_NODES
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-}"
IFS=, read -r -a visible <<<"$CUDA_VISIBLE_DEVICES"
export NODE_RANK="$rank" LOCAL_WORLD_SIZE="${#visible[@]}"
exec /bin/sh -c "$1"
"""


def batch_script(launch: Launch, slurm_nodes: Sequence[str]) -> str:
    """The batch script of a launch: one task per node under ``srun``, each given the launch
    contract; the job's exit status is srun's (the highest of the tasks').

    MASTER_ADDR is the NodeAddr (what slurmctld itself connects to) of the rank-0 node: the
    placement's first node when the Slurm nodes are named, else the first host of
    ``SLURM_JOB_NODELIST``. MASTER_PORT comes from the job id into PORT_BASE..+PORT_SPAN,
    moved on while something already listens there (a connect that succeeds within 2 s).
    ``srun --export=ALL`` because sbatch's
    ``--export`` list would otherwise also limit what srun passes to the tasks (it sets
    SLURM_EXPORT_ENV), and the contract's variables are set here, after sbatch.
    ``--kill-on-bad-exit=1``: when one rank fails the others are stopped.
    """
    rank_nodes = " ".join(shlex.quote(n) for n in slurm_nodes)
    task = shlex.quote(_TASK)
    command = shlex.quote(launch.command)
    return f"""set -u
rank_nodes=({rank_nodes})
if [ ${{#rank_nodes[@]}} -gt 0 ]; then
  first=${{rank_nodes[0]}}
else
  first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
fi
addr=$(scontrol show node -o "$first" 2>/dev/null | tr ' ' '\\n' | sed -n 's/^NodeAddr=//p')
MASTER_ADDR=${{addr:-$first}}
port=$(({PORT_BASE} + SLURM_JOB_ID % {PORT_SPAN}))
for _ in $(seq 1 100); do
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$MASTER_ADDR" "$port" 2>/dev/null || break
  port=$(({PORT_BASE} + (port - {PORT_BASE} + 1) % {PORT_SPAN}))
done
export MASTER_ADDR MASTER_PORT=$port WORLD_SIZE=$SLURM_NNODES
export AIFACTORY_RANK_NODES="${{rank_nodes[*]}}"
exec srun --export=ALL --nodes="$SLURM_NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1 \\
  /bin/bash -c {task} aifactory-rank {command}
"""


def sbatch_argv(
    launch: Launch, *, partition: str | None = None, node_map: Mapping[str, str] | None = None
) -> list[str]:
    """The ``sbatch`` command line for a launch (pure, so it can be checked without Slurm).

    One Slurm job of ``--nodes=N`` (the placement's nodes) and one task per node. GPUs:
    ``--gres=gpu:K`` when every node holds K. A placement with unequal counts (8 + 4) asks
    ``--gpus=<total>`` instead: Slurm has no per-node count that varies within one job
    (short of a heterogeneous job), so Slurm splits the total over the N nodes itself, and
    each rank's ``CUDA_VISIBLE_DEVICES`` and ``LOCAL_WORLD_SIZE`` say what it got there,
    which may differ from the scheduler's split (``AIFACTORY_PLACEMENT`` keeps the latter).
    ``--nodelist`` names the placement's nodes when ``node_map`` (fleet -> Slurm names)
    knows them.
    """
    if launch.gpus < 0:
        raise ValueError(f"gpus must be >= 0, got {launch.gpus}")
    if not launch.command.strip():
        raise ValueError("command must not be empty")
    if "\0" in launch.command or any("\0" in k + v for k, v in launch.env.items()):
        raise ValueError("command and environment must not contain a NUL byte")
    per_node = _gpus_per_node(launch)
    slurm_nodes = slurm_nodes_of(launch, node_map or {})
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
        f"--nodes={launch.world_size}",
        "--ntasks-per-node=1",
    ]
    if launch.gpus > 0:
        if len(set(per_node)) == 1:
            argv.append(f"--gres=gpu:{per_node[0]}")
        else:
            argv.append(f"--gpus={launch.gpus}")
    if slurm_nodes:
        argv.append(f"--nodelist={','.join(slurm_nodes)}")
    if launch.time_limit_s is not None:
        argv.append(f"--time={format_time_limit(launch.time_limit_s)}")
    if partition:
        argv.append(f"--partition={partition}")
    # --wrap makes a /bin/sh script of this line; the launcher itself is bash.
    script = batch_script(launch, slurm_nodes)
    argv.append(f"--wrap=exec /bin/bash -c {shlex.quote(script)} aifactory-launch")
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


def _is_transient(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in _TRANSIENT)


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
    """Runs jobs on a Slurm cluster through sbatch/squeue/sacct/scancel.

    ``node_map`` (fleet node name -> Slurm node name, e.g. :func:`slurm_node_map` of the
    service's fleet) makes every job run on the nodes the scheduler chose; without it Slurm
    places each job on nodes of its own choice, with the same shape.
    """

    name = "slurm"

    def __init__(
        self,
        *,
        partition: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        runner: Runner = run_command,
        node_map: Mapping[str, str] | None = None,
        submit_tries: int = SUBMIT_TRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if submit_tries < 1:
            raise ValueError(f"submit_tries must be >= 1, got {submit_tries}")
        self.partition = partition
        self.timeout_s = timeout_s
        self.node_map = dict(node_map or {})
        self.submit_tries = submit_tries
        self._run = runner
        self._sleep = sleep
        # Each started job's stop grace (Launch.stop_grace_s), by handle: cancel gives it
        # that long from SIGTERM to the kill. (In memory: after a restart a stop is at once.)
        self._graces: dict[str, float] = {}

    def start(self, launch: Launch) -> str:
        """Submit with sbatch (see :meth:`_start_once`); remember the job's stop grace."""
        handle = self._start_once(launch)
        grace = launch.stop_grace_s
        if grace is not None and grace > 0:
            self._graces[handle] = grace
        return handle

    def _start_once(self, launch: Launch) -> str:
        """Submit with sbatch; the handle is the Slurm job id.

        A transient failure (controller unreachable or busy, sbatch timed out) is tried
        again, up to ``submit_tries`` in all, but only after ``find`` says the attempt's
        name is not in Slurm: a submit that timed out may still have been accepted, and an
        attempt must run once. A refusal (bad request, a node configuration Slurm does not
        have) or the last transient failure raises ExecutorError: the loop records it as
        the job's failure.
        """
        try:
            argv = sbatch_argv(launch, partition=self.partition, node_map=self.node_map)
        except ValueError as exc:
            raise ExecutorError(f"job {launch.job_id}: {exc}") from None
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, self.submit_tries + 1):
            try:
                return self._submit(launch, argv)
            except ExecutorError as exc:
                if attempt == self.submit_tries or not _is_transient(str(exc)):
                    raise
                log.warning("job %s: sbatch failed (%s); trying again", launch.job_id, exc)
            self._sleep(SUBMIT_BACKOFF_S * attempt)
            try:
                handle = self.find(launch.name)
            except ExecutorError as exc:
                log.warning(
                    "job %s: cannot ask Slurm if sbatch got through: %s", launch.job_id, exc
                )
                continue
            if handle is not None:
                return handle
        raise AssertionError("unreachable: the last try returns or raises")

    def _submit(self, launch: Launch, argv: list[str]) -> str:
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
        """scancel; a job Slurm no longer knows or that already ended is fine.

        A job started with a stop grace (its preempt grace, ``Launch.stop_grace_s``) gets
        SIGTERM now (``scancel --signal=TERM``: its steps are signalled, the job goes on)
        and is cancelled when the grace ends (a timer of this executor), so that it can
        save first; one that exits sooner (saved) has ended by then, which scancel takes.

        scancel is idempotent, so a transient failure (controller unreachable) is simply
        tried again, up to ``submit_tries`` in all; then ExecutorError.
        """
        if not _JOB_ID.match(handle):
            return
        grace = self._graces.pop(handle, 0.0)
        if grace > 0:
            try:
                self._scancel(["scancel", "--signal=TERM", handle], handle)
            except ExecutorError as exc:  # e.g. not started yet: nothing to save
                log.info("job %s: no SIGTERM (%s); cancelling at once", handle, exc)
                self._scancel(["scancel", handle], handle)
                return
            timer = threading.Timer(grace, self._cancel_after_grace, (handle,))
            timer.daemon = True
            timer.start()
            return
        self._scancel(["scancel", handle], handle)

    def _cancel_after_grace(self, handle: str) -> None:
        """The grace of a stopped job is over: cancel it (on the timer's thread: logged,
        never raised)."""
        try:
            self._scancel(["scancel", handle], handle)
        except Exception:
            log.exception("scancel %s after its grace failed", handle)

    def _scancel(self, argv: list[str], handle: str) -> None:
        """Run one scancel command line, tried again after transient failures."""
        for attempt in range(1, self.submit_tries + 1):
            try:
                proc = self._run(argv, {}, self.timeout_s)
            except ExecutorError as exc:  # scancel timed out
                if attempt == self.submit_tries:
                    raise
                log.warning("scancel %s: %s; trying again", handle, exc)
                self._sleep(SUBMIT_BACKOFF_S * attempt)
                continue
            text = proc.stderr + proc.stdout
            if proc.returncode == 0 or _says_no_such_job(text):
                return
            failed = f"scancel {handle} failed (exit {proc.returncode}): {proc.stderr.strip()}"
            if attempt == self.submit_tries or not _is_transient(text):
                raise ExecutorError(failed)
            log.warning("%s; trying again", failed)
            self._sleep(SUBMIT_BACKOFF_S * attempt)

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


def executor_for(settings: ServiceSettings | None = None) -> SlurmExecutor:
    """The service's Slurm executor: jobs go to the Slurm nodes that the service's fleet file
    names (``slurm_nodes``); a fleet that names none leaves the nodes to Slurm."""
    if settings is None:
        return SlurmExecutor()
    from aifactory.fleet import compile_topology, load_fleet  # noqa: PLC0415 (lazy, as above)

    return SlurmExecutor(node_map=slurm_node_map(compile_topology(load_fleet(settings.fleet))))


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

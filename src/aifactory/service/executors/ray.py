"""The Ray executor: each attempt is a Ray job (Job Submission API), one Ray actor per node rank.

``--executor ray --ray-address http://HEAD:8265`` (the dashboard's address, as for ``ray job
submit``); without an address the service joins the Ray head that answers on
``127.0.0.1:8265``, or starts one there (``ray start --head``, see :func:`local_head`).

Mapping to the Executor protocol:

- ``start`` submits the attempt with ``submission_id`` = the attempt's name
  (:func:`~aifactory.service.executors.base.attempt_name`). Ray refuses a second job under
  an existing submission id, so a launch is idempotent: starting the same attempt twice
  returns the first one's handle, which is the name itself. The entrypoint is our driver
  (:mod:`.ray_driver`, shipped with the attempt's spec as the job's ``working_dir``), which
  reserves one placement-group bundle per node rank (that node's GPUs as Ray ``GPU``, and,
  when the Ray cluster advertises a resource ``aifactory-node:<fleet node>``, a sliver of
  it, which pins the rank to that node), starts one actor per rank with the launch
  contract's variables (:func:`~aifactory.service.executors.base.rank_env`;
  ``MASTER_ADDR`` is rank 0's node IP, ``MASTER_PORT`` a port free there), and runs the
  command under a guard that keeps every process of the rank inside it.
  ``CUDA_VISIBLE_DEVICES`` is the placement's, as on every backend: the service's
  scheduler owns the GPUs; Ray's count only admits the ranks.
- ``find(name)`` asks Ray for the job with that submission id: exact, and it survives a
  service restart (Ray's head keeps its jobs for its own lifetime).
- ``poll`` maps Ray's job status (PENDING and RUNNING: RUNNING; SUCCEEDED; FAILED with the
  driver's exit status: the failing rank's, 124 for the time limit; STOPPED: CANCELLED);
  an unknown id is LOST. When Ray cannot be asked it raises ExecutorError, so an outage
  never fails or requeues work that may be running.
- ``cancel`` is ``stop_job``: the driver stops every rank (SIGTERM, SIGKILL after the grace).
  Ray's supervisor SIGKILLs a stopped driver after ``RAY_JOB_STOP_WAIT_TIME_S`` (3 s by
  default), which would cut a longer grace (and, since the ranks are the driver's actors,
  end them with it and report the job stopped while they still save): each job is
  submitted with that variable in its runtime_env, which is the supervisor's own
  environment, set to its grace plus :data:`STOP_WAIT_MARGIN_S`. The job then reads
  RUNNING until its ranks have actually exited.
- The time limit is enforced in the driver, on Ray's side: it survives a service restart.
- Logs: Ray keeps the job's log (the driver's stdout: every rank's lines as ``[rank R]
  ...`` and a last ``aifactory-ray: ...`` line saying how it ended). ``poll`` copies it to
  the launch's log file: at most every ``log_sync_s`` while the job runs, and once it has
  ended (again by a restarted service: copying is idempotent). Each attempt has its own
  section in the file, so the attempts of a job follow each other.

Only the job's variables reach it: the rank's environment is built by the driver from the
launch alone (``PATH``, ``LANG``, ``HOME``/``TMPDIR`` a private directory, the contract's
variables and the job's own ``Launch.env``), never from the Ray worker's, which carries
the environment of whoever started Ray. A head this executor starts gets a clean
environment too, and runs as an unprivileged user when the service is root (the local
executor's job user: ``--run-as``, by default ``aifactory-job``).

Known limits. Ray's Job API has no authentication unless the cluster enables its token
mode, and a job's spec (its command and variables, uploaded as its working_dir) is readable
by anyone who can reach the cluster. Ranks run as the Ray worker's user, which may read the
environment of Ray's own processes (``/proc/<pid>/environ``): start Ray with a clean
environment, as :func:`local_head` does. Ray forgets its jobs when the head restarts:
``find`` then says None for an attempt that may have run (its processes are gone with the
head). The client's HTTP calls have no timeout of their own.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aifactory.service.executors import ray_driver
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

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("aifactory-data")  # as aifactory.service.db.DEFAULT_DATA_DIR
LOCAL_DASHBOARD = "http://127.0.0.1:8265"
NODE_RESOURCE_PREFIX = "aifactory-node:"  # a Ray node advertising aifactory-node:<fleet node>
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
GRACE_S = 2.0  # SIGTERM to SIGKILL, for a job without a stop grace of its own
# What Ray's job supervisor waits for a stopped driver beyond the ranks' grace before it
# SIGKILLs it: the driver's own wait for its ranks (grace + 10 s, see ray_driver) and its
# last log lines.
STOP_WAIT_MARGIN_S = 15
PLACE_TIMEOUT_S = 300.0
LOG_SYNC_S = 10.0
LOG_CAP = 64 << 20  # the tail of a Ray job's log kept in the log file
HEAD_START_S = 120.0
ENTRYPOINT = f"python {ray_driver.SHIPPED_NAME}"
# Variables the executor sets itself; Launch.env cannot override them.
_OWN_ENV = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "MASTER_ADDR", "MASTER_PORT"})
_JOB_AIFACTORY_ENV = frozenset({"AIFACTORY_JOB_ID", "AIFACTORY_PLACEMENT", "AIFACTORY_TENANT"})
_RUNNING = frozenset({"PENDING", "RUNNING"})
_VERDICTS_KEPT = 10_000  # ended jobs whose verdict poll remembers (asked again: copied again)


class RaySetupError(ValueError):
    """No Ray to run jobs on: not installed, or a local head that would not start."""


class RayExecutor:
    """Runs each attempt as a Ray job with one actor per node rank."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        data_dir: Path = DEFAULT_DATA_DIR,
        run_as: str | None = None,
        grace_s: float = GRACE_S,
        place_timeout_s: float = PLACE_TIMEOUT_S,
        log_sync_s: float = LOG_SYNC_S,
    ) -> None:
        """``address``: the Ray dashboard's URL; None joins or starts a local head."""
        try:
            import ray.job_submission  # noqa: F401, PLC0415 (optional: aifactory[ray])
        except ImportError as exc:
            msg = f"the Ray executor needs Ray: pip install 'aifactory[ray]' ({exc})"
            raise RaySetupError(msg) from exc
        self.data_dir = Path(data_dir).absolute()
        self.logs_dir = self.data_dir / "logs"
        self.address = address or local_head(self.data_dir, run_as)
        self.grace_s = grace_s
        self.place_timeout_s = place_timeout_s
        self.log_sync_s = log_sync_s
        self._client: JobSubmissionClient | None = None
        self._synced: dict[str, float] = {}  # handle -> when its log was last copied
        self._verdicts: dict[str, str] = {}  # ended handle -> its driver's verdict (log copied)

    def _stage(self, launch: Launch) -> Path:
        """A directory holding only the driver and this attempt's spec: the job's working_dir.

        The spec travels as a file, not in the environment: a large placement (every rank's
        GPUs, in every rank's variables) would pass the kernel's limit on one variable.
        The client uploads the directory when it submits; then it is removed.
        """
        staging = self.data_dir / "ray-staging"
        try:
            staging.mkdir(mode=0o700, parents=True, exist_ok=True)
            where = Path(tempfile.mkdtemp(prefix=f"{launch.name}-", dir=staging))
            shutil.copyfile(ray_driver.__file__, where / ray_driver.SHIPPED_NAME)
            fd = os.open(where / ray_driver.SPEC_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(self.spec(launch), out)
        except OSError as exc:
            msg = f"job {launch.job_id}: cannot stage its Ray job in {staging}: {exc}"
            raise ExecutorError(msg) from exc
        return where

    def _connect(self) -> JobSubmissionClient:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient  # noqa: PLC0415

            try:
                self._client = JobSubmissionClient(self.address)
            except Exception as exc:  # ConnectionError, RuntimeError, ...
                msg = f"cannot reach Ray's job server at {self.address}: {exc}"
                raise ExecutorError(msg) from exc
        return self._client

    # -- start and find ------------------------------------------------------------------

    def start(self, launch: Launch) -> str:
        """Submit the attempt under its name; the handle is that name (the submission id)."""
        check_launch(launch)
        if not launch.command.strip():
            msg = f"job {launch.job_id}: the command is empty"
            raise ExecutorError(msg)
        name = launch.name
        client = self._connect()
        try:
            launch.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"job {launch.job_id}: cannot make {launch.log_path.parent}: {exc}"
            raise ExecutorError(msg) from exc
        staged = self._stage(launch)
        try:
            client.submit_job(
                entrypoint=ENTRYPOINT,
                submission_id=name,
                runtime_env=self.runtime_env(launch, staged),
                metadata={"aifactory_job": launch.job_id, "aifactory_log": str(launch.log_path)},
            )
        except Exception as exc:  # the SDK's RuntimeError, requests' errors
            # Ray refuses a submission id it already has: this attempt was started before.
            if self._started_before(name):
                return name
            msg = f"Ray refused job {launch.job_id}: {_short(exc)}"
            raise ExecutorError(msg) from exc
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        return name

    def _started_before(self, name: str) -> bool:
        """After a failed submit: whether Ray has the attempt after all.

        The submit may have reached Ray with its answer lost. Ray is asked a few times;
        if it still cannot say, it is asked to stop the attempt, should it exist, since
        the caller now counts this attempt as failed to start.
        """
        for _ in range(3):
            try:
                return self.find(name) is not None
            except ExecutorError:
                time.sleep(1.0)
        try:
            self.cancel(name)
        except ExecutorError as exc:
            log.warning("ray executor: %s may run unrecorded: %s", name, exc)
        return False

    def runtime_env(self, launch: Launch, staged: Path) -> dict[str, Any]:
        """The Ray job's runtime_env: the staged directory, and how long Ray's supervisor
        waits for the stopped driver (its ranks' grace and a margin; see the module)."""
        wait = math.ceil(stop_grace(launch, self.grace_s)) + STOP_WAIT_MARGIN_S
        return {
            "working_dir": str(staged),
            "env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": str(wait)},
        }

    def spec(self, launch: Launch) -> dict[str, Any]:
        """What the driver is given (JSON): the command, the variables every rank shares, and
        each rank's own (those of :func:`rank_env` that differ between ranks).

        Split so that the spec grows with the placement once, not once per rank.
        """
        own = {
            k: v
            for k, v in launch.env.items()
            if k not in _OWN_ENV
            and k not in CONTRACT_ENV
            and (not k.startswith("AIFACTORY_") or k in _JOB_AIFACTORY_ENV)
        }
        base = {"PATH": DEFAULT_PATH, "LANG": os.environ.get("LANG") or "C.UTF-8"}
        shared = rank_env(launch, 0, "", 0)
        del shared["MASTER_ADDR"], shared["MASTER_PORT"]  # the driver sets them once placed
        varying: set[str] = set()
        for rank in range(1, launch.world_size):
            mine = rank_env(launch, rank, "", 0)
            varying.update(k for k, v in shared.items() if mine[k] != v)
        ranks = []
        for rank, node in enumerate(launch.nodes):
            mine = rank_env(launch, rank, "", 0) if varying else {}
            ranks.append(
                {"node": node.node, "gpus": list(node.gpus), "env": {k: mine[k] for k in varying}}
            )
        return {
            "name": launch.name,
            "command": launch.command,
            "env": {**own, **base, **{k: v for k, v in shared.items() if k not in varying}},
            "ranks": ranks,
            "time_limit_s": launch.time_limit_s,
            "grace_s": stop_grace(launch, self.grace_s),
            "place_timeout_s": self.place_timeout_s,
            "node_resource_prefix": NODE_RESOURCE_PREFIX,
        }

    def find(self, name: str) -> str | None:
        """The handle of the Ray job submitted under ``name``, or None if Ray has none."""
        if not SAFE_NAME.match(name):
            return None  # start refuses such names: never started
        info = self._info(name)
        if info is None or info.submission_id != name:
            return None
        return name

    def _info(self, handle: str) -> Any:
        """Ray's JobDetails for ``handle``; None if Ray has no such job."""
        client = self._connect()
        try:
            return client.get_job_info(handle)
        except RuntimeError as exc:
            if "status code 404" in str(exc):
                return None
            msg = f"Ray's job server could not say about {handle}: {_short(exc)}"
            raise ExecutorError(msg) from exc
        except Exception as exc:  # requests' connection errors, ...
            msg = f"cannot reach Ray's job server at {self.address}: {_short(exc)}"
            raise ExecutorError(msg) from exc

    # -- poll and cancel ---------------------------------------------------------------

    def poll(self, handle: str) -> Status:
        """Ray's view of the job; LOST if Ray has no such job; ExecutorError if unreachable."""
        if not SAFE_NAME.match(handle):
            return Status(RunState.LOST, detail=f"{handle!r} is not an attempt name")
        info = self._info(handle)
        if info is None:
            return Status(RunState.LOST, detail=f"Ray has no job {handle}")
        state = str(getattr(info.status, "value", info.status))
        if state in _RUNNING:
            now = time.monotonic()
            if now - self._synced.get(handle, -1e18) >= self.log_sync_s:
                self._synced[handle] = now
                self._copy_log(handle, info)
            return Status(RunState.RUNNING, detail=state)
        verdict = self._verdicts.get(handle)
        if verdict is None:  # ended since the last look: the final copy of its log
            verdict = self._verdicts[handle] = self._copy_log(handle, info)
            self._synced.pop(handle, None)
            if len(self._verdicts) > _VERDICTS_KEPT:  # the oldest: long recorded by the loop
                del self._verdicts[next(iter(self._verdicts))]
        code = getattr(info, "driver_exit_code", None)  # absent from older Rays
        if state == "SUCCEEDED":
            return Status(RunState.COMPLETED, exit_code=0)
        if state == "STOPPED":
            return Status(RunState.CANCELLED, detail="stopped")
        detail = verdict or (info.message or "").split("\n", 1)[0][:500]
        return Status(RunState.FAILED, exit_code=code, detail=detail or state)

    def cancel(self, handle: str) -> None:
        """``stop_job``: the driver stops every rank; idempotent (an ended job is left)."""
        if not SAFE_NAME.match(handle):
            return
        client = self._connect()
        try:
            client.stop_job(handle)
        except RuntimeError as exc:
            if "status code 404" in str(exc):
                return
            msg = f"Ray could not stop {handle}: {_short(exc)}"
            raise ExecutorError(msg) from exc
        except Exception as exc:  # requests' connection errors, ...
            msg = f"cannot reach Ray's job server at {self.address}: {_short(exc)}"
            raise ExecutorError(msg) from exc

    # -- logs --------------------------------------------------------------------------

    def _copy_log(self, handle: str, info: Any) -> str:
        """Copy Ray's log of ``handle`` into its log file; the driver's verdict line.

        The file's path comes from the job's metadata, which whoever can reach Ray could
        have written: it is used only if it names a file directly in our logs directory.
        A failure to copy is logged, never raised: the job's state does not depend on it.
        """
        path = self._log_path(info)
        try:
            text = self._connect().get_job_logs(handle)
        except (ExecutorError, RuntimeError, OSError, ValueError) as exc:  # OSError: requests'
            log.warning("ray executor: cannot fetch the log of %s: %s", handle, _short(exc))
            return ""
        verdict = ""
        for line in reversed(text[-4096:].splitlines()):
            if line.startswith(ray_driver.VERDICT):
                verdict = line[len(ray_driver.VERDICT) :].strip()
                break
        if path is not None:
            try:
                _write_section(path, handle, text[-LOG_CAP:])
            except OSError as exc:
                log.warning("ray executor: cannot write %s: %s", path, exc)
        return verdict

    def _log_path(self, info: Any) -> Path | None:
        raw = (info.metadata or {}).get("aifactory_log")
        if not isinstance(raw, str) or "\0" in raw:
            return None
        path = Path(raw)
        if path.parent != self.logs_dir or not SAFE_NAME.match(path.name):
            log.warning("ray executor: ignoring log path %r outside %s", raw, self.logs_dir)
            return None
        return path


# -- helpers ------------------------------------------------------------------------------


def _short(exc: BaseException, limit: int = 500) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def _write_section(path: Path, handle: str, text: str) -> None:
    """Make ``text`` the section of ``handle`` in ``path``, after any earlier attempts'.

    The file is replaced atomically (a reader sees the old or the new one), so copying
    the same log again, after a restart, leaves one section.
    """
    marker = f"==== ray job {handle} ====\n".encode()
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        old = b""
    at = old.rfind(marker)
    keep = old[:at] if at >= 0 else old
    if keep and not keep.endswith(b"\n"):
        keep += b"\n"
    tmp = path.with_name(f".{path.name}.ray-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(keep + marker + text.encode(errors="replace"))
    tmp.replace(path)


def _free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 now (distinct)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _answers(url: str, timeout_s: float = 2.0) -> bool:
    """Whether a Ray dashboard answers at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=timeout_s) as reply:  # noqa: S310 (our own http URL)
            return bool(json.loads(reply.read()).get("ray_version"))
    except (OSError, ValueError, urllib.error.URLError):
        return False


def local_head(data_dir: Path, run_as: str | None) -> str:
    """The dashboard URL of the local Ray head on 127.0.0.1:8265, started if none answers.

    A head this starts is detached (``ray start --head``): it outlives the service, so a
    restarted service joins it and finds its jobs. It runs with a clean environment (the
    service's, with its database URL and tokens, would reach every Ray worker) and, when
    the service is root, as the local executor's unprivileged job user.
    """
    if _answers(LOCAL_DASHBOARD):
        return LOCAL_DASHBOARD
    from aifactory.service.executors.local import LocalSetupError, job_user  # noqa: PLC0415

    try:
        user = job_user(run_as)
    except LocalSetupError as exc:
        msg = f"cannot start a local Ray head safely: {exc}"
        raise RaySetupError(msg) from exc
    temp = Path(f"/tmp/aifactory-ray-{user.uid}")  # noqa: S108 (Ray's sockets need a short path)
    bindir = Path(sys.executable).parent
    env = {
        "PATH": f"{bindir}:{DEFAULT_PATH}",
        "LANG": os.environ.get("LANG") or "C.UTF-8",
        "HOME": str(temp),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    # Only the dashboard's port is fixed (it is how a restarted service joins); Ray's other
    # fixed defaults (6379, 10001, 52365) are often taken on a shared host.
    gcs, client, agent = _free_ports(3)
    argv = [
        str(bindir / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1",
        "--port", str(gcs), "--ray-client-server-port", str(client),
        "--dashboard-agent-listen-port", str(agent),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", "8265",
        "--disable-usage-stats", "--temp-dir", str(temp),
    ]  # fmt: skip
    try:
        temp.mkdir(mode=0o700, exist_ok=True)
        if user.switch:
            os.chown(temp, user.uid, user.gid)
        data_dir.mkdir(parents=True, exist_ok=True)
        with (data_dir / "ray-head.log").open("ab") as out:
            proc = subprocess.run(  # noqa: S603 (Ray's own CLI, by absolute path)
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=temp,
                user=user.uid if user.switch else None,
                group=user.gid if user.switch else None,
                extra_groups=list(user.groups) if user.switch else None,
                timeout=HEAD_START_S,
                check=False,
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"cannot start a local Ray head as {user.name}: {exc}"
        raise RaySetupError(msg) from exc
    if proc.returncode != 0:
        msg = (
            f"`ray start --head` as {user.name} failed (exit {proc.returncode}; {user.name} "
            f"must be able to run {bindir / 'ray'}); see {data_dir / 'ray-head.log'}"
        )
        raise RaySetupError(msg)
    deadline = time.monotonic() + HEAD_START_S
    while not _answers(LOCAL_DASHBOARD):
        if time.monotonic() > deadline:
            msg = f"the local Ray head started but no dashboard answered at {LOCAL_DASHBOARD}"
            raise RaySetupError(msg)
        time.sleep(0.5)
    log.info("ray executor: started a local Ray head (%s, as %s)", LOCAL_DASHBOARD, user.name)
    return LOCAL_DASHBOARD

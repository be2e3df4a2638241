"""The Ray side of the Ray executor: every Ray job's entrypoint, and each rank's guard.

The executor (:mod:`.ray`) ships this one file as the job's ``working_dir``, with only the
attempt's spec beside it, and submits ``python aifactory_ray_driver.py``: the Ray nodes need
Ray, not aifactory, and the file imports nothing of aifactory. Without its siblings, because
the directory becomes the workers' ``sys.path`` entry, where ``ray.py`` would hide Ray. It is:

- **the driver** (no arguments): reads the attempt from ``aifactory_ray_spec.json`` (written
  by the executor: the command, the variables all ranks share, and each node rank's node,
  GPUs and own variables), reserves one placement-group bundle per rank (all or nothing: a
  gang never starts half), starts one :class:`Rank` actor per bundle, learns rank 0's node
  IP and a port free there (``MASTER_ADDR``/``MASTER_PORT``), starts every rank's command
  with those two added, relays each rank's output to its own stdout (which is the Ray job's
  log) as ``[rank R] line``, and waits. The job succeeds when every rank exits 0; the first
  rank that fails or is lost fails it and the others are stopped; ``stop_job`` (SIGTERM)
  and the attempt's time limit stop every rank. Its last line says how it ended
  (``aifactory-ray: ...``), and its exit status is the failing rank's (124 for the time
  limit, 143 when stopped);
- **a rank's guard** (``--guard GRACE COMMAND``), started by the rank's actor in a session
  of its own: runs the command under ``/bin/sh -c`` with exactly the environment it was
  given, as a child subreaper (a daemonised descendant stays its descendant), and stops
  every descendant (SIGTERM, SIGKILL after GRACE s) when it is told to (SIGTERM), when the
  actor that started it dies (its parent changes), and when the command ends (leftover
  background processes die with their rank). Ray's own clean-up of a dead worker kills the
  worker's process group, which the guard is not in: the guard outlives the worker just long
  enough to do this.

Tenant input is hostile: the command only ever reaches ``/bin/sh -c`` as one argument, and
the rank's environment is built from the spec alone (the actor's, which carries Ray's and
whoever started Ray's, never reaches it).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SHIPPED_NAME = "aifactory_ray_driver.py"  # the file's name in the job's working_dir
SPEC_NAME = "aifactory_ray_spec.json"  # beside it: the attempt
VERDICT = "aifactory-ray:"  # the driver's last line starts with it
TIME_LIMIT_EXIT = 124
STOPPED_EXIT = 143
POLL_S = 0.5
OUTPUT_CAP = 8 << 20  # bytes a rank may buffer between two drains; more is dropped
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


# -- the guard (stdlib only, single-threaded) -----------------------------------------------


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _descendants(root: int) -> list[int]:
    """Every live descendant of ``root``, from ``/proc`` (parents before children)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_all(sig: signal.Signals) -> None:
    me = os.getpid()
    for pid in _descendants(me):
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def _reap() -> dict[int, int]:
    """Collect every exited child (a subreaper inherits orphans): {pid: exit status}."""
    done: dict[int, int] = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done[pid] = os.waitstatus_to_exitcode(status)


def _stop_tree(grace_s: float) -> None:
    """SIGTERM every descendant, SIGKILL what is left after ``grace_s``."""
    _signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap()
        if not _descendants(os.getpid()):
            return
        time.sleep(0.05)
    for _ in range(3):  # a process forking while it is killed leaves a child behind
        _signal_all(signal.SIGKILL)
        time.sleep(0.05)
        _reap()
        if not _descendants(os.getpid()):
            return


def guard(grace_s: float, command: str) -> int:
    """Run ``command`` and keep every process it starts inside this rank (see the module)."""
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda sig, _frame: stopping.append(sig))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    child = subprocess.Popen(  # noqa: S603 (the tenant's command, as one argument of sh -c)
        ["/bin/sh", "-c", command],
        # Dies with the guard even if the guard is SIGKILLed. Safe here: this process has no
        # other thread (a preexec_fn is not, in a threaded parent).
        preexec_fn=lambda: _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL),  # noqa: PLW1509
    )
    while True:
        exited = _reap()
        if child.pid in exited:
            child.returncode = exited[child.pid]  # reaped here, not by Popen
            code = exited[child.pid]
            _stop_tree(0.0)  # background processes end with their rank
            return code if code >= 0 else 128 - code
        if stopping or os.getppid() != parent:
            _stop_tree(grace_s)
            return STOPPED_EXIT
        time.sleep(0.1)


# -- the rank actor (runs in a Ray worker) --------------------------------------------------


class Rank:
    """One node rank: starts its guard, buffers its output, stops it."""

    def __init__(self, name: str, rank: int, grace_s: float) -> None:
        self.name = name
        self.rank = rank
        self.grace_s = grace_s
        # The worker runs in the job's working_dir, where this file was shipped.
        self.guard_path = str(Path.cwd() / SHIPPED_NAME)
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir: str | None = None
        self.buf = bytearray()
        self.dropped = 0
        self.lock = threading.Lock()
        self.reader: threading.Thread | None = None

    def node_ip(self) -> str:
        import ray  # noqa: PLC0415 (only inside Ray)

        return str(ray.util.get_node_ip_address())

    def free_port(self) -> int:
        """A TCP port free on this node now (the rendezvous binds it moments later)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("", 0))
            return int(sock.getsockname()[1])

    def start(self, command: str, env: dict[str, str]) -> int:
        """Start the command under its guard in a private working directory; its pid."""
        self.workdir = tempfile.mkdtemp(prefix=f"{self.name}-rank{self.rank}-")
        env = {**env, "HOME": self.workdir, "TMPDIR": self.workdir}
        self.proc = subprocess.Popen(  # noqa: S603 (our guard; the command is one argument)
            [sys.executable, "-I", self.guard_path, "--guard", str(self.grace_s), command],
            env=env,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # out of the worker's process group, which Ray kills
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 65536):
            with self.lock:
                if len(self.buf) + len(chunk) > OUTPUT_CAP:
                    self.dropped += len(chunk)
                else:
                    self.buf += chunk

    def poll(self) -> tuple[bytes, int | None]:
        """The output since the last poll, and the exit status once the rank ended."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None and self.reader is not None:
            self.reader.join(timeout=5)  # the rest of its output
            self._clean()
        with self.lock:
            out = bytes(self.buf)
            self.buf.clear()
            if self.dropped:
                out += f"\n[{self.dropped} bytes of output dropped]\n".encode()
                self.dropped = 0
        return out, code

    def stop(self) -> None:
        """Stop the rank (its guard stops every process of it); returns once it ended."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.grace_s + 5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def _clean(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


# -- the driver -----------------------------------------------------------------------------


def _say(text: str) -> None:
    print(f"{VERDICT} {text}", flush=True)


class _Relay:
    """Each rank's output as whole lines prefixed ``[rank R]`` on the driver's stdout."""

    def __init__(self, ranks: int) -> None:
        self.partial = [b""] * ranks

    def emit(self, rank: int, data: bytes, *, final: bool = False) -> None:
        data = self.partial[rank] + data
        lines = data.split(b"\n")
        self.partial[rank] = b"" if final else lines.pop()
        out = sys.stdout
        for line in lines:
            if line or not final:
                out.write(f"[rank {rank}] {line.decode(errors='replace')}\n")
        out.flush()


def _bundle(rank: dict[str, Any], pin: str | None) -> dict[str, float]:
    gpus = len(rank["gpus"])
    # A bundle may not be empty; a GPU-less rank reserves a sliver of a CPU.
    bundle: dict[str, float] = {"GPU": float(gpus)} if gpus else {"CPU": 0.01}
    if pin is not None:
        # A sliver of the node's marker resource pins the rank there and lets every job on
        # that node share it (the service's scheduler, not Ray, decided who fits).
        bundle[pin + rank["node"]] = 0.001
    return bundle


def drive(spec: dict[str, Any]) -> int:
    """Run one attempt on the cluster (see the module); the job's exit status."""
    stopping: list[int] = []
    import ray  # noqa: PLC0415 (only inside Ray)
    from ray.util.placement_group import placement_group  # noqa: PLC0415
    from ray.util.scheduling_strategies import (  # noqa: PLC0415
        PlacementGroupSchedulingStrategy,
    )

    ray.init(log_to_driver=False)  # the ranks' output comes through _Relay, whole
    signal.signal(signal.SIGTERM, lambda sig, _frame: stopping.append(sig))
    ranks: list[dict[str, Any]] = spec["ranks"]
    grace_s = float(spec["grace_s"])
    limit = spec.get("time_limit_s")
    prefix = str(spec["node_resource_prefix"])
    known = ray.cluster_resources()
    pin = prefix if all(prefix + r["node"] in known for r in ranks) else None
    bundles = [_bundle(r, pin) for r in ranks]
    how = "each pinned to its node" if pin else "placed by Ray (no node resources)"
    _say(f"{spec['name']}: {len(ranks)} node ranks, {how}: {bundles}")
    group = placement_group(bundles, strategy="PACK" if pin else "SPREAD")
    deadline = time.monotonic() + float(spec["place_timeout_s"])
    while not group.wait(1):
        if stopping:
            _say("stopped before its ranks were placed")
            return STOPPED_EXIT
        if time.monotonic() > deadline:
            _say(f"Ray could not place the ranks within {spec['place_timeout_s']} s: {bundles}")
            return 2
    # Actor handles are untyped in Ray (their methods are reached through ``.remote``).
    remote: Any = ray.remote(max_restarts=0)(Rank)
    actors: list[Any] = []
    for i, bundle in enumerate(bundles):
        strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i)
        actors.append(
            remote.options(
                num_cpus=bundle.get("CPU", 0.0),
                num_gpus=bundle.get("GPU", 0.0),
                resources={k: v for k, v in bundle.items() if k not in ("CPU", "GPU")},
                scheduling_strategy=strategy,
            ).remote(spec["name"], i, grace_s)
        )
    relay = _Relay(len(ranks))
    try:
        addr = ray.get(actors[0].node_ip.remote(), timeout=120)
        port = ray.get(actors[0].free_port.remote(), timeout=60)
        rendezvous = {"MASTER_ADDR": addr, "MASTER_PORT": str(port)}
        starts = [
            a.start.remote(spec["command"], {**spec["env"], **r["env"], **rendezvous})
            for a, r in zip(actors, ranks, strict=True)
        ]
        pids = ray.get(starts, timeout=120)
    except ray.exceptions.RayError as exc:
        # Those that did start are stopped (and would be anyway: the actors end with the
        # driver, and each guard with its actor).
        with contextlib.suppress(ray.exceptions.RayError):
            ray.get([a.stop.remote() for a in actors], timeout=grace_s + 10)
        _say(f"the ranks could not start: {type(exc).__name__}: {exc}")
        return 1
    _say(f"rendezvous at {addr}:{port}; rank pids {pids}")
    started = time.monotonic()  # the time limit counts from when every rank runs
    running = set(range(len(ranks)))
    verdict, code = "every rank exited 0", 0
    while running:
        if stopping:
            verdict, code = "stopped: every rank stopped", STOPPED_EXIT
            break
        if limit is not None and time.monotonic() - started > float(limit):
            verdict, code = f"time limit of {float(limit):g} s exceeded", TIME_LIMIT_EXIT
            break
        failed = None
        for i in sorted(running):
            try:
                out, rc = ray.get(actors[i].poll.remote(), timeout=60)
            except ray.exceptions.RayError as exc:
                failed = (f"rank {i} was lost: {type(exc).__name__}", 1)
                running.discard(i)
                break
            relay.emit(i, out, final=rc is not None)
            if rc is not None:
                running.discard(i)
                if rc != 0:
                    failed = (f"rank {i} exited with status {rc}", rc if 0 < rc < 256 else 1)
                    break
        if failed is not None:
            verdict, code = failed
            break
        if running:
            time.sleep(POLL_S)
    if running:
        # Stop the others together, then relay what they wrote until they stopped.
        stops = [actors[i].stop.remote() for i in sorted(running)]
        with contextlib.suppress(ray.exceptions.RayError):
            ray.get(stops, timeout=grace_s + 10)
        for i in sorted(running):
            with contextlib.suppress(ray.exceptions.RayError):
                out, _rc = ray.get(actors[i].poll.remote(), timeout=10)
                relay.emit(i, out, final=True)
        if code == STOPPED_EXIT:
            verdict = "stopped: every rank stopped"
        else:
            verdict += f"; ranks {sorted(running)} stopped"
    _say(verdict)
    return code


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--guard":
        return guard(float(argv[1]), argv[2])
    if argv:
        print(f"usage: {SHIPPED_NAME} [--guard GRACE COMMAND]", file=sys.stderr)
        return 2
    return drive(json.loads(Path(__file__).with_name(SPEC_NAME).read_text()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

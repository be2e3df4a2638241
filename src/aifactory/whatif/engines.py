"""Where a sweep's runs execute: a process pool on this machine, or tasks on a Ray cluster.

Both engines take the same :class:`~aifactory.whatif.runner.RunTask` list and call the same
:func:`~aifactory.whatif.runner.run_one`, and a run's numbers depend only on its task (its
seed is in the task), so the engine changes when and where a run happens, never its result.
Rows come back as runs finish (``on_row``); :func:`order_rows` puts them back in task order.

- ``local``: :class:`concurrent.futures.ProcessPoolExecutor` with the *spawn* start method
  (a fresh interpreter per worker: no state forked from the driver, as on Ray).
- ``ray``: each run is a Ray task (``num_cpus=1``) on the cluster at ``address``, or on a
  local head started with ``num_cpus=workers``; results are taken with ``ray.wait`` as they
  finish, and a task whose worker dies is retried ``max_retries`` times by Ray before its
  row says so. Ray is the optional extra ``aifactory[ray]``, imported only here.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from enum import StrEnum
from pathlib import Path
from typing import Any

from aifactory.whatif.runner import RunTask, run_one

Row = dict[str, Any]
OnRow = Callable[[Row], None]

#: Ray retries a task whose worker process died this many times (Ray's own default is 3).
MAX_RETRIES = 3


class Engine(StrEnum):
    """The engines ``aifactory sweep --engine`` knows."""

    LOCAL = "local"
    RAY = "ray"


class EngineError(RuntimeError):
    """The engine cannot run at all (Ray missing, cluster unreachable): one line for a user."""


def _error_row(task: RunTask, message: str) -> Row:
    return {
        "variation": task.variation,
        "seed_index": task.seed_index,
        "seed": task.seed,
        "status": "error",
        "error": message[:2000],
    }


def run_local(tasks: Sequence[RunTask], workers: int, on_row: OnRow | None = None) -> list[Row]:
    """Every task on a spawn-context process pool of ``workers`` processes."""
    rows: list[Row] = []
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(run_one, t): t for t in tasks}
        for fut in as_completed(futures):
            try:
                row = fut.result()
            except BrokenProcessPool as exc:
                row = _error_row(futures[fut], f"worker process died: {exc}")
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def run_ray(
    tasks: Sequence[RunTask],
    workers: int,
    address: str | None = None,
    on_row: OnRow | None = None,
    max_retries: int = MAX_RETRIES,
    fn: Callable[[RunTask], Row] = run_one,
) -> list[Row]:
    """Every task as a Ray task on the cluster at ``address`` (or a local head it starts);
    ``fn`` is the run itself (tests pass one whose worker dies)."""
    try:
        import ray  # noqa: PLC0415 (optional extra, only for this engine)
        from ray.exceptions import RayError  # noqa: PLC0415
    except ImportError:
        msg = "--engine ray needs Ray: pip install 'aifactory[ray]'"
        raise EngineError(msg) from None
    # Workers import aifactory from where this driver does (a source checkout included).
    src = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    runtime_env = {"env_vars": {"PYTHONPATH": path}}
    # A driver that is already connected (a notebook, a test) keeps its connection.
    started = not ray.is_initialized()
    if started and address:
        check_reachable(address)
    try:
        if started and address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        elif started:
            ray.init(
                num_cpus=workers,
                include_dashboard=False,
                runtime_env=runtime_env,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        msg = f"cannot start or join Ray{f' at {address}' if address else ''}: {exc}"
        raise EngineError(msg.splitlines()[0]) from None
    try:
        remote = ray.remote(num_cpus=1, max_retries=max_retries)(fn)
        pending = {remote.remote(t): t for t in tasks}
        rows: list[Row] = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except RayError as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    row = _error_row(task, f"Ray task failed after retries: {first}")
                rows.append(row)
                if on_row is not None:
                    on_row(row)
        return rows
    finally:
        if started:
            ray.shutdown()


#: Seconds to wait for a TCP connection to a cluster address before calling it unreachable
#: (ray.init itself retries an unreachable address for minutes).
CONNECT_TIMEOUT_S = 5.0


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse, in one line, a ``host:port`` or ``ray://host:port`` address that does not
    accept a TCP connection; other forms (``auto``, ``local``) are left to Ray."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        msg = f"--ray-address: cannot reach {address} ({exc.strerror or exc})"
        raise EngineError(msg) from None


def order_rows(rows: Sequence[Row], tasks: Sequence[RunTask]) -> list[Row]:
    """Rows in task order (the base first, then each variation; seeds ascending)."""
    rank = {(t.variation, t.seed_index): i for i, t in enumerate(tasks)}
    return sorted(rows, key=lambda r: rank[(r["variation"], r["seed_index"])])

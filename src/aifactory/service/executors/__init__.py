"""Executors: the backends that run jobs (local processes, Slurm, Ray), behind one interface."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aifactory.service.executors.base import Executor, ExecutorError, Launch, RunState, Status

if TYPE_CHECKING:
    from aifactory.service.settings import ServiceSettings

__all__ = ["Executor", "ExecutorError", "Launch", "RunState", "Status", "make_executor"]


def make_executor(kind: str, settings: ServiceSettings | None = None) -> Executor:
    """The executor registered under ``kind`` (local, slurm, ray or noop).

    The local executor keeps its state under ``settings.data_dir``, runs jobs as
    ``settings.run_as`` and keeps them out of the SQLite files of ``settings.database_url``.
    The Ray executor submits to ``settings.ray_address`` (None: a local head, joined or
    started) and copies the jobs' logs under ``settings.data_dir``.
    """
    if kind == "local":
        from aifactory.service.executors.local import LocalExecutor  # noqa: PLC0415 (lazy)

        if settings is None:
            return LocalExecutor()
        return LocalExecutor(
            settings.data_dir,
            run_as=settings.run_as,
            protect=_sqlite_files(settings.database_url),
        )
    if kind == "noop":
        from aifactory.service.executors.noop import NoopExecutor  # noqa: PLC0415

        return NoopExecutor()
    if kind == "slurm":
        from aifactory.service.executors import slurm  # noqa: PLC0415 (optional backend)

        return slurm.executor_for(settings)
    if kind == "ray":
        from aifactory.service.executors.ray import RayExecutor  # noqa: PLC0415 (optional)

        if settings is None:
            return RayExecutor()
        return RayExecutor(settings.ray_address, data_dir=settings.data_dir, run_as=settings.run_as)
    msg = f"executor: unknown kind '{kind}' (use local, slurm, ray or noop)"
    raise ValueError(msg)


def _sqlite_files(url: str) -> list[Path]:
    """The files of a SQLite database URL (none for other backends or in-memory ones)."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 (only a local executor needs it)

    parsed = make_url(url)
    db = parsed.database
    if parsed.get_backend_name() != "sqlite" or not db or db.startswith((":memory:", "file:")):
        return []
    path = Path(db)
    return [path, *(path.with_name(f"{path.name}{s}") for s in ("-wal", "-shm", "-journal"))]

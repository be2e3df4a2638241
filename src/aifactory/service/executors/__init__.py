"""Executors: the backends that run jobs (local processes, Slurm), behind one interface."""

from __future__ import annotations

from pathlib import Path

from aifactory.service.executors.base import Executor, ExecutorError, Launch, RunState, Status

__all__ = ["Executor", "ExecutorError", "Launch", "RunState", "Status", "make_executor"]


def make_executor(kind: str, workdir: Path | None = None) -> Executor:
    """The executor registered under ``kind`` (local, slurm or noop)."""
    if kind == "local":
        from aifactory.service.executors.local import LocalExecutor  # noqa: PLC0415 (lazy)

        return LocalExecutor(workdir)
    if kind == "noop":
        from aifactory.service.executors.noop import NoopExecutor  # noqa: PLC0415

        return NoopExecutor()
    if kind == "slurm":
        from aifactory.service.executors import slurm  # noqa: PLC0415 (optional backend)

        return slurm.SlurmExecutor()
    msg = f"executor: unknown kind '{kind}' (use local, slurm or noop)"
    raise ValueError(msg)

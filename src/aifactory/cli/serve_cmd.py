"""`aifactory serve`: the control-plane API and scheduler loop (FastAPI + Uvicorn)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from aifactory.cli.common import fail, user_errors


def serve(
    *,
    fleet: Annotated[
        str | None,
        typer.Option("--fleet", help="Fleet name or YAML path; default $AIFACTORY_FLEET or demo."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="SQLAlchemy URL; default $AIFACTORY_DATABASE_URL or aifactory-data/aifactory.db.",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    executor: Annotated[
        str, typer.Option("--executor", help="local, slurm or noop (runs nothing).")
    ] = "local",
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where job logs are written.")
    ] = Path("aifactory-data"),
    run_as: Annotated[
        str | None,
        typer.Option(
            "--run-as",
            help="User local jobs run as (default aifactory-job when serving as root; "
            "made by scripts/setup-job-user.sh). A non-root service runs them as itself.",
        ),
    ] = None,
    policy: Annotated[str, typer.Option("--policy", help="Scheduling policy.")] = "fifo",
    backfill: Annotated[str, typer.Option("--backfill", help="easy or none.")] = "easy",
    tick: Annotated[
        float, typer.Option("--tick", min=0.01, help="Seconds between periodic cycles.")
    ] = 1.0,
    scheduler: Annotated[
        bool,
        typer.Option("--scheduler/--no-scheduler", help="Run (or not) a scheduler loop here."),
    ] = True,
    lost_policy: Annotated[
        str, typer.Option("--lost-policy", help="requeue or fail jobs lost across a restart.")
    ] = "requeue",
    log_level: Annotated[str, typer.Option("--log-level", help="Uvicorn log level.")] = "info",
) -> None:
    """Run the control plane: REST API under /v1 and the scheduler loop."""
    import uvicorn  # noqa: PLC0415 (lazy: the rest of the CLI does not need a web server)

    from aifactory.service.api import Service, create_app  # noqa: PLC0415
    from aifactory.service.db import DatabaseError  # noqa: PLC0415
    from aifactory.service.gcpacing import GcPacer  # noqa: PLC0415
    from aifactory.service.settings import (  # noqa: PLC0415
        ExecutorKind,
        LostPolicy,
        ServiceSettings,
        default_database_url,
        default_fleet,
    )

    try:
        kind = ExecutorKind(executor)
    except ValueError:
        fail(f"--executor: unknown executor '{executor}' (use local, slurm or noop)")
    if backfill not in ("easy", "none"):
        fail(f"--backfill: unknown mode '{backfill}' (use easy or none)")
    try:
        lost = LostPolicy(lost_policy)
    except ValueError:
        fail(f"--lost-policy: unknown policy '{lost_policy}' (use requeue or fail)")
    settings = ServiceSettings(
        database_url=database_url or default_database_url(),
        fleet=fleet or default_fleet(),
        executor=kind,
        data_dir=data_dir,
        run_as=run_as,
        policy=policy,
        backfill=backfill,
        tick_s=tick,
        run_scheduler=scheduler,
        lost_policy=lost,
    )
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    with user_errors():
        try:
            service = Service(settings)
        except (DatabaseError, ValueError, KeyError) as exc:
            fail(str(exc))
    pacer = GcPacer()  # keeps full collections off the submit path (see gcpacing.py)
    pacer.start()
    try:
        uvicorn.run(create_app(service), host=host, port=port, log_level=log_level)
    finally:
        pacer.stop()

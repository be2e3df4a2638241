"""`aifactory serve`: the control-plane API and scheduler loop (FastAPI + Uvicorn)."""

from __future__ import annotations

import dataclasses
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aifactory.cli.common import fail, user_errors
from aifactory.scheduler.config import MAX_GRACE_S

if TYPE_CHECKING:
    from aifactory.service.db import Database


def check_port(host: str, port: int) -> None:
    """Exit 2 now if ``host:port`` cannot be listened on (busy, or not an address here),
    rather than after the database is migrated and the scheduler has started."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"--host: cannot resolve {host!r} ({exc.strerror})")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # as Uvicorn binds: SO_REUSEADDR, so a port in TIME_WAIT is not reported busy
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            fail(f"--port: cannot listen on {host}:{port} ({exc.strerror or exc})")


def check_database(db: Database) -> None:
    """Exit 2 now if the database cannot be reached (one connection, then closed)."""
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    try:
        with db.read():
            pass
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        fail(f"--database-url: cannot connect to {db.url.render_as_string()} ({reason})")


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
        str, typer.Option("--executor", help="local, slurm, ray or noop (runs nothing).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Ray dashboard URL for --executor ray (http://HEAD:8265); default "
            "$AIFACTORY_RAY_ADDRESS, else a local head on 127.0.0.1:8265, joined or started. "
            "Needs pip install 'aifactory[ray]'.",
        ),
    ] = None,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where job logs are written.")
    ] = Path("aifactory-data"),
    reports_dir: Annotated[
        Path | None,
        typer.Option(
            "--reports-dir",
            help="Twin reports the dashboard lists, one folder per simulate/run/sweep --out "
            "(default DATA_DIR/reports).",
        ),
    ] = None,
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
    preempt_grace: Annotated[
        float,
        typer.Option(
            "--preempt-grace",
            help="Seconds a preempted job keeps its GPUs to save, SIGTERM to SIGKILL (0: none).",
        ),
    ] = 0.0,
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
    max_time_limit: Annotated[
        float | None,
        typer.Option(
            "--max-time-limit",
            min=1,
            max=30 * 86_400,
            help="Longest time_limit_s a job may ask, s (default and most: 30 d).",
        ),
    ] = None,
    max_pending_per_tenant: Annotated[
        int | None,
        typer.Option(
            "--max-pending-per-tenant", min=0, help="Pending jobs per tenant (100000; 0: no limit)."
        ),
    ] = None,
    submit_rate: Annotated[
        float | None,
        typer.Option(
            "--submit-rate", min=0, help="Submits/s per tenant on this replica (1000; 0: no limit)."
        ),
    ] = None,
    submit_burst: Annotated[
        int | None,
        typer.Option("--submit-burst", min=0, help="Submits per tenant at once (20000)."),
    ] = None,
    auth_failures: Annotated[
        int | None,
        typer.Option(
            "--auth-failures",
            min=0,
            help="Bad tokens per client address per minute, then 429 (100; 0: no limit).",
        ),
    ] = None,
    whatif_max_jobs: Annotated[
        int,
        typer.Option(
            "--whatif-max-jobs",
            min=0,
            help="Live jobs past which the dashboard's what-if is refused (2000; 0: no limit).",
        ),
    ] = 2000,
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
        default_ray_address,
    )

    try:
        kind = ExecutorKind(executor)
    except ValueError:
        fail(f"--executor: unknown executor '{executor}' (use local, slurm, ray or noop)")
    if backfill not in ("easy", "none"):
        fail(f"--backfill: unknown mode '{backfill}' (use easy or none)")
    if not 0 <= preempt_grace <= MAX_GRACE_S:
        fail(f"--preempt-grace: must be from 0 to {MAX_GRACE_S:g} s (got {preempt_grace})")
    try:
        lost = LostPolicy(lost_policy)
    except ValueError:
        fail(f"--lost-policy: unknown policy '{lost_policy}' (use requeue or fail)")
    settings = ServiceSettings(
        database_url=database_url or default_database_url(),
        fleet=fleet or default_fleet(),
        executor=kind,
        data_dir=data_dir,
        reports_dir=reports_dir,
        whatif_max_jobs=whatif_max_jobs,
        run_as=run_as,
        ray_address=ray_address or default_ray_address(),
        policy=policy,
        backfill=backfill,
        preempt_grace_s=preempt_grace,
        tick_s=tick,
        run_scheduler=scheduler,
        lost_policy=lost,
    )
    # The limits given on the command line; the others keep ServiceSettings' defaults.
    base = settings
    settings = dataclasses.replace(
        settings,
        max_time_limit_s=base.max_time_limit_s if max_time_limit is None else max_time_limit,
        max_pending_per_tenant=base.max_pending_per_tenant
        if max_pending_per_tenant is None
        else max_pending_per_tenant,
        submit_rate_per_s=base.submit_rate_per_s if submit_rate is None else submit_rate,
        submit_burst=base.submit_burst if submit_burst is None else submit_burst,
        auth_failures_per_window=base.auth_failures_per_window
        if auth_failures is None
        else auth_failures,
    )
    check_port(host, port)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    with user_errors():
        try:
            service = Service(settings)
        except (DatabaseError, ValueError, KeyError) as exc:
            fail(str(exc))
    check_database(service.db)
    pacer = GcPacer()  # keeps full collections off the submit path (see gcpacing.py)
    pacer.start()
    try:
        uvicorn.run(create_app(service), host=host, port=port, log_level=log_level)
    finally:
        pacer.stop()

"""The REST API (``/v1``), built with FastAPI so the OpenAPI schema is generated.

Access rules, enforced here and nowhere else:

- every endpoint but ``/healthz`` needs ``Authorization: Bearer <token>`` (401 otherwise);
- members and tenant-admins act only on their own tenant: another tenant's job reads as
  404 (its existence is not revealed) and submitting as another tenant is 403;
- tenant-admins also manage their tenant's tokens; admins may do anything;
- ``/metrics`` (all tenants' figures) is for admins.

A submit is committed before its 201 is sent. With an ``Idempotency-Key`` a retry returns
the job the first call made (200), and a key reused for a different body is a 409.

The submit path is the hot one, so it stays on the event loop: the caller's token is
resolved from the authenticator's cache (a thread only on a miss), the request is
validated, then handed to the group-commit writer (:mod:`.batcher`) and awaited; the
201 body is serialised once, by pydantic, with no second validation pass.
"""

from __future__ import annotations

import importlib
import importlib.resources
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from aifactory.fleet import Fleet, compile_topology, load_fleet
from aifactory.fleet.topology import Topology
from aifactory.service import store
from aifactory.service.auth import Authenticator, Principal, Role, create_token, list_tokens
from aifactory.service.auth import revoke_token as revoke_token_row
from aifactory.service.batcher import SubmitBatcher, SubmitRequest
from aifactory.service.db import Database
from aifactory.service.executors import Executor, make_executor
from aifactory.service.limits import BodySizeLimit
from aifactory.service.loop import CycleStats, SchedulerLoop, fork_state
from aifactory.service.metrics import render_metrics
from aifactory.service.schemas import (
    Forecast,
    JobDetail,
    JobPage,
    JobSubmit,
    JobView,
    QuotaRow,
    TokenCreate,
    TokenCreated,
)
from aifactory.service.settings import ServiceSettings
from aifactory.workload.job import JobState

log = logging.getLogger(__name__)

FORK_CACHE_S = 1.0  # forecasts and quotas are recomputed at most this often


class FieldError(ValueError):
    """Bad input that pydantic cannot see (e.g. an unknown GPU class): a 422 on ``field``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Service:
    """One replica: database, fleet, authenticator, and (maybe) the scheduler loop."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.time,
        fleet: Fleet | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.db = Database(settings.database_url)
        self.fleet = fleet or load_fleet(settings.fleet)
        self.topo: Topology = compile_topology(self.fleet)
        self.tenants = {t.name for t, _, _ in self.fleet.iter_tenants()}
        self.capacity = self.topo.class_capacity()
        self.auth = Authenticator(self.db, clock)
        self.stats = CycleStats()
        self.executor = executor or make_executor(settings.executor.value)
        self.loop: SchedulerLoop | None = None
        if settings.run_scheduler:
            self.loop = SchedulerLoop(
                self.db, self.topo, self.executor, settings, clock=clock, stats=self.stats
            )
        self.batcher = SubmitBatcher(self.db, on_commit=self._submitted)
        self._fork_lock = threading.Lock()
        self._quotas: tuple[float, list[dict[str, Any]]] | None = None
        self._forecast: tuple[float, dict[str, tuple[float, float]]] | None = None

    def start(self) -> None:
        """Migrate (if asked), start the submit writer and the scheduler loop."""
        if self.settings.migrate:
            self.db.upgrade()
        self.batcher.start()
        if self.loop is not None:
            self.loop.start()

    def stop(self) -> None:
        """Commit queued submits, stop the loop and close the database."""
        self.batcher.stop()
        if self.loop is not None:
            self.loop.stop()
        self.db.dispose()

    def _submitted(self) -> None:
        """A batch of new jobs is committed: the scheduler should look soon."""
        if self.loop is not None:
            self.loop.wake()

    def quota_table(self) -> list[dict[str, Any]]:
        """The quota table of a scheduler forked off the database (cached briefly)."""
        with self._fork_lock:
            now = self.clock()
            if self._quotas is None or now - self._quotas[0] > FORK_CACHE_S:
                sched = fork_state(self.db, self.topo, self.settings, now)
                self._quotas = (now, list(sched.quota_table()))
            return self._quotas[1]

    def forecasts(self) -> tuple[float, dict[str, tuple[float, float]]]:
        """(time, job id -> (start, end)) from the twin run forward on a fork (cached)."""
        try:  # looked up at call time: the twin's forecast is optional for the API
            forecast = importlib.import_module("aifactory.twin.forecast").forecast
        except ImportError as exc:
            raise HTTPException(503, "forecast: the twin's forecast is not installed") from exc
        with self._fork_lock:
            now = self.clock()
            if self._forecast is None or now - self._forecast[0] > FORK_CACHE_S:
                sched = fork_state(self.db, self.topo, self.settings, now)
                self._forecast = (now, dict(forecast(sched, now)))
            return self._forecast


_bearer = HTTPBearer(auto_error=False)


async def _principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from the bearer token (401 if missing, unknown or revoked).

    Async so a cached token costs no thread hop; only a cache miss reads the database,
    in the threadpool.
    """
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    service: Service = request.app.state.service
    hit, who = service.auth.cached(creds.credentials)
    if not hit:
        who = await run_in_threadpool(service.auth.resolve, creds.credentials)
    if who is None:
        raise HTTPException(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return who


Caller = Annotated[Principal, Depends(_principal)]


def create_app(service: Service) -> FastAPI:
    """The FastAPI application over one :class:`Service`."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="aifactory control plane",
        version="1",
        lifespan=lifespan,
        description="Submit and track GPU jobs under tenant quotas.",
    )
    app.state.service = service
    app.add_middleware(BodySizeLimit, max_bytes=service.settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "reason": e["msg"]}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(FieldError)
    async def _field(_req: Request, exc: FieldError) -> JSONResponse:
        return JSONResponse(
            {"detail": [{"field": exc.field, "reason": exc.reason}]}, status_code=422
        )

    @app.exception_handler(SQLAlchemyError)
    async def _db_down(_req: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("database error: %s", exc)
        return JSONResponse({"detail": "database unavailable, retry"}, status_code=503)

    def visible_job(who: Principal, job_id: int) -> Any:
        with service.db.read() as conn:
            row = store.get_job(conn, job_id)
            if row is None or not who.can_act_on(row["tenant"]):
                raise HTTPException(404, f"job {job_id}: not found")
            return row

    # The web dashboard: three static files with no data in them; the page's script asks
    # the API for everything with the bearer token the user gives it, so it sees exactly
    # what that token may see. Served with a CSP that allows only this origin's scripts.
    pages = {
        name: (importlib.resources.files("aifactory.service.dashboard") / name).read_text()
        for name in ("index.html", "app.js", "app.css")
    }
    csp = {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'"
        ),
        "X-Content-Type-Options": "nosniff",
    }

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    @app.get("/dashboard", response_class=HTMLResponse, tags=["dashboard"])
    def dashboard() -> HTMLResponse:
        """The web dashboard (fleet, quotas, jobs; cancel). Needs a token to show data."""
        return HTMLResponse(pages["index.html"], headers=csp)

    @app.get("/dashboard/app.js", include_in_schema=False)
    def dashboard_js() -> Response:
        return Response(pages["app.js"], media_type="text/javascript", headers=csp)

    @app.get("/dashboard/app.css", include_in_schema=False)
    def dashboard_css() -> Response:
        return Response(pages["app.css"], media_type="text/css", headers=csp)

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        """Liveness and readiness: the database answers; whether this replica schedules."""
        try:
            with service.db.read() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise HTTPException(503, "database unavailable") from exc
        loop = service.loop
        role = "off" if loop is None else ("leader" if loop.leading else "follower")
        return {"status": "ok", "scheduler": role, "fleet": service.fleet.name}

    @app.post(
        "/v1/jobs",
        status_code=201,
        response_model=JobView,
        responses={200: {"model": JobView, "description": "A retry: the job its key made."}},
        tags=["jobs"],
    )
    async def submit_job(
        *,
        body: JobSubmit,
        who: Caller,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                max_length=128,
                min_length=1,
                description="Client-chosen key; a retry with it never makes a second job.",
            ),
        ] = None,
    ) -> Response:
        """Submit a job; it is committed before the 201 is sent."""
        tenant = body.tenant or who.tenant
        if tenant is None:
            raise FieldError("tenant", "required: this admin token has no tenant")
        if not who.can_act_on(tenant):
            raise HTTPException(403, f"tenant: this token may not submit as '{tenant}'")
        if tenant not in service.tenants:
            raise FieldError("tenant", f"unknown tenant '{tenant}'")
        if body.gpu_class is not None and body.gpu_class not in service.capacity:
            known = ", ".join(service.capacity)
            raise FieldError(
                "gpu_class", f"unknown GPU class '{body.gpu_class}' (fleet has: {known})"
            )
        limit = (
            service.capacity[body.gpu_class] if body.gpu_class else max(service.capacity.values())
        )
        if body.gpus > limit:
            where = f"class {body.gpu_class}" if body.gpu_class else "any one class"
            raise FieldError("gpus", f"{body.gpus} is more than the {limit} GPUs of {where}")
        item = SubmitRequest(body, tenant, who.token_id, service.clock(), idempotency_key)
        try:
            done = await service.batcher.submit_async(item)
        except store.IdempotencyConflictError as exc:
            raise HTTPException(409, str(exc)) from None
        return Response(
            store.to_view(done.job).model_dump_json(),
            status_code=201 if done.created else 200,
            media_type="application/json",
            headers={"Location": f"/v1/jobs/{done.job['id']}"},
        )

    @app.get("/v1/jobs", response_model=JobPage, tags=["jobs"])
    def list_jobs(
        *,
        who: Caller,
        state: Annotated[list[JobState] | None, Query(description="Only these states.")] = None,
        tenant: Annotated[str | None, Query(max_length=64)] = None,
        name: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[
            int | None, Query(ge=1, description="next_cursor of the last page")
        ] = None,
    ) -> JobPage:
        """Jobs visible to the caller, newest first, one page at a time."""
        tenants: list[str] | None
        if tenant is not None:
            if not who.can_act_on(tenant):
                raise HTTPException(403, f"tenant: this token may not see '{tenant}'")
            tenants = [tenant]
        elif who.role is Role.ADMIN:
            tenants = None
        else:
            tenants = [who.tenant or ""]
        rows, nxt = store.list_jobs(
            service.db,
            tenants=tenants,
            states=[s.value for s in state or []],
            name=name,
            limit=limit,
            cursor=cursor,
        )
        return JobPage(items=[store.to_view(r) for r in rows], next_cursor=nxt)

    @app.get("/v1/jobs/{job_id}", response_model=JobDetail, tags=["jobs"])
    def show_job(
        job_id: int, who: Caller, log_lines: Annotated[int, Query(ge=0, le=1000)] = 50
    ) -> JobDetail:
        """State, history, placement and the tail of the log."""
        row = visible_job(who, job_id)
        with service.db.read() as conn:
            events = store.history(conn, job_id)
            flagged = store.cancel_pending(conn, job_id)
        view = store.to_view(row, cancel_requested=flagged)
        return JobDetail(
            **view.model_dump(), history=events, log_tail=store.log_tail(row["log_path"], log_lines)
        )

    @app.delete("/v1/jobs/{job_id}", status_code=202, response_model=JobView, tags=["jobs"])
    def cancel_job(job_id: int, who: Caller) -> JobView:
        """Cancel: a pending job at once; a running one within a scheduling cycle."""
        visible_job(who, job_id)
        try:
            found = store.request_cancel(service.db, job_id, service.clock())
        except KeyError:
            raise HTTPException(404, f"job {job_id}: not found") from None
        if JobState(found) in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED):
            raise HTTPException(409, f"job {job_id}: already {found}")
        if service.loop is not None:
            service.loop.wake()
        with service.db.read() as conn:
            row = store.get_job(conn, job_id)
            assert row is not None
            return store.to_view(row, cancel_requested=store.cancel_pending(conn, job_id))

    @app.get("/v1/jobs/{job_id}/forecast", response_model=Forecast, tags=["jobs"])
    def job_forecast(job_id: int, who: Caller) -> Forecast:
        """Estimated start and end, simulating a fork of the live state on the estimates."""
        row = visible_job(who, job_id)
        state = row["state"]
        if state not in (JobState.PENDING.value, JobState.RUNNING.value):
            return Forecast(
                job_id=job_id,
                state=state,
                now=service.clock(),
                estimated_start=row["started_at"],
                estimated_end=row["ended_at"],
                note="the job has ended",
            )
        at, forecasts = service.forecasts()
        got = forecasts.get(str(job_id))
        if got is None:
            return Forecast(
                job_id=job_id,
                state=state,
                now=at,
                estimated_start=None,
                estimated_end=None,
                note="not yet seen by the scheduler, or it cannot be placed on this fleet",
            )
        return Forecast(
            job_id=job_id,
            state=state,
            now=at,
            estimated_start=got[0],
            estimated_end=got[1],
            note="estimates assume every job runs to its time limit",
        )

    @app.get("/v1/quotas", response_model=list[QuotaRow], tags=["tenants"])
    def quotas(who: Caller) -> list[QuotaRow]:
        """Nominal, borrowing and lending limits, and use, per tenant and GPU class."""
        rows = [QuotaRow.model_validate(r) for r in service.quota_table()]
        if who.role is Role.ADMIN:
            return rows
        return [r for r in rows if r.tenant == who.tenant]

    @app.get("/v1/fleet", tags=["fleet"])
    def fleet(who: Caller) -> dict[str, Any]:
        """The fleet: GPU classes with capacity and use, sites, tenants."""
        del who
        busy_by_class = _busy_by_class(service)
        topo = service.topo
        return {
            "name": service.fleet.name,
            "gpus": topo.gpus_total,
            "nodes": topo.n_nodes,
            "classes": [
                {
                    "gpu_class": c,
                    "model": topo.class_model[i].id,
                    "gpus": service.capacity[c],
                    "busy": busy_by_class.get(c, 0),
                }
                for i, c in enumerate(topo.classes)
            ],
            "sites": list(topo.sites),
            "tenants": sorted(service.tenants),
        }

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    def metrics(who: Caller) -> PlainTextResponse:
        """Prometheus text: pending jobs and GPUs per tenant, busy GPUs, cycle latency."""
        if who.role is not Role.ADMIN:
            raise HTTPException(403, "metrics: admin only")
        body = render_metrics(
            pending=store.pending_by_tenant(service.db),
            running=store.running_by_tenant(service.db),
            busy=store.busy_gpus(service.db),
            total=service.topo.gpus_total,
            cycles=service.stats.snapshot(),
            leading=service.loop is not None and service.loop.leading,
        )
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    @app.post("/v1/tokens", status_code=201, response_model=TokenCreated, tags=["tenants"])
    def new_token(body: TokenCreate, who: Caller) -> TokenCreated:
        """Create a token (tenant-admins: for their tenant, not admin); shown once."""
        try:
            role = Role(body.role)
        except ValueError:
            raise FieldError("role", f"unknown role '{body.role}'") from None
        tenant = body.tenant if body.tenant is not None else who.tenant
        if who.role is Role.MEMBER:
            raise HTTPException(403, "tokens: members may not create tokens")
        if who.role is Role.TENANT_ADMIN and (role is Role.ADMIN or tenant != who.tenant):
            raise HTTPException(403, "tokens: tenant-admins create tokens of their own tenant")
        if tenant is not None and tenant not in service.tenants:
            raise FieldError("tenant", f"unknown tenant '{tenant}'")
        if tenant is None and role is not Role.ADMIN:
            raise FieldError("tenant", f"required for role '{role.value}'")
        token_id, token = create_token(
            service.db, tenant=tenant, role=role, now=service.clock(), note=body.note
        )
        return TokenCreated(id=token_id, tenant=tenant, role=role.value, token=token)

    @app.get("/v1/tokens", tags=["tenants"])
    def tokens(who: Caller) -> list[dict[str, object]]:
        """Tokens of the caller's tenant (admins: all); never the secrets."""
        if who.role is Role.MEMBER:
            raise HTTPException(403, "tokens: members may not list tokens")
        return list_tokens(service.db, None if who.role is Role.ADMIN else who.tenant)

    @app.delete("/v1/tokens/{token_id}", status_code=204, tags=["tenants"])
    def revoke(token_id: int, who: Caller) -> Response:
        """Revoke a token of the caller's tenant (admins: any)."""
        if who.role is Role.MEMBER:
            raise HTTPException(403, "tokens: members may not revoke tokens")
        scope = None if who.role is Role.ADMIN else who.tenant
        if not revoke_token_row(service.db, token_id, now=service.clock(), tenant=scope):
            raise HTTPException(404, f"token {token_id}: not found")
        return Response(status_code=204)

    return app


def _busy_by_class(service: Service) -> dict[str, int]:
    from sqlalchemy import func, select  # noqa: PLC0415 (only this view needs them)

    from aifactory.service.tables import jobs  # noqa: PLC0415

    # Running jobs' placements name nodes, not classes; the scheduler keeps the class a
    # job was placed in, but a replica that does not lead has only the database, and a
    # job with gpu_class null may run on any class. Count by the requested class.
    with service.db.read() as conn:
        rows = conn.execute(
            select(jobs.c.gpu_class, func.coalesce(func.sum(jobs.c.gpus), 0))
            .where(jobs.c.state == JobState.RUNNING.value)
            .group_by(jobs.c.gpu_class)
        )
        return {str(r[0] or "any"): int(r[1]) for r in rows}

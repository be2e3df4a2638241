"""The REST API (``/v1``), built with FastAPI so the OpenAPI schema is generated.

Access rules, enforced here and nowhere else:

- every endpoint but ``/healthz`` needs ``Authorization: Bearer <token>`` (401 otherwise);
- members and tenant-admins act only on their own tenant: another tenant's job reads as
  404 (its existence is not revealed) and submitting as another tenant is 403;
- a tenant-admin of a tenant with children (the tenant tree, issue #17 §2) also sees,
  lists and cancels the jobs of every tenant below its own, sees their quotas and manages
  their tokens (it submits as its own tenant only); a member sees its own tenant alone;
- tenant-admins also manage their tenant's tokens; admins may do anything;
- ``/metrics`` (all tenants' figures) is for admins.

A submit is committed before its 201 is sent. With an ``Idempotency-Key`` a retry returns
the job the first call made (200), and a key reused for a different body is a 409.

Tenant input is bounded before it reaches the database or the scheduler (issue #14): the
bodies' bounds live in :mod:`.schemas`, the parameters' here (ids and cursors within
int64, query strings without NUL); limits per tenant and per client address are in
:mod:`.limits` (429 with ``Retry-After``); which status each error gets, and the error
bodies every operation documents in the OpenAPI, are in :mod:`.errors`.

The submit path is the hot one, so it stays on the event loop: the caller's token is
resolved from the authenticator's cache (a thread only on a miss), the request is
validated, then handed to the group-commit writer (:mod:`.batcher`) and awaited; the
201 body is serialised once, by pydantic, with no second validation pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi._compat import field_annotation_is_sequence
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from aifactory.fleet import Fleet, compile_topology, load_fleet
from aifactory.fleet.topology import Topology
from aifactory.service import store
from aifactory.service.auth import (
    Authenticator,
    Principal,
    Role,
    create_token,
    descendants_of,
    list_tokens,
)
from aifactory.service.auth import revoke_token as revoke_token_row
from aifactory.service.batcher import SubmitBatcher, SubmitRequest
from aifactory.service.db import Database
from aifactory.service.errors import AUTHENTICATED, FieldError, install_handlers, responses
from aifactory.service.executors import Executor, make_executor
from aifactory.service.forks import new_scheduler
from aifactory.service.jobfit import check_hardware
from aifactory.service.jobrows import to_job
from aifactory.service.limits import (
    AuthFailures,
    BodySizeLimit,
    PendingCounts,
    SubmitRate,
    TenantLimit,
    retry_after,
)
from aifactory.service.loop import SchedulerLoop, fork_state
from aifactory.service.metrics import CycleStats, render_metrics
from aifactory.service.outlook import OutlookCache, state_version
from aifactory.service.outlook import compute as outlook_of
from aifactory.service.samples import Sampler
from aifactory.service.schemas import (
    INT64_MAX,
    KEY_PATTERN,
    NO_NUL,
    FleetView,
    Forecast,
    Health,
    JobDetail,
    JobPage,
    JobSubmit,
    JobView,
    QuotaRow,
    TokenCreate,
    TokenCreated,
    TokenInfo,
)
from aifactory.service.settings import ServiceSettings
from aifactory.workload.job import JobState

log = logging.getLogger(__name__)

FORK_CACHE_S = 1.0  # quotas are recomputed at most this often (the outlook: .outlook)
PENDING_RETRY_AFTER_S = 5.0  # a tenant at its pending limit waits for jobs to start

__all__ = ["FieldError", "Service", "create_app"]

# Parameters, bounded once here: an id or cursor past int64 cannot even be compared with a
# BIGINT column (SQLite raised OverflowError, PostgreSQL an error that read as an outage).
JobId = Annotated[int, Path(ge=1, le=INT64_MAX, description="Job id.")]
TokenId = Annotated[int, Path(ge=1, le=INT64_MAX, description="Token id.")]


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
        # tenant -> every tenant below it: the subtree its tenant-admins look after
        self.descendants = descendants_of(
            (t.name, None if p is None else p.name) for t, p, _ in self.fleet.iter_tenants()
        )
        self.capacity = self.topo.class_capacity()
        self.auth = Authenticator(self.db, clock)
        self.stats = CycleStats()
        self.executor = executor or make_executor(settings.executor.value, settings)
        # Logs are served only from beneath here (the loop writes them here).
        self.logs_dir = FsPath(settings.data_dir).absolute() / "logs"
        self.loop: SchedulerLoop | None = None
        if settings.run_scheduler:
            sampler = Sampler(self.db, self.topo, self.fleet, settings.samples_retention_s)
            self.loop = SchedulerLoop(
                self.db,
                self.topo,
                self.executor,
                settings,
                clock=clock,
                stats=self.stats,
                sampler=sampler,
            )
        self.batcher = SubmitBatcher(self.db, on_commit=self._submitted)
        # Never given a job: asked at submit whether a job could ever run (check_fits).
        self.judge = new_scheduler(self.topo, settings)
        self.submit_rate = SubmitRate(clock)
        self.pending = PendingCounts(self._pending_counts, clock)
        self.auth_failures = AuthFailures(
            settings.auth_failures_per_window, settings.auth_failure_window_s, clock
        )
        self.default_limit = TenantLimit(
            settings.max_pending_per_tenant, settings.submit_rate_per_s, settings.submit_burst
        )
        self.limits: dict[str, TenantLimit] = {}
        for tenant, _, _ in self.fleet.iter_tenants():
            if tenant.limits is not None:
                own, base = tenant.limits, self.default_limit
                self.limits[tenant.name] = TenantLimit(
                    base.max_pending if own.max_pending_jobs is None else own.max_pending_jobs,
                    base.rate_per_s if own.submit_rate_per_s is None else own.submit_rate_per_s,
                    base.burst if own.submit_burst is None else own.submit_burst,
                )
        self._fork_lock = threading.Lock()
        self._quotas: tuple[float, list[dict[str, Any]]] | None = None
        self.outlook = OutlookCache(
            lambda now: outlook_of(self.db, self.topo, settings, now),
            lambda: state_version(self.db),
            clock,
        )

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
            if self.loop.sampler is not None:
                self.loop.sampler.join()  # a sample in flight writes before the close
        self.outlook.close()
        self.db.dispose()

    def _submitted(self) -> None:
        """A batch of new jobs is committed: the scheduler should look soon."""
        if self.loop is not None:
            self.loop.wake()

    def _pending_counts(self) -> dict[str, int]:
        return {t: n for t, (n, _) in store.pending_by_tenant(self.db).items()}

    def tenant_limit(self, tenant: str) -> TenantLimit:
        """The limits of ``tenant``: its own from the fleet spec, else the settings'."""
        return self.limits.get(tenant, self.default_limit)

    async def admit(self, tenant: str) -> None:
        """Refuse (429) a submit past ``tenant``'s rate or pending-jobs limit."""
        limit = self.tenant_limit(tenant)
        wait = self.submit_rate.take(tenant, limit)
        if wait > 0:
            raise HTTPException(
                429,
                f"tenant '{tenant}': more than {limit.rate_per_s:g} submits/s; retry later",
                headers={"Retry-After": retry_after(wait)},
            )
        if limit.max_pending <= 0:
            return
        if self.pending.claim_refresh():
            await run_in_threadpool(self.pending.refresh)
        if self.pending.pending(tenant) >= limit.max_pending:
            raise HTTPException(
                429,
                f"tenant '{tenant}': {limit.max_pending} jobs pending already (the limit); "
                "retry when some have started",
                headers={"Retry-After": retry_after(PENDING_RETRY_AFTER_S)},
            )

    def check_fits(self, tenant: str, body: JobSubmit) -> None:
        """Refuse (422) a job the scheduler would fail at once: a gang bigger than its
        tenant's quota ceiling (``gpus``, naming the limit), or a tenant that only groups
        others (``tenant``). The fleet's quotas are fixed while the service runs. The job is
        judged with its site and data fields as stored (``data_ask``): a gang that may span
        sites can be as big as the fleet's GPUs of its class, one pinned to a site no
        bigger than the site's."""
        row = {
            **body.model_dump(),
            "id": 0,
            "tenant": tenant,
            "submitted_at": 0.0,
            "data_ask": store.data_ask(body),
        }
        reason = self.judge.refusal(to_job(row))
        if reason is not None:
            field = "tenant" if reason.startswith("not a leaf") else "gpus"
            raise FieldError(field, reason)

    def check_project(self, who: Principal, project_id: int, tenant: str) -> None:
        """Refuse (422 naming ``project``) a job charged to a project the caller may not
        charge (members of project A cannot charge project B) or of another tenant."""
        from aifactory.service.alloc_store import NotFoundError, project_row  # noqa: PLC0415

        with self.db.read() as conn:
            try:
                row = project_row(conn, project_id)
            except NotFoundError:
                row = None
        if row is None or not who.can_see_project(row["tenant"], row["members"], self.descendants):
            raise FieldError("project", f"no project {project_id} that this token may charge")
        if row["tenant"] != tenant:
            raise FieldError("project", f"project {project_id} is not of tenant '{tenant}'")

    def quota_table(self) -> list[dict[str, Any]]:
        """The quota table of a scheduler forked off the database (cached briefly)."""
        with self._fork_lock:
            now = self.clock()
            if self._quotas is None or now - self._quotas[0] > FORK_CACHE_S:
                sched = fork_state(self.db, self.topo, self.settings, now)
                self._quotas = (now, list(sched.quota_table()))
            return self._quotas[1]

    def pending_reasons(self) -> dict[str, str]:
        """Why each pending job waits (job id -> reason), from one scheduling pass on a
        fork of the database's state (:mod:`.outlook`). A job that pass would start has
        none."""
        return self.outlook.get().reasons

    def with_reason(self, view: JobView) -> JobView:
        """The view with the scheduler's reason for a pending job that has none of its own
        (a reason the service set, e.g. ``allocation: ...``, is kept)."""
        if view.state != "pending" or view.reason is not None:
            return view
        reason = self.pending_reasons().get(str(view.id))
        return view if reason is None else view.model_copy(update={"reason": reason})

    def forecasts(self) -> tuple[float, dict[str, tuple[float, float]]]:
        """(time, job id -> (start, end)) from the twin run forward on a fork
        (:mod:`.outlook`: the first ``FORECAST_JOBS`` pending jobs in queue order)."""
        got = self.outlook.get()
        return got.at, got.starts


_bearer = HTTPBearer(auto_error=False)


async def _principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from the bearer token (401 if missing, unknown, revoked or expired).

    Async so a cached token costs no thread hop; only a cache miss reads the database,
    in the threadpool. An address past its bad-token limit is refused (429) before any
    token it sends is looked up, unless this replica accepted that token lately
    (:meth:`Authenticator.vouched`): a guesser gets no database reads and no answers.
    """
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    service: Service = request.app.state.service
    hit, who = service.auth.cached(creds.credentials)
    if who is not None:
        return who
    address = request.client.host if request.client is not None else "unknown"
    wait = service.auth_failures.blocked(address)
    if wait > 0 and not service.auth.vouched(creds.credentials):
        raise HTTPException(
            429,
            "too many bad tokens from this address; retry later",
            headers={"Retry-After": retry_after(wait)},
        )
    if not hit:
        who = await run_in_threadpool(service.auth.resolve, creds.credentials)
    if who is None:
        service.auth_failures.failed(address)
        raise HTTPException(
            401, "invalid, revoked or expired token", headers={"WWW-Authenticate": "Bearer"}
        )
    return who


Caller = Annotated[Principal, Depends(_principal)]


async def _declared_query_only(request: Request) -> None:
    """Refuse a query parameter the operation does not declare (422), as bodies refuse
    unknown fields: a misspelt filter must not silently widen what is listed.

    Async, so it runs on the event loop and costs the submit path no thread hop.
    """
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    fields = dependant.query_params if dependant is not None else []
    declared = {f.alias for f in fields}
    unknown = sorted(set(request.query_params) - declared)
    if unknown:
        raise FieldError(f"query.{unknown[0]}", "unknown query parameter")
    # A parameter of one value given twice would be read as its last (start=1&start=2):
    # refused rather than guessed at, unless the parameter takes a list (job states).
    lists = {f.alias for f in fields if field_annotation_is_sequence(f.field_info.annotation)}
    for name in sorted(declared - lists):
        if len(request.query_params.getlist(name)) > 1:
            raise FieldError(f"query.{name}", "given more than once; it takes one value")


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
        dependencies=[Depends(_declared_query_only)],
    )
    app.state.service = service
    app.add_middleware(BodySizeLimit, max_bytes=service.settings.max_body_bytes)
    install_handlers(app)

    def visible_job(who: Principal, job_id: int) -> Any:
        with service.db.read() as conn:
            row = store.get_job(conn, job_id)
            if row is None or not who.can_act_on(row["tenant"], service.descendants):
                raise HTTPException(404, f"job {job_id}: not found")
            return row

    @app.get("/healthz", response_model=Health, responses=responses(422, 503), tags=["service"])
    def healthz() -> Health:
        """Liveness and readiness: the database answers; whether this replica schedules."""
        try:
            with service.db.read() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise HTTPException(503, "database unavailable") from exc
        loop = service.loop
        role = "off" if loop is None else ("leader" if loop.leading else "follower")
        return Health(status="ok", scheduler=role, fleet=service.fleet.name)

    @app.post(
        "/v1/jobs",
        status_code=201,
        response_model=JobView,
        responses=responses(
            *AUTHENTICATED,
            403,
            409,
            413,
            422,
            also={200: {"model": JobView, "description": "A retry: the job its key made."}},
        ),
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
                pattern=KEY_PATTERN,
                description="Client-chosen key (visible ASCII); a retry with it never makes a "
                "second job.",
            ),
        ] = None,
    ) -> Response:
        """Submit a job; it is committed before the 201 is sent.

        Refused with 429 past the tenant's submit rate or pending-jobs limit.
        """
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
        check_hardware(body, service.topo, service.capacity)
        longest = service.settings.max_time_limit_s
        if body.time_limit_s > longest:
            raise FieldError(
                "time_limit_s", f"{body.time_limit_s:g} s is more than the maximum, {longest:g} s"
            )
        if body.project is not None:
            if body.gpu_class is None:
                raise FieldError("gpu_class", "required with project (charges are per GPU class)")
            await run_in_threadpool(service.check_project, who, body.project, tenant)
        service.check_fits(tenant, body)
        await service.admit(tenant)
        item = SubmitRequest(body, tenant, who.token_id, service.clock(), idempotency_key)
        try:
            done = await service.batcher.submit_async(item)
        except store.IdempotencyConflictError as exc:
            raise HTTPException(409, str(exc)) from None
        if done.created:
            service.pending.add(tenant)
        return Response(
            store.to_view(done.job).model_dump_json(),
            status_code=201 if done.created else 200,
            media_type="application/json",
            headers={"Location": f"/v1/jobs/{done.job['id']}"},
        )

    @app.get(
        "/v1/jobs",
        response_model=JobPage,
        responses=responses(*AUTHENTICATED, 403, 422),
        tags=["jobs"],
    )
    def list_jobs(
        *,
        who: Caller,
        state: Annotated[list[JobState] | None, Query(description="Only these states.")] = None,
        tenant: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
        name: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
        mine: Annotated[bool, Query(description="Only jobs this token submitted.")] = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[
            int | None, Query(ge=1, le=INT64_MAX, description="next_cursor of the last page")
        ] = None,
    ) -> JobPage:
        """Jobs visible to the caller, newest first, one page at a time."""
        tenants: list[str] | None
        if tenant is not None:
            if tenant not in service.tenants:
                raise FieldError("query.tenant", f"unknown tenant '{tenant}'")
            if not who.can_act_on(tenant, service.descendants):
                raise HTTPException(403, f"tenant: this token may not see '{tenant}'")
            tenants = [tenant]
        else:
            reach = who.reach(service.descendants)
            tenants = None if reach is None else sorted(reach)
        rows, nxt = store.list_jobs(
            service.db,
            tenants=tenants,
            states=sorted({s.value for s in state or []}),
            name=name,
            limit=limit,
            cursor=cursor,
            token_id=who.token_id if mine else None,
        )
        return JobPage(items=[service.with_reason(store.to_view(r)) for r in rows], next_cursor=nxt)

    @app.get(
        "/v1/jobs/{job_id}",
        response_model=JobDetail,
        responses=responses(*AUTHENTICATED, 404, 422),
        tags=["jobs"],
    )
    def show_job(
        job_id: JobId, who: Caller, log_lines: Annotated[int, Query(ge=0, le=1000)] = 50
    ) -> JobDetail:
        """State, history, placement and the tail of the log."""
        row = visible_job(who, job_id)
        with service.db.read() as conn:
            events = store.history(conn, job_id)
            flagged = store.cancel_pending(conn, job_id)
        view = service.with_reason(store.to_view(row, cancel_requested=flagged))
        return JobDetail(
            **view.model_dump(),
            history=events,
            log_tail=store.log_tail(row["log_path"], log_lines, root=service.logs_dir),
        )

    @app.delete(
        "/v1/jobs/{job_id}",
        status_code=202,
        response_model=JobView,
        responses=responses(*AUTHENTICATED, 404, 409, 422),
        tags=["jobs"],
    )
    def cancel_job(job_id: JobId, who: Caller) -> JobView:
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

    @app.get(
        "/v1/jobs/{job_id}/forecast",
        response_model=Forecast,
        responses=responses(*AUTHENTICATED, 404, 422),
        tags=["jobs"],
    )
    def job_forecast(job_id: JobId, who: Caller) -> Forecast:
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

    @app.get(
        "/v1/quotas",
        response_model=list[QuotaRow],
        responses=responses(*AUTHENTICATED, 422),
        tags=["tenants"],
    )
    def quotas(who: Caller) -> list[QuotaRow]:
        """Nominal, borrowing and lending limits, and use, per tenant and GPU class: the
        caller's tenant (a tenant-admin's: and every tenant below it; an admin's: all)."""
        table = service.quota_table()
        total: dict[tuple[str, str], int] = {}
        for r in table:
            key = (r["tenant"], r["gpu_class"])
            total[key] = total.get(key, 0) + int(r["borrowed"])
        rows = [
            QuotaRow.model_validate({**r, "borrowed_total": total[r["tenant"], r["gpu_class"]]})
            for r in table
        ]
        reach = who.reach(service.descendants)
        if reach is None:
            return rows
        return [r for r in rows if r.tenant in reach]

    @app.get(
        "/v1/fleet",
        response_model=FleetView,
        responses=responses(*AUTHENTICATED, 422),
        tags=["fleet"],
    )
    def fleet(who: Caller) -> dict[str, Any]:
        """The fleet: GPU classes with capacity and use, sites, tenants."""
        del who
        busy_by_class = store.busy_by_class(service.db, service.topo)
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

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses=responses(
            *AUTHENTICATED,
            403,
            422,
            also={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
            by_ref=True,
        ),
        tags=["service"],
    )
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

    @app.post(
        "/v1/tokens",
        status_code=201,
        response_model=TokenCreated,
        responses=responses(*AUTHENTICATED, 403, 413, 422),
        tags=["tenants"],
    )
    def new_token(body: TokenCreate, who: Caller) -> TokenCreated:
        """Create a token (tenant-admins: for their tenant, not admin); shown once.

        With ``expires_in_s`` it is refused (401) from then on.
        """
        role = body.role
        tenant = body.tenant if body.tenant is not None else who.tenant
        if who.role is Role.MEMBER:
            raise HTTPException(403, "tokens: members may not create tokens")
        if who.role is Role.TENANT_ADMIN and (
            role is Role.ADMIN or tenant is None or not who.can_act_on(tenant, service.descendants)
        ):
            raise HTTPException(
                403, "tokens: tenant-admins create tokens of their own tenant or one below it"
            )
        if tenant is not None and tenant not in service.tenants:
            raise FieldError("tenant", f"unknown tenant '{tenant}'")
        if tenant is None and role is not Role.ADMIN:
            raise FieldError("tenant", f"required for role '{role.value}'")
        now = service.clock()
        expires_at = None if body.expires_in_s is None else now + body.expires_in_s
        token_id, token = create_token(
            service.db, tenant=tenant, role=role, now=now, note=body.note, expires_at=expires_at
        )
        return TokenCreated(
            id=token_id, tenant=tenant, role=role.value, token=token, expires_at=expires_at
        )

    @app.get(
        "/v1/tokens",
        response_model=list[TokenInfo],
        responses=responses(*AUTHENTICATED, 403, 422),
        tags=["tenants"],
    )
    def tokens(who: Caller) -> list[dict[str, object]]:
        """Tokens of the caller's tenant and the tenants below it (admins: all) with their
        expiry; never the secrets."""
        if who.role is Role.MEMBER:
            raise HTTPException(403, "tokens: members may not list tokens")
        return list_tokens(service.db, within=who.reach(service.descendants))

    @app.delete(
        "/v1/tokens/{token_id}",
        status_code=204,
        response_class=Response,
        responses=responses(*AUTHENTICATED, 403, 404, 422),
        tags=["tenants"],
    )
    def revoke(token_id: TokenId, who: Caller) -> Response:
        """Revoke a token of the caller's tenant or a tenant below it (admins: any); every
        replica refuses it within a second."""
        if who.role is Role.MEMBER:
            raise HTTPException(403, "tokens: members may not revoke tokens")
        scope = who.reach(service.descendants)
        if not revoke_token_row(service.db, token_id, now=service.clock(), within=scope):
            raise HTTPException(404, f"token {token_id}: not found")
        service.auth.invalidate()  # this replica at once; the others within CACHE_TTL_S
        return Response(status_code=204)

    # Projects and allocations (issue #19), fleet status and share (#21): routers of their
    # own, imported here because they depend on this module's ``Caller``.
    from aifactory.service.routers import (  # noqa: PLC0415
        allocations,
        cluster,
        dashboard,
        history,
        projects,
        queue,
    )

    app.include_router(projects.router)
    app.include_router(allocations.router)
    app.include_router(cluster.router)
    app.include_router(history.router)
    app.include_router(queue.router)
    app.include_router(dashboard.router)

    def openapi() -> dict[str, Any]:
        """The generated schema, with this fleet's tenants and GPU classes as enums: the
        models cannot know them, yet a client (and schemathesis) should."""
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            _name_the_values(schema, sorted(service.tenants), list(service.capacity))
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI documents this override
    return app


def _name_the_values(schema: dict[str, Any], tenants: list[str], classes: list[str]) -> None:
    """Put the fleet's tenants and classes as ``enum`` on the fields that name them."""
    models = schema["components"]["schemas"]
    fields = [
        (models["JobSubmit"]["properties"]["tenant"], tenants),
        (models["JobSubmit"]["properties"]["gpu_class"], classes),
        *(
            (alt["items"], classes)
            for alt in models["JobSubmit"]["properties"]["gpu_classes"]["anyOf"]
            if alt.get("type") == "array"
        ),
        (models["TokenCreate"]["properties"]["tenant"], tenants),
    ]
    params = schema["paths"]["/v1/jobs"]["get"]["parameters"]
    fields.extend((p["schema"], tenants) for p in params if p["name"] == "tenant")
    for prop, values in fields:
        for alt in prop.get("anyOf", [prop]):
            if alt.get("type") == "string":
                alt["enum"] = values

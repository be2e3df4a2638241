"""The control plane's schema, as SQLAlchemy Core tables.

Core rather than the ORM on purpose: the submit path is one INSERT of a row and one of its
first history event, and the scheduler loop updates a few columns at a time; an identity
map and unit-of-work would only add latency. The Alembic migrations in
``aifactory/service/migrations/versions`` create exactly these tables; a test compares them.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

# BigInteger on PostgreSQL, but SQLite only auto-increments an INTEGER PRIMARY KEY.
_ID = BigInteger().with_variant(Integer(), "sqlite")

tokens = Table(
    "tokens",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("tenant", String(64), nullable=True),  # null: an admin token not tied to a tenant
    Column("role", String(16), nullable=False),
    Column("note", String(200), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True),  # null: never expires (revision 0002)
)

# Counters every replica polls instead of trusting its caches for long: the row "tokens"
# is incremented in the same transaction as each token revocation, so a replica that sees
# a new value drops its whole token cache (see auth.Authenticator). One row per counter.
auth_state = Table(
    "auth_state",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("version", BigInteger, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("gpus", Integer, nullable=False),
    Column("gpu_class", String(64), nullable=True),
    Column("command", Text, nullable=False),
    Column("time_limit_s", Float, nullable=False),
    Column("priority_class", String(16), nullable=False),
    Column("preemptible", Boolean, nullable=False),
    Column("checkpoint_interval_s", Float, nullable=True),
    Column("state", String(16), nullable=False),
    Column("submitted_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("reason", Text, nullable=True),
    Column("executor", String(16), nullable=True),
    Column("handle", Text, nullable=True),
    Column("placement", JSON, nullable=True),  # [[node, [gpu, ...]], ...] while running
    Column("log_path", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("idempotency_key", String(128), nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("token_id", _ID, nullable=True),
    Column("project_id", _ID, nullable=True),  # charged to this project (revision 0003)
    # What the job asks of the hardware beyond a class (revision 0004, issue #17 §3): the
    # classes it accepts ([name, ...], null: gpu_class decides; SQL NULL, not JSON null,
    # on both backends) and the GPU memory each GPU must have (null: any).
    Column("gpu_classes", JSON(none_as_null=True), nullable=True),
    Column("hbm_gb_per_gpu", Float, nullable=True),
    # A service's lifetime instead of work, and its own preempt grace, s (null: the
    # service's default) (revision 0006, issue #18 §2-§3).
    Column("service", Boolean, nullable=False, default=False, server_default=false()),
    Column("preempt_grace_s", Float, nullable=True),
    # Its data and site fields (revision 0007, issue #20 §1): {site, allow_cross_site,
    # dataset, dataset_bytes, data_site, stage_hold, grad_bytes, step_s}, those given.
    Column("data_ask", JSON(none_as_null=True), nullable=True),
    UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
)
Index("ix_jobs_state_id", jobs.c.state, jobs.c.id)
Index("ix_jobs_tenant_id", jobs.c.tenant, jobs.c.id)

job_events = Table(
    "job_events",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("job_id", _ID, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("at", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("detail", Text, nullable=False, default=""),
)
Index("ix_job_events_job_id", job_events.c.job_id, job_events.c.id)

# One row per GPU in use. The primary key is the database's own guarantee that no GPU is
# ever given twice, whatever a (buggy or split-brained) scheduler decides: the INSERT of a
# duplicate fails and the whole decision rolls back.
allocations = Table(
    "allocations",
    metadata,
    Column("node", String(128), primary_key=True),
    Column("gpu", Integer, primary_key=True),
    Column("job_id", _ID, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("since", Float, nullable=False),
)
Index("ix_allocations_job_id", allocations.c.job_id)

# Cancels asked through the API, consumed by whichever replica runs the scheduler.
cancel_requests = Table(
    "cancel_requests",
    metadata,
    Column("job_id", _ID, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("requested_at", Float, nullable=False),
)

# -- GPU-hour allocations (revision 0003, issue #19) ---------------------------------------
# Projects of a tenant apply for GPU-hours; ``project_allocations`` are their grants (named
# so as not to clash with ``allocations``, the GPU rows above), ``allocation_changes`` the
# history of each (who, when, what), and ``charges`` one row per run interval of a job of a
# project: the (job, attempt) key is unique, and the row is written in the transaction
# that ends the interval, so a crash neither loses nor doubles a charge.
projects = Table(
    "projects",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("tenant", String(64), nullable=False),
    Column("title", String(200), nullable=False, default=""),
    Column("pi", String(128), nullable=False, default=""),
    Column("start_s", Float, nullable=False),
    Column("end_s", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", _ID, nullable=True),  # the token that made it
)
Index("ix_projects_tenant", projects.c.tenant)

project_members = Table(
    "project_members",
    metadata,
    Column("project_id", _ID, ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    Column("token_id", _ID, primary_key=True),
)
Index("ix_project_members_token", project_members.c.token_id)

project_allocations = Table(
    "project_allocations",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("project_id", _ID, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("gpu_class", String(64), nullable=True),  # null: B200-equivalent hours
    Column("gpu_hours", Float, nullable=False),  # asked, then granted (top-ups included)
    Column("requested_gpu_hours", Float, nullable=False),
    Column("estimate_gpu_hours", Float, nullable=True),  # the planner's, if made from a plan
    Column("state", String(16), nullable=False),
    Column("overdraft", Boolean, nullable=False, default=False),
    Column("start_s", Float, nullable=False),
    Column("end_s", Float, nullable=False),
    Column("justification", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("requested_by", _ID, nullable=True),
)
Index("ix_project_allocations_project", project_allocations.c.project_id)

allocation_changes = Table(
    "allocation_changes",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column(
        "allocation_id",
        _ID,
        ForeignKey("project_allocations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("at", Float, nullable=False),
    Column("who", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("delta_gpu_hours", Float, nullable=False, default=0.0),
    Column("end_s", Float, nullable=True),
)
Index(
    "ix_allocation_changes_allocation", allocation_changes.c.allocation_id, allocation_changes.c.id
)

charges = Table(
    "charges",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("job_id", _ID, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("project_id", _ID, nullable=False),
    Column("gpu_class", String(64), nullable=False),
    Column("gpus", Integer, nullable=False),
    Column("start_s", Float, nullable=False),
    Column("end_s", Float, nullable=False),
    UniqueConstraint("job_id", "attempt", name="uq_charges_job_attempt"),
)
Index("ix_charges_project_end", charges.c.project_id, charges.c.end_s)

# -- metrics history (revision 0005, issue #21 §1) -----------------------------------------
# One row per 5-minute slot, keyed by the slot's start: the leader writes it (a replica that
# finds the slot written already leaves it), the dashboard's overview charts read it. The
# payload is JSON (GPUs per site and class, pending GPUs per tenant, power per site with
# its cap) because its keys are the fleet's names, which a restart with a new fleet changes.
samples = Table(
    "samples",
    metadata,
    Column("at", Float, primary_key=True),
    Column("data", JSON, nullable=False),
)

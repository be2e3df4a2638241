"""Initial schema: tokens, jobs, job events, GPU allocations, cancel requests.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create every table of the first version."""
    op.create_table(
        "tokens",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("note", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_table(
        "jobs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("gpu_class", sa.String(64), nullable=True),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("time_limit_s", sa.Float, nullable=False),
        sa.Column("priority_class", sa.String(16), nullable=False),
        sa.Column("preemptible", sa.Boolean, nullable=False),
        sa.Column("checkpoint_interval_s", sa.Float, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("submitted_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("executor", sa.String(16), nullable=True),
        sa.Column("handle", sa.Text, nullable=True),
        sa.Column("placement", sa.JSON, nullable=True),
        sa.Column("log_path", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("token_id", _ID, nullable=True),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
    )
    op.create_index("ix_jobs_state_id", "jobs", ["state", "id"])
    op.create_index("ix_jobs_tenant_id", "jobs", ["tenant", "id"])
    op.create_table(
        "job_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("job_id", _ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id", "id"])
    op.create_table(
        "allocations",
        sa.Column("node", sa.String(128), primary_key=True),
        sa.Column("gpu", sa.Integer, primary_key=True),
        sa.Column("job_id", _ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("since", sa.Float, nullable=False),
    )
    op.create_index("ix_allocations_job_id", "allocations", ["job_id"])
    op.create_table(
        "cancel_requests",
        sa.Column(
            "job_id",
            _ID,
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("requested_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop every table (data is lost)."""
    for name in ("cancel_requests", "allocations", "job_events", "jobs", "tokens"):
        op.drop_table(name)

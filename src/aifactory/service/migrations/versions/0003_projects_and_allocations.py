"""Projects, GPU-hour allocations, their history, and per-run-interval charges (issue #19).

``jobs.project_id`` (null: a job charged to no project), and the tables ``projects``,
``project_members``, ``project_allocations``, ``allocation_changes`` and ``charges``
(unique per job and attempt: a charge is written once, in the transaction that ends the
run interval).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Add the project column of jobs and the five tables."""
    op.add_column("jobs", sa.Column("project_id", _ID, nullable=True))
    op.create_table(
        "projects",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("pi", sa.String(128), nullable=False),
        sa.Column("start_s", sa.Float, nullable=False),
        sa.Column("end_s", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", _ID, nullable=True),
    )
    op.create_index("ix_projects_tenant", "projects", ["tenant"])
    op.create_table(
        "project_members",
        sa.Column(
            "project_id",
            _ID,
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("token_id", _ID, primary_key=True),
    )
    op.create_index("ix_project_members_token", "project_members", ["token_id"])
    op.create_table(
        "project_allocations",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "project_id", _ID, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("gpu_class", sa.String(64), nullable=True),
        sa.Column("gpu_hours", sa.Float, nullable=False),
        sa.Column("requested_gpu_hours", sa.Float, nullable=False),
        sa.Column("estimate_gpu_hours", sa.Float, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("overdraft", sa.Boolean, nullable=False),
        sa.Column("start_s", sa.Float, nullable=False),
        sa.Column("end_s", sa.Float, nullable=False),
        sa.Column("justification", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("requested_by", _ID, nullable=True),
    )
    op.create_index("ix_project_allocations_project", "project_allocations", ["project_id"])
    op.create_table(
        "allocation_changes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "allocation_id",
            _ID,
            sa.ForeignKey("project_allocations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("who", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("delta_gpu_hours", sa.Float, nullable=False),
        sa.Column("end_s", sa.Float, nullable=True),
    )
    op.create_index(
        "ix_allocation_changes_allocation", "allocation_changes", ["allocation_id", "id"]
    )
    op.create_table(
        "charges",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("job_id", _ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("project_id", _ID, nullable=False),
        sa.Column("gpu_class", sa.String(64), nullable=False),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("start_s", sa.Float, nullable=False),
        sa.Column("end_s", sa.Float, nullable=False),
        sa.UniqueConstraint("job_id", "attempt", name="uq_charges_job_attempt"),
    )
    op.create_index("ix_charges_project_end", "charges", ["project_id", "end_s"])


def downgrade() -> None:
    """Drop the five tables and the column (every allocation and charge is lost)."""
    for table in ("charges", "allocation_changes", "project_allocations", "project_members"):
        op.drop_table(table)
    op.drop_table("projects")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("project_id")

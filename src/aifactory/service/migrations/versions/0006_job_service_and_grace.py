"""What a job is and how it stops (issue #18 §2-§3).

``jobs.service`` (a long-running service with a lifetime, not a quantity of work; false
for every earlier job) and ``jobs.preempt_grace_s`` (seconds it keeps its GPUs to save
when preempted; null: the service's default, as every earlier job had).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two columns of jobs."""
    op.add_column(
        "jobs", sa.Column("service", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column("jobs", sa.Column("preempt_grace_s", sa.Float, nullable=True))


def downgrade() -> None:
    """Drop both (services read as batch jobs again; every job gets the default grace)."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("preempt_grace_s")
        batch.drop_column("service")

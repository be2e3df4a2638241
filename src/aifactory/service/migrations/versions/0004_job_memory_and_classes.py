"""What a job asks of the hardware beyond one class (issue #17 §3).

``jobs.gpu_classes`` (JSON list of class names, null: ``gpu_class`` decides) and
``jobs.hbm_gb_per_gpu`` (GB each GPU must have, null: any). Both nullable, so every job of
0003 reads as before: one class or any, no memory asked.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two columns of jobs."""
    op.add_column("jobs", sa.Column("gpu_classes", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("jobs", sa.Column("hbm_gb_per_gpu", sa.Float, nullable=True))


def downgrade() -> None:
    """Drop both (jobs that asked for several classes or for memory lose the ask)."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("hbm_gb_per_gpu")
        batch.drop_column("gpu_classes")

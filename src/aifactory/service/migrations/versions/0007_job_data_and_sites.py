"""What a job says about its data and sites (issue #20 §1).

``jobs.data_ask`` (JSON object, null: nothing said): the submit's ``site``,
``allow_cross_site``, ``dataset``, ``dataset_bytes``, ``data_site``, ``stage_hold``,
``grad_bytes`` and ``step_s``, those given. Nullable, so every job of 0006 reads as
before: any site, one site at a time, no dataset.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the column."""
    op.add_column("jobs", sa.Column("data_ask", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    """Drop it (jobs lose their data and site asks)."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("data_ask")

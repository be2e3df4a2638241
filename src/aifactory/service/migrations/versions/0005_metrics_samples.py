"""The metrics history of the dashboard's overview (issue #21 §1).

``samples``: one row per 5-minute slot (``at``: the slot's start, seconds since the epoch)
with a JSON payload of GPUs per site and class, pending GPUs per tenant and power per site.
Old rows are deleted by the leader after the retention the settings give.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the samples table."""
    op.create_table(
        "samples",
        sa.Column("at", sa.Float, primary_key=True),
        sa.Column("data", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    """Drop it (the history is lost; nothing else reads it)."""
    op.drop_table("samples")

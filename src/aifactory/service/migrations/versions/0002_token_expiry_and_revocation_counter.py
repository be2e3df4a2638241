"""Token expiry, and the revocation counter that replicas poll.

``tokens.expires_at`` (epoch seconds, null: never) and the table ``auth_state`` with its
one row ``tokens``, whose ``version`` each revocation increments (issue #14: a revoked
token is refused by every replica within a fraction of a second, not after a cache TTL).

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the expiry column and the counter table with its one row."""
    op.add_column("tokens", sa.Column("expires_at", sa.Float, nullable=True))
    state = op.create_table(
        "auth_state",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(state, [{"name": "tokens", "version": 0}])


def downgrade() -> None:
    """Drop both (expiry dates are lost: every token then never expires)."""
    op.drop_table("auth_state")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("expires_at")

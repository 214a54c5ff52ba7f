"""Drop the adaptive policy's stored state: the control state is replayed from the ledger.

The old `adaptive_state` rows (a miss level per model version and segment, updated when an
outcome was recorded) belong to a controller that no longer exists and are read by nothing:
the state is now a pure function of quotes and outcomes (`service.control`). Upgrade every
worker of a ledger together: a worker of the previous release serving an adaptive model would
fail to record outcomes once the table is gone (a retry after the upgrade records them).

`quotes.adaptive_step` stays, nullable and written as null: dropping it would copy the whole
quotes table on SQLite at start-up, under the migration lock, for nothing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("adaptive_state")


def downgrade() -> None:
    # The table comes back empty: its old levels cannot be rebuilt (the old controller was
    # updated at each outcome's recording, with the step of the model that quoted it).
    op.create_table(
        "adaptive_state",
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("segment", sa.Text, nullable=False),
        sa.Column("alpha", sa.Double, nullable=False),
        sa.Column("n_updates", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_version", "segment", name="pk_adaptive_state"),
    )

"""The customer to call: a point-of-sale may send a name and phone with a quote.

`quotes.customer_name` and `quotes.customer_phone` hold them (both optional, NULL for quotes
given before); a revision copies its original's. Staff of the quote's store read them on the
call list; the point-of-sale API never answers them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("quotes") as batch:
        batch.add_column(sa.Column("customer_name", sa.String(200), nullable=True))
        batch.add_column(sa.Column("customer_phone", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quotes") as batch:
        batch.drop_column("customer_phone")
        batch.drop_column("customer_name")

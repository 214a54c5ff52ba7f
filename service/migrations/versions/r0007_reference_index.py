"""Look-up by the shop's own order reference: an index on `quotes (reference, created_at)`.

`GET /v1/quotes?reference=...` reads the quotes of one reference newest first, a page at a
time; without the index every look-up would read the whole quotes table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_quotes_reference_created_at"


def upgrade() -> None:
    op.create_index(INDEX, "quotes", ["reference", "created_at"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="quotes")

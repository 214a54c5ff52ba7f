"""Tenancy, audited outcome corrections and server-side staff sessions (issue 16).

- `quotes.store`: the order's store (its `PROMISE_STORE_FIELD` feature as text, null when the
  order names none), so a key scoped to some stores reads only their quotes. Filled for the
  quotes already given from their stored features, with the store field the migrating service
  is configured with (`store_id` when run from the `alembic` command line).
- `quote_requests.caller_name`: who asked (the key's NAME: a staff member, a till).
- `outcomes.recorded_by`: who recorded the outcome (or corrected it last).
- `outcome_corrections`: every correction of an outcome, with the old and the new value, who,
  when and why; the outcome itself holds the corrected value.
- `staff_sessions`: a signed-in staff member's session (its token's sha256, never the token),
  ended at sign-out; a session not found here, ended, idle or too old is refused.
- `write_probes`: one row per worker that readiness probes rewrite (can the ledger write?).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.ledger.records import store_of

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DEFAULT_STORE_FIELD = "store_id"
BACKFILL_CHUNK = 5_000


def upgrade() -> None:
    op.add_column("quotes", sa.Column("store", sa.String(200), nullable=True))
    op.create_index("ix_quotes_store_deadline_at", "quotes", ["store", "deadline_at"])
    op.add_column("quote_requests", sa.Column("caller_name", sa.String(200), nullable=True))
    op.add_column("outcomes", sa.Column("recorded_by", sa.String(200), nullable=True))
    op.create_table(
        "outcome_corrections",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("quote_id", sa.String(64), nullable=False),
        sa.Column("old_fulfilled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("new_fulfilled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("corrected_by", sa.String(200), nullable=False),
        sa.Column("corrected_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["quote_id"], ["quotes.id"], name="fk_outcome_corrections_quote_id_quotes"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_outcome_corrections"),
    )
    op.create_index("ix_outcome_corrections_quote_id", "outcome_corrections", ["quote_id"])
    op.create_table(
        "staff_sessions",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_reason", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("token_sha256", name="pk_staff_sessions"),
    )
    op.create_index("ix_staff_sessions_key_id", "staff_sessions", ["key_id"])
    op.create_table(
        "write_probes",
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("probed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker", name="pk_write_probes"),
    )
    config = op.get_context().config
    attributes = config.attributes if config is not None else {}
    _fill_stores(attributes.get("store_field", DEFAULT_STORE_FIELD))


def _fill_stores(store_field: str) -> None:
    """Set `quotes.store` of the quotes given before this migration from their features."""
    quotes = sa.table(
        "quotes", sa.column("id", sa.String), sa.column("features", sa.JSON), sa.column("store")
    )
    conn = op.get_bind()
    after = ""
    while True:
        rows = conn.execute(
            sa.select(quotes.c.id, quotes.c.features)
            .where(quotes.c.id > after)
            .order_by(quotes.c.id)
            .limit(BACKFILL_CHUNK)
        ).all()
        if not rows:
            return
        for row in rows:
            features = row.features if isinstance(row.features, dict) else {}
            store = store_of(features, store_field)
            if store is not None:
                conn.execute(sa.update(quotes).where(quotes.c.id == row.id).values(store=store))
        after = rows[-1].id


def downgrade() -> None:
    op.drop_table("write_probes")
    op.drop_index("ix_staff_sessions_key_id", table_name="staff_sessions")
    op.drop_table("staff_sessions")
    op.drop_index("ix_outcome_corrections_quote_id", table_name="outcome_corrections")
    op.drop_table("outcome_corrections")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of a table other tables
    # refer to would break their foreign keys.
    op.drop_column("outcomes", "recorded_by")
    op.drop_column("quote_requests", "caller_name")
    op.drop_index("ix_quotes_store_deadline_at", table_name="quotes")
    op.drop_column("quotes", "store")

"""The initial ledger: requests, quotes, outcomes, adaptive state, served model.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool = False) -> sa.Column[dt.datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "quote_requests",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_quote_requests"),
        sa.UniqueConstraint(
            "client_id", "idempotency_key", name="uq_quote_requests_client_id_idempotency_key"
        ),
    )
    op.create_table(
        "quotes",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("request_id", RowId, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        _when("created_at"),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("reference", sa.Text, nullable=True),
        sa.Column("features", sa.JSON, nullable=False),
        sa.Column("warnings", sa.JSON, nullable=False),
        _when("ordered_at"),
        _when("clock_start"),
        _when("expected_completion"),
        _when("deadline_at"),
        sa.Column("promise_local", sa.String(40), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("expected_hours", sa.Double, nullable=False),
        sa.Column("buffer_hours", sa.Double, nullable=False),
        sa.Column("promise_units", sa.Double, nullable=False),
        sa.Column("policy", sa.String(20), nullable=False),
        sa.Column("target_late_rate", sa.Double, nullable=False),
        sa.Column("level", sa.Double, nullable=False),
        sa.Column("segment", sa.Text, nullable=False),
        sa.Column("closed_days_skipped", sa.Integer, nullable=False),
        sa.Column("exceeds_max_promise", sa.Boolean, nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("adaptive_step", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_quotes"),
        sa.ForeignKeyConstraint(
            ["request_id"], ["quote_requests.id"], name="fk_quotes_request_id_quote_requests"
        ),
    )
    op.create_index(
        "ix_quotes_request_id_position", "quotes", ["request_id", "position"], unique=True
    )
    op.create_index("ix_quotes_created_at", "quotes", ["created_at"])
    op.create_table(
        "outcomes",
        sa.Column("quote_id", sa.String(64), nullable=False),
        _when("fulfilled_at"),
        sa.Column("was_late", sa.Boolean, nullable=False),
        _when("recorded_at"),
        sa.Column("source", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("quote_id", name="pk_outcomes"),
        sa.ForeignKeyConstraint(["quote_id"], ["quotes.id"], name="fk_outcomes_quote_id_quotes"),
    )
    op.create_index("ix_outcomes_recorded_at", "outcomes", ["recorded_at"])
    op.create_table(
        "adaptive_state",
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("segment", sa.Text, nullable=False),
        sa.Column("alpha", sa.Double, nullable=False),
        sa.Column("n_updates", sa.Integer, nullable=False),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("model_version", "segment", name="pk_adaptive_state"),
    )
    op.create_table(
        "served_model",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_served_model"),
    )


def downgrade() -> None:
    op.drop_table("served_model")
    op.drop_table("adaptive_state")
    op.drop_index("ix_outcomes_recorded_at", table_name="outcomes")
    op.drop_table("outcomes")
    op.drop_index("ix_quotes_created_at", table_name="quotes")
    op.drop_index("ix_quotes_request_id_position", table_name="quotes")
    op.drop_table("quotes")
    op.drop_table("quote_requests")

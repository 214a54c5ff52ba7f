"""Revisions linked to the original quote, staff contacts, and a deadline index.

A revision keeps the model's own expectation (`model_expected_hours`): its `expected_hours` is
the new, conditional one, but its risk is measured against the model's residuals.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Batch mode: SQLite cannot add a foreign key to an existing table, so it copies the table.
    with op.batch_alter_table("quotes") as batch:
        batch.add_column(sa.Column("revision_of", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("revision", sa.Integer, nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("model_expected_hours", sa.Double, nullable=True))
        batch.create_foreign_key("fk_quotes_revision_of_quotes", "quotes", ["revision_of"], ["id"])
        batch.create_index(
            "ix_quotes_revision_of_revision", ["revision_of", "revision"], unique=True
        )
        batch.create_index("ix_quotes_deadline_at", ["deadline_at"])
    op.create_table(
        "contacts",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("quote_id", sa.String(64), nullable=False),
        sa.Column("contacted_by", sa.String(200), nullable=False),
        sa.Column("contacted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_contacts"),
        sa.ForeignKeyConstraint(["quote_id"], ["quotes.id"], name="fk_contacts_quote_id_quotes"),
    )
    op.create_index("ix_contacts_quote_id", "contacts", ["quote_id"])


def downgrade() -> None:
    op.drop_index("ix_contacts_quote_id", table_name="contacts")
    op.drop_table("contacts")
    with op.batch_alter_table("quotes") as batch:
        batch.drop_index("ix_quotes_deadline_at")
        batch.drop_index("ix_quotes_revision_of_revision")
        batch.drop_constraint("fk_quotes_revision_of_quotes", type_="foreignkey")
        batch.drop_column("model_expected_hours")
        batch.drop_column("revision")
        batch.drop_column("revision_of")

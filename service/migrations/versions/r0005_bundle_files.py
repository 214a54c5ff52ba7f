"""Bundles kept in the ledger: hosts that share nothing but the database serve one model.

`bundle_files` holds every file of each bundle a worker was told to serve (manifest, its
signature, the serving form, the model file), written when an admin reload (or a worker that
follows promotions) announces it. A host whose registry folder lacks the version copies it from
here into that folder and loads it with the registry's own checks (hashes, signature).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bundle_files",
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", "name", name="pk_bundle_files"),
    )


def downgrade() -> None:
    op.drop_table("bundle_files")

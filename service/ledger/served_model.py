"""The model the workers should serve: one row, its version and a generation that grows with
every change, so each worker sees a reload made by another (`service.bundles`).

Only an explicit act changes it (`announce`: an admin reload, or a worker set to follow
promotions); a worker that starts on a ledger with no row yet `claim`s it for the bundle it
serves, once it serves, without ever overwriting a choice already made."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from service.database import insert_ignore, write_transaction
from service.tables import served_model

ROW_ID = 1


@dataclass(frozen=True, slots=True)
class ServedModel:
    """The version the workers should serve; `generation` grows with every change."""

    version: str
    generation: int


class ServedModelRow:
    """The `served_model` row; each method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self) -> ServedModel | None:
        """The version workers should serve, or None before any worker loaded one."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(served_model.c.version, served_model.c.generation).where(
                    served_model.c.id == ROW_ID
                )
            ).first()
        return None if row is None else ServedModel(row.version, int(row.generation))

    def claim(self, version: str, now_utc: dt.datetime) -> ServedModel:
        """The row as it stands, written for `version` only when there is none yet."""
        with write_transaction(self.engine) as conn:
            return _row_for(conn, version, now_utc)

    def announce(self, version: str, now_utc: dt.datetime) -> ServedModel:
        """Record that workers should serve `version` (a new generation if it changed)."""
        with write_transaction(self.engine) as conn:
            row = _row_for(conn, version, now_utc)
            if row.version == version:
                return row
            generation = row.generation + 1
            conn.execute(
                update(served_model)
                .where(served_model.c.id == ROW_ID)
                .values(version=version, generation=generation, updated_at=now_utc)
            )
        return ServedModel(version, generation)


def _row_for(conn: Connection, version: str, now_utc: dt.datetime) -> ServedModel:
    """The row, locked for this transaction; written for `version` when there was none."""
    insert_ignore(
        conn,
        served_model,
        {"id": ROW_ID, "version": version, "generation": 1, "updated_at": now_utc},
    )
    row = conn.execute(
        select(served_model.c.version, served_model.c.generation)
        .where(served_model.c.id == ROW_ID)
        .with_for_update()
    ).one()
    return ServedModel(row.version, int(row.generation))

"""Bundles kept in the ledger, so that hosts sharing nothing but the database serve one model.

When a worker is told to serve a version (an admin reload, or a worker that follows
promotions), it stores every file of that bundle here (`store`, once per version). A host whose
registry folder lacks the version copies the files into that folder (`copy_into`: a temporary
folder renamed into place) and loads it from there with the registry's own checks: sha256 of
every file against the manifest, and the signature when a signing key is set. Nothing read
from the ledger is trusted more than a file on disk.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from service.database import insert_ignore, write_transaction
from service.tables import bundle_files


class BundleFiles:
    """The bundle files held in the ledger; each method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def has(self, version: str) -> bool:
        with self.engine.connect() as conn:
            count = conn.execute(
                select(func.count())
                .select_from(bundle_files)
                .where(bundle_files.c.version == version)
            ).scalar_one()
        return bool(count)

    def store(self, version: str, files: Mapping[str, bytes], now_utc: dt.datetime) -> None:
        """Keep these files of `version` (a file already kept stays as it is)."""
        with write_transaction(self.engine) as conn:
            for name, content in sorted(files.items()):
                insert_ignore(
                    conn,
                    bundle_files,
                    {"version": version, "name": name, "content": content, "stored_at": now_utc},
                )

    def copy_into(self, version: str, root: Path) -> bool:
        """Write the kept files of `version` into `root/version` unless that folder exists;
        False when the ledger holds no such bundle."""
        target = root / version
        if target.exists():
            return True
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(bundle_files.c.name, bundle_files.c.content).where(
                    bundle_files.c.version == version
                )
            ).all()
        if not rows:
            return False
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
        try:
            for row in rows:
                if Path(row.name).name != row.name or row.name.startswith("."):
                    continue  # never a path outside the bundle's folder
                with (staging / row.name).open("wb") as handle:
                    handle.write(row.content)
                    handle.flush()
                    os.fsync(handle.fileno())
            try:
                os.rename(staging, target)
            except OSError:
                if not target.exists():  # another worker renamed its copy first: fine
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return True


def bundle_folder_files(folder: Path) -> dict[str, bytes]:
    """Every file of a bundle's folder (not hidden ones), by name."""
    return {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.is_file() and not path.name.startswith(".")
    }

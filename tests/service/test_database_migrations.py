"""`service.database.migrate_schema`: a ledger behind is upgraded by Alembic, one already
migrated costs a read and no Alembic import, one of a newer release is refused by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from models.errors import SettingsError
from service.database import alembic_config, code_revisions, migrate_schema, schema_revision
from service.ledger import Ledger
from tests.service.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
PROMISE = Path(sys.executable).parent / "promise"


def _revision(ledger: Ledger) -> str | None:
    with ledger.engine.connect() as conn:
        return schema_revision(conn)


def _set_revision(ledger: Ledger, revision: str) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})


def test_the_code_revisions_are_alembics_own_in_one_line() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    history = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert code_revisions() == tuple(history)
    assert script.get_heads() == [code_revisions()[-1]]


def test_a_new_ledger_and_one_behind_are_brought_to_the_head(database_url: str) -> None:
    ledger = Ledger.connect(database_url)
    assert _revision(ledger) is None
    with ledger.engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
    assert _revision(ledger) == "0002"
    migrate_schema(ledger.engine, "store_id")
    assert _revision(ledger) == code_revisions()[-1]
    assert "bundle_files" in inspect(ledger.engine).get_table_names()  # from 0005
    ledger.close()


def test_a_migrated_ledger_is_one_read_without_alembic(ledger: Ledger) -> None:
    # A fresh interpreter: this one imported Alembic for the fixture.
    code = (
        "import json, sys\n"
        "from service.database import create_ledger_engine, migrate_schema\n"
        "engine = create_ledger_engine(sys.argv[1])\n"
        "migrate_schema(engine, 'store_id')\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako'})))\n"
    )
    url = ledger.engine.url.render_as_string(hide_password=False)
    ran = subprocess.run(
        [sys.executable, "-c", code, url], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(ran.stdout) == []
    ledger.close()


def test_a_ledger_of_a_newer_release_is_refused_by_name(ledger: Ledger) -> None:
    _set_revision(ledger, "9999")
    with pytest.raises(SettingsError, match=r"migration 9999.*newest is 0007"):
        migrate_schema(ledger.engine, "store_id")
    assert _revision(ledger) == "9999"  # untouched


def test_promise_serve_refuses_a_newer_ledger_before_any_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.connect(url)
    migrate_schema(ledger.engine, "store_id")
    _set_revision(ledger, "9999")
    ledger.close()
    # Its own process: `promise serve` sets up logging for the whole process.
    env = {**os.environ, "PROMISE_DATABASE_URL": url, "PROMISE_REGISTRY": str(tmp_path / "r")}
    ran = subprocess.run(
        [str(PROMISE), "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 1
    assert "migration 9999" in ran.stderr and "Traceback" not in ran.stderr
    assert "server.starting" not in ran.stderr + ran.stdout  # no worker was started

"""Which model is served changes only when someone decides it (issue 17): a worker that
starts, or fails to, never moves the shared choice; a promotion is served only after an admin
reload, which refuses a model that takes other orders unless forced; an open order's risk and
revision use the model that quoted it, or say plainly that it is gone."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import delete

from models.registry import Registry
from models.revision import assess
from service.ledger import Ledger
from service.risk import open_promise
from service.tables import bundle_files
from tests.service.conftest import (
    ADMIN_KEY,
    ROOT,
    SPEC,
    ClientFactory,
    SettingsFactory,
    TrainedBundles,
    bearer,
    promote_other_schema,
    quote_body,
)

ADMIN = bearer(ADMIN_KEY)


def _served(client: TestClient) -> str | None:
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    row = ledger.served_model.get()
    return None if row is None else row.version


def test_a_worker_that_starts_serves_the_choice_not_the_latest_promotion(
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    registry_root: Path,
    trained: TrainedBundles,
) -> None:
    first = make_client(make_settings())
    assert first.post("/v1/quotes", json=quote_body()).status_code == 201  # it serves: claims
    assert _served(first) == trained.conformal
    Registry(registry_root).promote(trained.adaptive)

    second = make_client(make_settings())  # a worker restarted after the promotion
    for client in (first, second):
        model = client.get("/v1/model").json()
        assert (model["version"], model["promoted_version"]) == (
            trained.conformal,
            trained.adaptive,
        )
        ready = client.get("/readyz").json()
        assert (ready["model_version"], ready["promoted_version"]) == (
            trained.conformal,
            trained.adaptive,
        )
    assert _served(second) == trained.conformal

    assert first.post("/v1/model/reload", headers=ADMIN).status_code == 200
    assert second.post("/v1/quotes", json=quote_body()).json()["model_version"] == (
        trained.adaptive
    )


def test_a_worker_on_a_new_ledger_writes_the_choice_only_once_it_serves(
    make_client: ClientFactory, make_settings: SettingsFactory, trained: TrainedBundles
) -> None:
    client = make_client(make_settings())
    assert _served(client) is None  # started, but nothing asked yet
    assert client.get("/v1/model").status_code == 200
    assert _served(client) == trained.conformal


def _busy_port() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


def test_a_server_that_cannot_start_writes_nothing(
    tmp_path: Path, registry_root: Path, trained: TrainedBundles
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.connect(url)
    ledger.migrate()
    ledger.served_model.announce(trained.adaptive, dt.datetime.now(dt.UTC))
    Registry(registry_root).promote(trained.conformal)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PROMISE_")},
        "PROMISE_DATABASE_URL": url,
        "PROMISE_REGISTRY": str(registry_root),
    }
    with _busy_port() as listener:
        port = listener.getsockname()[1]
        started = subprocess.run(
            [sys.executable, "-m", "promise_cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert started.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in started.stderr
    served = ledger.served_model.get()
    assert served is not None and (served.version, served.generation) == (trained.adaptive, 1)
    ledger.close()


def test_make_run_refuses_a_busy_port_before_training(tmp_path: Path) -> None:
    registry = tmp_path / "bundles"
    with _busy_port() as listener:
        port = listener.getsockname()[1]
        run = subprocess.run(
            ["make", "--no-print-directory", "run", f"PORT={port}", f"REGISTRY={registry}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert run.returncode != 0
    assert "cannot listen" in run.stderr and "promise train" not in run.stdout
    assert not registry.exists()


def test_make_run_trains_again_only_when_its_inputs_change(tmp_path: Path) -> None:
    registry = tmp_path / "bundles"
    trained = registry / ".make-run-trained"
    spec, sample = tmp_path / "optical.toml", tmp_path / "optical_orders.csv"
    spec.write_text(SPEC.read_text(encoding="utf-8"), encoding="utf-8")
    sample.write_text("order_id\n", encoding="utf-8")  # `make -n` only looks at its age

    def planned() -> str:
        plan = subprocess.run(
            [
                "make",
                "-n",
                "--no-print-directory",
                str(trained),
                f"REGISTRY={registry}",
                f"SPEC={spec}",
                f"SAMPLE={sample}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert plan.returncode == 0, plan.stderr
        return plan.stdout

    assert "promise train" in planned()
    registry.mkdir()
    trained.touch()  # what a finished `make run` leaves: newer than every input
    assert "promise train" not in planned()
    old = trained.stat().st_mtime - 3600
    os.utime(trained, (old, old))
    os.utime(sample)  # new sample data since
    assert "promise train" in planned()


def test_a_reload_to_a_model_that_takes_other_orders_needs_force(
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    registry_root: Path,
    trained: TrainedBundles,
    other_schema: Path,
) -> None:
    client = make_client(make_settings())
    version = promote_other_schema(other_schema, registry_root)

    refused = client.post("/v1/model/reload", headers=ADMIN)
    assert refused.status_code == 409, refused.text
    assert "coating" in refused.json()["message"] and "force" in refused.json()["message"]
    assert client.get("/v1/model").json()["version"] == trained.conformal
    assert client.post("/v1/quotes", json=quote_body()).status_code == 201

    forced = client.post("/v1/model/reload", params={"force": "true"}, headers=ADMIN)
    assert forced.status_code == 200 and any("coating" in d for d in forced.json()["differences"])
    assert client.get("/v1/model").json()["version"] == version


def test_an_open_orders_risk_uses_the_model_that_quoted_it(
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    registry_root: Path,
    trained: TrainedBundles,
    other_schema: Path,
) -> None:
    client = make_client(make_settings())
    quote = client.post("/v1/quotes", json=quote_body()).json()
    assert quote["model_version"] == trained.conformal
    other = promote_other_schema(other_schema, registry_root)
    assert client.post("/v1/model/reload", params={"force": True}, headers=ADMIN).is_success
    assert client.get("/v1/model").json()["version"] == other

    # The model now served was trained on other data and takes other features: the open
    # order is judged by the model that quoted it, as the ledger's record says.
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    stored = ledger.quotes.get(quote["quote_id"])
    quoting = Registry(registry_root).load(trained.conformal).engine
    now = dt.datetime.now(dt.UTC).timestamp()
    expected = assess(quoting, open_promise(stored, quoting.schema), now)
    answer = client.get(f"/v1/quotes/{quote['quote_id']}/risk")
    assert answer.status_code == 200, answer.text
    ready_by = dt.datetime.fromisoformat(answer.json()["expected_completion"]).timestamp()
    assert abs(ready_by - expected.expected_completion_s) < 1.0
    listing = client.get("/v1/at-risk", params={"min_probability": 0, "within": "P60D"}).json()
    assert [o["quote_id"] for o in listing["orders"]] == [quote["quote_id"]]

    # Once the quoting model is gone from the registry and the ledger, nothing else judges it.
    shutil.rmtree(registry_root / trained.conformal)
    with ledger.engine.begin() as conn:
        conn.execute(delete(bundle_files).where(bundle_files.c.version == trained.conformal))
    fresh = make_client(make_settings())
    gone = fresh.get(f"/v1/quotes/{quote['quote_id']}/risk")
    assert gone.status_code == 409 and gone.json()["error"] == "model_unavailable"
    assert trained.conformal in gone.json()["message"]
    listing = fresh.get("/v1/at-risk", params={"min_probability": 0, "within": "P60D"}).json()
    assert listing["count"] == 0
    assert (listing["unassessed"], listing["unassessed_versions"]) == (1, [trained.conformal])

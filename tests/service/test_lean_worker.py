"""A serving worker carries no training stack and no build tools: after importing `service.app`,
loading the bundle and quoting through the app, none of scikit-learn, scipy, pandas, pyarrow,
matplotlib or joblib is imported, nor numba, LLVM, Alembic or Mako on a ledger `promise serve`
migrated (checked in a fresh Python process; the registry is trained in this one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from service.ledger import Ledger
from tests.service.conftest import ORDER, ROOT, TrainedBundles

TRAINING_STACK = ("sklearn", "scipy", "pandas", "pyarrow", "matplotlib", "joblib")
BUILD_TOOLS = ("numba", "llvmlite", "alembic", "mako")

WORKER = """
import json, sys
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings

ORDER = json.loads(sys.argv[4])
settings = Settings(database_url=sys.argv[2], registry=sys.argv[1])
with TestClient(
    create_app(settings), base_url="http://localhost", client=("127.0.0.1", 50000)
) as client:
    quoted = client.post("/v1/quotes", json={"order": ORDER})
    batch = client.post("/v1/quotes/batch", json={"orders": [{"order": ORDER}] * 40})
stack = json.loads(sys.argv[3])
banned = sorted({k.split(".")[0] for k in sys.modules} & set(stack))
print(json.dumps({"status": quoted.status_code, "batch": batch.status_code,
                  "version": quoted.json().get("model_version"), "loaded": banned}))
"""


def test_a_worker_quotes_without_importing_the_training_stack(
    registry_root: Path, trained: TrainedBundles, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.connect(url)
    ledger.migrate()  # as `promise serve` does before its workers start
    ledger.close()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            str(registry_root),
            url,
            json.dumps(TRAINING_STACK + BUILD_TOOLS),
            json.dumps(ORDER),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 201 and answer["version"] == trained.conformal
    assert answer["batch"] == 201
    assert answer["loaded"] == []


def test_the_check_sees_a_training_module_when_one_is_imported(tmp_path: Path) -> None:
    # The same probe in a process that does import the training side reports it.
    probe = "import json, sys, training.train; print(json.dumps(sorted(" + (
        "m for m in json.loads(sys.argv[1]) if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(TRAINING_STACK)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "sklearn" in json.loads(result.stdout)

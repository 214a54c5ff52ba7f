"""MLflow tracking through the command line, against a real local tracking store (SQLite in
tmp_path): what `promise train`, `backtest` and `promote --alias` leave there."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.registry import PROMOTED_FILE, Registry
from training.cli import app

pytest.importorskip("mlflow")
from mlflow import MlflowClient  # after the skip: the mlflow extra is optional
from mlflow.entities import Run

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@dataclass(frozen=True)
class Tracked:
    uri: str
    registry: Path
    version: str  # trained with a one-fold back-test, logged to `uri`


@pytest.fixture(scope="module")
def tracked(small_sample_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Tracked:
    folder = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    registry = folder / "bundles"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        trained = runner.invoke(
            app,
            [
                "train",
                "--spec",
                str(small_sample_spec),
                "--registry",
                str(registry),
                "--backtest-folds",
                "1",
                "--mlflow",
                uri,
            ],
        )
    assert trained.exit_code == 0, trained.output
    return Tracked(uri, registry, trained.output.strip().splitlines()[-1])


@pytest.fixture
def client(tracked: Tracked) -> Iterator[MlflowClient]:
    yield MlflowClient(tracking_uri=tracked.uri, registry_uri=tracked.uri)


def runs_of(client: MlflowClient, command: str) -> list[Run]:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments, f"tags.`promise.command` = '{command}'"))


def artifact_names(client: MlflowClient, run_id: str, path: str) -> list[str]:
    return sorted(Path(f.path).name for f in client.list_artifacts(run_id, path))


def test_a_training_run_logs_the_spec_the_manifests_figures_and_the_bundle(
    tracked: Tracked, client: MlflowClient, tmp_path: Path
) -> None:
    [run] = runs_of(client, "train")
    manifest = Registry(tracked.registry).manifest(tracked.version)
    summary = manifest.info["backtest"]
    assert run.data.tags["promise.version"] == tracked.version
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    # The numbers the manifest keeps, as `promise train` computed them.
    assert metrics["late_rate"] == pytest.approx(summary["late_rate"], rel=1e-12)
    assert metrics["mean_promise_hours"] == pytest.approx(summary["mean_promise_hours"])
    assert metrics["mae_hours"] == pytest.approx(summary["mae_hours"])
    assert metrics["pinball_loss_hours"] == pytest.approx(summary["pinball_loss_hours"])
    assert metrics["ratio_to_company"] == pytest.approx(summary["scorecard"]["company_ratio"])
    assert 0 < metrics["ratio_to_flat"] < 2
    assert metrics["fit.n_train"] == manifest.info["fit"]["n_train"]
    params = run.data.params
    assert params["quote.policy"] == "adaptive" and params["model.max_iter"] == "300"
    assert params["features.categorical"] == '["store_id", "lens_type", "coating"]'
    assert params["option.backtest_folds"] == "1"
    assert "manifest.json" in artifact_names(client, run.info.run_id, "bundle")
    # The training's own back-test, whole: the HTML report and the JSON it summarises.
    assert artifact_names(client, run.info.run_id, "reports") == ["backtest.html", "backtest.json"]
    logged = client.download_artifacts(run.info.run_id, "reports/backtest.json", str(tmp_path))
    report = json.loads(Path(logged).read_text())
    assert report["policies"]["adaptive"]["late_rate"] == pytest.approx(summary["late_rate"])
    # Beside the database, not in the folder the command ran from.
    assert (Path(tracked.uri.removeprefix("sqlite:///")).parent / "mlartifacts").is_dir()


def test_a_backtest_run_logs_every_policys_figures_and_both_reports(
    tracked: Tracked, client: MlflowClient, small_sample_spec: Path, tmp_path: Path
) -> None:
    json_out = tmp_path / "report.json"
    result = runner.invoke(
        app,
        [
            "backtest",
            "--spec",
            str(small_sample_spec),
            "--policy",
            "conformal",
            "--policy",
            "fixed",
            "--folds",
            "1",
            "--no-tradeoff",
            "--json",
            str(json_out),
            "--mlflow",
            tracked.uri,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "logged MLflow run" in result.output
    [run] = runs_of(client, "backtest")
    report = json.loads(json_out.read_text())
    metrics = run.data.metrics
    for name in ("conformal", "fixed"):
        assert metrics[f"{name}.late_rate"] == pytest.approx(report["policies"][name]["late_rate"])
        assert metrics[f"{name}.mean_promise_hours"] == pytest.approx(
            report["policies"][name]["mean_promise_hours"]
        )
        assert f"{name}.pinball_loss_hours" in metrics and f"{name}.ratio_to_company" in metrics
    assert metrics["company_promise.late_rate"] == pytest.approx(
        report["company_promise"]["late_rate"]
    )
    assert metrics["mae_hours"] == pytest.approx(report["model"]["mae_hours"])
    run_id = run.info.run_id
    assert artifact_names(client, run_id, "reports") == ["backtest.html", "backtest.json"]
    logged = Path(client.download_artifacts(run_id, "reports/backtest.json", str(tmp_path)))
    assert json.loads(logged.read_text()) == report


def test_promote_with_an_alias_registers_the_training_runs_bundle_once(
    tracked: Tracked, client: MlflowClient
) -> None:
    args = ["promote", tracked.version, "--registry", str(tracked.registry), "--mlflow"]
    first = runner.invoke(app, [*args, tracked.uri, "--alias", "champion"])
    assert first.exit_code == 0, first.output
    assert "PROMISE_MODEL_URI=models:/optical@champion" in first.output
    [train_run] = runs_of(client, "train")
    champion = client.get_model_version_by_alias("optical", "champion")
    assert champion.tags["promise.version"] == tracked.version
    assert champion.run_id == train_run.info.run_id
    again = runner.invoke(app, [*args, tracked.uri, "--alias", "stable", "--model-name", "optical"])
    assert again.exit_code == 0, again.output
    assert len(client.search_model_versions("name = 'optical'")) == 1
    assert client.get_model_version_by_alias("optical", "stable").version == champion.version
    assert runs_of(client, "promote") == []  # the training run's artifacts were reused


def test_an_alias_without_a_tracking_store_is_refused_before_promoting(
    tracked: Tracked, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    registry = shutil.copytree(tracked.registry, tmp_path / "bundles")
    (registry / PROMOTED_FILE).unlink(missing_ok=True)
    args = ["promote", tracked.version, "--registry", str(registry), "--alias", "x"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    said = " ".join(result.output.replace("\u2502", " ").split())
    assert "needs an MLflow tracking store: --mlflow URI or MLFLOW_TRACKING_URI" in said
    assert Registry(registry).promoted_version() is None


def test_commands_without_a_tracking_store_never_import_mlflow(tracked: Tracked) -> None:
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from training.cli import app\n"
        f"result = CliRunner().invoke(app, ['models', '--registry', {str(tracked.registry)!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "print('mlflow' in sys.modules)\n"
    )
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"

"""MLflow tracking for the command line: a run per `promise train` and `promise backtest`, and a
registered-model version with an alias per `promise promote --alias`.

Needs the optional `mlflow` extra (`pip install 'promise-engine[mlflow]'`); `training.cli`
imports this module only when a tracking URI is given (`--mlflow URI` or
`MLFLOW_TRACKING_URI`), and this module imports MLflow only inside its functions, since MLflow
takes seconds to import.

What a run holds, every number as the command computed it (never recomputed here):

- parameters: the spec flattened (`quote.policy`, `model.max_iter`, ...) and the command's
  options;
- metrics: a training run's manifest back-test summary (`late_rate`, `mean_promise_hours`,
  `mae_hours`, `pinball_loss_hours`, `ratio_to_flat`, `ratio_to_company`, ...) and its fit's
  counts; a back-test run's figures per policy (`adaptive.late_rate`, ...), the business's own
  promise (`company_promise.late_rate`) and the model's errors (`mae_hours`);
- artifacts: the bundle folder (`bundle/`), the JSON and HTML reports (`reports/`);
- tags: `promise.version` (the bundle version), `promise.command`.

A `sqlite:///FILE` tracking URI keeps a new experiment's artifacts in `mlartifacts/` beside
FILE (MLflow's own default is `./mlruns` in whatever folder the command ran from).

```
PromiseError
└── TrackingError   MLflow missing, unreachable, or refusing a call: one red line
```
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import PromiseError
from models.registry import Manifest

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from training.backtest import BacktestReport

TRACKING_VARIABLE = "MLFLOW_TRACKING_URI"
VERSION_TAG = "promise.version"
COMMAND_TAG = "promise.command"
DEFAULT_MODEL_NAME = "promise"
BUNDLE_ARTIFACTS = "bundle"
REPORT_ARTIFACTS = "reports"
# MLflow keeps at most this many characters of a parameter's value.
PARAMETER_LENGTH = 6000


class TrackingError(PromiseError):
    """MLflow is not installed, cannot be reached, or refused a call."""


@dataclass(frozen=True, slots=True)
class Registered:
    """A bundle registered in MLflow: model `name`, its model `version`, the `alias` set."""

    name: str
    version: str
    alias: str
    run_id: str


def experiment_name(spec_path: str | None) -> str:
    """The experiment (and default registered model) of a spec: the spec file's stem
    (`data/optical.toml` -> `optical`: a spec has no name of its own), else `promise`."""
    return Path(spec_path).stem if spec_path else DEFAULT_MODEL_NAME


def model_name_of(manifest: Manifest) -> str:
    """The registered model a bundle goes to by default: its spec file's stem, or `promise`."""
    spec_path = manifest.info.get("spec_path")
    return experiment_name(spec_path if isinstance(spec_path, str) else None)


def spec_parameters(spec: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The spec as flat MLflow parameters: `{"quote.policy": "adaptive", ...}` (lists as JSON
    text, None as "none")."""
    import json

    flat: dict[str, str] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(spec_parameters(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(list(value))[:PARAMETER_LENGTH]
        else:
            flat[name] = ("none" if value is None else str(value))[:PARAMETER_LENGTH]
    return flat


def training_metrics(manifest: Manifest) -> dict[str, float]:
    """The numbers `promise train` printed and the manifest keeps: its back-test summary (when
    it ran one) and its fit's counts."""
    metrics: dict[str, object] = {}
    summary = manifest.info.get("backtest")
    if isinstance(summary, Mapping) and summary:
        for name in (
            "late_rate",
            "target_late_rate",
            "n_quotes",
            "n_unknown",
            "mean_promise_hours",
            "median_promise_hours",
            "mean_promise_units",
            "mae_hours",
            "pinball_loss_hours",
            "flat_mean_promise_hours",
            "flat_mean_promise_units",
            "company_late_rate",
            "company_mean_promise_hours",
            "at_risk_recall",
            "at_risk_false_alarm_share",
        ):
            metrics[name] = summary.get(name)
        card = summary.get("scorecard")
        if isinstance(card, Mapping):
            metrics["ratio_to_company"] = card.get("company_ratio")
            target = summary.get("target_late_rate")
            for entry in card.get("targets") or ():
                if isinstance(entry, Mapping) and _same(entry.get("target_late_rate"), target):
                    metrics["ratio_to_flat"] = entry.get("ratio_to_flat")
    fit = manifest.info.get("fit")
    if isinstance(fit, Mapping):
        for name in ("n_train", "n_calibration", "n_censored_calibration", "settle_hours"):
            metrics[f"fit.{name}"] = fit.get(name)
    return _numbers(metrics)


def backtest_metrics(report: BacktestReport) -> dict[str, float]:
    """The figures `promise backtest` printed, per policy (`adaptive.late_rate`), for the
    business's own promise (`company_promise.late_rate`) and for the model (`mae_hours`)."""
    from training.backtest import COMPANY

    metrics: dict[str, object] = {
        "target_late_rate": report.target_late_rate,
        "mae_hours": report.model.mae_hours,
        "median_absolute_error_hours": report.model.median_absolute_error_hours,
    }
    card = report.scorecard
    at_company = {} if card.company is None else card.company.at_company_late_rate
    for name, own in report.policies.items():
        figures = own.overall
        metrics[f"{name}.late_rate"] = figures.late_rate
        metrics[f"{name}.n_quotes"] = figures.n_quotes
        metrics[f"{name}.mean_promise_hours"] = figures.mean_promise_hours
        metrics[f"{name}.median_promise_hours"] = figures.median_promise_hours
        metrics[f"{name}.mean_promise_units"] = figures.mean_promise_units
        metrics[f"{name}.impressed"] = figures.impressed
        metrics[f"{name}.pinball_loss_hours"] = report.model.pinball_loss_hours.get(name)
        comparison = report.comparison.policies.get(name)
        if comparison is not None:
            metrics[f"{name}.flat_mean_promise_hours"] = comparison.flat_mean_promise_hours
        for entry in card.policies.get(name, ()):
            if _same(entry.target_late_rate, report.target_late_rate):
                metrics[f"{name}.ratio_to_flat"] = entry.ratio_to_flat
        if name in at_company:
            metrics[f"{name}.ratio_to_company"] = at_company[name].ratio
    company = report.company_promise
    if company is not None:
        metrics[f"{COMPANY}.late_rate"] = company.overall.late_rate
        metrics[f"{COMPANY}.mean_promise_hours"] = company.overall.mean_promise_hours
        metrics[f"{COMPANY}.n_quotes"] = company.overall.n_quotes
    return _numbers(metrics)


def log_training(
    uri: str,
    manifest: Manifest,
    bundle: Path,
    options: Mapping[str, object],
    reports: Mapping[str, str] | None = None,
) -> str:
    """Log a `promise train` run: the spec and `options` as parameters, `training_metrics`,
    the bundle folder (and `reports`, file name -> text, when given) as artifacts, tagged with
    the bundle version. The run's id."""
    spec = manifest.info.get("spec")
    spec_path = manifest.info.get("spec_path")
    parameters = spec_parameters(spec if isinstance(spec, Mapping) else {})
    parameters.update(spec_parameters({"option": dict(options)}))
    parameters["policy"] = manifest.policy
    with _mlflow(uri) as client:
        return _log_run(
            client,
            uri,
            experiment=experiment_name(spec_path if isinstance(spec_path, str) else None),
            run_name=f"train {manifest.version}",
            tags={VERSION_TAG: manifest.version, COMMAND_TAG: "train"},
            parameters=parameters,
            metrics=training_metrics(manifest),
            folders={BUNDLE_ARTIFACTS: bundle},
            reports=reports or {},
        )


def log_backtest(
    uri: str,
    report: BacktestReport,
    spec: Mapping[str, Any],
    spec_path: str,
    options: Mapping[str, object],
    reports: Mapping[str, str],
) -> str:
    """Log a `promise backtest` run: the spec and `options` as parameters, `backtest_metrics`,
    and `reports` (file name -> text: the JSON and HTML reports) as artifacts. The run's id."""
    parameters = spec_parameters(spec)
    parameters.update(spec_parameters({"option": dict(options)}))
    with _mlflow(uri) as client:
        return _log_run(
            client,
            uri,
            experiment=experiment_name(spec_path),
            run_name=f"backtest {Path(spec_path).stem}",
            tags={COMMAND_TAG: "backtest"},
            parameters=parameters,
            metrics=backtest_metrics(report),
            folders={},
            reports=reports,
        )


def register(
    uri: str, manifest: Manifest, bundle: Path, alias: str, model_name: str | None = None
) -> Registered:
    """Make the bundle a version of the registered model `model_name` (default
    `model_name_of(manifest)`) and point `alias` at it. The artifacts are the training run's
    `bundle/` when `promise train` logged one for this version, else a new `promote` run's;
    a version already registered for this bundle is reused."""
    name = model_name or model_name_of(manifest)
    with _mlflow(uri) as client:
        from mlflow.exceptions import MlflowException

        run_id = _training_run(client, manifest.version)
        if run_id is None:
            run_id = _log_run(
                client,
                uri,
                experiment=name,
                run_name=f"promote {manifest.version}",
                tags={VERSION_TAG: manifest.version, COMMAND_TAG: "promote"},
                parameters={"policy": manifest.policy},
                metrics=training_metrics(manifest),
                folders={BUNDLE_ARTIFACTS: bundle},
                reports={},
            )
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(
                name, description="Promise bundles (promise promote --alias)"
            )
        existing = [
            v
            for v in client.search_model_versions(f"name = '{_quoted(name)}'")
            if v.tags.get(VERSION_TAG) == manifest.version
        ]
        if existing:
            model_version = str(existing[0].version)
        else:
            created = client.create_model_version(
                name,
                f"runs:/{run_id}/{BUNDLE_ARTIFACTS}",
                run_id=run_id,
                tags={VERSION_TAG: manifest.version},
                description=f"Promise bundle {manifest.version} ({manifest.policy})",
            )
            model_version = str(created.version)
        client.set_registered_model_alias(name, alias, model_version)
    return Registered(name=name, version=model_version, alias=alias, run_id=run_id)


def _log_run(
    client: MlflowClient,
    uri: str,
    *,
    experiment: str,
    run_name: str,
    tags: Mapping[str, str],
    parameters: Mapping[str, str],
    metrics: Mapping[str, float],
    folders: Mapping[str, Path],
    reports: Mapping[str, str],
) -> str:
    from mlflow.entities import Metric, Param

    found = client.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id
        if found is not None
        else client.create_experiment(experiment, artifact_location=_artifact_root(uri))
    )
    run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
    run_id: str = run.info.run_id
    try:
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, _now_ms(), 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in parameters.items()],
        )
        for artifact_path, folder in folders.items():
            client.log_artifacts(run_id, str(folder), artifact_path)
        if reports:
            with tempfile.TemporaryDirectory(prefix="promise-reports-") as staging:
                for file_name, text in reports.items():
                    (Path(staging) / file_name).write_text(text, encoding="utf-8")
                client.log_artifacts(run_id, staging, REPORT_ARTIFACTS)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return run_id


def _training_run(client: MlflowClient, version: str) -> str | None:
    """The id of the `promise train` run that logged bundle `version`, if any."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return None
    runs = client.search_runs(
        experiments,
        filter_string=f"tags.`{VERSION_TAG}` = '{_quoted(version)}' "
        f"and tags.`{COMMAND_TAG}` = 'train' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


@contextmanager
def _mlflow(uri: str) -> Iterator[MlflowClient]:
    """A client of the tracking (and registry) store at `uri`; MLflow's failures become one
    `TrackingError`, its deprecation chatter (its SQL store on SQLAlchemy 2.1) stays quiet."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            from mlflow import MlflowClient
            from mlflow.exceptions import MlflowException
        except ImportError as err:
            raise TrackingError(
                "MLflow tracking needs the mlflow extra: pip install 'promise-engine[mlflow]'"
            ) from err
        try:
            yield MlflowClient(tracking_uri=uri, registry_uri=uri)
        except MlflowException as err:
            raise TrackingError(f"MLflow at {uri}: {err.message}") from err


def _artifact_root(uri: str) -> str | None:
    """Beside the database for `sqlite:///FILE`; the server's choice otherwise."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    database = Path(uri[len(prefix) :].split("?")[0])
    return (database.resolve().parent / "mlartifacts").as_uri()


def _numbers(metrics: Mapping[str, object]) -> dict[str, float]:
    """The finite numbers only: a figure with nothing to compute it from is left out."""
    return {
        name: float(value)
        for name, value in metrics.items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    }


def _same(a: object, b: object) -> bool:
    return isinstance(a, int | float) and isinstance(b, int | float) and abs(a - b) < 1e-9


def _quoted(text: str) -> str:
    return text.replace("'", "\\'")


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)

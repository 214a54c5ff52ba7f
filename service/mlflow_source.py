"""Bundles from an MLflow model registry: `fetch("models:/NAME@ALIAS", registry_root)`.

`promise promote VERSION --alias champion` registers a bundle's files as a version of an MLflow
registered model, tagged `promise.version`. `fetch` resolves the alias (or a version number,
`models:/NAME/3`) with MLflow, copies the bundle into `registry_root/<version>` unless it is
there already, and answers the bundle version; the caller loads it with the registry's usual
checks (every file's hash, the signature when a key is set), so nothing from MLflow is trusted
more than a bundle on disk. The download goes into a temporary folder inside `registry_root`
and is renamed into place, so a worker never sees half a bundle; two workers fetching at once
both end with the same folder.

MLflow is imported inside `fetch` only: a worker that serves a plain registry folder never
imports it (`tests/service/test_lean_worker.py`). The tracking store is MLflow's own setting,
`MLFLOW_TRACKING_URI`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

from models.errors import BundleError, NotFound
from models.registry import MANIFEST_FILE

log = logging.getLogger(__name__)

TRACKING_VARIABLE = "MLFLOW_TRACKING_URI"
VERSION_TAG = "promise.version"  # training.tracking tags each registered version with it
MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<number>\d+))")
# A bundle version as `models.registry` makes them: a file name, never a path.
BUNDLE_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def fetch(uri: str, registry_root: Path) -> str:
    """The bundle version `uri` (`models:/NAME@ALIAS` or `models:/NAME/NUMBER`) names, its
    files copied from MLflow into `registry_root/<version>` if they are not there yet.

    `NotFound` for an unknown model, alias or version; `BundleError` when MLflow is missing or
    unreachable, the version is not a Promise bundle, or its files cannot be copied."""
    match = MODEL_URI.fullmatch(uri.strip())
    if match is None:
        raise BundleError(
            f"{uri!r} is not an MLflow model URI: use models:/NAME@ALIAS (or models:/NAME/VERSION)"
        )
    name, alias, number = match["name"], match["alias"], match["number"]
    if not os.environ.get(TRACKING_VARIABLE):
        # Unset, MLflow would open (and create) a store in the working folder: never wanted.
        raise BundleError(f"serving {uri} needs {TRACKING_VARIABLE}: the MLflow tracking store")
    with warnings.catch_warnings():
        # MLflow's SQL store on SQLAlchemy 2.1 warns of deprecations that are MLflow's to fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            from mlflow import MlflowClient
            from mlflow.artifacts import download_artifacts
            from mlflow.exceptions import MlflowException
        except ImportError as err:
            raise BundleError(
                f"serving {uri} needs MLflow: pip install 'promise-engine[mlflow]'"
            ) from err
        try:
            client = MlflowClient()
            found = (
                client.get_model_version_by_alias(name, alias)
                if alias is not None
                else client.get_model_version(name, number)
            )
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in err.message.lower():
                raise NotFound(f"MLflow has no {uri}: {err.message}") from err
            raise BundleError(f"MLflow could not resolve {uri}: {err.message}") from err
        version = found.tags.get(VERSION_TAG)
        if not isinstance(version, str) or BUNDLE_VERSION.fullmatch(version) is None:
            raise BundleError(
                f"{uri} (MLflow version {found.version}) is not a Promise bundle: it has no "
                f"valid {VERSION_TAG} tag; register one with `promise promote VERSION --alias`"
            )
        target = registry_root / version
        if (target / MANIFEST_FILE).is_file():
            return version
        try:
            registry_root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".mlflow-", dir=registry_root))
        except OSError as err:
            raise BundleError(f"cannot write to the registry {registry_root}: {err}") from err
        try:
            download_artifacts(
                artifact_uri=f"models:/{name}/{found.version}", dst_path=str(staging)
            )
            _check_download(staging, version, uri)
            try:
                os.rename(staging, target)
            except OSError:
                if not (target / MANIFEST_FILE).is_file():
                    raise
                # Another worker put the same bundle there first: theirs is as good as ours.
        except MlflowException as err:
            raise BundleError(f"MLflow could not send the files of {uri}: {err.message}") from err
        except OSError as err:
            raise BundleError(f"cannot copy {uri} into {registry_root}: {err}") from err
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("bundle.fetched", extra={"model_uri": uri, "version": version})
    return version


def _check_download(folder: Path, version: str, uri: str) -> None:
    """The files MLflow sent are a bundle of that version (the caller checks every hash)."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{uri} holds no readable {MANIFEST_FILE}: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("version") != version:
        raise BundleError(
            f"{uri} is tagged {VERSION_TAG}={version} but its {MANIFEST_FILE} says otherwise"
        )

"""The registry of trained bundles: save, list, promote, load (hash checked before unpickling).

Layout under the registry root:

    <root>/<version>/model.joblib     the pickled `QuoteEngine`
    <root>/<version>/manifest.json    what it is (see `Manifest`), with the model file's sha256
    <root>/PROMOTED                   the promoted version, one line

A bundle is written into a temporary folder and renamed into place, and PROMOTED is replaced
atomically, so a crash or a full disk never leaves a half-written bundle or a dangling promotion.
A pickle is code: `load` refuses a model file whose hash is not the one its manifest recorded,
and a bundle made with other library versions than the running ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from models.errors import BundleError, NotFound
from models.quoting import QuoteEngine
from models.trained import TrainedModel
from models.units import iso_utc

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
PROMOTED_FILE = "PROMOTED"
# 2: pooled segments and the adaptive policy's control (issue 13) changed what a policy pickles.
# 3: policies pickle their scikit-learn parameters (no `PolicyConfig`), the engine its fields by
# name.
FORMAT_VERSION = 3


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a bundle is: identity, policy, library versions and everything recorded at training."""

    version: str
    created_at: str
    model_sha256: str
    policy: str
    target_late_rate: float
    unit: str
    libraries: Mapping[str, str]
    info: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class LoadedBundle:
    """A bundle read from the registry: the engine to quote with and its manifest."""

    engine: QuoteEngine
    manifest: Manifest


def library_versions() -> dict[str, str]:
    """The versions a pickled model depends on."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
    }


def _same_minor(a: str, b: str) -> bool:
    return a.split(".")[:2] == b.split(".")[:2]


class Registry:
    """Trained bundles in a folder; `root` is created on first save."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def save(
        self, model: TrainedModel, info: Mapping[str, Any], created_at: dt.datetime
    ) -> Manifest:
        """Write a new bundle and return its manifest; the version is new and never reused."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        except OSError as err:
            raise BundleError(f"cannot write to the registry {self.root}: {err.strerror}") from err
        try:
            model_path = staging / MODEL_FILE
            joblib.dump(model, model_path, compress=3)
            engine = model.engine
            _fsync(model_path)
            digest = _sha256(model_path)
            stamp = created_at.astimezone(dt.UTC)
            manifest = Manifest(
                version=f"{stamp:%Y%m%d-%H%M%S}-{digest[:8]}",
                created_at=iso_utc(stamp.timestamp()),
                model_sha256=digest,
                policy=engine.policy_name,
                target_late_rate=engine.target_late_rate,
                unit=engine.unit,
                libraries=library_versions(),
                info=info,
            )
            manifest_path = staging / MANIFEST_FILE
            manifest_path.write_text(manifest.to_json(), encoding="utf-8")
            _fsync(manifest_path)
            os.rename(staging, self.root / manifest.version)
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise BundleError(
                f"could not write the bundle into {self.root}: {err.strerror or err}; "
                "the registry is unchanged"
            ) from err
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return manifest

    def manifests(self) -> list[Manifest]:
        """Every readable bundle's manifest, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and not folder.name.startswith("."):
                try:
                    found.append(self.manifest(folder.name))
                except BundleError:
                    continue
        return sorted(found, key=lambda m: m.created_at)

    def manifest(self, version: str) -> Manifest:
        folder = self._folder(version)
        path = folder / MANIFEST_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return Manifest(**raw)
        except FileNotFoundError as err:
            raise BundleError(f"bundle {version} has no {MANIFEST_FILE}") from err
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as err:
            raise BundleError(f"bundle {version}: {MANIFEST_FILE} is unreadable: {err}") from err

    def promoted_version(self) -> str | None:
        try:
            text = (self.root / PROMOTED_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text or None

    def promote(self, version: str) -> Manifest:
        """Make `version` the one the service loads (after checking it loads)."""
        self.load(version)
        target = self.root / PROMOTED_FILE
        temporary = self.root / f".{PROMOTED_FILE}.{os.getpid()}"
        try:
            temporary.write_text(version + "\n", encoding="utf-8")
            _fsync(temporary)
            os.replace(temporary, target)
        except OSError as err:
            temporary.unlink(missing_ok=True)
            raise BundleError(f"cannot promote {version}: {err.strerror}") from err
        return self.manifest(version)

    def load(self, version: str) -> LoadedBundle:
        """Load a bundle, refusing a tampered, truncated or incompatible one."""
        manifest = self.manifest(version)
        if manifest.format_version != FORMAT_VERSION:
            raise BundleError(
                f"bundle {version} has format {manifest.format_version}, "
                f"this Promise reads format {FORMAT_VERSION}: retrain it with `promise train`"
            )
        running = library_versions()
        for library in ("scikit-learn", "numpy", "joblib"):
            made_with = manifest.libraries.get(library, "unknown")
            if not _same_minor(made_with, running[library]):
                raise BundleError(
                    f"bundle {version} was made with {library} {made_with}, this service runs "
                    f"{running[library]}: retrain it with `promise train`"
                )
        model_path = self._folder(version) / MODEL_FILE
        try:
            digest = _sha256(model_path)
        except FileNotFoundError as err:
            raise BundleError(f"bundle {version} has no {MODEL_FILE}") from err
        if digest != manifest.model_sha256:
            raise BundleError(
                f"bundle {version}: {MODEL_FILE} does not match its manifest's sha256 "
                "(tampered with or damaged); refusing to load it"
            )
        try:
            model = joblib.load(model_path)
        except Exception as err:  # a damaged file can fail in many ways inside unpickling
            raise BundleError(f"bundle {version}: {MODEL_FILE} cannot be read: {err}") from err
        if not isinstance(model, TrainedModel):
            raise BundleError(f"bundle {version}: {MODEL_FILE} does not hold a trained model")
        return LoadedBundle(engine=model.engine, manifest=manifest)

    def load_promoted(self) -> LoadedBundle:
        version = self.promoted_version()
        if version is None:
            raise NotFound(
                f"no model is promoted in {self.root}; run `promise train` and "
                "`promise promote VERSION`"
            )
        return self.load(version)

    def _folder(self, version: str) -> Path:
        if not version or "/" in version or "\\" in version or version.startswith("."):
            raise NotFound(f"no model version {version!r}")
        folder = self.root / version
        if not folder.is_dir():
            raise NotFound(f"no model version {version!r} in {self.root}")
        return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())

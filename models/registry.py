"""The registry of trained bundles: save, list, promote, and load without running their code.

Layout under the registry root:

    <root>/<version>/model.joblib     the pickled `TrainedModel`, for data scientists only
    <root>/<version>/serving.json     the engine's scalars, strings, schema, keys, array index
    <root>/<version>/serving.npz      the engine's arrays (`models.serving_form`)
    <root>/<version>/manifest.json    what it is (see `Manifest`), with every file's sha256
    <root>/<version>/manifest.sig     HMAC-SHA256 of the manifest (when a signing key is given)
    <root>/PROMOTED                   the promoted version, one line
    <root>/promotions.jsonl           the promotion history, one JSON object a line (`Promotion`)

A bundle is written into a temporary folder and renamed into place, and PROMOTED is replaced
atomically, so a crash or a full disk never leaves a half-written bundle or a dangling promotion.
Each promotion appends one line to the history in one `O_APPEND` write before PROMOTED changes;
`rollback` promotes the version the current one replaced (a second roll back undoes the first).
A promotion whose bundle differs from the promoted one in what a point-of-sale system sends or
sees (`models.compatibility`) is refused unless forced.

`load` (the service's path) checks the signature when the registry has a key, then every file's
hash, then reads only the serving form: JSON and `np.load(allow_pickle=False)`. It never
unpickles, so a bundle loads whatever the scikit-learn, numpy and joblib versions (the manifest
records them for information), and it imports neither joblib nor scikit-learn. `load_model`
unpickles `model.joblib` for notebooks and the bench's reference: a pickle is code, so it is
for trusted bundles only, and refused across library versions. A bundle of format 3 (a pickle
only) is refused by `load` naming `promise rebuild-serving`, which `models.legacy` implements.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import platform
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.compatibility import IncompatibleBundle, differences
from models.errors import BundleError, NotFound
from models.quoting import QuoteEngine
from models.serving_form import engine_form, engine_from_form
from models.signing import is_signed_by, sign
from models.units import iso_utc

if TYPE_CHECKING:  # the pickled side: imported where used, never by the service
    from models.trained import TrainedModel

MODEL_FILE = "model.joblib"
SERVING_JSON = "serving.json"
SERVING_NPZ = "serving.npz"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
PROMOTED_FILE = "PROMOTED"
PROMOTIONS_FILE = "promotions.jsonl"
SERVING_FILES = (SERVING_JSON, SERVING_NPZ)
# 2: pooled segments and the adaptive policy's control (issue 13) changed what a policy pickles.
# 3: policies pickle their scikit-learn parameters (no `PolicyConfig`), the engine its fields by
# name.
# 4: a serving form of arrays and JSON beside the pickle; the manifest hashes every file.
FORMAT_VERSION = 4
PICKLE_ONLY_FORMAT = 3


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a bundle is: identity, policy, its files' hashes, library versions, training info."""

    version: str
    created_at: str
    policy: str
    target_late_rate: float
    unit: str
    libraries: Mapping[str, str]
    files: Mapping[str, str] = field(default_factory=dict)  # file name -> sha256
    info: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class Promotion:
    """One line of the promotion history: `version` became the promoted bundle over
    `previous` (None: nothing was promoted) at `at` (ISO 8601, UTC)."""

    version: str
    previous: str | None
    at: str
    forced: bool = False  # promoted though it differed from `previous` (see `differences`)
    rollback: bool = False  # made by `Registry.rollback`
    differences: tuple[str, ...] = ()  # `models.compatibility.differences(previous, version)`

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True, slots=True)
class LoadedBundle:
    """A bundle read from the registry: the engine to quote with and its manifest."""

    engine: QuoteEngine
    manifest: Manifest


def library_versions() -> dict[str, str]:
    """The versions of the libraries that made a bundle, read from the installed packages'
    metadata (importing none of them)."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": _installed("scikit-learn"),
        "joblib": _installed("joblib"),
    }


def rebuild_command(version: str, root: Path) -> str:
    """The command that gives a format-3 bundle its serving form."""
    return f"promise rebuild-serving {version} --registry {root}"


class Registry:
    """Trained bundles in a folder; `root` is created on first save.

    With `signing_key`, `save` signs each manifest and `load` refuses a bundle whose manifest
    is unsigned or signed otherwise."""

    def __init__(self, root: Path, signing_key: str | None = None) -> None:
        self.root = Path(root)
        self.signing_key = signing_key or None

    def save(
        self, model: TrainedModel, info: Mapping[str, Any], created_at: dt.datetime
    ) -> Manifest:
        """Write a new bundle and return its manifest; the version is new and never reused."""
        import joblib  # training's side only: the service never writes nor reads pickles

        def write_model(path: Path) -> None:
            joblib.dump(model, path, compress=3)

        return self.save_files(model.engine, write_model, info, created_at)

    def save_files(
        self,
        engine: QuoteEngine,
        write_model: Callable[[Path], None],
        info: Mapping[str, Any],
        created_at: dt.datetime,
        libraries: Mapping[str, str] | None = None,
    ) -> Manifest:
        """Write a bundle of `engine`'s serving form and the model file `write_model(path)`
        writes (`save` pickles a `TrainedModel`; a rebuild copies the old pickle)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        except OSError as err:
            raise BundleError(f"cannot write to the registry {self.root}: {err.strerror}") from err
        try:
            write_model(staging / MODEL_FILE)
            document, arrays = engine_form(engine)
            (staging / SERVING_JSON).write_text(
                json.dumps(document, sort_keys=True), encoding="utf-8"
            )
            with (staging / SERVING_NPZ).open("wb") as handle:
                # (numpy's stub reads the `allow_pickle` keyword into **kwds' type.)
                np.savez(handle, **arrays)  # type: ignore[arg-type]
            files = {}
            for name in (MODEL_FILE, *SERVING_FILES):
                _fsync(staging / name)
                files[name] = _sha256(staging / name)
            stamp = created_at.astimezone(dt.UTC)
            digest = hashlib.sha256("".join(files.values()).encode()).hexdigest()
            manifest = Manifest(
                version=f"{stamp:%Y%m%d-%H%M%S}-{digest[:8]}",
                created_at=iso_utc(stamp.timestamp()),
                policy=engine.policy_name,
                target_late_rate=engine.target_late_rate,
                unit=engine.unit,
                libraries=dict(libraries or library_versions()),
                files=files,
                info=info,
            )
            text = manifest.to_json()
            manifest_path = staging / MANIFEST_FILE
            manifest_path.write_text(text, encoding="utf-8")
            _fsync(manifest_path)
            if self.signing_key is not None:
                signature_path = staging / SIGNATURE_FILE
                signature = sign(json.loads(text), self.signing_key)
                signature_path.write_text(signature + "\n", encoding="utf-8")
                _fsync(signature_path)
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
        """The bundle's manifest as written (a format-3 one's model hash becomes `files`)."""
        return _manifest_of(self._raw_manifest(version), version)

    def promoted_version(self) -> str | None:
        try:
            text = (self.root / PROMOTED_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text or None

    def promote(
        self, version: str, force: bool = False, now: dt.datetime | None = None
    ) -> Manifest:
        """Make `version` the one the service loads, after checking that it loads and that it
        takes and answers what the promoted bundle does (`IncompatibleBundle` listing the
        differences, unless `force`). Records the promotion in the history, stamped `now`
        (default: the clock)."""
        return self._promote(version, force=force, now=now, rollback=False)

    def promotion_differences(self, version: str) -> list[str]:
        """What a point-of-sale system would notice if `version` replaced the promoted bundle
        (`models.compatibility.differences`, from both serving forms); [] when nothing else is
        promoted. Checks that `version` loads."""
        return self._differences(self.promoted_version(), self.load(version))

    def history(self) -> list[Promotion]:
        """The promotions, oldest first (a line torn by a crash is skipped)."""
        try:
            text = (self.root / PROMOTIONS_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            try:
                raw = json.loads(line)
                found.append(Promotion(**{**raw, "differences": tuple(raw["differences"])}))
            except (json.JSONDecodeError, TypeError, KeyError):
                continue
        return found

    def rollback_target(self) -> Promotion:
        """The history's record of how the promoted version came to be: its `previous` is what
        `rollback` promotes. `NotFound` when there is nothing to roll back to."""
        current = self.promoted_version()
        if current is None:
            raise NotFound(f"no model is promoted in {self.root}: nothing to roll back")
        made = next((p for p in reversed(self.history()) if p.version == current), None)
        if made is None:
            raise NotFound(
                f"the promotion history in {self.root} does not say what {current} replaced; "
                "promote the version to serve with `promise promote VERSION`"
            )
        if made.previous is None:
            raise NotFound(
                f"{current} was the first promoted model in {self.root}: nothing to roll back to"
            )
        return made

    def rollback(self, now: dt.datetime | None = None) -> Promotion:
        """Promote the version the promoted one replaced (differences or not: it was served
        before), record it and return the record."""
        target = self.rollback_target()
        assert target.previous is not None
        self._promote(target.previous, force=True, now=now, rollback=True)
        return self.history()[-1]

    def _promote(
        self, version: str, *, force: bool, now: dt.datetime | None, rollback: bool
    ) -> Manifest:
        candidate = self.load(version)
        current = self.promoted_version()
        found = self._differences(current, candidate)
        if found and not force:
            raise IncompatibleBundle(
                f"{version} differs from the promoted {current} in what a point-of-sale system "
                f"sends or sees: {'; '.join(found)}",
                found,
            )
        if current != version:
            stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
            record = Promotion(
                version=version,
                previous=current,
                at=iso_utc(stamp.timestamp()),
                forced=bool(found),
                rollback=rollback,
                differences=tuple(found),
            )
            self._append_history(record)
        target = self.root / PROMOTED_FILE
        temporary = self.root / f".{PROMOTED_FILE}.{os.getpid()}"
        try:
            temporary.write_text(version + "\n", encoding="utf-8")
            _fsync(temporary)
            os.replace(temporary, target)
        except OSError as err:
            temporary.unlink(missing_ok=True)
            raise BundleError(f"cannot promote {version}: {err.strerror}") from err
        return candidate.manifest

    def _differences(self, current: str | None, candidate: LoadedBundle) -> list[str]:
        version = candidate.manifest.version
        if current is None or current == version:
            return []
        try:
            served = self.load(current)
        except (BundleError, NotFound):
            try:  # a bundle that no longer loads may still say what it was
                manifest = self.manifest(current)
            except (BundleError, NotFound) as err:
                return [
                    f"the promoted bundle {current} cannot be read ({err}): what changes is unknown"
                ]
            return differences(manifest, candidate.manifest, candidate_engine=candidate.engine)
        return differences(
            served.manifest,
            candidate.manifest,
            served_engine=served.engine,
            candidate_engine=candidate.engine,
        )

    def _append_history(self, record: Promotion) -> None:
        """One line in one `O_APPEND` write: concurrent promotions never interleave a line."""
        path = self.root / PROMOTIONS_FILE
        line = (record.to_json() + "\n").encode("utf-8")
        try:
            handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(handle, line)
                os.fsync(handle)
            finally:
                os.close(handle)
        except OSError as err:
            raise BundleError(
                f"cannot promote {record.version}: the promotion history {path} cannot be "
                f"written ({err.strerror}); nothing changed"
            ) from err

    def load(self, version: str) -> LoadedBundle:
        """The bundle's engine from its serving form, refusing an unsigned (when a key is set),
        tampered, truncated or old-format bundle. Runs no code from the bundle."""
        manifest, contents = self._checked(version, SERVING_FILES)
        missing = [name for name in SERVING_FILES if name not in contents]
        if missing:
            raise BundleError(f"bundle {version}: its manifest lists no {', '.join(missing)}")
        try:
            document = json.loads(contents[SERVING_JSON].decode("utf-8"))
            with np.load(io.BytesIO(contents[SERVING_NPZ]), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile, UnicodeDecodeError) as err:
            # np.load raises ValueError for an object array rather than unpickling it.
            raise BundleError(f"bundle {version}: its serving form cannot be read: {err}") from err
        if not isinstance(document, dict):
            raise BundleError(f"bundle {version}: {SERVING_JSON} is not an object")
        try:
            engine = engine_from_form(document, arrays)
        except BundleError as err:
            raise BundleError(f"bundle {version}: {err}") from err
        return LoadedBundle(engine=engine, manifest=manifest)

    def load_model(self, version: str) -> TrainedModel:
        """The pickled `TrainedModel` (the booster, quantile model and policy) for notebooks and
        the bench's reference. Unpickling runs code: trusted bundles only; hash checked, and
        refused when made with other scikit-learn, numpy or joblib versions."""
        import joblib

        from models.trained import TrainedModel

        manifest = self.checked_manifest(version)
        running = library_versions()
        for library in ("scikit-learn", "numpy", "joblib"):
            made_with = manifest.libraries.get(library, "unknown")
            if not _same_minor(made_with, running[library]):
                raise BundleError(
                    f"bundle {version} was pickled with {library} {made_with}, this Python has "
                    f"{running[library]}: its {MODEL_FILE} cannot be loaded here"
                )
        try:
            model = joblib.load(self._folder(version) / MODEL_FILE)
        except Exception as err:  # a damaged file can fail in many ways inside unpickling
            raise BundleError(f"bundle {version}: {MODEL_FILE} cannot be read: {err}") from err
        if not isinstance(model, TrainedModel):
            raise BundleError(f"bundle {version}: {MODEL_FILE} does not hold a trained model")
        return model

    def checked_manifest(self, version: str) -> Manifest:
        """The manifest of a bundle of this format whose signature (when a key is set) and
        every file's hash are right; `BundleError` saying which is not."""
        return self._checked(version, ())[0]

    def _checked(self, version: str, keep: Collection[str]) -> tuple[Manifest, dict[str, bytes]]:
        """`checked_manifest`, and the bytes of the files named in `keep` that it hashed (so a
        reader parses exactly what was checked, read once)."""
        raw = self._raw_manifest(version)
        manifest = _manifest_of(raw, version)
        if manifest.format_version == PICKLE_ONLY_FORMAT:
            raise BundleError(
                f"bundle {version} has format {PICKLE_ONLY_FORMAT} (a pickle only, which the "
                f"service never loads); this Promise serves format {FORMAT_VERSION}: give it a "
                f"serving form with `{rebuild_command(version, self.root)}`"
            )
        if manifest.format_version != FORMAT_VERSION:
            spec_path = manifest.info.get("spec_path", "SPEC")
            raise BundleError(
                f"bundle {version} has format {manifest.format_version}, this Promise reads "
                f"format {FORMAT_VERSION}: retrain it with `promise train --spec {spec_path}`"
            )
        if self.signing_key is not None:
            self._check_signature(version, raw)
        return manifest, self.check_files(version, manifest, keep)

    def check_files(
        self, version: str, manifest: Manifest, keep: Collection[str] = ()
    ) -> dict[str, bytes]:
        """Refuse a bundle missing a file its manifest lists, or whose file's hash differs;
        the contents of the files named in `keep` (the others are hashed as they stream)."""
        folder = self._folder(version)
        kept: dict[str, bytes] = {}
        for name, expected in sorted(manifest.files.items(), key=lambda kv: kv[0] != MODEL_FILE):
            if Path(name).name != name or name.startswith("."):
                raise BundleError(f"bundle {version}: its manifest lists a bad file {name!r}")
            try:
                if name in keep:
                    kept[name] = (folder / name).read_bytes()
                    digest = hashlib.sha256(kept[name]).hexdigest()
                else:
                    digest = _sha256(folder / name)
            except FileNotFoundError as err:
                raise BundleError(f"bundle {version} has no {name}") from err
            if digest != expected:
                raise BundleError(
                    f"bundle {version}: {name} does not match its manifest's sha256 "
                    "(tampered with or damaged); refusing to load it"
                )
        return kept

    def load_promoted(self) -> LoadedBundle:
        version = self.promoted_version()
        if version is None:
            raise NotFound(
                f"no model is promoted in {self.root}; run `promise train` and "
                "`promise promote VERSION`"
            )
        return self.load(version)

    def folder(self, version: str) -> Path:
        """The bundle's folder; `NotFound` for an unknown or unsafe version."""
        return self._folder(version)

    def _check_signature(self, version: str, raw: Mapping[str, Any]) -> None:
        assert self.signing_key is not None
        path = self._folder(version) / SIGNATURE_FILE
        try:
            signature = path.read_text(encoding="ascii")
        except FileNotFoundError as err:
            raise BundleError(
                f"bundle {version} is not signed, and this service only loads signed bundles "
                f"(PROMISE_BUNDLE_SIGNING_KEY is set): train it with the key set"
            ) from err
        except UnicodeDecodeError as err:
            raise BundleError(f"bundle {version}: {SIGNATURE_FILE} is unreadable") from err
        if not is_signed_by(raw, signature, self.signing_key):
            raise BundleError(
                f"bundle {version}: its manifest's signature does not match "
                "(altered, or signed with another key); refusing to load it"
            )

    def _raw_manifest(self, version: str) -> dict[str, Any]:
        path = self._folder(version) / MANIFEST_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise BundleError(f"bundle {version} has no {MANIFEST_FILE}") from err
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BundleError(f"bundle {version}: {MANIFEST_FILE} is unreadable: {err}") from err
        if not isinstance(raw, dict):
            raise BundleError(f"bundle {version}: {MANIFEST_FILE} is unreadable: not an object")
        return raw

    def _folder(self, version: str) -> Path:
        if not version or "/" in version or "\\" in version or version.startswith("."):
            raise NotFound(f"no model version {version!r}")
        folder = self.root / version
        if not folder.is_dir():
            raise NotFound(f"no model version {version!r} in {self.root}")
        return folder


def _manifest_of(raw: Mapping[str, Any], version: str) -> Manifest:
    fields_ = dict(raw)
    if "model_sha256" in fields_:  # format 3 and before hashed the pickle only
        fields_["files"] = {MODEL_FILE: fields_.pop("model_sha256")}
    try:
        return Manifest(**fields_)
    except TypeError as err:
        raise BundleError(f"bundle {version}: {MANIFEST_FILE} is unreadable: {err}") from err


def _installed(distribution: str) -> str:
    try:
        return installed_version(distribution)
    except PackageNotFoundError:
        return "absent"


def _same_minor(a: str, b: str) -> bool:
    return a.split(".")[:2] == b.split(".")[:2]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())

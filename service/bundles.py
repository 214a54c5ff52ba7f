"""The bundle a worker quotes with, swapped atomically, and kept in step across workers and hosts.

A request takes one `Serving` snapshot and uses it throughout, so a reload in the middle never
mixes two models in one answer. A failed load never replaces a working bundle.

Which version is served is an explicit, shared choice: the ledger's `served_model` row. Only an
admin reload (`reload`, after checking that the promoted bundle takes the same orders as the
served one, unless forced) or a worker started with `PROMISE_FOLLOW_PROMOTIONS` changes it;
`promise promote` alone changes nothing that runs. A worker that starts serves the version the
row names; on a ledger with no row yet it serves the registry's promoted bundle and writes the
row only once it serves (its first request), never over a choice already made. So a process
that fails to start has written nothing shared.

Every worker looks at the row at most every `check_seconds` and loads the version it names
when the generation moved: from its registry folder, or, on a host whose folder lacks it, from
the copy in the ledger (`service.ledger.bundle_files`, stored by the worker that announced it),
checked there as any bundle is. An open order's risk and revision use the model that quoted it
(`serving_for`), loaded beside the current one when it differs.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from models.compatibility import differences
from models.errors import BundleError, NotFound, PromiseError
from models.registry import LoadedBundle, Registry
from service.errors import Conflict, Unavailable
from service.ledger import Ledger
from service.ledger.bundle_files import BundleFiles, bundle_folder_files
from service.ledger.served_model import ServedModel

log = logging.getLogger(__name__)
UTC = dt.UTC


@dataclass(frozen=True, slots=True)
class Serving:
    """A loaded bundle and when this worker loaded it."""

    bundle: LoadedBundle
    loaded_at: dt.datetime

    @property
    def version(self) -> str:
        return self.bundle.manifest.version


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload did: the version served before (if any) and now, and what differs between
    them (a forced switch to a model that takes other orders)."""

    previous_version: str | None
    serving: Serving
    differences: list[str]


# Models of older quotes kept loaded beside the current one (an open order's risk uses the
# model that quoted it); a version that failed to load is retried after this many seconds.
OTHER_VERSIONS_KEPT = 4
MISSING_RETRY_SECONDS = 60.0


class BundleHolder:
    """Holds this worker's bundle; `current()` is a snapshot, `reload()` an atomic swap."""

    def __init__(
        self,
        registry: Registry,
        ledger: Ledger,
        check_seconds: float,
        follow_promotions: bool = False,
        model_uri: str | None = None,
    ) -> None:
        self.registry = registry
        self.ledger = ledger
        self.bundle_files = BundleFiles(ledger.engine)
        self.check_seconds = check_seconds
        self.follow_promotions = follow_promotions
        self.model_uri = model_uri
        self.load_error: str | None = None
        self._serving: Serving | None = None
        self._generation = 0
        self._checked_at = float("-inf")
        self._is_announced = False
        self._refused_promotion: str | None = None
        self._lock = threading.Lock()
        self._others: OrderedDict[str, Serving] = OrderedDict()
        self._missing: dict[str, float] = {}
        self._others_lock = threading.Lock()
        self._alias: tuple[float, str] | None = None  # (when asked, version) of model_uri

    def start(self) -> None:
        """Load the version the ledger says is served (the promoted bundle on a ledger with no
        choice yet, or while it cannot be reached); without one the service runs, not ready.
        Writes nothing."""
        with self._lock:
            try:
                wanted = self.ledger.served_model.get()
            except SQLAlchemyError as err:
                log.error("model.choice_unreadable", extra={"error": type(err).__name__})
                wanted = None
            try:
                serving = self._load(wanted.version if wanted else self.promoted_version())
            except PromiseError as err:
                self.load_error = str(err)
                log.error("model.load_failed", extra={"error": str(err)})
                return
            self._swap(serving)
            if wanted is not None:
                self._generation = wanted.generation
                self._checked_at = time.monotonic()
                self._is_announced = True

    def current(self) -> Serving | None:
        """The bundle to quote with now (after following a reload by another worker)."""
        self._follow()
        return self._serving

    def snapshot(self) -> Serving | None:
        """The bundle loaded now, without asking the ledger (for readiness checks)."""
        return self._serving

    def is_checked(self) -> bool:
        """True while `current()` would not ask the ledger (its choice was read less than
        `check_seconds` ago): the bundle held may be used as it is."""
        return self._is_announced and time.monotonic() - self._checked_at < self.check_seconds

    def require(self) -> Serving:
        """The current bundle; raises `Unavailable` (503) when none is loaded."""
        serving = self.current()
        if serving is None:
            raise Unavailable(f"no model is loaded: {self.load_error or 'none promoted'}")
        return serving

    def promoted_version(self, fresh: bool = False) -> str:
        """The version promoted for serving: the registry's (or the MLflow alias's, with
        `PROMISE_MODEL_URI`: asked of MLflow at most every `check_seconds` unless `fresh`, so
        /readyz and /v1/model cost no tracking-server call); `NotFound` when none is."""
        if self.model_uri is not None:
            now = time.monotonic()
            if fresh or self._alias is None or now - self._alias[0] >= self.check_seconds:
                from service.mlflow_source import fetch  # MLflow only for a worker using it

                self._alias = (now, fetch(self.model_uri, self.registry.root))
            return self._alias[1]
        version = self.registry.promoted_version()
        if version is None:
            raise NotFound(
                f"no model is promoted in {self.registry.root}; run `promise train` and "
                "`promise promote VERSION`"
            )
        return version

    def serving_for(self, version: str) -> Serving | None:
        """The model that made a quote of `version`: the current one, or that version loaded
        beside it; None when it can no longer be loaded here (tried again after a minute)."""
        current = self.current()
        if current is not None and current.version == version:
            return current
        with self._others_lock:
            kept = self._others.get(version)
            if kept is not None:
                self._others.move_to_end(version)
                return kept
            failed_at = self._missing.get(version)
            if failed_at is not None and time.monotonic() - failed_at < MISSING_RETRY_SECONDS:
                return None
            try:
                kept = self._load(version)
            except PromiseError as err:
                self._missing[version] = time.monotonic()
                log.warning(
                    "model.older_unavailable", extra={"version": version, "error": str(err)}
                )
                return None
            self._missing.pop(version, None)
            self._others[version] = kept
            while len(self._others) > OTHER_VERSIONS_KEPT:
                self._others.popitem(last=False)
            return kept

    def reload(self, force: bool = False) -> Reloaded:
        """Serve the promoted bundle, on every worker and host: load it, check it takes the
        same orders as the served one (`Conflict` listing the differences, unless `force`),
        keep its files in the ledger and announce it. On failure the old one keeps serving and
        the error (`BundleError`, `NotFound` when nothing is promoted) says so."""
        with self._lock:
            previous = self._serving
            old = previous.version if previous else None
            kept = f"; still serving {old}" if old else "; no model is loaded"
            try:
                serving = self._load(self.promoted_version(fresh=True))
            except PromiseError as err:
                log.error("model.reload_failed", extra={"error": str(err), "kept": old})
                raise type(err)(f"{err}{kept}") from err
            changes = self._differences(previous, serving)
            if changes and not force:
                raise Conflict(
                    f"the promoted model {serving.version} takes other orders than the served "
                    f"{old}: {'; '.join(changes)}. Reload with force=true to switch anyway"
                    f"{kept}"
                )
            self._publish(serving)
            self._swap(serving)
            self.load_error = None
            self._announce(serving)
        log.info(
            "model.reloaded",
            extra={"version": serving.version, "previous": old, "differences": changes},
        )
        return Reloaded(previous_version=old, serving=serving, differences=changes)

    @staticmethod
    def _differences(previous: Serving | None, serving: Serving) -> list[str]:
        if previous is None or previous.version == serving.version:
            return []
        return differences(
            previous.bundle.manifest,
            serving.bundle.manifest,
            served_engine=previous.bundle.engine,
            candidate_engine=serving.bundle.engine,
        )

    def _publish(self, serving: Serving) -> None:
        """Keep the bundle's files in the ledger, for hosts whose registry lacks it."""
        version = serving.version
        if not self.bundle_files.has(version):
            files = bundle_folder_files(self.registry.folder(version))
            self.bundle_files.store(version, files, _now())

    def _announce(self, serving: Serving) -> None:
        self._generation = self.ledger.served_model.announce(serving.version, _now()).generation
        self._checked_at = time.monotonic()
        self._is_announced = True

    def _claim(self, serving: Serving) -> None:
        """Record what this worker serves as the choice, unless one was made meanwhile (then
        follow it on this same call)."""
        self._publish(serving)
        claimed = self.ledger.served_model.claim(serving.version, _now())
        self._is_announced = True
        if claimed.version == serving.version:
            self._generation = claimed.generation
            self._checked_at = time.monotonic()
        else:
            self._checked_at = float("-inf")  # another choice stands: follow it now

    def _follow(self) -> None:
        if self.is_checked():
            return
        with self._lock:
            if not self._is_announced and self._serving is not None:
                self._claim(self._serving)  # raises while the ledger is still down
            now = time.monotonic()
            if now - self._checked_at < self.check_seconds:
                return
            self._checked_at = now
            wanted = self.ledger.served_model.get()
            if self.follow_promotions:
                wanted = self._follow_promotion(wanted)
            if wanted is None or wanted.generation == self._generation:
                return
            self._generation = wanted.generation
            if self._serving is not None and self._serving.version == wanted.version:
                return
            try:
                serving = self._load(wanted.version)
            except PromiseError as err:
                log.error(
                    "model.follow_failed", extra={"version": wanted.version, "error": str(err)}
                )
                return
            self._swap(serving)
            self.load_error = None
        log.info("model.followed", extra={"version": wanted.version})

    def _follow_promotion(self, wanted: ServedModel | None) -> ServedModel | None:
        """With `PROMISE_FOLLOW_PROMOTIONS`: announce a newly promoted bundle that takes the
        same orders (one that does not waits for an admin reload, logged once)."""
        try:
            promoted = self.promoted_version()
        except PromiseError:
            return wanted
        if wanted is not None and wanted.version == promoted:
            return wanted
        if promoted == self._refused_promotion:
            return wanted
        try:
            candidate = self._load(promoted)
        except PromiseError as err:
            log.error("model.promotion_unloadable", extra={"version": promoted, "error": str(err)})
            self._refused_promotion = promoted
            return wanted
        changes = self._differences(self._serving, candidate)
        if changes:
            log.error(
                "model.promotion_not_followed",
                extra={"version": promoted, "differences": changes, "detail": "reload with force"},
            )
            self._refused_promotion = promoted
            return wanted
        self._publish(candidate)
        return self.ledger.served_model.announce(promoted, _now())

    def _load(self, version: str) -> Serving:
        # Loading compiles the trees, before the swap: the first quote is then fast, and a
        # failure here keeps the old model serving. A version missing from the registry folder
        # is copied from the ledger first (a host that shares nothing but the database).
        try:
            bundle = self.registry.load(version)
        except NotFound:
            try:
                copied = self.bundle_files.copy_into(version, self.registry.root)
            except (SQLAlchemyError, OSError) as err:
                raise BundleError(
                    f"model version {version!r} is not in {self.registry.root} and cannot be "
                    f"copied from the ledger: {err}"
                ) from err
            if not copied:
                raise
            bundle = self.registry.load(version)
        return Serving(bundle=bundle, loaded_at=_now())

    def _swap(self, serving: Serving) -> None:
        self._serving = serving  # one reference assignment: requests see old or new, never half
        log.info("model.loaded", extra={"version": serving.version})


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)

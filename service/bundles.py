"""The bundle a worker quotes with, swapped atomically, and kept in step across workers.

A request takes one `Serving` snapshot and uses it throughout, so a reload in the middle never
mixes two models in one answer. A failed load never replaces a working bundle.

Several worker processes: a reload (or a worker start) records the version in the ledger's
`served_model` row with a new generation; every worker looks at that row at most every
`check_seconds` and loads the version it names when the generation moved.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from models.errors import PromiseError
from models.registry import LoadedBundle, Registry
from service.errors import Unavailable
from service.ledger import Ledger

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
    """What a reload did: the version served before (if any) and now."""

    previous_version: str | None
    serving: Serving


class BundleHolder:
    """Holds this worker's bundle; `current()` is a snapshot, `reload()` an atomic swap."""

    def __init__(self, registry: Registry, ledger: Ledger, check_seconds: float) -> None:
        self.registry = registry
        self.ledger = ledger
        self.check_seconds = check_seconds
        self.load_error: str | None = None
        self._serving: Serving | None = None
        self._generation = 0
        self._checked_at = float("-inf")
        self._is_announced = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Load the promoted bundle; without one the service runs but is not ready."""
        with self._lock:
            try:
                serving = self._load(None)
            except PromiseError as err:
                self.load_error = str(err)
                log.error("model.load_failed", extra={"error": str(err)})
                return
            self._swap(serving)
            try:
                self._announce(serving)
            except SQLAlchemyError as err:
                # The ledger is down: serve nothing until it answers (quotes need it anyway),
                # then announce on the first request that reaches it (`_follow`).
                log.error("model.announce_failed", extra={"error": type(err).__name__})

    def current(self) -> Serving | None:
        """The bundle to quote with now (after following a reload by another worker)."""
        self._follow()
        return self._serving

    def snapshot(self) -> Serving | None:
        """The bundle loaded now, without asking the ledger (for readiness checks)."""
        return self._serving

    def require(self) -> Serving:
        """The current bundle; raises `Unavailable` (503) when none is loaded."""
        serving = self.current()
        if serving is None:
            raise Unavailable(f"no model is loaded: {self.load_error or 'none promoted'}")
        return serving

    def reload(self) -> Reloaded:
        """Load the promoted bundle and serve it; on failure keep the old one and raise
        `BundleError` (or `NotFound` when nothing is promoted) saying so."""
        with self._lock:
            previous = self._serving
            old = previous.version if previous else None
            try:
                serving = self._load(None)
            except PromiseError as err:
                log.error("model.reload_failed", extra={"error": str(err), "kept": old})
                kept = f"; still serving {old}" if old else "; no model is loaded"
                raise type(err)(f"{err}{kept}") from err
            self._swap(serving)
            self.load_error = None
            self._announce(serving)
        log.info("model.reloaded", extra={"version": serving.version, "previous": old})
        return Reloaded(previous_version=old, serving=serving)

    def _announce(self, serving: Serving) -> None:
        self._generation = self.ledger.served_model.announce(serving.version, _now()).generation
        self._checked_at = time.monotonic()
        self._is_announced = True

    def _follow(self) -> None:
        if self._is_announced and time.monotonic() - self._checked_at < self.check_seconds:
            return
        with self._lock:
            if not self._is_announced and self._serving is not None:
                self._announce(self._serving)  # raises while the ledger is still down
                return
            now = time.monotonic()
            if now - self._checked_at < self.check_seconds:
                return
            self._checked_at = now
            wanted = self.ledger.served_model.get()
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

    def _load(self, version: str | None) -> Serving:
        # Loading compiles the trees, before the swap: the first quote is then fast, and a
        # failure here keeps the old model serving.
        bundle = self.registry.load_promoted() if version is None else self.registry.load(version)
        return Serving(bundle=bundle, loaded_at=_now())

    def _swap(self, serving: Serving) -> None:
        self._serving = serving  # one reference assignment: requests see old or new, never half
        log.info("model.loaded", extra={"version": serving.version})


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)

"""Prometheus metrics: requests, quotes, outcomes, revisions, live late rate, drift alarms.

Counters and histograms live in the worker processes; when `PROMETHEUS_MULTIPROC_DIR` is set
(`service.server` sets it for several workers) they are written there and every scrape adds up
all workers. The live late rate, drift alarms, the ledger's health and the model in use are computed
from the ledger when scraped, so they are the same whichever worker answers; whether the
ledger's latest write committed (`promise_ledger_writable`) is the answering worker's own.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.health import WriteHealth, WriteOutcome
from service.performance import drift_report

if TYPE_CHECKING:
    from service.bundles import BundleHolder
    from service.ledger import Ledger
    from service.schemas import DriftReport
    from service.settings import Settings

log = logging.getLogger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
OVERALL = "(overall)"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """This app's metrics; `render()` is the body and content type `/metrics` answers."""

    def __init__(self, ledger: Ledger, holder: BundleHolder, settings: Settings) -> None:
        multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        self.registry = CollectorRegistry()
        # In multiprocess mode values go to files; the scrape reads them all back.
        own = None if multiprocess else self.registry
        self.requests = Counter(
            "promise_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "promise_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.quotes = Counter(
            "promise_quotes", "Quotes given and stored in the ledger", ["kind"], registry=own
        )
        self.replays = Counter(
            "promise_quote_replays",
            "Retried requests answered with the stored quotes",
            registry=own,
        )
        self.outcomes = Counter(
            "promise_outcomes", "Outcomes recorded", ["late", "source"], registry=own
        )
        self.revisions = Counter(
            "promise_revisions", "Promises revised for orders at risk", registry=own
        )
        self.contacts = Counter(
            "promise_contacts", "Customers contacted about an order at risk", registry=own
        )
        self.corrections = Counter(
            "promise_outcome_corrections", "Recorded outcomes corrected", registry=own
        )
        if multiprocess:
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]  # untyped lib
        self.registry.register(LedgerCollector(ledger, holder, settings))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class LedgerCollector(Collector):
    """Gauges read from the ledger at scrape time: live late rate per segment, and more."""

    def __init__(self, ledger: Ledger, holder: BundleHolder, settings: Settings) -> None:
        self.ledger = ledger
        self.holder = holder
        self.settings = settings
        self.window = dt.timedelta(days=settings.metrics_window_days)

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration: names are computed at scrape time

    def collect(self) -> Iterator[Metric]:
        serving = self.holder.snapshot()
        model = GaugeMetricFamily(
            "promise_model_info", "The bundle this worker serves", labels=["version", "policy"]
        )
        if serving is not None:
            model.add_metric([serving.version, serving.bundle.engine.policy_name], 1.0)
            target = GaugeMetricFamily(
                "promise_target_late_rate", "The served bundle's target late rate"
            )
            target.add_metric([], serving.bundle.engine.target_late_rate)
            yield target
        yield model
        yield _writable_gauge(WriteHealth.of(self.ledger.engine).latest())
        up = GaugeMetricFamily("promise_ledger_up", "1 when the ledger answered this scrape")
        now = dt.datetime.now(dt.UTC)
        try:
            counts = self.ledger.stats.segment_counts(now - self.window, None)
            drift = drift_report(self.ledger, self.settings, now)
        except SQLAlchemyError as err:
            log.warning("metrics.ledger_unavailable", extra={"error": type(err).__name__})
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        rate = GaugeMetricFamily(
            "promise_live_late_rate",
            f"Share of quotes given in the last {self.window.days} days, with an outcome, "
            "that were late",
            labels=["segment"],
        )
        known = GaugeMetricFamily(
            "promise_live_outcomes",
            "Quotes in the window with a recorded outcome",
            labels=["segment"],
        )
        given = GaugeMetricFamily(
            "promise_live_quotes", "Quotes given in the window", labels=["segment"]
        )
        total_quotes = total_outcomes = total_late = 0
        for row in counts:
            given.add_metric([row.segment], row.quotes)
            known.add_metric([row.segment], row.outcomes)
            if row.outcomes:
                rate.add_metric([row.segment], row.late / row.outcomes)
            total_quotes += row.quotes
            total_outcomes += row.outcomes
            total_late += row.late
        given.add_metric([OVERALL], total_quotes)
        known.add_metric([OVERALL], total_outcomes)
        if total_outcomes:
            rate.add_metric([OVERALL], total_late / total_outcomes)
        yield from (rate, known, given)
        yield from _drift_gauges(drift)


def _writable_gauge(latest: WriteOutcome | None) -> Metric:
    """1 while the latest ledger write of the scraped worker committed (or none was made
    yet), 0 after a failure of the storage, labelled with its kind (`service.health`)."""
    writable = GaugeMetricFamily(
        "promise_ledger_writable",
        "1 when the latest ledger write of this worker committed; 0 with the failure's kind",
        labels=["failure"],
    )
    if latest is None or latest.failure is None:
        writable.add_metric([""], 1.0)
    else:
        writable.add_metric([latest.failure], 0.0)
    return writable


def _drift_gauges(drift: DriftReport) -> Iterator[Metric]:
    """Drift alarms per segment: 1 while flagged (direction `above` or `below` the band)."""
    labels = ["segment", "model_version"]
    alarm = GaugeMetricFamily(
        "promise_drift_alarm",
        f"1 when the late rate of promises due in the last {drift.window_days:g} days lies "
        "wholly outside the target band",
        labels=[*labels, "direction"],
    )
    decided = GaugeMetricFamily(
        "promise_drift_decided", "Promises due in the drift window", labels=labels
    )
    rate = GaugeMetricFamily(
        "promise_drift_late_rate",
        "Late share of promises due in the drift window (still open counts as late)",
        labels=labels,
    )
    for row in drift.segments:
        key = [row.segment, row.model_version]
        for direction in ("above", "below"):
            alarm.add_metric([*key, direction], float(row.status == f"{direction} band"))
        decided.add_metric(key, row.decided)
        if row.late_rate is not None:
            rate.add_metric(key, row.late_rate)
    yield from (alarm, decided, rate)


class RequestMetrics:
    """ASGI middleware counting requests and timing them by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = _route_label(scope)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


def _route_label(scope: Scope) -> str:
    # The route template, never the raw path: quote ids would make one series per quote.
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if str(scope.get("path", "")).startswith("/static/"):
        return "/static"
    return "unmatched"

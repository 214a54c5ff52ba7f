"""The API's request and response bodies (pydantic, at the edge only) and their conversion.

Requests are parsed here and turned into core `Order`s once (`to_orders`); a quote's answer
reads the ledger's record (`QuoteResponse.model_validate(stored)`: the promise's fields off its
`Promise`, the rest off the record), so a retried request gets the very same answer as the
first. The error body is `service.errors.ErrorBody`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    AliasGenerator,
    AliasPath,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
)

from models.errors import InputError
from models.quoting import Order
from service.errors import InputErrors
from service.tables import MAX_CUSTOMER_NAME_CHARS, MAX_CUSTOMER_PHONE_CHARS, storable_text

if TYPE_CHECKING:
    from models.features import FeatureSchema
    from service.settings import Settings

UTC = dt.UTC
MAX_REFERENCE_CHARS = 200
MAX_FEATURES = 200


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_storable(text: str, what: str) -> str:
    if not storable_text(text):
        raise ValueError(f"{what} contains a NUL character or an unpaired surrogate")
    return text


def _aware_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("needs a time zone, e.g. 2026-11-23T10:15:00+00:00 or ...Z")
    try:
        return value.astimezone(UTC)
    except OverflowError as err:  # 0001-01-01T00:00+01:00 has no UTC equivalent
        raise ValueError("is out of range") from err


def _utc(value: dt.datetime) -> dt.datetime:
    checked = _aware_utc(value)
    assert checked is not None
    return checked


UtcDatetime = Annotated[dt.datetime, AfterValidator(_utc)]
"""An aware datetime (ISO 8601 with a zone) converted to UTC; naive ones are refused."""


class Customer(_Body):
    """Who to call about the order: stored with the quote, shown only to staff of its store."""

    name: str | None = Field(default=None, min_length=1, max_length=MAX_CUSTOMER_NAME_CHARS)
    phone: str | None = Field(default=None, min_length=1, max_length=MAX_CUSTOMER_PHONE_CHARS)

    @field_validator("name", "phone")
    @classmethod
    def _safe_text(cls, value: str | None) -> str | None:
        return None if value is None else _check_storable(value.strip(), "customer details")


class QuoteRequest(_Body):
    """One order to quote: its features, when it was placed (default: now), a reference, and
    optionally the customer to call if the promise is at risk."""

    order: dict[str, JsonValue] = Field(
        description="The order's features, by the names the model was trained on "
        "(see GET /v1/model, feature_schema).",
        examples=[
            {
                "store_id": "MAN",
                "lens_type": "single_vision",
                "coating": "none",
                "frame_in_stock": 1,
                "n_items": 1,
                "sphere_power": 1.5,
            }
        ],
    )
    ordered_at: dt.datetime | None = Field(
        default=None,
        description="When the order was placed, ISO 8601 with a time zone; default now.",
    )
    reference: str | None = Field(
        default=None,
        max_length=MAX_REFERENCE_CHARS,
        description="Your order reference, stored with the quote.",
    )
    customer: Customer | None = Field(
        default=None,
        description="The customer's name and phone, for staff calling about a late order; "
        "stored with the quote and never returned to a point-of-sale key.",
    )

    @field_validator("order")
    @classmethod
    def _safe_features(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        if len(value) > MAX_FEATURES:
            raise ValueError(f"at most {MAX_FEATURES} features")
        for name, item in value.items():
            _check_storable(name, "a feature name")
            if isinstance(item, str):
                _check_storable(item, f"feature {name!r}")
        return value

    @field_validator("ordered_at")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        return _aware_utc(value)

    @field_validator("reference")
    @classmethod
    def _safe_reference(cls, value: str | None) -> str | None:
        return None if value is None else _check_storable(value, "reference")


class BatchQuoteRequest(_Body):
    """Many orders quoted in one call (at most the configured `max_batch`), all or none."""

    orders: list[QuoteRequest] = Field(min_length=1)


class OutcomeRequest(_Body):
    """What really happened: when the order was fulfilled (ISO 8601 with a time zone)."""

    fulfilled_at: dt.datetime

    @field_validator("fulfilled_at")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        checked = _aware_utc(value)
        assert checked is not None
        return checked


class OutcomeCorrectionRequest(OutcomeRequest):
    """A correction of a recorded outcome: the true fulfilment time and why it changes."""

    reason: str = Field(
        min_length=3,
        max_length=1_000,
        description="Why the recorded outcome was wrong (kept in the ledger's history).",
        examples=["the till recorded the collection a week late"],
    )

    @field_validator("reason")
    @classmethod
    def _safe_reason(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the reason must say why the outcome is corrected")
        return _check_storable(value.strip(), "reason")


@dataclass(frozen=True, slots=True)
class CheckedOrder:
    """A request turned into a core `Order`, with its warnings."""

    order: Order
    warnings: list[str]


def to_orders(
    requests: Sequence[QuoteRequest],
    schema: FeatureSchema,
    now_utc: dt.datetime,
    settings: Settings,
    prefix: str = "",
) -> list[CheckedOrder]:
    """Validate requests against the model's feature schema; raises `InputError` naming the
    field (`order.lens_type`, or `orders[3].order.lens_type` in a batch)."""
    if len(requests) > settings.max_batch:
        raise InputError(
            f"at most {settings.max_batch} orders per batch; got {len(requests)}", field="orders"
        )
    checked: list[CheckedOrder] = []
    problems: list[tuple[str, str]] = []
    for i, request in enumerate(requests):
        where = f"{prefix}[{i}]." if prefix else ""
        try:
            checked.append(_to_order(request, schema, now_utc, settings))
        except InputError as err:
            problems.append((f"{where}{err.field}" if err.field else where.rstrip("."), str(err)))
    if len(problems) == 1 and not prefix:
        raise InputError(problems[0][1], field=problems[0][0])
    if problems:
        raise InputErrors(problems)
    return checked


def _to_order(
    request: QuoteRequest, schema: FeatureSchema, now_utc: dt.datetime, settings: Settings
) -> CheckedOrder:
    ordered_at = request.ordered_at or now_utc
    if ordered_at > now_utc + dt.timedelta(seconds=settings.clock_skew_seconds):
        raise InputError(
            f"ordered_at {ordered_at.isoformat()} is in the future (server time "
            f"{now_utc.isoformat(timespec='seconds')})",
            field="ordered_at",
        )
    if ordered_at < now_utc - dt.timedelta(days=settings.max_order_age_days):
        raise InputError(
            f"ordered_at {ordered_at.isoformat()} is more than "
            f"{settings.max_order_age_days:g} days ago; quote an order when it is "
            "placed",
            field="ordered_at",
        )
    numeric = {num.name for num in schema.numeric}
    for name in numeric & request.order.keys():
        value = request.order[name]
        if isinstance(value, int) and not isinstance(value, bool) and not _fits_float(value):
            raise InputError(f"{name} is far too large", field=f"order.{name}")
    try:
        features, warnings = schema.check_order(
            request.order, strict_categories=settings.unknown_categories == "reject"
        )
    except InputError as err:
        raise InputError(str(err), field=f"order.{err.field}" if err.field else "order") from err
    return CheckedOrder(order=Order(features=features, ordered_at=ordered_at), warnings=warnings)


def _fits_float(value: int) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


class OutcomeView(BaseModel):
    """A recorded outcome: when the order was fulfilled and whether the promise was kept."""

    model_config = ConfigDict(from_attributes=True)

    fulfilled_at: dt.datetime
    was_late: bool
    late_hours: float = Field(description="Hours past the deadline; 0 when on time.")
    recorded_at: dt.datetime
    source: str


def _from_record_or_promise(name: str) -> AliasChoices:
    """Read field `name` off the ledger's record, else off the promise it holds."""
    return AliasChoices(name, AliasPath("promise", name))


class QuoteResponse(BaseModel):
    """A promise as given: the date (or time) to tell the customer and the numbers behind it."""

    # Read off the ledger's record (`StoredQuote`) by `model_validate`: the docstring is the
    # OpenAPI description, so this note is a comment.
    model_config = ConfigDict(
        from_attributes=True,
        alias_generator=AliasGenerator(validation_alias=_from_record_or_promise),
    )

    quote_id: str
    created_at: dt.datetime
    model_version: str
    reference: str | None
    ordered_at: dt.datetime
    clock_start: dt.datetime
    expected_completion: dt.datetime
    deadline_at: dt.datetime = Field(description="UTC; the promise is kept iff fulfilled by it.")
    unit: Literal["day", "hour", "minute"]
    promise_date: dt.date = Field(description="The promised day in the store's time zone.")
    promised_by: dt.datetime | None = Field(
        description="For hour and minute units: the promised local time (null for days)."
    )
    time_zone: str
    expected_hours: float
    buffer_hours: float
    promise_units: float = Field(description="Promise length from the order, in `unit`s.")
    policy: str
    target_late_rate: float
    level: float = Field(description="The share of such orders expected on time.")
    segment: str
    closed_days_skipped: int
    exceeds_max_promise: bool
    explanation: str
    warnings: list[str]
    outcome: OutcomeView | None = None
    revision_of: str | None = Field(
        default=None, description="For a revision: the id of the original quote."
    )
    revision: int = Field(default=0, description="0 for an original, then 1, 2, ...")


class BatchQuoteResponse(BaseModel):
    """The quotes of a batch, in the order of the request."""

    quotes: list[QuoteResponse]


class CorrectionView(BaseModel):
    """One correction of an outcome: the old and the new fulfilment time, who, when and why."""

    model_config = ConfigDict(from_attributes=True)

    quote_id: str = Field(description="The original quote of the order's chain.")
    old_fulfilled_at: dt.datetime
    new_fulfilled_at: dt.datetime
    reason: str
    corrected_by: str
    corrected_at: dt.datetime


class OutcomeResponse(BaseModel):
    """The recorded outcome of a quote and whether its promise was kept."""

    quote_id: str
    deadline_at: dt.datetime
    outcome: OutcomeView
    corrections: list[CorrectionView] = Field(
        default_factory=list, description="The outcome's corrections, oldest first."
    )


class LateRate(BaseModel):
    """Late rate of the quotes with outcomes in a window (overall or one segment)."""

    segment: str
    quotes: int = Field(description="Quotes given in the window.")
    outcomes: int = Field(description="Of those, how many have a recorded outcome.")
    late: int = Field(description="Of those, how many were fulfilled after the deadline.")
    late_rate: float | None = Field(description="late / outcomes; null without outcomes.")
    late_rate_interval: list[float] | None = Field(
        description="95% Wilson interval of the late rate; null without outcomes."
    )
    target_late_rate: float | None
    status: Literal["no outcomes", "on target", "above target"]


class DriftAlarm(BaseModel):
    """One segment's drift check over the promises whose deadline fell in the window."""

    segment: str
    model_version: str
    policy: str
    decided: int = Field(description="Promises due in the window (all decided by now).")
    late: int = Field(description="Of those, fulfilled after the deadline or still open.")
    late_rate: float | None
    late_rate_interval: list[float] | None
    target_late_rate: float
    band: list[float] = Field(description="[target / factor, target * factor]")
    status: Literal["too few decided", "within band", "above band", "below band"]
    alarm: bool = Field(description="True when the whole interval lies outside the band.")
    advice: str
    adaptive_level: float | None = Field(
        description="Adaptive promises only: the share of the calibration slice's orders the "
        "served adaptive buffer of this segment would keep now (1 - target where it has not "
        "moved); null for other policies."
    )
    adaptive_offset_hours: float | None = Field(
        default=None,
        description="Adaptive promises on the absolute scale: how many hours longer (negative: "
        "shorter) the segment's buffer is now than the calibrated one, from outcomes learnt at "
        "their deadlines and the nowcast of open orders.",
    )
    adaptive_offset_ratio: float | None = Field(
        default=None,
        description="Adaptive promises on the relative scale: the same offset as a share of "
        "each order's expected duration (0.1: a tenth of it longer).",
    )
    adaptive_learnt: int | None = Field(
        default=None,
        description="Adaptive promises only: the decided promises of this segment the "
        "controller has learnt (within its horizon of about five memories).",
    )


class DriftReport(BaseModel):
    """Drift alarms per segment, and how they are computed."""

    at: dt.datetime
    window_days: float
    band_factor: float
    confidence: float
    min_decided: int
    alarms: int = Field(description="How many segments are flagged.")
    segments: list[DriftAlarm]


class RevisionSummary(BaseModel):
    """Revisions made in the window: how many, how early, and how they turned out."""

    revisions: int
    median_hours_before_original_promise: float | None
    with_outcome: int
    late: int


Verdict = Literal["too few outcomes yet", "on target", "above target"]


class StoreVerdict(BaseModel):
    """One segment's verdict (or every segment's, as "all quotes") over the promises decided in
    the window: the drift alarm's counting rule, judged against the target itself."""

    segment: str
    decided: int = Field(description="Original promises whose deadline fell in the window.")
    late: int = Field(
        description="Of those, broken: fulfilled after the deadline, or still open after it "
        "(late, no outcome recorded)."
    )
    late_no_outcome: int = Field(
        default=0,
        description="Of the late ones, still open after the deadline: late, no outcome recorded.",
    )
    late_rate: float | None = Field(description="late / decided; null when nothing is decided.")
    late_rate_interval: list[float] | None = Field(
        description="The Wilson interval at the drift alarm's confidence; null below `min_decided`."
    )
    target_late_rate: float | None
    verdict: Verdict = Field(
        description="'too few outcomes yet' below `min_decided` decided promises; 'above "
        "target' when the whole interval lies above the target; else 'on target'."
    )


class VerdictReport(BaseModel):
    """One verdict per segment, as of now, over the promises due in the last `window_days`."""

    at: dt.datetime
    window_days: float
    confidence: float
    min_decided: int
    overall: StoreVerdict
    segments: list[StoreVerdict]


class PerformanceResponse(BaseModel):
    """The live late rate against the target, overall and per segment (revisions count as
    quotes too), the revisions made, drift alarms, and one verdict per segment."""

    since: dt.datetime | None
    until: dt.datetime | None
    overall: LateRate
    segments: list[LateRate]
    revisions: RevisionSummary
    drift: DriftReport
    verdicts: VerdictReport


class ContactRequest(_Body):
    """A note on a call to the customer about an order at risk (optional)."""

    note: str | None = Field(default=None, max_length=1_000)

    @field_validator("note")
    @classmethod
    def _safe_note(cls, value: str | None) -> str | None:
        return None if value is None else _check_storable(value, "note")


class ContactView(BaseModel):
    """A recorded call: about which order (its original quote id), who, when, a note."""

    model_config = ConfigDict(from_attributes=True)

    quote_id: str
    contacted_by: str
    contacted_at: dt.datetime
    note: str | None


class RiskResponse(BaseModel):
    """An order's promise now: how likely it is to break and the honest promise from here."""

    quote_id: str
    original_quote_id: str
    revision: int
    reference: str | None
    at: dt.datetime = Field(description="The moment the risk is assessed at.")
    status: Literal["open", "overdue", "fulfilled"]
    probability_late: float = Field(
        description="P(the promise breaks | the order is still open now); 0 or 1 once known."
    )
    deadline_at: dt.datetime
    promise_date: dt.date
    promised_by: dt.datetime | None
    elapsed_hours: float = Field(description="Hours since the quote's clock started.")
    expected_completion: dt.datetime | None = Field(
        description="The most likely completion given the order is still open (median)."
    )
    needs_revision: bool
    suggested_deadline_at: dt.datetime | None
    suggested_promise_date: dt.date | None
    suggested_promised_by: dt.datetime | None
    segment: str = Field(description="The residual distribution's segment.")
    revised_by: str | None = Field(description="The id of a newer revision of this order.")
    explanation: str
    contacts: list[ContactView]


class ModelResponse(BaseModel):
    """The bundle in use: what it is, how it was trained and how it back-tested."""

    version: str
    created_at: str
    loaded_at: dt.datetime
    policy: str
    target_late_rate: float
    unit: str
    time_zone: str
    segments_by: list[str]
    libraries: dict[str, str]
    backtest: dict[str, Any]
    fit: dict[str, Any]
    data: dict[str, Any]
    feature_schema: dict[str, Any] = Field(
        description="As the bundle's manifest keeps it: `columns` are the model's columns, "
        "the derived time features included; an order sends `order_fields` only."
    )
    order_fields: list[str] = Field(
        description="The features an order sends (the `Order` schema of /openapi.json)."
    )
    derived_fields: list[str] = Field(
        description="Columns the engine derives from `ordered_at` (never sent: refused, 422)."
    )
    promoted_version: str | None = Field(
        description="The version promoted for serving; when it differs from `version`, an "
        "admin reload (POST /v1/model/reload) switches to it."
    )
    promoted_error: str | None = Field(
        default=None, description="Why the promoted version cannot be read, if it cannot."
    )


class ReloadResponse(BaseModel):
    """The outcome of a reload: the version served before and now, and what differs."""

    previous_version: str | None
    version: str
    changed: bool
    loaded_at: dt.datetime
    differences: list[str] = Field(
        default_factory=list,
        description="How the new model takes other orders than the old (a forced reload).",
    )


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    """Readiness: a model loaded and the ledger accepting writes."""

    ready: bool
    model_version: str | None
    model_error: str | None
    ledger: str
    promoted_version: str | None = Field(
        default=None,
        description="The version promoted for serving (an admin reload serves it when it "
        "differs from model_version).",
    )

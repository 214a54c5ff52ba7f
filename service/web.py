"""The staff web form: server-rendered pages that work without JavaScript.

`/` a quote form built from the bundle's feature schema (a select per category, a number per
numeric); `POST /quotes` quotes through the same desk as the API (`service.desk`) and
redirects to the quote's page (so a refresh never quotes twice); `/quotes/{id}` the promise in
large type with its explanation, printable as a slip; `/lookup` finds a quote by id;
`/performance` the live late rate and drift alarms; `/at-risk` the call list of open orders
likely to break their promise, where staff mark a customer contacted or give the order its
honest new date. Jinja2 autoescapes everything a user typed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import re
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import JsonValue, ValidationError
from starlette.datastructures import FormData

from models.features import FeatureSchema, NumericFeature
from service.auth import Caller, sign_in_key
from service.bundles import Serving
from service.deps import (
    BundleDep,
    DeskDep,
    HolderDep,
    QuoteDeskDep,
    SettingsDep,
    StaffCaller,
)
from service.desk import QuoteDesk
from service.errors import AccessDenied, ErrorBody
from service.ledger.records import StoredQuote
from service.risk import AtRiskQuery
from service.schemas import QuoteRequest, RiskResponse
from service.sessions import CSRF_FIELD, Session, Sessions, check_csrf
from service.tables import storable_text

log = logging.getLogger(__name__)

FEATURE_PREFIX = "feature:"
DAY_OPTIONS = (7, 30, 90, 365)
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
AT_RISK_PAGE_ROWS = 200
MAX_NOTE_CHARS = 1_000
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
TITLES = {
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    408: "Too slow",
    409: "Not possible now",
    413: "Too large",
    422: "Please check the input",
    429: "Too many attempts",
    503: "Not available right now",
}


def same_origin(request: Request) -> None:
    """Refuse a form post made by another site (a first guard against cross-site requests)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise AccessDenied(403, "form posts from other sites are refused")
    origin = request.headers.get("origin")
    if origin is not None and (
        origin == "null" or urlsplit(origin).netloc != request.headers.get("host")
    ):
        raise AccessDenied(403, "form posts from other sites are refused")


async def checked_form(request: Request) -> FormData:
    """The posted form of a signed-in staff member, once its CSRF token checks out."""
    form = await request.form()
    check_csrf(request, form.get(CSRF_FIELD))
    return form


router = APIRouter(include_in_schema=False)
SameOrigin = Annotated[None, Depends(same_origin)]


@dataclass(frozen=True, slots=True)
class ShopWords:
    """What the pages call the model's features and options, and the shop's name and phone:
    from the bundle's manifest (`[labels]` and `[shop]` in the spec), else the raw code made
    readable (`anti_reflective` -> "Anti reflective")."""

    features: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    shop_name: str | None = None
    shop_phone: str | None = None

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> ShopWords:
        """The words a manifest's info carries (none for bundles made before they did)."""
        labels = info.get("labels")
        labels = labels if isinstance(labels, Mapping) else {}
        shop = info.get("shop")
        shop = shop if isinstance(shop, Mapping) else {}
        features = labels.get("features")
        options = labels.get("options")
        return cls(
            features=_strings(features),
            options=(
                {str(k): _strings(v) for k, v in options.items()}
                if isinstance(options, Mapping)
                else {}
            ),
            shop_name=_optional_text(shop.get("name")),
            shop_phone=_optional_text(shop.get("phone")),
        )

    def feature(self, name: str) -> str:
        return self.features.get(name) or _label(name)

    def option(self, feature: str, value: str) -> str:
        return self.options.get(feature, {}).get(value) or _label(value)


def shop_words(serving: Serving | None) -> ShopWords:
    """The words of the served bundle (the readable raw codes without one)."""
    return ShopWords.of(serving.bundle.manifest.info) if serving else ShopWords()


def _strings(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str) and v}


def _optional_text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


@dataclass
class FormField:
    """One input of the quote form: a select (`category`), a yes/no checkbox (`yes_no`: only 0
    and 1 in training), a whole number from the training minimum (`count`) or any `number`."""

    id: str
    name: str
    label: str
    kind: str
    options: list[tuple[str, str]] = field(default_factory=list)  # (value, what staff read)
    value: str = ""
    hint: str = ""
    error: str | None = None
    minimum: str = ""


@dataclass
class Submission:
    """A posted form: the request it makes (None when unreadable), the raw values, problems."""

    request: QuoteRequest | None
    values: dict[str, str]
    reference: str
    problems: list[tuple[str, str]]


@router.get("/", response_class=HTMLResponse)
def index(request: Request, caller: StaffCaller, serving: BundleDep) -> Response:
    """The quote form."""
    schema = serving.bundle.engine.schema
    return _form_page(request, schema, {}, "", [], 200)


@router.post("/quotes", response_class=HTMLResponse)
async def submit(
    request: Request, caller: StaffCaller, _origin: SameOrigin, desk: QuoteDeskDep
) -> Response:
    """Quote the posted order and show it (303 to its page), or the form with the problems."""
    form = await checked_form(request)
    return await run_in_threadpool(_answer, request, desk, caller, form)


@router.get("/signin", response_class=HTMLResponse)
def signin_page(
    request: Request, next_path: Annotated[str, Query(alias="next", max_length=2000)] = "/"
) -> Response:
    """The sign-in page (straight to the form when the service runs without keys)."""
    if request.app.state.settings.is_open:
        return RedirectResponse("/", status_code=303)
    return _signin_page(request, _local(next_path), None, 200)


@router.post("/signin", response_class=HTMLResponse)
async def signin(request: Request, _origin: SameOrigin) -> Response:
    """Check the staff key once and start a session (303 to where the staff member was going)."""
    form = await request.form()
    next_path = _local(_text(form.get("next")) or "/")
    key = sign_in_key(request, _text(form.get("key")))
    if key is None:
        return _signin_page(request, next_path, "That is not a staff key.", 401)
    response = RedirectResponse(next_path, status_code=303)
    await run_in_threadpool(request.app.state.sessions.start, response, request, key)
    log.info("web.signed_in", extra={"key_id": key.key_id})
    return response


@router.post("/signout")
async def signout(request: Request, caller: StaffCaller, _origin: SameOrigin) -> Response:
    """End the session."""
    await checked_form(request)
    response = RedirectResponse("/signin", status_code=303)
    sessions: Sessions = request.app.state.sessions
    await run_in_threadpool(sessions.end, request, response)
    return response


@router.get("/quotes/{quote_id}", response_class=HTMLResponse)
def show_quote(request: Request, quote_id: str, caller: StaffCaller, desk: DeskDep) -> Response:
    """A quote as given: the promise in large type, its explanation, a printable slip."""
    return _quote_page(request, desk.quote(quote_id, caller))


@router.get("/lookup")
def lookup(quote_id: Annotated[str, Query(max_length=200)], caller: StaffCaller) -> Response:
    """Find an earlier quote by the id on its slip (any case, spaces ignored)."""
    wanted = "".join(quote_id.split()).upper()
    target = f"/quotes/{url_quote(wanted, safe='')}" if wanted else "/"
    return RedirectResponse(target, status_code=303)


@router.get("/performance", response_class=HTMLResponse)
def performance(
    request: Request,
    caller: StaffCaller,
    desk: DeskDep,
    holder: HolderDep,
    days: Annotated[int, Query(ge=1, le=3_660)] = 30,
) -> Response:
    """The live late rate against the target, overall and per store segment."""
    serving = holder.current()
    since = desk.now_utc - dt.timedelta(days=days)
    report = desk.performance(serving, since, None, caller)
    options = sorted({*DAY_OPTIONS, days})
    zone = serving.bundle.engine.calendar.zone if serving else dt.UTC
    verdicts = report.verdicts
    return page(
        request,
        "performance.html",
        {
            "rows": [report.overall, *report.segments],
            "verdicts": verdicts,
            "verdict_rows": [verdicts.overall, *verdicts.segments],
            "revisions": report.revisions,
            "drift": report.drift,
            "days": days,
            "day_options": options,
            "since_text": _moment_text(since, zone),
            "now_text": _moment_text(desk.now_utc, zone),
            "unit": serving.bundle.engine.unit if serving else "day",
        },
    )


@router.get("/at-risk", response_class=HTMLResponse)
def at_risk_page(
    request: Request,
    caller: StaffCaller,
    desk: QuoteDeskDep,
    settings: SettingsDep,
    store: Annotated[str, Query(max_length=200)] = "",
    days: Annotated[int, Query(ge=1, le=366)] = 7,
    percent: Annotated[int, Query(ge=0, le=100)] = 50,
) -> Response:
    """The call list: open orders likely to break their promise, with the new date to offer,
    who to call (when the point of sale sent it), what was ordered and every call made."""
    engine = desk.serving.bundle.engine
    stores = _store_options(engine.schema, settings.store_field, caller)
    chosen = _canonical_store(store.strip(), stores)
    query = AtRiskQuery(
        min_probability=percent / 100.0,
        within=dt.timedelta(days=days),
        store=chosen or None,
        limit=AT_RISK_PAGE_ROWS,
    )
    listing = desk.at_risk(query, caller)
    zone = engine.calendar.zone
    words = shop_words(desk.serving)
    yes_no = {num.name for num in engine.schema.numeric if is_yes_no(num)}
    rows = []
    for order in listing.orders:
        stored = desk.ledger.quotes.get(order.quote_id, caller.stores)
        rows.append(_at_risk_row(order, stored, zone, words, yes_no, settings.store_field))
    return page(
        request,
        "at_risk.html",
        {
            "rows": rows,
            "store": chosen,
            "store_options": stores,
            "days": days,
            "percent": percent,
            "percent_options": sorted({10, 30, 50, 70, 90, percent}),
            "store_field": words.feature(settings.store_field),
            "back": str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        },
    )


@router.post("/at-risk/{quote_id}/contacted")
async def mark_contacted(
    request: Request,
    quote_id: str,
    caller: StaffCaller,
    _origin: SameOrigin,
    desk: DeskDep,
) -> Response:
    """Record that the customer was called (who: the signed-in staff key); back to the list."""
    form = await checked_form(request)
    note = _text(form.get("note"))[:MAX_NOTE_CHARS] or None
    if note is not None and not storable_text(note):
        note = None
    await run_in_threadpool(desk.record_contact, quote_id, caller, note)
    return RedirectResponse(_local(_text(form.get("back")) or "/at-risk"), status_code=303)


@router.post("/at-risk/{quote_id}/revise")
async def revise_from_list(
    request: Request,
    quote_id: str,
    caller: StaffCaller,
    _origin: SameOrigin,
    desk: QuoteDeskDep,
) -> Response:
    """Give the order its honest new promise and show the new slip."""
    form = await checked_form(request)
    token = _text(form.get("form_token"))
    key = f"web-revise:{token}:{quote_id}" if TOKEN_PATTERN.match(token) else None
    recorded = await run_in_threadpool(desk.revise, quote_id, caller, key)
    new_id = recorded.quotes[0].quote_id
    return RedirectResponse(f"/quotes/{url_quote(new_id, safe='')}", status_code=303)


def _store_options(schema: FeatureSchema, store_field: str, caller: Caller) -> list[str]:
    """The stores the model knows that the caller may see, for the call list's drop-down."""
    known = next((cat.known for cat in schema.categorical if cat.name == store_field), ())
    return sorted(s for s in known if caller.stores is None or s in caller.stores)


def _canonical_store(typed: str, stores: Sequence[str]) -> str:
    """The store as the model spells it, whatever the case typed (`man` is MAN)."""
    by_folded = {s.casefold(): s for s in stores}
    return by_folded.get(typed.casefold(), typed)


def _at_risk_row(
    order: RiskResponse,
    stored: StoredQuote,
    zone: dt.tzinfo,
    words: ShopWords,
    yes_no: Collection[str],
    store_field: str,
) -> dict[str, Any]:
    return {
        "order": order,
        "store": stored.store,
        "customer_name": stored.customer_name,
        "customer_phone": stored.customer_phone,
        "ordered_items": [
            item
            for item in ordered_items(stored.features, words, yes_no)
            if item[0] != words.feature(store_field)  # the store has its own line
        ],
        "contacts": [
            {
                "who": contact.contacted_by,
                "when": _moment_text(contact.contacted_at, zone),
                "note": contact.note,
            }
            for contact in order.contacts
        ],
        "promise_text": _when_text(order.promise_date, order.promised_by),
        "suggested_text": (
            _when_text(order.suggested_promise_date, order.suggested_promised_by)
            if order.suggested_promise_date is not None
            else "keep the promise"
        ),
        "form_token": secrets.token_urlsafe(16),
    }


# One date style on every staff page: "Wed 9 Dec 2026", and "Wed 9 Dec 2026, 14:05" for a
# moment (with the zone's name where it could be misread); only the slip's headline spells the
# promised day out in full.
def _day_text(day: dt.date) -> str:
    return f"{day:%a} {day.day} {day:%b %Y}"


def _time_text(at: dt.datetime) -> str:
    return f"{_day_text(at)}, {at:%H:%M}"


def _moment_text(at: dt.datetime, zone: dt.tzinfo) -> str:
    """A moment as staff read it in the shop: its local day and time, with the zone's name."""
    local = at.astimezone(zone)
    return f"{_time_text(local)} ({local.tzname()})"


def _when_text(day: dt.date | None, at: dt.datetime | None) -> str:
    if at is not None:
        return _time_text(at)
    assert day is not None
    return _day_text(day)


def page(request: Request, name: str, context: Mapping[str, Any], status: int = 200) -> Response:
    """A rendered page with the security headers every staff page carries."""
    templates: Jinja2Templates = request.app.state.templates
    serving = request.app.state.bundles.snapshot()
    session: Session | None = getattr(request.state, "staff_session", None)
    response = templates.TemplateResponse(
        request,
        name,
        {
            **context,
            "model_version": serving.version if serving else None,
            "csrf_token": session.csrf_token if session else "",
            "staff_name": session.key.name if session else "",
        },
        status_code=status,
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def render_error(request: Request, status: int, body: ErrorBody) -> Response:
    """The HTML answer to an error on a staff page (same status as the JSON one); a 401 is the
    sign-in page."""
    if status == 401:
        return _signin_page(request, _local(request.url.path), None, 401)
    return page(
        request,
        "error.html",
        {
            "status": status,
            "title": TITLES.get(status, "Something went wrong"),
            "message": body.message,
        },
        status,
    )


def _answer(request: Request, desk: QuoteDesk, caller: Caller, form: FormData) -> Response:
    schema = desk.serving.bundle.engine.schema
    submission = read_form(form, schema, desk.settings.store_field, shop_words(desk.serving))
    problems = submission.problems
    if submission.request is not None and not problems:
        problems = desk.problems([submission.request], "web")
    if submission.request is None or problems:
        return _form_page(request, schema, submission.values, submission.reference, problems, 422)
    key = _form_key(form.get("form_token"), submission.request.model_dump(mode="json"))
    recorded = desk.issue([submission.request], "web", caller, key)
    quote_id = recorded.quotes[0].quote_id
    return RedirectResponse(f"/quotes/{url_quote(quote_id, safe='')}", status_code=303)


def read_form(
    form: FormData, schema: FeatureSchema, store_field: str, words: ShopWords | None = None
) -> Submission:
    """The quote request a posted form makes, keeping what was typed for a second try.

    The store (`store_field`, when the model takes it) is required, and so is at least one
    other feature: a blank form would store a real promise made from nothing. A count is a
    whole number no lower than training's lowest; a number the model never saw the like of is
    refused in the words staff read (the API's `InputError` names the raw field)."""
    words = words or ShopWords()
    values: dict[str, str] = {}
    order: dict[str, JsonValue] = {}
    problems: list[tuple[str, str]] = []
    for cat in schema.categorical:
        text = _text(form.get(FEATURE_PREFIX + cat.name))
        values[cat.name] = text
        order[cat.name] = text or None
    yes_no = set()
    for num in schema.numeric:
        text = _text(form.get(FEATURE_PREFIX + num.name))
        values[num.name] = text
        if is_yes_no(num):
            # A checkbox posts "1" when ticked and nothing when not: not ticked is "no".
            yes_no.add(num.name)
            order[num.name] = 1.0 if text else 0.0
            continue
        number = _number(text)
        problem = _number_problem(num, text, number, words.feature(num.name))
        if problem is not None:
            problems.append((f"order.{num.name}", problem))
        order[num.name] = number
    if store_field in order and order[store_field] is None:
        problems.append((f"order.{store_field}", f"choose the {words.feature(store_field)}"))
    described = [
        name
        for name, value in order.items()
        if value is not None and name != store_field and not (name in yes_no and value == 0)
    ]
    if order and not described and not problems:
        problems.append(("order", "fill in the order's details: the form is empty"))
    reference = _text(form.get("reference"))
    values["customer_name"] = _text(form.get("customer_name"))
    values["customer_phone"] = _text(form.get("customer_phone"))
    customer = None
    if values["customer_name"] or values["customer_phone"]:
        customer = {
            "name": values["customer_name"] or None,
            "phone": values["customer_phone"] or None,
        }
    try:
        request = QuoteRequest.model_validate(
            {"order": order, "reference": reference or None, "customer": customer}
        )
    except ValidationError as err:
        for item in err.errors():
            where = ".".join(str(part) for part in item["loc"])
            problems.append((where, str(item["msg"]).removeprefix("Value error, ")))
        request = None
    return Submission(request=request, values=values, reference=reference, problems=problems)


def is_yes_no(num: NumericFeature) -> bool:
    """Whether training saw this feature only as 0 and 1: a yes/no question."""
    return num.is_integer and num.low == 0.0 and num.high == 1.0


def _number_problem(num: NumericFeature, text: str, number: float | None, label: str) -> str | None:
    """What is wrong with a typed number, in the words staff read (None: nothing)."""
    if not text:
        return None
    if number is None or not math.isfinite(number):
        return f"{label} must be a number"
    if num.is_integer and not number.is_integer():
        return f"{label} must be a whole number, like {max(num.low, round(number)):g}"
    if num.is_integer and number < num.low:
        return f"{label} cannot be less than {num.low:g}"
    if number < num.far_low or number > num.far_high:
        return (
            f"{label} {number:g} is far from anything this shop has seen ({num.low:g} to "
            f"{num.high:g}): please check it"
        )
    return None


def _form_page(
    request: Request,
    schema: FeatureSchema,
    values: Mapping[str, str],
    reference: str,
    problems: Sequence[tuple[str, str]],
    status: int,
) -> Response:
    by_field = {where: message for where, message in problems}
    words = shop_words(request.app.state.bundles.snapshot())
    fields = []
    for i, cat in enumerate(schema.categorical):
        fields.append(
            FormField(
                id=f"feature-{i}",
                name=FEATURE_PREFIX + cat.name,
                label=words.feature(cat.name),
                kind="category",
                options=[(value, words.option(cat.name, value)) for value in sorted(cat.known)],
                value=values.get(cat.name, ""),
                error=by_field.get(f"order.{cat.name}"),
            )
        )
    offset = len(schema.categorical)
    for i, num in enumerate(schema.numeric):
        fields.append(_number_field(f"feature-{offset + i}", num, words, values, by_field))
    return page(
        request,
        "form.html",
        {
            "fields": fields,
            "reference": reference,
            "form_token": secrets.token_urlsafe(16),
            "reference_error": by_field.get("reference"),
            "customer_name": values.get("customer_name", ""),
            "customer_phone": values.get("customer_phone", ""),
            "customer_error": by_field.get("customer.name") or by_field.get("customer.phone"),
            "errors": [message for _, message in problems],
        },
        status,
    )


def _number_field(
    field_id: str,
    num: NumericFeature,
    words: ShopWords,
    values: Mapping[str, str],
    by_field: Mapping[str, str],
) -> FormField:
    kind, hint, minimum = "number", f"Usually {num.low:g} to {num.high:g}", ""
    if is_yes_no(num):
        kind, hint = "yes_no", ""
    elif num.is_integer:
        kind, minimum = "count", f"{num.low:g}"
        hint = f"A whole number, usually {num.low:g} to {num.high:g}"
    return FormField(
        id=field_id,
        name=FEATURE_PREFIX + num.name,
        label=words.feature(num.name),
        kind=kind,
        value=values.get(num.name, ""),
        hint=hint + ("; leave empty if not known" if hint else ""),
        error=by_field.get(f"order.{num.name}"),
        minimum=minimum,
    )


def _quote_page(request: Request, quote: StoredQuote) -> Response:
    local = quote.promise.promise_local
    if quote.promise.unit == "day":
        label, text = "Ready by the end of", f"{local:%A} {local.day} {local:%B %Y}"
    else:
        label, text = "Ready by", f"{local:%A} {local.day} {local:%B, %H:%M}"
    zone = ZoneInfo(quote.time_zone)
    ordered = quote.promise.ordered_at.astimezone(zone)
    fulfilled = quote.outcome.fulfilled_at.astimezone(zone) if quote.outcome else None
    serving: Serving | None = request.app.state.bundles.snapshot()
    words = shop_words(serving)
    yes_no = (
        {num.name for num in serving.bundle.engine.schema.numeric if is_yes_no(num)}
        if serving
        else set()
    )
    return page(
        request,
        "quote.html",
        {
            "quote": quote,
            "shop_name": words.shop_name,
            "shop_phone": words.shop_phone,
            "ordered_items": ordered_items(quote.features, words, yes_no),
            "promise": quote.promise,
            "promise_label": label,
            "promise_text": text,
            "ordered_text": _time_text(ordered),
            "fulfilled_text": (_time_text(fulfilled) if fulfilled else ""),
        },
    )


def ordered_items(
    features: Mapping[str, Any], words: ShopWords, yes_no: Collection[str] = ()
) -> list[tuple[str, str]]:
    """What was ordered, as the customer reads it: (label, value) for each feature given, in
    the order the quote was asked with; a `yes_no` feature reads "Yes" or "No"."""
    items = []
    for name, value in features.items():
        if value is None or value == "":
            continue
        if name in yes_no:
            text = "Yes" if value else "No"
        elif isinstance(value, int | float):
            text = f"{value:g}"
        else:
            text = words.option(name, str(value))
        items.append((words.feature(name), text))
    return items


def _signin_page(request: Request, next_path: str, error: str | None, status: int) -> Response:
    return page(request, "signin.html", {"next": next_path, "error": error}, status)


def _local(path: str) -> str:
    # Only a path on this site: never "//evil.example" or "https://...".
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def _form_key(token: object, payload: Any) -> str | None:
    # A double-submitted form gets one quote; the same form page sent again with other
    # values (back button) is a new order, so the key covers the content too.
    if not isinstance(token, str) or not TOKEN_PATTERN.match(token):
        return None
    content = json.dumps(payload, sort_keys=True, ensure_ascii=True, default=str)
    return f"web:{token}:{hashlib.sha256(content.encode('ascii')).hexdigest()[:24]}"


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _number(text: str) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _label(name: str) -> str:
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else name

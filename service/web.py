"""The staff web pages: server-rendered, working without JavaScript.

`/` a quote form built from the bundle's feature schema (`service.quote_form`: its inputs and
how a posted form becomes the API's request); `POST /quotes` quotes through the same desk as
the API (`service.desk`) and redirects to the quote's page (so a refresh never quotes twice);
`/quotes/{id}` the promise in large type with its explanation, and the customer's slip when
printed; `/lookup` finds a quote by id; `/performance` one verdict per store and the drift
alarms; `/at-risk` the call list of open orders likely to break their promise, where staff mark
a customer contacted or give the order its honest new date. Jinja2 autoescapes everything a
user typed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Collection, Mapping, Sequence
from typing import Annotated, Any
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from models.dates import FALLBACK_LOCALE, DateStyle
from models.errors import InputError
from models.features import FeatureSchema
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
from service.errors import AccessDenied, ErrorBody, InputErrors
from service.ledger.records import StoredQuote
from service.quote_form import (
    ShopWords,
    form_fields,
    form_text,
    is_yes_no,
    ordered_items,
    read_form,
    shop_words,
)
from service.risk import AtRiskQuery
from service.schemas import RiskResponse
from service.sessions import CSRF_FIELD, Session, Sessions, check_csrf
from service.tables import storable_text

log = logging.getLogger(__name__)

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
    return await _answer(request, desk, caller, form)


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
    next_path = _local(form_text(form.get("next")) or "/")
    key = sign_in_key(request, form_text(form.get("key")))
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
    dates = date_style(serving)
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
            "since_text": dates.moment(since),
            "now_text": dates.moment(desk.now_utc),
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
    listing = desk.call_list(query, caller)
    dates = engine.calendar.dates
    words = shop_words(desk.serving)
    yes_no = {num.name for num in engine.schema.numeric if is_yes_no(num)}
    rows = [
        _at_risk_row(order, stored, dates, words, yes_no, settings.store_field)
        for order, stored in zip(listing.response.orders, listing.quotes, strict=True)
    ]
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
    note = form_text(form.get("note"))[:MAX_NOTE_CHARS] or None
    if note is not None and not storable_text(note):
        note = None
    await run_in_threadpool(desk.record_contact, quote_id, caller, note)
    return RedirectResponse(_local(form_text(form.get("back")) or "/at-risk"), status_code=303)


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
    token = form_text(form.get("form_token"))
    key = f"web-revise:{token}:{quote_id}" if TOKEN_PATTERN.match(token) else None
    recorded = await desk.revise(quote_id, caller, key)
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
    dates: DateStyle,
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
                "when": dates.moment(contact.contacted_at),
                "note": contact.note,
            }
            for contact in order.contacts
        ],
        "promise_text": _when_text(dates, order.promise_date, order.promised_by),
        "suggested_text": (
            _when_text(dates, order.suggested_promise_date, order.suggested_promised_by)
            if order.suggested_promise_date is not None
            else "keep the promise"
        ),
        "form_token": secrets.token_urlsafe(16),
    }


def date_style(serving: Serving | None) -> DateStyle:
    """How the served model's shop writes dates (`models.dates`: one style on every page, in
    the shop's locale and zone); en_GB in UTC while no model is served."""
    if serving is not None:
        return serving.bundle.engine.calendar.dates
    return DateStyle.of(FALLBACK_LOCALE, ZoneInfo("UTC"))


def _when_text(dates: DateStyle, day: dt.date | None, at: dt.datetime | None) -> str:
    """A promise as staff read it: its day, or its day and local time for hour promises."""
    if at is not None:
        return dates.day_and_clock(at)
    assert day is not None
    return dates.day(day)


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


async def _answer(request: Request, desk: QuoteDesk, caller: Caller, form: FormData) -> Response:
    schema = desk.serving.bundle.engine.schema
    submission = read_form(form, schema, desk.settings.store_field, shop_words(desk.serving))
    if submission.request is None or submission.problems:
        return _form_page(
            request, schema, submission.values, submission.reference, submission.problems, 422
        )
    key = _form_key(form.get("form_token"), submission.request.model_dump(mode="json"))
    try:  # the desk checks the order against the model's rules, once
        recorded = await desk.issue([submission.request], "web", caller, key)
    except InputError as err:
        problems = (
            err.problems if isinstance(err, InputErrors) else [(err.field or "order", str(err))]
        )
        return _form_page(request, schema, submission.values, submission.reference, problems, 422)
    quote_id = recorded.quotes[0].quote_id
    return RedirectResponse(f"/quotes/{url_quote(quote_id, safe='')}", status_code=303)


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
    fields = form_fields(schema, words, values, by_field)
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


def _quote_page(request: Request, quote: StoredQuote) -> Response:
    local = quote.promise.promise_local
    serving: Serving | None = request.app.state.bundles.snapshot()
    # The shop's locale, in the zone the quote was given in.
    dates = date_style(serving).in_zone(ZoneInfo(quote.time_zone))
    if quote.promise.unit == "day":
        label, text = "Ready by the end of", dates.long_day(local)
    else:
        label, text = "Ready by", f"{dates.long_day(local)}, {dates.clock(local)}"
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
            "ordered_text": dates.moment(quote.promise.ordered_at),
            "fulfilled_text": dates.moment(quote.outcome.fulfilled_at) if quote.outcome else "",
        },
    )


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

"""The OpenAPI document, as a client generator needs it: typed by the served model.

FastAPI's own document is the starting point; this module makes it say what the service really
accepts and answers:

- **The order is the served model's.** `QuoteRequest.order` becomes the `Order` schema: one
  property per feature the model takes (derived time features are not inputs), a category's
  known values as an enum, a number's training range in its description, an example from the
  training data. The document's version names the model (`0.1.0+model.VERSION`), so a client
  generated against one model can tell when another, with other features, is served.
- **Readable, stable operation ids** (`createQuote`, `getRisk`, ...), from the route
  functions' names.
- **Who may call what**: each operation's `x-roles` and a sentence in its description, read off
  its `service.auth.require` dependency (the rule itself, not a copy of it).
- **What errors say**: every documented error response lists its `error` codes
  (`x-error-codes`, and in words), and declares `Retry-After` where it is sent; quote answers
  declare `Idempotent-Replayed`.
- **The limits this service enforces**: how far back and ahead `ordered_at` may be, the
  batch size (from its settings); the body limits' 400, 408 and 413 on every operation that
  takes a body, and the key throttle's 429 on every operation that needs a key.
- No 422 where a route cannot answer it (`NEVER_422`); `Idempotent-Replayed` where a route
  answers retries (`REPLAYS`): both marked on the route itself.

The document is built once per served model version and kept (`/openapi.json` is cheap).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from models.features import FeatureSchema
from service.auth import ROLES_ATTRIBUTE
from service.bundles import BundleHolder, Serving
from service.settings import Settings

NEVER_422 = "x-never-422"
REPLAYS = "x-replays"  # a route that answers a retry from the ledger (`REPLAY_HEADER`)
ERROR_CODES_KEY = "x-error-codes"
# The `error` codes an answer of each status carries on every route that documents the status
# (service.errors makes them); a route that may answer more lists them itself
# (`service.api._errors`).
ERROR_CODES: Mapping[int, tuple[str, ...]] = {
    400: ("bad_request",),
    401: ("unauthorized",),
    403: ("forbidden",),
    404: ("not_found",),
    408: ("timeout",),
    409: ("conflict",),
    413: ("too_large",),
    422: ("invalid_input",),
    429: ("too_many_requests",),
    503: ("unavailable",),
}
INVALID_BUNDLE = "invalid_bundle"  # 422 of a reload whose bundle cannot be served
# Every request body passes the body limits (`service.limits`, `create_app`'s middleware).
BODY_ERRORS: Mapping[int, str] = {
    400: "The body cannot be read (a Content-Length that is not a number, a number with "
    "thousands of digits)",
    408: "The body did not arrive within PROMISE_BODY_READ_TIMEOUT_SECONDS",
    413: "Request body larger than PROMISE_MAX_BODY_BYTES",
}
THROTTLED = (
    "Too many failed keys from this address within PROMISE_AUTH_FAILURE_WINDOW_SECONDS; "
    "see Retry-After"
)
RETRY_AFTER_STATUSES = (429, 503)
REPLAY_HEADER = "Idempotent-Replayed"


def operation_id(route: APIRoute) -> str:
    """`create_quote` -> `createQuote`: the route function's name in camel case."""
    first, *rest = route.name.split("_")
    return first + "".join(part.capitalize() for part in rest)


class ServedOpenApi:
    """`app.openapi`: the document for the model served now, built once per version."""

    def __init__(self, app: FastAPI, holder: BundleHolder, routers: Sequence[APIRouter]) -> None:
        self._app = app
        self._holder = holder
        self._roles = _roles_by_operation(routers)
        self._built: dict[str | None, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        serving = self._holder.snapshot()
        version = serving.version if serving else None
        with self._lock:
            document = self._built.get(version)
            if document is None:
                document = self._built[version] = self._build(serving)
        return document

    def _build(self, serving: Serving | None) -> dict[str, Any]:
        app = self._app
        document = get_openapi(
            title=app.title,
            version=app.version if serving is None else f"{app.version}+model.{serving.version}",
            description=app.description,
            routes=app.routes,
        )
        for item in document.get("paths", {}).values():
            for operation in item.values():
                _refine(operation, self._roles.get(operation.get("operationId", ""), ()))
        if serving is not None:
            _type_the_order(document, serving.bundle.engine.schema, serving.version)
        settings = getattr(app.state, "settings", None)
        if isinstance(settings, Settings):
            _state_the_limits(document, settings)
        return document


def _roles_by_operation(routers: Sequence[APIRouter]) -> dict[str, tuple[str, ...]]:
    """The roles each operation's `require` dependency admits (none: open to all)."""
    found: dict[str, tuple[str, ...]] = {}
    for route in (route for router in routers for route in router.routes):
        if not isinstance(route, APIRoute):
            continue
        for dependency in route.dependant.dependencies:
            roles = getattr(dependency.call, ROLES_ATTRIBUTE, None)
            if roles is not None:
                found[operation_id(route)] = tuple(roles)
    return found


def _refine(operation: dict[str, Any], roles: tuple[str, ...]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if operation.pop(NEVER_422, False):
        responses.pop("422", None)
    replays = operation.pop(REPLAYS, False)
    if "requestBody" in operation:
        for status, reason in BODY_ERRORS.items():
            responses.setdefault(str(status), _error_answer(reason))
    if roles:
        responses.setdefault("429", _error_answer(THROTTLED))
        operation["x-roles"] = list(roles)
        needs = " or ".join(roles)
        article = "an" if needs[0] in "aeiou" else "a"
        operation["description"] = (
            f"{operation.get('description', '').rstrip()}\n\nNeeds {article} {needs} key."
        ).lstrip()
    for status_text, response in responses.items():
        status = int(status_text) if status_text.isdigit() else 0
        codes = response.get(ERROR_CODES_KEY) or ERROR_CODES.get(status)
        if codes is not None:
            response[ERROR_CODES_KEY] = list(codes)
            listed = ", ".join(f"`{code}`" for code in codes)
            response["description"] = f"{response.get('description', '')} (error: {listed})"
        if status in RETRY_AFTER_STATUSES:
            response.setdefault("headers", {})["Retry-After"] = {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer"},
            }
        if status in (200, 201) and replays:
            response.setdefault("headers", {})[REPLAY_HEADER] = {
                "description": "true when this answers a retry with the same Idempotency-Key "
                "(the stored quote, not a new one).",
                "schema": {"type": "string", "enum": ["true", "false"]},
            }


def _error_answer(reason: str) -> dict[str, Any]:
    return {
        "description": reason,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def order_schema(schema: FeatureSchema, version: str) -> dict[str, Any]:
    """The JSON schema of an order the model `version` takes."""
    properties: dict[str, Any] = {}
    example: dict[str, Any] = {}
    for cat in schema.categorical:
        known = sorted(cat.known)
        properties[cat.name] = {
            "type": ["string", "null"],
            "enum": [*known, None],
            "description": f"One of the {len(known)} values seen in training; null when "
            "unknown (the quote is then less certain).",
        }
        example[cat.name] = known[0] if known else None
    for num in schema.numeric:
        properties[num.name] = {
            "type": ["number", "null"],
            "description": f"Trained on {_number(num.low)} to {_number(num.high)}; a value far "
            f"outside ({_number(num.far_low)} to {_number(num.far_high)}) is refused, null "
            "is taken as missing.",
        }
        example[num.name] = num.low
    return {
        "title": "Order",
        "type": "object",
        "description": f"An order's features, as model {version} takes them: each is "
        "required; any other name is refused (422).",
        "properties": properties,
        "required": list(schema.feature_names),
        "additionalProperties": False,
        "example": example,
    }


def _type_the_order(document: dict[str, Any], schema: FeatureSchema, version: str) -> None:
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["Order"] = order_schema(schema, version)
    request = components.get("QuoteRequest")
    if request is not None:
        described = request["properties"]["order"].get("description", "")
        request["properties"]["order"] = {
            "$ref": "#/components/schemas/Order",
            "description": described,
        }


def _state_the_limits(document: dict[str, Any], settings: Settings) -> None:
    """Write the limits this service enforces into the schemas they apply to."""
    schemas = document.get("components", {}).get("schemas", {})
    ordered_at = schemas.get("QuoteRequest", {}).get("properties", {}).get("ordered_at")
    if ordered_at is not None:
        ordered_at["description"] = (
            f"{ordered_at.get('description', '')} Refused (422 on `ordered_at`) when more than "
            f"{_number(settings.max_order_age_days)} days ago "
            f"(PROMISE_MAX_ORDER_AGE_DAYS) or more than {_number(settings.clock_skew_seconds)} "
            "seconds ahead of the server's clock (PROMISE_CLOCK_SKEW_SECONDS): quote an order "
            "when it is placed."
        )
    orders = schemas.get("BatchQuoteRequest", {}).get("properties", {}).get("orders")
    if orders is not None:
        orders["maxItems"] = settings.max_batch
        orders["description"] = f"At most {settings.max_batch} orders (PROMISE_MAX_BATCH)."


def _number(value: float) -> str:
    return re.sub(r"\.0+$", "", f"{value:.4g}")

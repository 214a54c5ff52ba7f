"""The service's own errors, and how every error becomes an answer (see `service.handlers`).

```
PromiseError (models.errors)      -> 4xx, the user can fix it
├── InputError                    -> 422 with `field`
│   └── InputErrors (here)        -> 422 with one entry per bad field (a batch)
├── NotFound                      -> 404
├── Conflict (here)               -> 409: an outcome or Idempotency-Key already used differently,
│                                      an order already fulfilled or revised meanwhile
└── SpecError, BundleError        -> 422
AccessDenied (here)               -> 401 without a key, 403 with the wrong one
Unavailable (here)                -> 503 + Retry-After: no model loaded, ledger unreachable
RequestValidationError (FastAPI)  -> 422, same shape
HTTPException (Starlette)         -> its status (404 route, 405, 413 body too large), same shape
sqlalchemy OperationalError       -> 503 + Retry-After: nothing was stored
```

Every error body is `ErrorBody`: `{"error": code, "message": text, "field": name|null,
"errors": [{"field", "message"}]}`. Web pages get the same status with an HTML page instead.
Routes hold no `try`; anything else is a bug and propagates (a 500).
"""

from __future__ import annotations

from collections.abc import Sequence

from models.errors import InputError, PromiseError


class Conflict(PromiseError):
    """The request contradicts what the ledger already holds (answered 409)."""

    code = "conflict"


class InputErrors(InputError):
    """Several bad fields at once (a batch); `field` is the first one's."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        first_field, first_message = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{first_field}: {first_message}{more}", field=first_field)
        self.problems = list(problems)


class AccessDenied(Exception):
    """No key (401) or a key without the needed role (403)."""

    def __init__(self, status_code: int, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.challenge = challenge


class Unavailable(Exception):
    """The service cannot answer now (no model loaded, ledger down); retry later."""

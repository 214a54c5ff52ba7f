"""Service settings: one `Settings`, read from `PROMISE_*` environment variables.

Built in `create_app(settings)` (tests pass `Settings(...)`), never at import time. Bad values
are refused at start-up with a message naming the variable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.monitoring import (
    DEFAULT_BAND_FACTOR,
    DEFAULT_CONFIDENCE,
    DEFAULT_MIN_DECIDED,
    DEFAULT_WINDOW_DAYS,
)

Role = Literal["pos", "staff", "admin", "metrics"]
ROLES: tuple[Role, ...] = ("pos", "staff", "admin", "metrics")
# A store name in a key's scope: what a till sends in the PROMISE_STORE_FIELD feature.
STORE_NAME = re.compile(r"^[^\s,=]{1,200}$")
MIN_KEY_CHARS = 16
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


Stores = frozenset[str] | None
"""The stores a key may act for (the orders' `PROMISE_STORE_FIELD` values); None: every store
(a head-office key, an environment key, open mode)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A configured key: its role and a short id (a hash prefix, safe to store and log).

    Environment keys act for every store; scopes are set in the keys file."""

    secret: SecretStr
    role: Role

    @property
    def key_id(self) -> str:
        return self.hashed().key_id

    def hashed(self) -> HashedKey:
        """The key as the keyring holds it: its sha256 only."""
        digest = hashlib.sha256(self.secret.get_secret_value().encode("utf-8")).hexdigest()
        # An environment key has no holder's name: its id stands for it (`staff-e7942dfbc2`).
        return HashedKey(role=self.role, sha256_hex=digest, name="", stores=None).named_by_id()


@dataclass(frozen=True, slots=True)
class HashedKey:
    """A key known by its sha256 (hex) only: from PROMISE_KEYS_FILE, or an env key hashed.

    `name` says who holds it (a staff member's name is what the call list records), `stores`
    which stores it may act for (None: all)."""

    role: Role
    sha256_hex: str
    name: str
    stores: Stores = None

    @property
    def key_id(self) -> str:
        return f"{self.role}-{self.sha256_hex[:10]}"

    def named_by_id(self) -> HashedKey:
        return HashedKey(self.role, self.sha256_hex, self.key_id, self.stores)


def read_keys_file(path: Path) -> list[HashedKey]:
    """The keys in a file of lines `ROLE SHA256-HEX NAME [stores=A,B]` (blank lines and `#`
    comments skipped); raises ValueError naming the file and line of a bad one.

    NAME may hold spaces ("Ann Lee"); a last field `stores=LDS,MAN` limits the key to those
    stores, and without it the key acts for every store (a head-office key)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read the keys file {path}: {err}") from err
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split(maxsplit=2)
        where = f"{path}, line {number}"
        if len(parts) != 3:
            raise ValueError(f"{where}: expected 'ROLE SHA256-HEX NAME [stores=A,B]'")
        role, digest, rest = parts
        name, stores = _name_and_stores(rest, where)
        if role not in ROLES:
            raise ValueError(f"{where}: the role must be one of {', '.join(ROLES)}, not {role!r}")
        if not SHA256_HEX.match(digest):
            raise ValueError(
                f"{where}: the second field must be the key's sha256 as 64 lowercase hex "
                "digits (never the key itself)"
            )
        keys.append(HashedKey(role=role, sha256_hex=digest, name=name, stores=stores))
    return keys


def _name_and_stores(rest: str, where: str) -> tuple[str, Stores]:
    """A keys-file line's NAME and optional `stores=A,B` scope."""
    name, _, last = rest.rpartition(" ")
    if not last.startswith("stores="):
        return rest, None
    name = name.strip()
    if not name:
        raise ValueError(f"{where}: the key needs a NAME before its stores=")
    names = last.removeprefix("stores=").split(",")
    bad = [store for store in names if not STORE_NAME.match(store)]
    if bad or not names:
        raise ValueError(
            f"{where}: stores= takes store names separated by commas (no spaces), "
            f"for example stores=LDS,MAN; not {last!r}"
        )
    return name, frozenset(names)


class Settings(BaseSettings):
    """Everything the service reads from its environment (`PROMISE_<NAME>`)."""

    model_config = SettingsConfigDict(env_prefix="PROMISE_", extra="ignore", frozen=True)

    database_url: str = Field(
        default="sqlite:///data/promise.db",
        description="The ledger: sqlite:///FILE or postgresql+psycopg://USER@HOST:PORT/DB.",
    )
    registry: Path = Field(default=Path("models/bundles"), description="Folder of trained bundles.")
    model_uri: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Serve an MLflow registered model by alias, `models:/NAME@ALIAS` (needs "
        "the `mlflow` extra and MLFLOW_TRACKING_URI); its bundle is fetched into the registry "
        "folder and checked there like any other.",
    )
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), description="Point-of-sale keys, comma separated."
    )
    staff_key: SecretStr | None = Field(default=None, description="Key for the staff web form.")
    admin_key: SecretStr | None = Field(default=None, description="Key for model operations.")
    metrics_key: SecretStr | None = Field(
        default=None, description="Key for Prometheus to read /metrics (the admin key may too)."
    )
    session_secret: SecretStr | None = Field(
        default=None, description="Signs staff session cookies; the same for every worker."
    )
    keys_file: Path | None = Field(
        default=None,
        description="A file of hashed keys, one per line: `ROLE SHA256-HEX NAME [stores=A,B]` "
        "(role pos, staff, admin or metrics; without stores= a key acts for every store).",
    )
    session_idle_minutes: float = Field(
        default=60.0,
        gt=0.0,
        le=7 * 24 * 60,
        description="A staff session unused this long ends (sign in again).",
    )
    session_lifetime_hours: float = Field(
        default=12.0,
        gt=0.0,
        le=31 * 24,
        description="A staff session ends this long after sign-in, however busy.",
    )
    auth_failures_allowed: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Failed authentications one client address may make per "
        "PROMISE_AUTH_FAILURE_WINDOW_SECONDS before it is answered 429.",
    )
    auth_failure_window_seconds: float = Field(default=60.0, gt=0.0, le=86_400.0)
    body_read_timeout_seconds: float = Field(
        default=30.0,
        gt=0.0,
        le=3_600.0,
        description="A request body not read in full within this long is answered 408.",
    )
    readiness_probe_seconds: float = Field(
        default=5.0,
        ge=0.0,
        le=3_600.0,
        description="/readyz probes a ledger write at most this often (0: on every call).",
    )
    max_batch: int = Field(default=500, ge=1, le=10_000, description="Orders per batch request.")
    max_body_bytes: int = Field(default=1_048_576, ge=1_024, le=64 * 1_048_576)
    unknown_categories: Literal["reject", "warn"] = Field(
        default="reject",
        description="A category never seen in training: 422, or a quote with a warning.",
    )
    clock_skew_seconds: float = Field(
        default=300.0, ge=0.0, le=3_600.0, description="How far in the future a timestamp may lie."
    )
    max_order_age_days: float = Field(
        default=7.0,
        gt=0.0,
        le=366.0,
        description="How long ago an order quoted now may have been placed.",
    )
    bundle_signing_key: SecretStr | None = Field(
        default=None,
        description="PROMISE_BUNDLE_SIGNING_KEY: when set, only bundles whose manifest is signed "
        "with it (HMAC-SHA256, `promise train` signs with the same variable set) are loaded. "
        "Keep it in the environment or a secret store, never in the registry.",
    )
    follow_promotions: bool = Field(
        default=False,
        description="Serve a newly promoted bundle without an admin reload, when it takes the "
        "same orders as the served one (one that does not still needs a forced reload).",
    )
    model_check_seconds: float = Field(
        default=2.0,
        ge=0.0,
        le=3_600.0,
        description="How often a worker checks the ledger for a model reloaded by another worker.",
    )
    control_refresh_seconds: float = Field(
        default=2.0,
        ge=0.0,
        le=3_600.0,
        description="How long a worker quotes with the adaptive policy's control state before "
        "replaying it from the ledger: a promise falling due or an outcome recorded moves the "
        "adaptive buffer at most this much later (0: replay for every request).",
    )
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=100, le=600_000)
    database_connect_timeout_seconds: int = Field(default=5, ge=1, le=120)
    metrics_window_days: float = Field(default=30.0, gt=0.0, le=3_660.0)
    retry_after_seconds: int = Field(default=5, ge=1, le=3_600)
    store_field: str = Field(
        default="store_id",
        min_length=1,
        max_length=100,
        description="The order feature naming the store, for the at-risk list's `store` filter.",
    )
    at_risk_min_probability: float = Field(
        default=0.5, ge=0.0, le=1.0, description="The at-risk list's default risk threshold."
    )
    at_risk_within_days: float = Field(
        default=7.0,
        gt=0.0,
        le=366.0,
        description="The at-risk list's default horizon: promises due within this many days.",
    )
    at_risk_overdue_days: float = Field(
        default=30.0,
        ge=0.0,
        le=366.0,
        description="Open orders whose promise passed at most this long ago stay on the list.",
    )
    alarm_window_days: float = Field(
        default=DEFAULT_WINDOW_DAYS,
        gt=0.0,
        le=366.0,
        description="Drift alarms count the promises whose deadline fell in this many days.",
    )
    alarm_band_factor: float = Field(
        default=DEFAULT_BAND_FACTOR,
        ge=1.0,
        le=100.0,
        description="The target band is [target / factor, target * factor].",
    )
    alarm_confidence: float = Field(
        default=DEFAULT_CONFIDENCE,
        gt=0.5,
        lt=1.0,
        description="Confidence of the late rate's interval.",
    )
    alarm_min_decided: int = Field(
        default=DEFAULT_MIN_DECIDED,
        ge=1,
        le=100_000,
        description="Decided promises needed before any alarm.",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator(
        "staff_key",
        "admin_key",
        "metrics_key",
        "session_secret",
        "bundle_signing_key",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        url = value.strip()
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                url = "postgresql+psycopg://" + url[len(prefix) :]
        if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
            if ":memory:" in url or "mode=memory" in url:
                raise ValueError(
                    "the ledger must be a file: an in-memory SQLite database is "
                    "lost on restart and not shared by workers"
                )
            return url
        if url.startswith("postgresql+psycopg://"):
            return url
        raise ValueError("use sqlite:///PATH/TO/FILE.db or postgresql+psycopg://USER@HOST/DB")

    @model_validator(mode="after")
    def _sound_keys(self) -> Settings:
        keys = self.configured_keys()
        for key in keys:
            if len(key.secret.get_secret_value()) < MIN_KEY_CHARS:
                raise ValueError(f"every {key.role} key needs at least {MIN_KEY_CHARS} characters")
        digests = [key.sha256_hex for key in self.hashed_keys]
        if len(set(digests)) != len(digests):
            raise ValueError(
                "each key must be different (a point-of-sale key cannot also be the "
                "staff or admin key)"
            )
        return self

    def configured_keys(self) -> list[ApiKey]:
        """Every configured key with its role; empty when the service runs open."""
        keys = [ApiKey(secret, "pos") for secret in self.api_keys]
        if self.staff_key is not None:
            keys.append(ApiKey(self.staff_key, "staff"))
        if self.admin_key is not None:
            keys.append(ApiKey(self.admin_key, "admin"))
        if self.metrics_key is not None:
            keys.append(ApiKey(self.metrics_key, "metrics"))
        return keys

    @cached_property
    def hashed_keys(self) -> tuple[HashedKey, ...]:
        """Every key the service accepts (the environment's, hashed, then the file's)."""
        from_file = read_keys_file(self.keys_file) if self.keys_file is not None else []
        return (*(key.hashed() for key in self.configured_keys()), *from_file)

    def signing_key(self) -> str | None:
        """The key bundles must be signed with (`models.signing`), or None to accept any."""
        key = self.bundle_signing_key
        return None if key is None else key.get_secret_value()

    def has_role(self, role: Role) -> bool:
        return any(key.role == role for key in self.hashed_keys)

    @property
    def is_open(self) -> bool:
        """True when no key is configured: anyone on loopback may do anything."""
        return not self.hashed_keys

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

"""Settings and the ledger for a service command (`promise import-outcomes`, `promise monitor`).

A command's options override the `PROMISE_*` settings; a bad value, a URL that names no
database and a database that cannot be reached each become one `SettingsError` naming the
option (or variable), with any password in a URL shown as ***.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError, OperationalError

from models.errors import SettingsError
from service.ledger import Ledger
from service.settings import Settings

# Settings field -> the command-line option that sets it.
OPTIONS = {
    "database_url": "--database-url",
    "registry": "--registry",
    "alarm_window_days": "--window-days",
    "alarm_band_factor": "--band-factor",
    "alarm_confidence": "--confidence",
    "alarm_min_decided": "--min-decided",
}
_PASSWORD = re.compile(r"(://[^:/@]*):[^@/]*@")


def safe_url(url: str) -> str:
    """The database URL with any password replaced by ***."""
    return _PASSWORD.sub(r"\1:***@", url)


def load_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the environment and the options given (None: not given); raises
    `SettingsError` naming the option (or PROMISE_ variable) of the first bad value."""
    given = {field: value for field, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        where = OPTIONS.get(field, field) if field in given else f"PROMISE_{field.upper()}"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{where}: {message}" if field else message) from err


@contextmanager
def migrated_ledger(settings: Settings) -> Iterator[Ledger]:
    """The ledger `settings` name, migrated, closed afterwards; raises `SettingsError` when the
    URL names no database or the database cannot be reached (here or inside the block)."""
    where = safe_url(settings.database_url)
    try:
        ledger = Ledger.from_settings(settings)
    except (ArgumentError, ValueError) as err:
        raise SettingsError(f"--database-url: {where} is not a database URL ({err})") from err
    try:
        ledger.migrate()
        yield ledger
    except OperationalError as err:
        reason = str(err.orig).strip().splitlines()[0] if err.orig else type(err).__name__
        raise SettingsError(f"the database {where} cannot be reached: {reason}") from err
    finally:
        ledger.close()

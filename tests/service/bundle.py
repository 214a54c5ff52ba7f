"""A trained registry and a configured app for the `python -m` runners (fuzz, soak), built the
way `tests/service/conftest.py` builds them for the tests."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from models.registry import Registry
from service.app import create_app
from service.settings import Settings
from training.pipeline import train_bundle
from training.sample_data import write_sample_data

ROOT = Path(__file__).resolve().parents[2]
POS_KEY = "pos-key-0123456789abcdef"
STAFF_KEY = "staff-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"


def trained_registry(folder: Path) -> Path:
    """A registry under `folder` with one promoted conformal bundle trained on sample data."""
    write_sample_data(folder, n_orders=8000, seed=3)
    shutil.copy(ROOT / "data" / "optical.toml", folder / "optical.toml")
    registry = Registry(folder / "bundles")
    with threadpool_limits(1):
        bundle = train_bundle(folder / "optical.toml", registry, now=dt.datetime.now(dt.UTC))
    registry.promote(bundle.version)
    return folder / "bundles"


def with_keys(registry: Path, folder: Path) -> tuple[FastAPI, list[str | None]]:
    """An app with every role's key on a SQLite ledger, and the credentials to fuzz with."""
    settings = Settings(
        database_url=f"sqlite:///{folder / 'ledger.db'}",
        registry=registry,
        api_keys=(POS_KEY,),
        staff_key=STAFF_KEY,
        admin_key=ADMIN_KEY,
        model_check_seconds=0.0,
        # Random credentials often fail: the throttle (tested on its own) would answer 429.
        auth_failures_allowed=100_000,
    )
    # Mostly keys that may call the route, so requests get past the access check.
    credentials: list[str | None] = [POS_KEY, POS_KEY, STAFF_KEY, ADMIN_KEY, ADMIN_KEY, None]
    return create_app(settings), [*credentials, "not-a-key-0123456789"]

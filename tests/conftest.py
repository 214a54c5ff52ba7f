"""Shared fixtures: the sample order history, generated once per test session."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from models.calendar import BusinessCalendar
from training.data import OrderTable, load_orders
from training.sample_data import write_sample_data
from training.spec import Spec, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SPEC = ROOT / "data" / "optical.toml"
SHARED_DATA = ROOT.parent / "shared" / "data"
TODAY = dt.date(2026, 11, 23)


@pytest.fixture(scope="session")
def sample_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the default sample history (60,000 orders) and its spec."""
    folder = tmp_path_factory.mktemp("sample")
    write_sample_data(folder, n_orders=60_000, seed=7)
    shutil.copy(SAMPLE_SPEC, folder / "optical.toml")
    return folder


# The production cadence (weekly refits, `Spec.refit_days`) refits the model some sixty times in
# a five-fold back-test of the sample: the suite's back-tests fit once per fold instead, and
# tests/training/test_cadence.py tests the cadence itself.
FOLD_CADENCE = {"refit_every": 3650.0, "recalibrate_every": 3650.0}


@pytest.fixture(scope="session")
def sample_spec(sample_folder: Path) -> Spec:
    return spec_with(load_spec(sample_folder / "optical.toml"), backtest=FOLD_CADENCE)


@pytest.fixture(scope="session")
def sample_table(sample_spec: Spec) -> OrderTable:
    return load_orders(sample_spec)


@pytest.fixture(scope="session")
def sample_calendar(sample_spec: Spec, sample_table: OrderTable) -> BusinessCalendar:
    from training.train import build_calendar

    return build_calendar(sample_spec, sample_table, TODAY)


def spec_with(spec: Spec, **sections: Mapping[str, Any]) -> Spec:
    """A copy of `spec` with some keys of its tables replaced."""
    raw = spec.model_dump(mode="json", exclude={"source"})
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return parse_spec(raw, spec.source)


@pytest.fixture(scope="session")
def small_sample_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The path of a spec over a small sample history (8,000 orders), quick to train on."""
    folder = tmp_path_factory.mktemp("small-sample")
    write_sample_data(folder, n_orders=8_000, seed=3)
    shutil.copy(SAMPLE_SPEC, folder / "optical.toml")
    return folder / "optical.toml"


def pytest_report_header() -> str:
    """Say up front whether the PostgreSQL tests run, and against what."""
    from tests.service.conftest import find_postgres

    url, why = find_postgres()
    if url is None:
        return f"postgresql: SKIPPED: {why}"
    return f"postgresql: {why}"

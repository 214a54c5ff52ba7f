"""The staff pages write dates in the shop's locale and zone: a Brazilian shop's model reads
Portuguese days and months in São Paulo time, an English shop's English in London time."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from threadpoolctl import threadpool_limits

from models.registry import Registry
from tests.service.conftest import ORDER, POS_KEY, SPEC, STAFF_KEY, ClientFactory, bearer
from training.pipeline import train_bundle
from training.sample_data import write_sample_data

HTML = {"accept": "text/html"}
SAO_PAULO = ZoneInfo("America/Sao_Paulo")
PORTUGUESE_MONTHS = r"(?:jan|fev|mar|abr|mai|jun|jul|ago|set|out|nov|dez)\."
PORTUGUESE_DAYS = r"(?:seg|ter|qua|qui|sex|sáb|dom)\."


def _brazilian_spec(text: str) -> str:
    """The sample spec for a shop in São Paulo with Brazil's holidays, no locale given."""
    changed = text.replace(
        'timezone = "Europe/London"           #', 'timezone = "America/Sao_Paulo" #'
    )
    changed = changed.replace('holidays = "GB"', 'holidays = "BR"')
    changed = re.sub(r'\nsubdivision = "ENG".*\n', "\n", changed)
    assert 'timezone = "America/Sao_Paulo"' in changed and 'holidays = "BR"' in changed
    assert "subdivision" not in changed.split("[calendar]", 1)[1].split("\n[", 1)[0]
    return changed


@pytest.fixture(scope="session")
def brazilian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with one promoted bundle of a shop in Brazil (locale from the country)."""
    folder = tmp_path_factory.mktemp("brazilian")
    write_sample_data(folder, n_orders=3000, seed=11)
    (folder / "optical.toml").write_text(_brazilian_spec(SPEC.read_text("utf-8")), "utf-8")
    registry = Registry(folder / "bundles")
    with threadpool_limits(1):
        bundle = train_bundle(folder / "optical.toml", registry, now=dt.datetime.now(dt.UTC))
    registry.promote(bundle.version)
    return folder / "bundles"


@pytest.fixture
def brazilian_staff(make_client: ClientFactory, brazilian: Path, tmp_path: Path) -> TestClient:
    root = tmp_path / "brazilian-bundles"
    shutil.copytree(brazilian, root)
    return make_client(key=STAFF_KEY, registry=root, max_order_age_days=60.0)


@pytest.fixture
def english_staff(make_client: ClientFactory) -> TestClient:
    return make_client(key=STAFF_KEY, max_order_age_days=60.0)


def _quote(client: TestClient, days_ago: float) -> dict[str, Any]:
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).isoformat()
    body = {"order": ORDER, "ordered_at": at}
    response = client.post("/v1/quotes", json=body, headers=bearer(POS_KEY))
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_brazilian_shops_pages_read_in_portuguese(brazilian_staff: TestClient) -> None:
    quote = _quote(brazilian_staff, 2)
    page = brazilian_staff.get(f"/quotes/{quote['quote_id']}", headers=HTML).text
    headline = re.search(r'id="promise-date">(.*?)</p>', page)
    assert headline and re.fullmatch(
        r"(?:segunda|terça|quarta|quinta|sexta)-feira, \d{1,2} de [a-zç]+ de \d{4}"
        r"|sábado, \d{1,2} de [a-zç]+ de \d{4}",
        headline[1],
    ), headline
    assert re.search(rf"{PORTUGUESE_DAYS}, \d{{1,2}} de {PORTUGUESE_MONTHS} de \d{{4}}", page)
    explanation = re.search(r'id="explanation">(.*?)</p>', page, re.S)
    assert explanation and re.search(rf"de {PORTUGUESE_MONTHS} de \d{{4}}\)", explanation[1])
    # JSON keeps ISO 8601 whatever the locale.
    assert dt.date.fromisoformat(quote["promise_date"])


def test_an_english_shops_pages_read_in_english(english_staff: TestClient) -> None:
    quote = _quote(english_staff, 2)
    page = english_staff.get(f"/quotes/{quote['quote_id']}", headers=HTML).text
    headline = re.search(r'id="promise-date">(.*?)</p>', page)
    assert headline and re.fullmatch(
        r"(?:Mon|Tues|Wednes|Thurs|Fri|Satur)day, \d{1,2} [A-Z][a-z]+ \d{4}", headline[1]
    ), headline
    assert re.search(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4}", page)
    assert not re.search(PORTUGUESE_MONTHS, page)


def test_the_performance_period_is_in_the_shops_zone(brazilian_staff: TestClient) -> None:
    before = dt.datetime.now(dt.UTC)
    page = brazilian_staff.get("/performance", params={"days": 7}, headers=HTML).text
    after = dt.datetime.now(dt.UTC)
    # "qui., 26 de nov. de 2026 17:25 (BRT)": São Paulo's clock, not UTC's.
    shown = {
        f"{(moment - dt.timedelta(days=7)).astimezone(SAO_PAULO):%H:%M} (BRT)"
        for moment in (before, after)
    }
    assert any(text in page for text in shown), shown
    utc_clock = f"{before - dt.timedelta(days=7):%H:%M}"
    assert f"{utc_clock} (BRT)" not in page

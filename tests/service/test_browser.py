"""The staff web pages in headless chromium (Debian's package) against the real server."""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS
from tests.service.app_server import server_env
from tests.service.conftest import ORDER, POS_KEY, STAFF_KEY, bearer
from tests.service.servers import free_port, running_server

pytestmark = BROWSER_MARKS


@pytest.fixture
def base_url(registry_root: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    # PROMISE_MAX_ORDER_AGE_DAYS: so a test can quote an order placed weeks ago.
    env = server_env(tmp_path, registry_root, {"PROMISE_MAX_ORDER_AGE_DAYS": "60"})
    command = [
        sys.executable,
        *("-m", "promise_cli", "serve", "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", "1", "--log-level", "warning"),
    ]
    with running_server(command, env, port, tmp_path / "server.log") as base:
        yield base


def test_staff_quote_an_order_and_look_it_up(base_url: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            page.goto(f"{base_url}/")
            page.get_by_label("Staff key").fill(STAFF_KEY)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base_url}/")
            page.screenshot(path=str(tmp_path / "form.png"), full_page=True)

            page.get_by_label("Shop", exact=True).select_option("MAN")
            page.get_by_label("Lenses").select_option("progressive")
            page.get_by_label("Coating").select_option("anti_reflective")
            page.get_by_label("Frame in stock").check()  # a yes/no feature is a checkbox
            page.get_by_label("Pairs of glasses").fill("1")
            page.get_by_label("Sphere (dioptres)").fill("2.25")
            page.get_by_label("Order reference (optional)").fill("Mrs <b>Jones</b>")
            page.get_by_role("button", name="Get the promise date").click()

            page.wait_for_url(re.compile(r".*/quotes/Q-[0-9A-Z-]{14}$"))
            promise = page.locator("#promise-date").inner_text()
            quote_id = page.locator("#quote-id").inner_text()
            # The shop's locale (en_GB for the sample): "Thursday, 3 December 2026".
            assert re.fullmatch(r"\w+day, \d{1,2} \w+ \d{4}", promise), promise
            assert page.locator("#explanation").inner_text().startswith("We expect")
            assert page.locator("#reference-value").inner_text() == "Mrs <b>Jones</b>"
            page.screenshot(path=str(tmp_path / "quote.png"), full_page=True)

            page.emulate_media(media="print")
            assert page.locator("header.site").is_hidden()
            assert page.locator("#promise-date").is_visible()
            page.emulate_media(media="screen")

            page.goto(f"{base_url}/")
            page.get_by_label("Quote id").fill(quote_id.lower())
            page.get_by_role("button", name="Look up").click()
            page.wait_for_url(f"**/quotes/{quote_id}")
            assert page.locator("#promise-date").inner_text() == promise

            page.goto(f"{base_url}/performance")
            verdicts = page.locator("#verdicts tbody tr")
            assert verdicts.count() == 1  # nothing is due yet: the overall row only
            assert verdicts.locator(".verdict").inner_text() == "too few outcomes yet"
            assert page.locator("details.quotes-given tbody tr").count() >= 2
        finally:
            browser.close()


def test_staff_call_a_customer_from_the_at_risk_list(base_url: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    placed = dt.datetime.now(dt.UTC) - dt.timedelta(days=20)
    body = {"order": ORDER, "ordered_at": placed.isoformat(), "reference": "Mr Okafor"}
    quoted = httpx.post(f"{base_url}/v1/quotes", json=body, headers=bearer(POS_KEY), timeout=30)
    assert quoted.status_code == 201, quoted.text
    quote_id = quoted.json()["quote_id"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            page.goto(f"{base_url}/at-risk")
            page.get_by_label("Staff key").fill(STAFF_KEY)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base_url}/at-risk")
            row = page.locator(f"#row-{quote_id}")
            assert row.get_by_role("link").inner_text() == "Mr Okafor"
            assert row.locator(".probability").inner_text() == "100%"  # its promise has passed
            assert row.locator(".contacted").inner_text() == "not yet"
            page.screenshot(path=str(tmp_path / "at-risk.png"), full_page=True)

            row.get_by_label("Note").fill("Called, new date agreed")
            row.get_by_role("button", name="Mark contacted").click()
            page.wait_for_url(f"{base_url}/at-risk")
            contacted = page.locator(f"#row-{quote_id} .contacted").inner_text()
            assert contacted.startswith("staff")
            page.reload()  # the mark is in the ledger, not in the page
            assert page.locator(f"#row-{quote_id} .contacted").inner_text() == contacted

            page.locator(f"#row-{quote_id}").get_by_role("button", name="Give new date").click()
            page.wait_for_url(re.compile(r".*/quotes/Q-[0-9A-Z-]{14}$"))
            assert page.locator("#explanation").inner_text().startswith("Revised:")
            page.screenshot(path=str(tmp_path / "revised.png"), full_page=True)
        finally:
            browser.close()
    risk = httpx.get(f"{base_url}/v1/quotes/{quote_id}/risk", headers=bearer(POS_KEY), timeout=30)
    assert [c["note"] for c in risk.json()["contacts"]] == ["Called, new date agreed"]
    assert risk.json()["revised_by"] is not None


WIDTHS = (390, 1280)  # a phone held upright, a counter screen
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def _screenshots(tmp_path: Path) -> Path:
    # `make screenshots` sets SCREENSHOTS_DIR (not PROMISE_*: tests clear those) to keep them.
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_every_staff_page_fits_a_phone_and_a_counter_screen(base_url: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    placed = dt.datetime.now(dt.UTC) - dt.timedelta(days=20)
    body = {
        "order": {**ORDER, "coating": "anti_reflective"},
        "ordered_at": placed.isoformat(),
        "reference": "Order 2026-11-11/0042 for a long reference that must wrap",
        "customer": {"name": "Maria Aparecida dos Santos Oliveira", "phone": "+44 7700 900123"},
    }
    quoted = httpx.post(f"{base_url}/v1/quotes", json=body, headers=bearer(POS_KEY), timeout=30)
    assert quoted.status_code == 201, quoted.text
    quote_id = quoted.json()["quote_id"]
    httpx.post(
        f"{base_url}/v1/quotes/{quote_id}/contacts",
        json={"note": "Left voicemail, will call back after lunch"},
        headers=bearer(STAFF_KEY),
        timeout=30,
    )
    pages = {
        "form": "/",
        "quote": f"/quotes/{quote_id}",
        "at-risk": "/at-risk",
        "performance": "/performance",
        "not-found": "/quotes/Q-0000-0000-0000",
    }
    folder = _screenshots(tmp_path)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for width in WIDTHS:
                context = browser.new_context(viewport={"width": width, "height": 844})
                page = context.new_page()
                page.goto(f"{base_url}/signin")
                assert page.evaluate(NO_SIDEWAYS_SCROLL), f"sign-in at {width}px"
                page.get_by_label("Staff key").fill(STAFF_KEY)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(f"{base_url}/")
                for name, path in pages.items():
                    page.goto(f"{base_url}{path}")
                    wide = page.evaluate("document.documentElement.scrollWidth")
                    assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{name} is {wide}px at {width}px"
                    page.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=True)
                page.goto(f"{base_url}/at-risk")
                row = page.locator(f"#row-{quote_id}")
                for action in ("Mark contacted", "Give new date"):
                    button = row.get_by_role("button", name=action)
                    assert button.is_visible(), f"{action} at {width}px"
                    box = button.bounding_box()
                    assert box is not None and box["x"] >= 0, action
                    assert box["x"] + box["width"] <= width, f"{action} off-screen at {width}px"
                assert row.get_by_role("link", name="+44 7700 900123").is_visible()
                context.close()
        finally:
            browser.close()

"""/docs and /redoc work without internet (issue 20): their scripts and styles come from the
service itself, never from a CDN."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.service.conftest import POS_KEY
from tests.service.servers import free_port, running_server

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_only_local_assets(client: TestClient, page: str) -> None:
    answer = client.get(page)
    assert answer.status_code == 200
    assets = ASSET.findall(answer.text)
    assert assets, "the page names no script or style"
    for asset in assets:
        assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
        loaded = client.get(asset)
        assert loaded.status_code == 200 and len(loaded.content) > 1_000, asset


@pytest.fixture
def served(registry_root: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        "PROMISE_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "PROMISE_REGISTRY": str(registry_root),
        "PROMISE_API_KEYS": POS_KEY,
    }
    command = [
        sys.executable,
        "-m",
        "promise_cli",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with running_server(command, env, port, tmp_path / "server.log") as base:
        yield base


@needs_chromium
def test_swagger_ui_renders_with_every_outside_request_blocked(served: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    outside: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()

            def only_this_service(route: sync_api.Route) -> None:
                if route.request.url.startswith(served):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_this_service)
            page.goto(f"{served}/docs")
            page.locator(".opblock-summary").first.wait_for(timeout=30_000)
            assert page.locator(".opblock-summary").count() >= 10
            assert page.get_by_text("/v1/quotes").first.is_visible()
        finally:
            browser.close()
    assert outside == []

"""The Python client against the real app over HTTP (issue 20, "Done when"): a quote, a batch,
an idempotent retry, look-ups by id and by the shop's reference, an outcome, and paging both
lists to the end with their totals."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator

import pytest

from service.client import PromiseClient
from tests.service.app_server import app_server
from tests.service.conftest import ORDER, POS_KEY, TrainedBundles

UTC = dt.UTC


@pytest.fixture(scope="module")
def server(trained: TrainedBundles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("client-paging")
    shutil.copytree(trained.root, folder / "bundles")
    env = {"PROMISE_MAX_ORDER_AGE_DAYS": "60"}
    with app_server(folder, folder / "bundles", env) as base:
        yield base


def test_a_quote_a_batch_a_retry_look_ups_and_an_outcome(server: str) -> None:
    with PromiseClient(server, key=POS_KEY) as promise:
        quote = promise.create_quote(ORDER, reference="DW-1")
        assert promise.get_quote(quote["quote_id"]) == quote
        retried = promise.create_quote(ORDER, reference="DW-1", idempotency_key="till-3-DW-1")
        assert promise.create_quote(ORDER, reference="DW-1", idempotency_key="till-3-DW-1") == (
            retried
        )
        batch = promise.create_quotes([{"order": ORDER, "reference": "DW-1"}, ORDER])
        found = promise.find_quotes("DW-1")
        assert found["total"] == found["count"] == 3 and found["next_cursor"] is None
        assert [q["quote_id"] for q in found["quotes"]][-1] == quote["quote_id"]
        assert {q["quote_id"] for q in found["quotes"]} == {
            quote["quote_id"],
            retried["quote_id"],
            batch[0]["quote_id"],
        }
        assert promise.find_quotes("DW-404")["total"] == 0
        fulfilled = dt.datetime.fromisoformat(quote["ordered_at"]) + dt.timedelta(seconds=1)
        outcome = promise.record_outcome(quote["quote_id"], fulfilled)
        assert outcome["outcome"]["was_late"] is False
        assert promise.find_quotes("DW-1")["quotes"][-1]["outcome"] == outcome["outcome"]


def test_both_lists_page_to_the_end(server: str) -> None:
    placed = dt.datetime.now(UTC) - dt.timedelta(days=20)
    with PromiseClient(server, key=POS_KEY) as promise:
        orders = [
            {
                "order": ORDER,
                "ordered_at": (placed + dt.timedelta(hours=i)).isoformat(),
                "reference": "DW-PAGED",
            }
            for i in range(5)
        ]
        made = {q["quote_id"] for q in promise.create_quotes(orders)}
        pages = list(promise.quote_pages("DW-PAGED", limit=2))
        assert [page["count"] for page in pages] == [2, 2, 1]
        assert {page["total"] for page in pages} == {5}
        assert {q["quote_id"] for page in pages for q in page["quotes"]} == made
        span = dt.timedelta(days=60)
        whole = promise.at_risk(min_probability=0.0, within=span, limit=1000)
        assert whole["next_cursor"] is None and whole["total"] == whole["count"] >= 5
        risky = list(promise.at_risk_pages(min_probability=0.0, within=span, limit=2))
        assert [page["count"] for page in risky[:-1]] == [2] * (len(risky) - 1)
        assert risky[-1]["next_cursor"] is None
        listed = [o["quote_id"] for page in risky for o in page["orders"]]
        assert listed == [o["quote_id"] for o in whole["orders"]]
        assert made <= set(listed)

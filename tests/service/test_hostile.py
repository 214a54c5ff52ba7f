"""Hostile text in features, references and Idempotency-Keys is stored and returned intact:
the ledger only runs parameterised SQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from service.ledger import Ledger
from tests.service.conftest import ClientFactory, quote_body

HOSTILE = [
    "'; DROP TABLE quotes; --",
    "Robert'); DELETE FROM quote_requests WHERE ('1'='1",
    '" OR ""="',
    "%s %(id)s $1 ? :name",
    "\\'\\\\ \u202e\u2066 😀 ñ",
    "<script>alert(1)</script>",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_stored_and_returned_intact(make_client: ClientFactory, text: str) -> None:
    client = make_client(unknown_categories="warn")
    ascii_key = "k-" + "".join(ch for ch in text if "!" <= ch <= "~")

    first = client.post(
        "/v1/quotes",
        json={**quote_body(coating=text), "reference": text},
        headers={"Idempotency-Key": ascii_key},
    )
    again = client.post(
        "/v1/quotes",
        json={**quote_body(coating=text), "reference": text},
        headers={"Idempotency-Key": ascii_key},
    )
    stored = client.get(f"/v1/quotes/{first.json()['quote_id']}").json()

    assert first.status_code == 201 and again.json() == first.json()
    assert stored["reference"] == text
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]
    assert ledger.quotes.get(stored["quote_id"]).features["coating"] == text
    assert {"quotes", "quote_requests"} <= set(inspect(ledger.engine).get_table_names())

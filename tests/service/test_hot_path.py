"""The quote routes' dependencies run on the event loop: FastAPI runs a plain `def`
dependency in the threadpool, a thread hop each (a quote used to make ten before its route
ran), so only what can block may be one (`service.deps`)."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from service import api
from service.auth import require
from service.keyring import KeyRing
from tests.service.conftest import POS_KEY, ClientFactory, quote_body


def calls_of(dependant: Dependant) -> Iterator[object]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from calls_of(sub)


def route(path: str, method: str) -> APIRoute:
    found = [r for r in api.router.routes if isinstance(r, APIRoute) and r.path == path]
    [match] = [r for r in found if method in (r.methods or set())]
    return match


@pytest.mark.parametrize("path", ["/v1/quotes", "/v1/quotes/batch"])
def test_a_quote_route_runs_no_dependency_in_the_threadpool(
    make_client: ClientFactory, path: str
) -> None:
    client = make_client()
    quote_route = route(path, "POST")

    in_threadpool = [
        getattr(call, "__qualname__", repr(call))
        for call in calls_of(quote_route.dependant)
        if not (inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
            getattr(call, "__call__", None)  # noqa: B004  # security schemes are instances
        ))
    ]  # fmt: skip

    assert in_threadpool == []
    answer = client.post(path, json=quote_body() if path.endswith("quotes") else
                         {"orders": [quote_body()]})  # fmt: skip
    assert answer.status_code == 201, answer.text


def test_a_key_ring_says_when_its_next_look_up_rereads_the_keys_file(tmp_path: Path) -> None:
    """The event loop asks `is_due` and hands only that look-up's `refresh` to a thread."""
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"pos {sha256(POS_KEY)} Till 1\n", encoding="utf-8")
    now = [0.0]
    ring = KeyRing([], keys_file, check_seconds=1.0, clock=lambda: now[0])
    new_key = "another-pos-key-0123456789"
    keys_file.write_text(f"pos {sha256(new_key)} Till 2\n", encoding="utf-8")

    assert not ring.is_due()  # read at start: the next check is a second away
    now[0] = 1.0
    assert ring.is_due()
    ring.refresh()

    assert not ring.is_due()
    found = ring.identify(new_key)
    assert found is not None and found.name == "Till 2"
    assert ring.identify(POS_KEY) is None
    assert not KeyRing([]).is_due()  # no keys file: never a re-read
    assert inspect.iscoroutinefunction(require("pos"))


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("path", ["/v1/quotes", "/v1/quotes/batch"])
def test_a_quote_route_runs_on_the_event_loop_and_answers_its_own_json(path: str) -> None:
    """A plain `def` route is a thread hop, and a returned model is validated again against
    the route's `response_model`: the quote routes are coroutines that answer a built
    `Response` (the group commit writes in its own thread meanwhile)."""
    quote_route = route(path, "POST")

    assert inspect.iscoroutinefunction(quote_route.endpoint)
    assert inspect.signature(quote_route.endpoint).return_annotation in ("Response", Response)
    assert quote_route.response_model is not None  # documented all the same


@pytest.mark.parametrize("check_seconds", [0.0, 3600.0])
def test_a_quote_asks_the_ledger_for_the_served_model_once_per_check_interval(
    make_client: ClientFactory, check_seconds: float
) -> None:
    """Between the holder's checks a quote takes the bundle held (no thread hop); every
    `model_check_seconds` one looks the ledger's choice up (`deps.quoting_snapshot`)."""
    client = make_client(model_check_seconds=check_seconds)
    holder = client.app.state.bundles  # type: ignore[attr-defined]
    served_model = holder.ledger.served_model
    asked = 0
    read_choice = served_model.get

    def counted_get() -> object:  # the real read, counted
        nonlocal asked
        asked += 1
        return read_choice()

    first = client.post("/v1/quotes", json=quote_body())
    served_model.get = counted_get
    second = client.post("/v1/quotes", json=quote_body())

    assert first.status_code == second.status_code == 201
    assert first.json()["model_version"] == second.json()["model_version"]
    looked_up_again = asked > 0
    assert looked_up_again == (check_seconds == 0.0)

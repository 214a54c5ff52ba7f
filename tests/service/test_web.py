"""The staff web form: built from the schema, accessible, escaping everything typed."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.ledger import Ledger
from service.tables import quotes
from tests.service.conftest import ORDER, STAFF_KEY, ClientFactory

SCRIPT = "<script>alert('x')</script>"
HTML = {"accept": "text/html"}


@pytest.fixture
def staff(make_client: ClientFactory) -> TestClient:
    return make_client(key=STAFF_KEY)


class Page(HTMLParser):
    """The parts of a page the tests look at: labels, controls, options, ids."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.labels: dict[str, str] = {}
        self.controls: dict[str, dict[str, str]] = {}
        self.options: dict[str, list[str]] = {}
        self.ids: dict[str, str] = {}
        self._label: str | None = None
        self._select: str | None = None
        self._open: list[tuple[str, str | None]] = []  # (tag, id) of open elements
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "label":
            self._label = attributes.get("for", "")
            self.labels[self._label] = ""
        if tag in ("input", "select") and "id" in attributes:
            self.controls[attributes["id"]] = {"tag": tag, **attributes}
        if tag == "select":
            self._select = attributes.get("name", "")
            self.options[self._select] = []
        if tag == "option" and self._select is not None:
            self.options[self._select].append(attributes.get("value", ""))
        if tag not in ("input", "meta", "link", "br", "img"):
            self._open.append((tag, attributes.get("id")))
        if "id" in attributes:
            self.ids.setdefault(attributes["id"], "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label = None
        if tag == "select":
            self._select = None
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._label is not None:
            self.labels[self._label] += data
        for _, element_id in self._open:
            if element_id is not None:
                self.ids[element_id] += data


def _form(values: dict[str, Any] | None = None, **extra: str) -> dict[str, str]:
    order = {**ORDER, **(values or {})}
    return {
        **{f"feature:{name}": str(value) for name, value in order.items()},
        "form_token": "tok-1234567890",
        **extra,
    }


def _submit(client: TestClient, data: dict[str, str]) -> Any:
    return client.post("/quotes", data=data, headers=HTML, follow_redirects=False)


def test_the_form_has_a_labelled_control_per_feature(staff: TestClient) -> None:
    response = staff.get("/", headers=HTML)
    page = Page(response.text)

    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    for name in ORDER:
        [control] = [c for c in page.controls.values() if c.get("name") == f"feature:{name}"]
        assert control["id"] in page.labels, name
    assert page.options["feature:store_id"][0] == ""
    assert {"MAN", "LDN-OXF", "NCL"} <= set(page.options["feature:store_id"])
    assert "single_vision" in page.options["feature:lens_type"]
    numbers = [c for c in page.controls.values() if c.get("type") == "number"]
    assert {c["name"] for c in numbers} == {"feature:n_items", "feature:sphere_power"}
    [yes_no] = [c for c in page.controls.values() if c.get("type") == "checkbox"]
    assert yes_no["name"] == "feature:frame_in_stock"
    assert page.labels["reference"].startswith("Order reference")
    assert page.labels["lookup-id"] == "Quote id"


def test_submitting_shows_the_promise_on_its_own_page(staff: TestClient) -> None:
    posted = _submit(staff, _form(reference="PO-9"))
    assert posted.status_code == 303
    location = posted.headers["location"]
    assert re.fullmatch(r"/quotes/Q-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", location)

    shown = staff.get(location, headers=HTML)
    page = Page(shown.text)
    quote = staff.get(f"/v1{location}").json()

    assert shown.status_code == 200
    assert page.ids["quote-id"] == quote["quote_id"]
    assert page.ids["reference-value"] == "PO-9"
    date = quote["promise_date"]
    assert page.ids["promise-date"].endswith(date[:4])
    assert str(int(date[8:])) in page.ids["promise-date"]
    assert html.unescape(page.ids["explanation"]) == quote["explanation"]
    assert 'class="slip"' in shown.text


def test_a_double_submit_gives_one_quote_and_new_values_a_new_one(staff: TestClient) -> None:
    first = _submit(staff, _form()).headers["location"]
    again = _submit(staff, _form()).headers["location"]
    other = _submit(staff, _form({"store_id": "BHM"})).headers["location"]
    assert first == again != other


def test_a_bad_value_shows_the_form_again_with_the_problem(staff: TestClient) -> None:
    response = _submit(staff, _form({"n_items": "two", "sphere_power": "999999"}))
    page = Page(response.text)

    assert response.status_code == 422
    assert "Pairs of glasses must be a number" in response.text
    [n_items] = [c for c in page.controls.values() if c.get("name") == "feature:n_items"]
    assert n_items["value"] == "two" and n_items["aria-invalid"] == "true"
    assert page.ids["form-errors"].strip().startswith("Please check the order")


def test_a_blank_form_or_one_without_a_store_stores_nothing(staff: TestClient) -> None:
    ledger: Ledger = staff.app.state.ledger  # type: ignore[attr-defined]
    blank = _submit(staff, {f"feature:{name}": "" for name in ORDER} | {"form_token": "t-1234567"})
    assert blank.status_code == 422
    assert "choose the Shop" in blank.text
    only_store = _submit(
        staff, {f"feature:{name}": "" for name in ORDER} | {"feature:store_id": "MAN"}
    )
    assert only_store.status_code == 422 and "the form is empty" in only_store.text
    no_store = _submit(staff, _form({"store_id": ""}))
    assert no_store.status_code == 422 and "choose the Shop" in no_store.text
    with ledger.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(quotes)).scalar_one() == 0


def test_the_server_checks_the_model_s_rules_too(staff: TestClient) -> None:
    response = _submit(staff, _form({"sphere_power": "999999"}))
    assert response.status_code == 422
    assert "Sphere (dioptres) 999999 is far from anything this shop has seen" in response.text


def test_everything_typed_comes_back_escaped(staff: TestClient) -> None:
    hostile = {name: SCRIPT for name in ORDER}
    responses = [
        _submit(staff, _form(hostile, reference=SCRIPT, form_token=SCRIPT)),
        _submit(staff, _form(reference=SCRIPT, form_token=SCRIPT)),
        staff.get(f"/quotes/{SCRIPT}", headers=HTML),
        staff.get("/lookup", params={"quote_id": SCRIPT}, headers=HTML),
        staff.get("/performance", params={"days": SCRIPT}, headers=HTML),
    ]
    responses.append(staff.get(responses[1].headers["location"], headers=HTML))
    for response in responses:
        assert response.status_code in (200, 303, 404, 422), response.status_code
        assert "<script>" not in response.text
    assert "&lt;script&gt;" in responses[0].text  # the rejected values, shown back
    assert "&lt;script&gt;" in responses[-1].text  # the stored reference on the slip


def test_hostile_categories_are_escaped_when_accepted_with_a_warning(
    make_client: ClientFactory,
) -> None:
    staff = make_client(key=STAFF_KEY, unknown_categories="warn")
    posted = _submit(staff, _form({"coating": SCRIPT}))
    shown = staff.get(posted.headers["location"], headers=HTML)
    assert "<script>" not in shown.text
    # The warning names the value, escaped.
    assert "coating &#34;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#34;" in shown.text


def test_lookup_finds_a_quote_typed_loosely(staff: TestClient) -> None:
    location = _submit(staff, _form()).headers["location"]
    typed = " " + location.removeprefix("/quotes/").lower() + " "
    found = staff.get("/lookup", params={"quote_id": typed}, follow_redirects=False)
    assert found.status_code == 303 and found.headers["location"] == location
    assert (
        staff.get("/lookup", params={"quote_id": " "}, follow_redirects=False).headers["location"]
        == "/"
    )


def test_an_unknown_quote_is_a_404_page(staff: TestClient) -> None:
    response = staff.get("/quotes/Q-0000-0000-0000", headers=HTML)
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "no quote &#39;Q-0000-0000-0000&#39;" in response.text


def test_the_performance_page_shows_each_segment(staff: TestClient) -> None:
    locations = [
        _submit(staff, _form({"store_id": store})).headers["location"]
        for store in ("LDN-OXF", "NCL")
    ]
    segments = {staff.get(f"/v1{location}").json()["segment"] for location in locations}

    response = staff.get("/performance", params={"days": 7}, headers=HTML)

    assert response.status_code == 200
    for segment in {*segments, "all quotes"}:
        assert f'<th scope="row">{segment}</th>' in response.text
    # Nothing is due yet: the verdict waits for decided promises.
    assert "too few outcomes yet" in response.text


def test_a_form_posted_from_another_site_is_refused(staff: TestClient) -> None:
    cross = staff.post(
        "/quotes",
        data=_form(),
        headers={**HTML, "Origin": "https://evil.test"},
        follow_redirects=False,
    )
    fetch = staff.post(
        "/quotes",
        data=_form(),
        headers={**HTML, "Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    same = staff.post(
        "/quotes",
        data=_form(),
        headers={**HTML, "Origin": "http://localhost"},  # the client's own origin
        follow_redirects=False,
    )
    assert cross.status_code == fetch.status_code == 403
    assert same.status_code == 303


def test_the_slip_prints_alone(staff: TestClient) -> None:
    css = staff.get("/static/style.css").text
    assert "@media print" in css
    assert re.search(r"\.no-print[^}]*display:\s*none", css)

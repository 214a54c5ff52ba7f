"""Quoting invariants for random orders and calendars (hypothesis), and the explanation."""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.calendar import BusinessCalendar, CalendarSpec
from models.features import fit_schema
from models.policies import CalibrationSlice, ConformalPolicy, FixedPolicy
from models.quoting import Order, QuoteEngine, quote, quote_batch
from models.regressor import DurationRegressor
from tests.models.references import is_open_day

ZONES = ["UTC", "Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]
COUNTRIES = [None, "GB", "US", "DE"]


@functools.cache
def calendar_for(
    zone: str, weekdays: tuple[int, ...], country: str | None, cutoff_hour: int | None
) -> BusinessCalendar:
    spec = CalendarSpec(
        timezone=zone,
        open_weekdays=weekdays,
        holidays_country=country,
        cutoff=None if cutoff_hour is None else dt.time(cutoff_hour),
    )
    return BusinessCalendar(spec, first_year=2023, last_year=2028)


@functools.cache
def tiny_engine() -> QuoteEngine:
    """A real model trained in code on 2,000 synthetic orders (lens type drives duration)."""
    rng = np.random.default_rng(0)
    n = 2000
    lens = rng.choice(["sv", "prog"], n)
    items = rng.integers(1, 4, n).astype(float)
    hours = np.where(lens == "prog", 120.0, 48.0) * rng.lognormal(0, 0.3, n) + 4 * items
    columns = {"lens": lens.astype(object), "items": items}
    schema = fit_schema(columns, ["lens"], ["items"])
    calendar = calendar_for("UTC", (0, 1, 2, 3, 4, 5, 6), None, None)
    placed = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp() + rng.uniform(0, 3e7, n)
    matrix = schema.encode(columns, calendar.local_parts(placed))
    model = DurationRegressor(max_iter=40).fit(matrix, hours, schema.categorical_mask)
    expected = model.predict_hours(matrix)
    policy = ConformalPolicy(target_late_rate=0.05, segments=("lens",)).fit(
        CalibrationSlice(expected, hours, np.zeros(n, dtype=bool), [(v,) for v in lens.tolist()])
    )
    return QuoteEngine(
        schema=schema,
        expected_trees=model.compiled(),
        quantile_trees=None,
        buffer_rule=policy.rule,
        policy_name="conformal",
        calendar=calendar,
        unit="day",
        target_late_rate=0.05,
        segments=("lens",),
    )


def engine_with(calendar: BusinessCalendar, unit: str, buffer_hours: float) -> QuoteEngine:
    fixed = FixedPolicy(target_late_rate=0.05, fixed_buffer_hours=buffer_hours)
    fixed.fit(CalibrationSlice(np.ones(1), np.ones(1), np.zeros(1, bool), [()]))
    return replace(
        tiny_engine(),
        calendar=calendar,
        unit=unit,  # type: ignore[arg-type]
        buffer_rule=fixed.rule,
        policy_name="fixed",
    )


calendars = st.builds(
    calendar_for,
    st.sampled_from(ZONES),
    st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True).map(
        lambda days: tuple(sorted(days))
    ),
    st.sampled_from(COUNTRIES),
    st.one_of(st.none(), st.integers(8, 20)),
)
order_times = st.floats(
    dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp(),
    dt.datetime(2026, 12, 31, tzinfo=dt.UTC).timestamp(),
)
orders = st.tuples(
    st.sampled_from(["sv", "prog", "new-lens"]), st.one_of(st.none(), st.floats(0, 6)), order_times
)
units = st.sampled_from(["day", "hour", "minute"])


def columns_of(
    batch: list[tuple[str, float | None, float]],
) -> tuple[dict[str, object], np.ndarray]:
    lens = np.array([b[0] for b in batch], dtype=object)
    items = np.array([np.nan if b[1] is None else b[1] for b in batch])
    return {"lens": lens, "items": items}, np.array([b[2] for b in batch])


@settings(max_examples=150, deadline=None)
@given(
    calendars,
    units,
    st.lists(orders, min_size=1, max_size=20),
    st.floats(0, 500),
    st.floats(0, 500),
)
def test_promises_are_never_early_land_on_open_days_and_grow_with_the_buffer(
    calendar: BusinessCalendar,
    unit: str,
    batch: list[tuple[str, float | None, float]],
    small: float,
    extra: float,
) -> None:
    columns, placed = columns_of(batch)
    short = quote_batch(engine_with(calendar, unit, small), columns, placed)
    long = quote_batch(engine_with(calendar, unit, small + extra), columns, placed)
    assert (short.deadline_s >= short.expected_completion_s).all()
    assert (short.clock_start_s >= placed).all()
    assert (long.deadline_s >= short.deadline_s).all()
    for deadline in short.deadline_s:
        promised = dt.datetime.fromtimestamp(deadline, tz=dt.UTC).astimezone(calendar.zone)
        if unit == "day":  # the deadline is the midnight ending the promised day
            promised -= dt.timedelta(seconds=1)
        assert is_open_day(calendar, promised.date())


@settings(max_examples=60, deadline=None)
@given(st.lists(orders, min_size=1, max_size=20), st.floats(0.01, 0.3), st.floats(0.01, 0.3))
def test_a_lower_target_late_rate_never_shortens_a_promise(
    batch: list[tuple[str, float | None, float]], a: float, b: float
) -> None:
    engine = tiny_engine()
    looser, stricter = max(a, b), min(a, b)
    rng = np.random.default_rng(1)
    expected = np.full(500, 50.0)
    needed = expected + rng.normal(0, 20, 500)
    cal = CalibrationSlice(expected, needed, np.zeros(500, bool), [("sv",)] * 500)
    columns, placed = columns_of(batch)
    deadlines = []
    for target in (looser, stricter):
        policy = ConformalPolicy(target_late_rate=target, segments=("lens",)).fit(cal)
        deadlines.append(
            quote_batch(replace(engine, buffer_rule=policy.rule), columns, placed).deadline_s
        )
    assert (deadlines[1] >= deadlines[0]).all()


def test_day_promises_across_the_clock_changes_end_at_real_local_midnight() -> None:
    london = calendar_for("Europe/London", (0, 1, 2, 3, 4, 5, 6), None, None)
    engine = engine_with(london, "day", 0.0)
    for placed in ("2025-03-29T12:00:00+00:00", "2025-10-25T12:00:00+00:00"):
        order = Order({"lens": "sv", "items": 1.0}, dt.datetime.fromisoformat(placed))
        [promise] = quote(engine, [order])
        local_end = promise.deadline_at.astimezone(london.zone)
        assert (local_end.hour, local_end.minute) == (0, 0)
        assert promise.deadline_at >= promise.expected_completion


def test_a_quote_explains_itself() -> None:
    engine = tiny_engine()
    order = Order({"lens": "prog", "items": 2.0}, dt.datetime(2025, 1, 6, 10, tzinfo=dt.UTC))
    [promise] = quote(engine, [order])
    assert promise.segment == "prog"
    assert promise.buffer_hours > 0
    assert promise.explanation.startswith("We expect ")
    assert "so that about 95 in 100 such orders are ready on time" in promise.explanation
    assert promise.promise_date >= order.ordered_at.date()
    assert promise.promise_units >= 1


def test_a_promise_beyond_what_customers_accept_is_given_but_flagged() -> None:
    engine = replace(tiny_engine(), max_promise_units=4.0)
    placed = dt.datetime(2025, 1, 6, 10, tzinfo=dt.UTC)
    short, long = quote(
        engine,
        [
            Order({"lens": "sv", "items": 1.0}, placed),
            Order({"lens": "prog", "items": 3.0}, placed),
        ],
    )
    assert short.promise_units <= 4 and not short.exceeds_max_promise
    assert long.promise_units > 4 and long.exceeds_max_promise
    assert "longer than the 4 days customers accept: offer an alternative" in long.explanation


@functools.cache
def shop_calendar(locale: str | None = None) -> BusinessCalendar:
    """A London shop open Monday to Saturday with England's bank holidays and a 16:00 cut-off."""
    spec = CalendarSpec(
        timezone="Europe/London",
        open_weekdays=(0, 1, 2, 3, 4, 5),
        holidays_country="GB",
        holidays_subdivision="ENG",
        cutoff=dt.time(16),
        opens=dt.time(9),
        locale=locale,
    )
    return BusinessCalendar(spec, first_year=2025, last_year=2027)


def _explained(placed: str, unit: str = "day", locale: str | None = None) -> str:
    engine = engine_with(shop_calendar(locale), unit, 0.0)
    order = Order({"lens": "sv", "items": 1.0}, dt.datetime.fromisoformat(placed))
    [promise] = quote(engine, [order])
    return promise.explanation


def test_the_explanation_names_the_cut_off_that_moved_the_clock() -> None:
    # Wednesday 2 December 2026, 17:30 in London: after the cut-off.
    text = _explained("2026-12-02T17:30:00+00:00")
    assert "The order came in after the 16:00 cut-off, so the clock starts Thu, 3 Dec 2026." in text


def test_the_explanation_names_the_closed_weekday_that_moved_the_clock() -> None:
    text = _explained("2026-12-06T11:00:00+00:00")  # a Sunday: the shop is closed
    assert (
        "The order came in on Sunday, when the shop is closed, so the clock starts "
        "Mon, 7 Dec 2026." in text
    )


def test_the_explanation_names_the_bank_holiday_that_moved_the_clock() -> None:
    text = _explained("2026-12-25T11:00:00+00:00")  # Friday, Christmas Day
    assert "The order came in on Christmas Day (bank holiday), so the clock starts " in text
    # Boxing Day is a Saturday, so its bank holiday is Monday 28th: the clock starts Tuesday.
    assert "so the clock starts Tue, 29 Dec 2026." in text


def test_the_explanation_names_opening_time_for_an_early_order() -> None:
    text = _explained("2026-12-02T07:00:00+00:00")
    assert "The order came in before the shop opens at 09:00, so the clock starts Wed," in text


def test_the_explanation_names_the_closed_days_a_promise_skips() -> None:
    # Ordered Thursday 24 December 2026 at 10:00, expected in two days: Saturday 26th is Boxing
    # Day, then Sunday, then Monday 28th the substitute bank holiday.
    text = _explained("2026-12-24T10:00:00+00:00")
    assert "we promise 5 days (Tue, 29 Dec 2026)" in text
    assert "The promise skips 3 closed days (Boxing Day, Sunday and Boxing Day (observed))." in text


def test_an_on_time_order_gives_no_reason_for_its_clock() -> None:
    text = _explained("2026-12-02T10:00:00+00:00")
    assert "The order came in" not in text


def test_the_explanation_writes_its_dates_in_the_shops_locale() -> None:
    text = _explained("2026-12-02T17:30:00+00:00", locale="pt_BR")
    assert "so the clock starts qui., 3 de dez. de 2026." in text
    assert "de 2026)" in text  # the promised day, too


def test_an_hour_promise_writes_its_day_and_time() -> None:
    text = _explained("2026-12-02T10:00:00+00:00", unit="hour")
    assert re.search(
        r"we promise \d+ hours \((Mon|Tue|Wed|Thu|Fri|Sat), \d{1,2} Dec 2026, \d\d:00\)", text
    )

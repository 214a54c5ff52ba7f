"""The one feature function: labels, codes, ranges, and the checks a quote request gets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.calendar import BusinessCalendar, CalendarSpec
from models.errors import InputError
from models.features import TIME_FEATURES, FeatureSchema, category_label, count_problem, fit_schema


def test_category_labels_agree_across_types() -> None:
    assert category_label(3) == category_label(3.0) == category_label("3") == "3"
    assert category_label(None) is None and category_label(math.nan) is None
    assert category_label("") is None
    assert category_label(2.5) == "2.5"


def test_encoding_lays_out_codes_numbers_then_time_features() -> None:
    columns = {
        "store": np.array(["A", "B", "A", None] * 5, dtype=object),
        "items": np.array([1.0, 2.0, np.nan, 3.0] * 5),
    }
    schema = fit_schema(columns, ["store"], ["items"])
    assert schema.column_names == ["store", "items", *TIME_FEATURES]
    assert schema.categorical_mask.tolist() == [True] + [False] * (1 + len(TIME_FEATURES))
    calendar = BusinessCalendar(CalendarSpec(timezone="Europe/London"), 2024, 2026)
    placed = np.full(4, 1_718_000_000.0)  # 2024-06-10 06:13:20 UTC, 07:13:20 in London
    matrix = schema.encode(
        {
            "store": np.array(["A", "B", "Z", None], dtype=object),
            "items": np.array([1.0, np.nan, 5.0, 2.0]),
        },
        calendar.local_parts(placed),
    )
    codes = matrix[:, 0]
    assert codes[0] == schema.categorical[0].codes["A"] and not math.isnan(codes[1])
    assert math.isnan(codes[2]) and math.isnan(codes[3])  # unseen and missing
    assert math.isnan(matrix[1, 1]) and matrix[2, 1] == 5.0
    assert matrix[0, 2] == 0.0  # Monday
    assert matrix[0, 3] == pytest.approx(7 + 13 / 60 + 20 / 3600)  # local hour
    # The quote path writes the time columns in place: the same matrix.
    columns = {"store": ["A", "B", "Z", None], "items": [1.0, np.nan, 5.0, 2.0]}
    np.testing.assert_array_equal(schema.encode_at(columns, placed, calendar), matrix)


def test_rare_categories_are_known_but_modelled_as_missing() -> None:
    values = np.array(["common"] * 50 + ["rare"] * 2, dtype=object)
    schema = fit_schema({"kind": values}, ["kind"], [])
    [kind] = schema.categorical
    assert kind.categories == ("common",) and kind.known == {"common", "rare"}


def test_check_order_names_the_field_of_each_mistake() -> None:
    columns = {"store": np.array(["A", "B"] * 10, dtype=object), "items": np.linspace(1.0, 3.0, 20)}
    schema = fit_schema(columns, ["store"], ["items"])
    clean, warnings = schema.check_order({"store": "A", "items": 2})
    assert clean == {"store": "A", "items": 2.0} and warnings == []
    _, warnings = schema.check_order({"store": "A", "items": 3.5})
    assert "outside the training range" in warnings[0]
    _, warnings = schema.check_order({"store": "A", "items": None})
    assert "items is missing" in warnings[0]
    mistakes = [
        ({"store": "A"}, "items", "missing"),
        ({"store": "A", "items": 1, "colour": "red"}, "colour", "unknown feature"),
        ({"store": "Z", "items": 1}, "store", "never seen in training"),
        ({"store": "A", "items": "two"}, "items", "must be a number"),
        ({"store": "A", "items": 99.0}, "items", "far outside the training range"),
        ({"store": "A", "items": math.inf}, "items", "finite"),
        ({"store": ["A"], "items": 1}, "store", "must be text"),
    ]
    for features, field, message in mistakes:
        with pytest.raises(InputError, match=message) as caught:
            schema.check_order(features)
        assert caught.value.field == field
    _, warnings = schema.check_order({"store": "Z", "items": 1}, strict_categories=False)
    assert "treated as missing" in warnings[0]


def _counted_schema() -> FeatureSchema:
    columns = {
        "items": np.array([1.0, 2.0, 3.0, 4.0] * 5),
        "in_stock": np.array([0.0, 1.0] * 10),
        "power": np.array([0.5, 1.25, 2.0, 4.0] * 5),
    }
    return fit_schema(columns, [], ["items", "in_stock", "power"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("items", 1.5, "items must be a whole number, like 2"),
        ("items", -1, "items cannot be less than 1"),
        ("items", 0, "items cannot be less than 1"),
        ("in_stock", 0.5, "in_stock must be 0 (no) or 1 (yes), not 0.5"),
        ("in_stock", 2, "in_stock must be 0 (no) or 1 (yes), not 2"),
    ],
)
def test_a_count_refuses_what_it_cannot_be(field: str, value: float, message: str) -> None:
    schema = _counted_schema()
    order = {"items": 2, "in_stock": 1, "power": 1.0} | {field: value}
    with pytest.raises(InputError) as caught:
        schema.check_order(order)
    assert caught.value.field == field
    assert str(caught.value) == message


def test_counts_take_whole_numbers_and_other_numbers_fractions() -> None:
    schema = _counted_schema()
    clean, warnings = schema.check_order({"items": 5.0, "in_stock": 0, "power": 1.7})
    assert clean == {"items": 5.0, "in_stock": 0.0, "power": 1.7}
    assert warnings == ["items = 5 is outside the training range [1, 4]"]
    [items, _, power] = schema.numeric
    assert count_problem(items, 2.5, "Pairs of glasses") == (
        "Pairs of glasses must be a whole number, like 2"
    )
    assert count_problem(power, 0.3) is None  # training saw fractions

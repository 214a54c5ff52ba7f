"""The spec loader refuses every mistake with the file and key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.errors import SpecError
from training.spec import load_spec

GOOD = """
[dataset]
path = "orders.csv"
id = "order_id"
ordered_at = "ordered_at"
fulfilled_at = "fulfilled_at"
timezone = "Europe/London"

[features]
categorical = ["store_id"]
numeric = ["n_items"]

[quote]
unit = "day"
target_late_rate = 0.05
segments = ["store_id"]

[calendar]
open_weekdays = [0, 1, 2, 3, 4, 5]
holidays = "GB"
subdivision = "ENG"
cutoff = "16:00"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_spec_loads_with_its_calendar(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.data_path == (tmp_path / "orders.csv").resolve()
    calendar = spec.calendar_spec()
    assert calendar.timezone == "Europe/London"
    assert calendar.open_weekdays == (0, 1, 2, 3, 4, 5)
    assert calendar.cutoff is not None and calendar.cutoff.hour == 16
    assert spec.policy_config().segments == ("store_id",)
    assert spec.policy_config("adaptive", 0.1).target_late_rate == 0.1
    assert calendar.locale == "en_GB"  # from the holidays' country


def test_the_calendar_locale_is_the_given_one_or_the_holiday_countrys(tmp_path: Path) -> None:
    given = load_spec(write(tmp_path, GOOD.replace("[calendar]", '[calendar]\nlocale = "pt-BR"')))
    assert given.calendar_spec().locale == "pt_BR"
    brazil = load_spec(
        write(tmp_path, GOOD.replace('holidays = "GB"\nsubdivision = "ENG"', 'holidays = "BR"'))
    )
    assert brazil.calendar_spec().locale == "pt_BR"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('unit = "day"', 'unit = "fortnight"'), "[quote] unit"),
        (("target_late_rate = 0.05", "target_late_rate = 5"), "[quote] target_late_rate"),
        (('timezone = "Europe/London"', 'timezone = "Mars/Olympus"'), "unknown time zone"),
        (('holidays = "GB"', 'holidays = "XX"'), "unknown country code"),
        (('subdivision = "ENG"', 'subdivision = "ZZZ"'), "subdivision 'ZZZ'"),
        (('cutoff = "16:00"', 'cutoff = "4pm"'), "not a time of day"),
        (('segments = ["store_id"]', 'segments = ["colour"]'), "must be categorical features"),
        (('numeric = ["n_items"]', 'numeric = ["store_id"]'), "features listed twice"),
        (('id = "order_id"', 'idd = "order_id"'), "[dataset] id"),
        (("[calendar]", "[calendar]\nopen_weekdays_typo = 1"), "unknown key"),
        (("[calendar]", "[model]\nhistory_days = 0\n\n[calendar]"), "[model] history_days"),
        (("[calendar]", "[model]\nhistory_days = -30\n\n[calendar]"), "greater than 0"),
        (("[calendar]", '[calendar]\nlocale = "klingon"'), "[calendar] locale: unknown locale"),
    ],
)
def test_each_mistake_names_file_and_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(write(tmp_path, "[dataset\npath ="))
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "absent.toml")


def test_data_path_outside_the_spec_folder_is_refused(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD.replace('"orders.csv"', '"../../etc/passwd"')))
    with pytest.raises(SpecError, match="outside the spec's folder"):
        _ = spec.data_path
    absolute = load_spec(write(tmp_path, GOOD.replace('"orders.csv"', f'"{tmp_path}/o.csv"')))
    assert absolute.data_path == tmp_path / "o.csv"

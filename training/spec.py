"""The dataset spec: one TOML file that describes an order table and how to quote it.

`load_spec(path)` returns a validated `Spec`; every mistake a data scientist can make in the
file is a `SpecError` naming the file, the table and the key.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.calendar import CalendarSpec
from models.dates import check_locale, default_locale
from models.errors import SpecError
from models.policies import POLICY_NAMES, BufferPolicy, make_policy
from models.units import HOURS_PER_UNIT

PolicyName = Literal["fixed", "proportional", "quantile", "conformal", "adaptive"]
assert set(POLICY_NAMES) == {"fixed", "proportional", "quantile", "conformal", "adaptive"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSection(_Section):
    path: str
    id: str
    ordered_at: str
    fulfilled_at: str
    timezone: str = "UTC"
    company_promise: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _check_zone(value)


class FeaturesSection(_Section):
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)


class QuoteSection(_Section):
    unit: Literal["day", "hour", "minute"] = "day"
    target_late_rate: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    policy: PolicyName = "adaptive"
    segments: list[str] = Field(default_factory=list)
    relative: bool = False
    fixed_buffer: Annotated[float, Field(ge=0.0)] | None = None
    proportional_buffer: Annotated[float, Field(ge=0.0)] | None = None
    max_promise: Annotated[float, Field(gt=0.0)] | None = None
    min_segment_size: Annotated[int, Field(ge=20)] = 200
    control_gain: Annotated[float, Field(ge=0.0, le=20.0)] = 1.0
    nowcast: bool = True


class CalendarSection(_Section):
    timezone: str | None = None
    open_weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4, 5, 6], min_length=1
    )
    holidays: str | None = None
    subdivision: str | None = None
    cutoff: str | None = None
    opens: str = "00:00"
    # How the staff pages and the slip write dates, e.g. "pt_BR"; default: the locale of the
    # `holidays` country (BR -> pt_BR, GB -> en_GB; en_GB without one).
    locale: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else _check_zone(value)

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_locale(value)
        except SpecError as err:
            raise ValueError(str(err)) from err

    @field_validator("cutoff", "opens")
    @classmethod
    def _clock_time(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_clock(value)
        return value

    @model_validator(mode="after")
    def _known_holidays(self) -> CalendarSection:
        if self.holidays is None:
            if self.subdivision is not None:
                raise ValueError("subdivision is given without a holidays country")
            return self
        supported = holidays.list_supported_countries()
        if self.holidays not in supported:
            raise ValueError(f"holidays: unknown country code {self.holidays!r}")
        if self.subdivision is not None and self.subdivision not in supported[self.holidays]:
            known = ", ".join(supported[self.holidays]) or "none"
            raise ValueError(
                f"subdivision {self.subdivision!r} is not one of {self.holidays}'s: {known}"
            )
        return self


Label = Annotated[str, Field(min_length=1, max_length=80)]


class LabelsSection(_Section):
    """Words for staff and customers: a feature's label, and its option names by raw value
    (`[labels.options.coating] anti_reflective = "Anti-reflective"`); a name left out is shown
    as a readable form of the raw code."""

    features: dict[str, Label] = Field(default_factory=dict)
    options: dict[str, dict[str, Label]] = Field(default_factory=dict)


class ShopSection(_Section):
    """The shop's name and contact, printed on the customer's slip (each optional)."""

    name: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    phone: Annotated[str, Field(min_length=1, max_length=40)] | None = None


class ModelSection(_Section):
    max_iter: Annotated[int, Field(ge=10, le=2000)] = 300
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    max_leaf_nodes: Annotated[int, Field(ge=2, le=255)] = 31
    min_samples_leaf: Annotated[int, Field(ge=1)] = 40
    calibration_share: Annotated[float, Field(gt=0.05, lt=0.8)] = 0.15
    settle_quantile: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.99
    random_state: int = 0
    # Learn only from the orders placed within this many days before the newest one (None: the
    # whole history). A Parquet table's older row groups are then never decoded
    # (`training.data`), so a long history costs nothing to keep in the file.
    history_days: Annotated[float, Field(gt=0.0)] | None = None


# How often production refits the model and recalibrates the buffer, by unit: weekly for date
# promises, daily for hour and minute promises. The back-test replays the same cadence.
DEFAULT_REFIT_DAYS: dict[str, float] = {"day": 7.0, "hour": 1.0, "minute": 1.0}


class BacktestSection(_Section):
    folds: Annotated[int, Field(ge=1, le=50)] = 5
    horizon_days: Annotated[float, Field(gt=0.0)] | None = None
    # Inside each fold the engine is refitted (model and buffer) every `refit_every` days and
    # recalibrated (buffer only, same model) every `recalibrate_every` days, as a service
    # retrained on a schedule would be. None: the unit's default (DEFAULT_REFIT_DAYS).
    refit_every: Annotated[float, Field(gt=0.0)] | None = None
    recalibrate_every: Annotated[float, Field(gt=0.0)] | None = None


class Spec(_Section):
    """A validated spec; `source` is the file it came from (paths are relative to it)."""

    dataset: DatasetSection
    features: FeaturesSection = Field(default_factory=FeaturesSection)
    quote: QuoteSection = Field(default_factory=QuoteSection)
    calendar: CalendarSection = Field(default_factory=CalendarSection)
    model: ModelSection = Field(default_factory=ModelSection)
    backtest: BacktestSection = Field(default_factory=BacktestSection)
    labels: LabelsSection = Field(default_factory=LabelsSection)
    shop: ShopSection = Field(default_factory=ShopSection)
    source: Path = Path("spec.toml")

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        features = [*self.features.categorical, *self.features.numeric]
        duplicated = sorted({name for name in features if features.count(name) > 1})
        if duplicated:
            raise ValueError(f"features listed twice: {', '.join(duplicated)}")
        reserved = {self.dataset.id, self.dataset.ordered_at, self.dataset.fulfilled_at}
        clash = sorted(reserved & set(features))
        if clash:
            raise ValueError(f"features may not be the id or a timestamp column: {clash}")
        unknown_segments = [s for s in self.quote.segments if s not in self.features.categorical]
        if unknown_segments:
            raise ValueError(
                f"[quote] segments {unknown_segments} must be categorical features "
                f"(categorical = {self.features.categorical})"
            )
        unlabelled = sorted({*self.labels.features, *self.labels.options} - set(features))
        if unlabelled:
            raise ValueError(f"[labels] names features the spec does not list: {unlabelled}")
        numeric_options = sorted(set(self.labels.options) & set(self.features.numeric))
        if numeric_options:
            raise ValueError(
                f"[labels.options] are for categorical features; {numeric_options} are numeric"
            )
        return self

    @property
    def data_path(self) -> Path:
        """The order table's path: relative to the spec's folder, and never outside it."""
        given = Path(self.dataset.path)
        if given.is_absolute():
            return given
        folder = self.source.parent.resolve()
        resolved = (folder / given).resolve()
        if not resolved.is_relative_to(folder):
            raise SpecError(
                f"{self.source}: [dataset] path {self.dataset.path!r} points outside the "
                f"spec's folder {folder}; give an absolute path if that is what you mean"
            )
        return resolved

    def with_data(self, path: Path) -> Spec:
        """The same spec reading another order table (the command line's `--data`)."""
        dataset = self.dataset.model_copy(update={"path": str(Path(path).resolve())})
        return self.model_copy(update={"dataset": dataset})

    @property
    def refit_days(self) -> tuple[float, float]:
        """(refit, recalibrate) cadence in days; recalibration is never rarer than refitting."""
        default = DEFAULT_REFIT_DAYS[self.quote.unit]
        refit = self.backtest.refit_every or default
        recalibrate = self.backtest.recalibrate_every or min(refit, default)
        return refit, min(refit, recalibrate)

    @property
    def feature_names(self) -> list[str]:
        return [*self.features.categorical, *self.features.numeric]

    def calendar_spec(self) -> CalendarSpec:
        """The business calendar for the core (zone falls back to the dataset's)."""
        section = self.calendar
        return CalendarSpec(
            timezone=section.timezone or self.dataset.timezone,
            open_weekdays=tuple(sorted(set(section.open_weekdays))),
            holidays_country=section.holidays,
            holidays_subdivision=section.subdivision,
            cutoff=None if section.cutoff is None else _parse_clock(section.cutoff),
            opens=_parse_clock(section.opens),
            locale=section.locale or default_locale(section.holidays),
        )

    def policy_config(self, policy: str | None = None, target: float | None = None) -> PolicyChoice:
        """The buffer policy `[quote]` chooses, optionally another policy or target (back-tests);
        `SpecError` for an unknown policy."""
        section = self.quote
        name = policy or section.policy
        settings: dict[str, Any] = {
            "target_late_rate": section.target_late_rate if target is None else target,
            "segments": tuple(section.segments),
            "relative": section.relative,
            "fixed_buffer_hours": _units_to_hours(section.fixed_buffer, section.unit),
            "proportional_buffer": section.proportional_buffer,
            "control_gain": section.control_gain,
            "use_nowcast": section.nowcast,
        }
        takes = make_policy(name).get_params()  # the settings this kind of policy has
        return PolicyChoice(
            name=name,
            params={key: value for key, value in settings.items() if key in takes},
            segments=tuple(section.segments),
            min_segment_size=section.min_segment_size,
        )


@dataclass(frozen=True, slots=True)
class PolicyChoice:
    """The buffer policy a spec chooses: its kind and constructor parameters, and the segments
    the engine and its risk distributions use whatever the policy (`min_segment_size`: the
    fewest calibration orders a risk segment of its own needs, `models.risk`)."""

    name: str
    params: Mapping[str, Any]
    segments: tuple[str, ...]
    min_segment_size: int

    @property
    def target_late_rate(self) -> float:
        return float(self.params["target_late_rate"])

    def policy(self) -> BufferPolicy:
        """An unfitted policy of this kind with these parameters."""
        return make_policy(self.name, **self.params)

    def calibrating(self) -> PolicyChoice:
        """The same choice with every buffer calibrated to the target (`BufferPolicy.calibrating`:
        a fixed or proportional buffer given in the spec is dropped)."""
        return replace(self, params=self.policy().calibrating().get_params())

    @property
    def calibrates_all(self) -> bool:
        """Whether the policy calibrates every buffer already (nothing given by hand)."""
        return bool(self.policy().get_params() == self.calibrating().params)


def load_spec(path: Path | str) -> Spec:
    """Read and validate a spec file; any mistake is a `SpecError` naming file and key."""
    path = Path(path)
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise SpecError(f"{path}: no such spec file") from err
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not a UTF-8 text file ({err.reason})") from err
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML: {err}") from err
    except OSError as err:
        raise SpecError(f"{path}: cannot read the spec: {err.strerror}") from err
    return parse_spec(raw, path)


def parse_spec(raw: dict[str, Any], source: Path) -> Spec:
    """Validate an already-parsed spec mapping (the `source` names it in errors)."""
    try:
        return Spec.model_validate({**raw, "source": source})
    except ValidationError as err:
        raise SpecError(f"{source}: {_describe(err)}") from err


def _describe(err: ValidationError) -> str:
    problems = []
    for item in err.errors():
        location = [str(part) for part in item["loc"]]
        where = f"[{location[0]}] {'.'.join(location[1:])}" if len(location) > 1 else ""
        if not location:
            where = ""
        elif len(location) == 1:
            where = f"[{location[0]}]" if location[0] in Spec.model_fields else location[0]
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (is it misspelt?)"
        problems.append(f"{where}: {message}".strip(": "))
    return "; ".join(problems)


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like 'Europe/London')"
        ) from err
    return name


def _parse_clock(text: str) -> dt.time:
    try:
        return dt.time.fromisoformat(text)
    except ValueError as err:
        raise ValueError(f"{text!r} is not a time of day like '16:00'") from err


def _units_to_hours(value: float | None, unit: str) -> float | None:
    return None if value is None else value * HOURS_PER_UNIT[unit]

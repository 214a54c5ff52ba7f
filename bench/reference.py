"""The naive reference Promise is measured against: what a straightforward implementation does.

One scikit-learn `Pipeline` (a pandas feature step, then the engine's own fitted booster) is
asked for each order with a one-row DataFrame, the buffer comes from the policy's array API,
and the calendar is pandas date arithmetic with a holiday set. Same model, same policy, same
calendar rules as the product, none of the product's engineering. The two agree on all but a
few in 10,000 orders: pandas computes the local hour with its own rounding, which now and then
falls on the other side of a split threshold (the benchmark reports the agreement).

It lives here, never in `models/`: it is a yardstick, not a second quoting path. Day promises
only (the sample spec's unit).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, cast

import holidays
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from models.calendar import DAYS_TO_CLOSED_CAP
from models.quoting import segment_labels
from models.trained import TrainedModel

FloatArray = NDArray[np.float64]


class NaiveQuoter:
    """Quotes like a first implementation would: DataFrame in, pandas dates out.

    It needs the fitted booster, so it takes the pickled `TrainedModel`
    (`Registry.load_model`), not the serving form."""

    def __init__(self, model: TrainedModel) -> None:
        engine = model.engine
        if engine.unit != "day":
            raise ValueError("the naive reference quotes day promises only")
        self.engine = engine
        spec = engine.calendar.spec
        self.zone = spec.timezone
        self.open_weekdays = set(spec.open_weekdays)
        self.cutoff = spec.cutoff
        self.opens = spec.opens
        years = range(engine.calendar.first_year - 1, engine.calendar.last_year + 2)
        self.holidays: set[dt.date] = (
            set(
                holidays.country_holidays(
                    spec.holidays_country, subdiv=spec.holidays_subdivision, years=years
                )
            )
            if spec.holidays_country
            else set()
        )
        self.pipeline = Pipeline(
            [
                ("features", FunctionTransformer(self.features)),
                ("model", model.regressor.booster_),
            ]
        )

    # ------------------------------------------------------------------ one order

    def quote(self, features: Mapping[str, Any], ordered_at: dt.datetime) -> dict[str, Any]:
        """One order: (expected hours, buffer hours, deadline) from a one-row DataFrame."""
        frame = pd.DataFrame([{**features, "ordered_at": ordered_at}])
        expected = np.exp(self.pipeline.predict(frame))
        labels = segment_labels(
            {name: frame[name].tolist() for name in self.engine.segments},
            self.engine.segments,
            1,
        )
        buffer = self.engine.buffer_rule.buffers(expected, labels).buffer_hours
        local = pd.Timestamp(ordered_at).tz_convert(self.zone)
        start = self._clock_start(local)
        raw = start + pd.Timedelta(hours=float(expected[0] + buffer[0]))
        promised = raw.tz_convert(self.zone).date()
        while not self.is_open(promised):
            promised += dt.timedelta(days=1)
        deadline = self._local(promised + dt.timedelta(days=1), dt.time(0))
        return {
            "expected_hours": float(expected[0]),
            "buffer_hours": float(buffer[0]),
            "deadline": deadline.tz_convert("UTC"),
            "promise_date": promised,
        }

    def _clock_start(self, local: pd.Timestamp) -> pd.Timestamp:
        day = local.date()
        if self.is_open(day) and (self.cutoff is None or local < self._local(day, self.cutoff)):
            return max(local, self._local(day, self.opens))
        day += dt.timedelta(days=1)
        while not self.is_open(day):
            day += dt.timedelta(days=1)
        return self._local(day, self.opens)

    def _local(self, day: dt.date, clock: dt.time) -> pd.Timestamp:
        return pd.Timestamp(dt.datetime.combine(day, clock)).tz_localize(
            self.zone, ambiguous=False, nonexistent="shift_forward"
        )

    def is_open(self, day: dt.date) -> bool:
        return day.weekday() in self.open_weekdays and day not in self.holidays

    # ------------------------------------------------------------------ features

    def features(self, frame: pd.DataFrame) -> FloatArray:
        """The model matrix from a DataFrame of features and `ordered_at` (UTC), with pandas."""
        out = pd.DataFrame(index=frame.index)
        for cat in self.engine.schema.categorical:
            out[cat.name] = frame[cat.name].map(dict(cat.codes)).astype(float)
        for num in self.engine.schema.numeric:
            out[num.name] = pd.to_numeric(frame[num.name]).astype(float)
        local = pd.to_datetime(frame["ordered_at"], utc=True).dt.tz_convert(self.zone)
        out["weekday"] = local.dt.day_of_week.astype(float)
        out["hour"] = (
            local.dt.hour + local.dt.minute / 60 + local.dt.second / 3600
        ) + local.dt.microsecond / 3.6e9
        out["month"] = local.dt.month.astype(float)
        out["day_of_year"] = local.dt.day_of_year.astype(float)
        dates = local.dt.date
        out["days_to_closed"] = dates.map(
            {day: self._days_to_closed(day) for day in dates.unique()}
        ).astype(float)
        return out.to_numpy(dtype=np.float64)

    def _days_to_closed(self, day: dt.date) -> float:
        for ahead in range(DAYS_TO_CLOSED_CAP):
            if not self.is_open(day + dt.timedelta(days=ahead)):
                return float(ahead)
        return float(DAYS_TO_CLOSED_CAP)

    # ------------------------------------------------------------------ batch

    def quote_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Many orders at once, vectorised with pandas: expected hours and deadlines (UTC)."""
        expected = np.exp(self.pipeline.predict(frame))
        segments = self.engine.segments
        labels = segment_labels({n: frame[n].tolist() for n in segments}, segments, len(frame))
        buffer = self.engine.buffer_rule.buffers(expected, labels).buffer_hours
        local = pd.to_datetime(frame["ordered_at"], utc=True).dt.tz_convert(self.zone)
        wall_day = local.dt.tz_localize(None).dt.normalize()
        days = pd.date_range(wall_day.min() - pd.Timedelta(days=10), periods=4000, freq="D")
        is_open = pd.Series([self.is_open(d.date()) for d in days], index=days)
        # The first open day at or after each day, and strictly after it.
        open_days = pd.Series(days.where(is_open.to_numpy()), index=days).bfill()
        next_open = open_days.shift(-1)
        today_open = wall_day.map(is_open)
        opens = self._localize(wall_day + _clock_delta(self.opens))
        same_day = today_open.astype(bool)
        if self.cutoff is not None:
            same_day &= local < self._localize(wall_day + _clock_delta(self.cutoff))
        later = self._localize(wall_day.map(next_open) + _clock_delta(self.opens))
        start = local.where(local >= opens, opens).where(same_day, later)
        raw = start + pd.to_timedelta(expected + buffer, unit="h")
        raw_day = raw.dt.tz_convert(self.zone).dt.tz_localize(None).dt.normalize()
        promised = raw_day.map(open_days)
        deadline = self._localize(promised + pd.Timedelta(days=1)).dt.tz_convert("UTC")
        return pd.DataFrame(
            {"expected_hours": expected, "buffer_hours": buffer, "deadline": deadline}
        )

    def _localize(self, wall: pd.Series) -> pd.Series:
        localized = wall.dt.tz_localize(self.zone, ambiguous=False, nonexistent="shift_forward")
        return cast(pd.Series, localized)


def _clock_delta(clock: dt.time) -> pd.Timedelta:
    return pd.Timedelta(hours=clock.hour, minutes=clock.minute, seconds=clock.second)

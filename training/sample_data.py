"""A realistic order history of an optical-shop chain, for demos, tests and benchmarks.

Every order walks through the process an English high-street chain runs, so durations
come from the process rather than noise around a constant:

```
order in a shop (Mon-Sat 09:00-18:00, not on bank holidays)
 -> worked on the same day, or the next open day when placed after the 16:00 cut-off
 -> frame out of stock: wait for the supplier (working days, with a heavy tail of delays)
 -> lab (Mon-Fri, not on bank holidays): lens type + coating + pairs, slowed by the
    store's recent workload; MAN moves to a slower lab partner on 2025-09-01 (drift)
 -> overnight courier to the shop, ready during opening hours on the next open day
```

Orders still in that pipeline at the extraction moment `AS_OF` have no `fulfilled_at`
(right-censored). `promised_at` is the chain's own rule of thumb, the baseline an engine
should beat. Times are naive Europe/London wall-clock times, as a point-of-sale exports
them; opening hours never touch the 01:00-02:00 clock changes, so none is ambiguous.

Drift scenarios, to judge an engine on more than one kind of change (`scenario`); the
default "base" is the history above, and each other one changes one step of it:

```
shock  the outside lab works at SHOCK_LAB_CAPACITY of its pace on its working days in
       [SHOCK_START, SHOCK_END) (a strike), for every store, then recovers: jobs in
       progress then finish later too, not only jobs ordered in the window
trend  lab time grows steadily, by TREND_LAB_GROWTH over the history (ageing machines,
       staff leaving), so every model trained on the past is a little optimistic
peak   a pre-Christmas rush every year: demand x PEAK_DEMAND_FACTOR from PEAK_FIRST to
       PEAK_LAST; the workload step above lengthens lab times in the rush by itself
```

Every scenario draws the same random numbers in the same order, so "shock" and "trend"
give the same orders as "base" for a seed, with only their lab times changed ("peak"
moves orders between days, so its rows are drawn afresh).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Literal

import holidays
import numpy as np
import numpy.typing as npt
import pandas as pd

from models.errors import InputError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

HISTORY_START = date(2024, 1, 2)  # 1 January is a bank holiday: the first open day
AS_OF = datetime(2026, 6, 30, 18, 0)  # extraction moment, local: closing time of the last day
CALENDAR_MARGIN_DAYS = 400  # calendar past AS_OF so the slowest orders still get a ready day
OUTPUT_STEM = "optical_orders"

Scenario = Literal["base", "shock", "trend", "peak"]
SCENARIOS: tuple[Scenario, ...] = ("base", "shock", "trend", "peak")

COLUMNS = (
    "order_id",
    "ordered_at",
    "fulfilled_at",
    "promised_at",
    "store_id",
    "lens_type",
    "coating",
    "frame_in_stock",
    "n_items",
    "sphere_power",
)

# Relative order volume of each store (1.0 = an average high-street shop).
STORE_VOLUMES: dict[str, float] = {
    "LDN-OXF": 1.9,  # Oxford Street flagship
    "LDN-CAM": 1.3,  # Camden
    "MAN": 1.4,
    "BHM": 1.1,
    "LDS": 0.85,
    "BRS": 0.8,
    "LIV": 0.7,
    "NCL": 0.5,
}
# Busy stores share a lab slot with more jobs: lab time scales as volume ** this.
STORE_VOLUME_SLOWDOWN = 0.15


@dataclass(frozen=True, slots=True)
class LensType:
    """Share of orders and typical lab time (in lab working days) of one lens type."""

    share: float
    lab_days: float


LENS_TYPES: dict[str, LensType] = {
    "single_vision": LensType(share=0.55, lab_days=1.5),  # stock lens, edged and glazed
    "bifocal": LensType(share=0.07, lab_days=4.0),
    "progressive": LensType(share=0.26, lab_days=5.0),
    "high_index": LensType(share=0.12, lab_days=4.5),
}
# Beyond about 4 dioptres stock lenses run out: single vision is surfaced in the lab.
SURFACING_SPHERE_DIOPTRES = 4.0
SURFACED_SINGLE_VISION_LAB_DAYS = 3.5
# Very strong prescriptions are mostly sold as thin high-index lenses.
HIGH_INDEX_SPHERE_DIOPTRES = 6.0
HIGH_INDEX_UPSELL_SHARE = 0.6


@dataclass(frozen=True, slots=True)
class Coating:
    """Share of orders and lab working days a coating adds."""

    share: float
    extra_lab_days: float


COATINGS: dict[str, Coating] = {
    "none": Coating(share=0.22, extra_lab_days=0.0),
    "anti_reflective": Coating(share=0.42, extra_lab_days=1.0),
    "blue_light": Coating(share=0.16, extra_lab_days=1.0),
    "photochromic": Coating(share=0.12, extra_lab_days=2.0),  # outsourced treatment
    "tint": Coating(share=0.08, extra_lab_days=2.0),  # dyed by hand, batch runs
}

ITEM_SHARES = (0.80, 0.16, 0.04)  # 1, 2 or 3 pairs in one order
EXTRA_ITEM_LAB_DAYS = 0.4  # each further pair
LAB_JITTER_SIGMA = 0.2  # lognormal sigma of lab time around the typical value
# Workload: lab time scales as (store's last 7 days of orders / its average week) ** this,
# with the ratio clipped so one quiet or frantic week does not dominate.
WORKLOAD_ELASTICITY = 0.4
WORKLOAD_RATIO_BOUNDS = (0.6, 1.8)

FRAME_OUT_OF_STOCK_SHARE = 0.17
SUPPLIER_WORKING_DAYS = (2, 6)  # inclusive range of a normal frame delivery
SUPPLIER_DELAY_SHARE = 0.05  # of out-of-stock frames: back-order at the brand
SUPPLIER_DELAY_WORKING_DAYS = (5, 25)

DRIFT_STORE = "MAN"
DRIFT_START = date(2025, 9, 1)  # MAN moves to a new lab partner
DRIFT_EXTRA_LAB_DAYS = 2.0  # mean; gamma-distributed, so also more variance
DRIFT_JITTER_SIGMA = 0.45

# Scenario "shock": the default back-test's 4th fold quotes from 2025-12-08 on (2025-12-13 on
# the base); the strike starts six weeks later, so that fold's model has seen none of it, and
# lasts five weeks.
SHOCK_START = date(2026, 1, 19)  # a Monday
SHOCK_END = date(2026, 2, 23)  # first lab day back at full pace (a Monday)
SHOCK_LAB_CAPACITY = 0.4  # share of a normal day's work the lab gets through: 2.5x slower
# Scenario "trend": lab time x (1 + TREND_LAB_GROWTH * share of the history elapsed when
# the order is placed), so the last order's lab time is 35% longer than the first's.
TREND_LAB_GROWTH = 0.35
# Scenario "peak": (month, day) of the rush's first and last day, every year, inclusive.
PEAK_FIRST = (11, 24)
PEAK_LAST = (12, 21)
PEAK_DEMAND_FACTOR = 2.0  # on top of the base season, which already has a December bump

OPEN_SECONDS = (9 * 3600, 18 * 3600)  # shop opening hours, seconds after midnight
CUTOFF_SECONDS = 16 * 3600  # later orders start the next open day
HOURLY_ORDER_WEIGHTS = (0.5, 0.9, 1.1, 1.3, 1.3, 1.1, 1.0, 0.9, 0.7)  # 09:00 .. 17:00
WEEKDAY_ORDER_WEIGHTS = (0.85, 0.9, 0.95, 1.0, 1.1, 1.5, 0.0)  # Monday .. Sunday
YEARLY_GROWTH = 0.05  # the chain grows, so later weeks carry more orders
WEEKLY_STORE_NOISE_SHAPE = 12.0  # gamma shape: local promotions, footfall, staff
# Courier parcels reach the shop from 10:00; fitting check done before 17:45.
READY_FROM_SECONDS = 10 * 3600
READY_MEAN_DELAY_SECONDS = 5400.0
READY_LATEST_SECONDS = 17 * 3600 + 45 * 60

# The chain's rule of thumb, in calendar days from the order date.
COMPANY_PROMISE_DAYS = 10
COMPANY_PROMISE_MULTIFOCAL_DAYS = 4  # progressive and bifocal
COMPANY_PROMISE_FRAME_ORDER_DAYS = 5  # frame out of stock


@dataclass(frozen=True, slots=True)
class _Calendar:
    """Days from HISTORY_START on, indexed 0..n-1, with the shop's and the lab's open days."""

    days: npt.NDArray[np.datetime64]
    weekday: IntArray  # Monday = 0
    is_open: BoolArray  # shops: Monday-Saturday, not a bank holiday
    lab_days: IntArray  # day indices the lab works: Monday-Friday, not a bank holiday
    next_open: IntArray  # first open day index >= each day index

    def index_of(self, day: date) -> int:
        """Day index of a calendar date (0 = HISTORY_START)."""
        return int((np.datetime64(day, "D") - self.days[0]).astype(np.int64))

    def open_on_or_after(self, day: IntArray) -> IntArray:
        """First shop-open day index on or after each day index."""
        # The clamp only guards the calendar's far end, which CALENDAR_MARGIN_DAYS keeps unused.
        return self.next_open[np.minimum(day, self.next_open.size - 1)]

    def lab_day(self, rank: IntArray) -> IntArray:
        """Day index of the lab's `rank`-th working day (0 = its first)."""
        return self.lab_days[np.minimum(rank, self.lab_days.size - 1)]


def _build_calendar() -> _Calendar:
    first = np.datetime64(HISTORY_START, "D")
    last = np.datetime64(AS_OF.date(), "D") + CALENDAR_MARGIN_DAYS
    days = np.arange(first, last + 1, dtype="datetime64[D]")
    years = range(HISTORY_START.year, AS_OF.year + CALENDAR_MARGIN_DAYS // 365 + 2)
    bank_holidays = np.array(
        sorted(holidays.country_holidays("GB", subdiv="ENG", years=years)), dtype="datetime64[D]"
    )
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    is_holiday = np.isin(days, bank_holidays)
    is_open = (weekday <= 5) & ~is_holiday
    is_lab = (weekday <= 4) & ~is_holiday
    open_idx = np.flatnonzero(is_open)
    pos = np.minimum(np.searchsorted(open_idx, np.arange(days.size)), open_idx.size - 1)
    return _Calendar(days, weekday, is_open, np.flatnonzero(is_lab), open_idx[pos])


def _demand_weights(cal: _Calendar, n_history_days: int) -> FloatArray:
    """Relative order volume of each history day: weekday mix x season x growth."""
    days = cal.days[:n_history_days]
    day_of_year: FloatArray = (days - days.astype("datetime64[Y]")).astype(np.float64) + 1.0

    def bump(centre: float, width: float) -> FloatArray:
        return np.exp(-0.5 * ((day_of_year - centre) / width) ** 2)

    season = (
        1.0
        + 0.30 * bump(14, 10)  # January: new-year resolutions, renewed eye-care benefits
        - 0.22 * bump(222, 14)  # August: people are away
        + 0.30 * bump(335, 15)  # pre-Christmas: gifts, use-it-or-lose-it benefits
        - 0.35 * bump(361, 4)  # Christmas week itself is quiet
    )
    years_in = np.arange(n_history_days) / 365.25
    weekday_weight = np.asarray(WEEKDAY_ORDER_WEIGHTS)[cal.weekday[:n_history_days]]
    weight: FloatArray = weekday_weight * season * (1.0 + YEARLY_GROWTH) ** years_in
    return np.where(cal.is_open[:n_history_days], weight, 0.0)


def _rush_demand(weight: FloatArray, days: npt.NDArray[np.datetime64]) -> FloatArray:
    """Scenario "peak": `weight` (one per day of `days`) x PEAK_DEMAND_FACTOR in the rush."""
    month_start = days.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    day_of_month = (days - month_start).astype(np.int64) + 1
    month_day = 100 * month + day_of_month
    first, last = (100 * m + d for m, d in (PEAK_FIRST, PEAK_LAST))
    in_rush = (month_day >= first) & (month_day <= last)
    rushed: FloatArray = weight * np.where(in_rush, PEAK_DEMAND_FACTOR, 1.0)
    return rushed


def _trend_lab_time(lab_time: FloatArray, order_day: IntArray, n_history_days: int) -> FloatArray:
    """Scenario "trend": lab time (lab working days) grown with the order day's place in history."""
    elapsed_share = order_day / max(n_history_days - 1, 1)
    grown: FloatArray = lab_time * (1.0 + TREND_LAB_GROWTH * elapsed_share)
    return grown


def _shock_capacity(cal: _Calendar) -> FloatArray:
    """Scenario "shock": share of a normal day's work done on each lab working day."""
    in_shock = (cal.lab_days >= cal.index_of(SHOCK_START)) & (
        cal.lab_days < cal.index_of(SHOCK_END)
    )
    capacity: FloatArray = np.where(in_shock, SHOCK_LAB_CAPACITY, 1.0)
    return capacity


def _finish_rank(capacity: FloatArray, start_rank: IntArray, work_days: IntArray) -> IntArray:
    """Rank of the lab day a job of `work_days` normal days' work, begun on `start_rank`, ends.

    `capacity[k]` is the work done on lab day k (1.0 = a normal day): the job ends on the
    first day by which the work done since `start_rank` reaches `work_days`. With a capacity
    of 1.0 throughout, that is `start_rank + work_days - 1`. Ranks past the calendar's end
    come back as its last rank + 1, which `_Calendar.lab_day` clamps as it does for the base.
    """
    done_before = np.concatenate(([0.0], np.cumsum(capacity)))  # work done before rank k
    start = np.minimum(start_rank, capacity.size)
    # The tolerance keeps sums of fractional capacities from missing the goal by rounding.
    goal = done_before[start] + work_days - 1e-9
    finish: IntArray = np.searchsorted(done_before, goal, side="left") - 1
    return finish


def _trailing_week_load(counts: IntArray, n_history_days: int) -> FloatArray:
    """Each store's orders in the 7 days up to each day, over its average such week.

    `counts` is (stores, days); the first days of the history scale up the part-week.
    """
    cumulative = np.cumsum(counts, axis=1)
    trailing = cumulative.astype(np.float64)
    trailing[:, 7:] -= cumulative[:, :-7]
    window_days = np.minimum(np.arange(counts.shape[1]) + 1, 7)
    trailing *= 7.0 / window_days
    normal = np.maximum(trailing[:, 6:n_history_days].mean(axis=1, keepdims=True), 1e-9)
    ratio: FloatArray = trailing / normal
    return ratio


def generate_orders(
    n_orders: int = 60_000, seed: int = 7, scenario: Scenario = "base"
) -> pd.DataFrame:
    """Return `n_orders` optical orders placed 2024-01-02 .. 2026-06-30, sorted by `ordered_at`.

    Columns, in order: `order_id` (str, "OPT-0000001"), `ordered_at` and `fulfilled_at`
    (naive Europe/London datetime64[s]; `fulfilled_at` NaT while the order was open at
    2026-06-30 18:00), `promised_at` (datetime64[s] at midnight: the company's promised
    date, ready by the end of it), `store_id`, `lens_type`, `coating` (str),
    `frame_in_stock` (int 0/1), `n_items` (int 1..3), `sphere_power` (float, absolute
    dioptres, 0..12 in steps of 0.25). The same arguments always give the same frame.
    `scenario` adds one kind of drift to the history (module docstring); "base" adds none.
    """
    if n_orders < 1:
        raise InputError(f"n_orders must be at least 1, got {n_orders}", field="n_orders")
    if scenario not in SCENARIOS:
        raise InputError(
            f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}", field="scenario"
        )
    rng = np.random.default_rng(seed)
    cal = _build_calendar()
    n_history_days = cal.index_of(AS_OF.date()) + 1
    stores = list(STORE_VOLUMES)
    volumes = np.asarray(list(STORE_VOLUMES.values()))

    # Orders per (store, day): demand x store volume x a per-store weekly wobble.
    n_weeks = n_history_days // 7 + 1
    wobble = rng.gamma(
        WEEKLY_STORE_NOISE_SHAPE, 1.0 / WEEKLY_STORE_NOISE_SHAPE, (len(stores), n_weeks)
    )
    demand = _demand_weights(cal, n_history_days)
    if scenario == "peak":
        demand = _rush_demand(demand, cal.days[:n_history_days])
    cell_weight = volumes[:, None] * demand[None, :] * wobble[:, np.arange(n_history_days) // 7]
    cell_counts = rng.multinomial(n_orders, (cell_weight / cell_weight.sum()).ravel())
    counts = np.zeros((len(stores), cal.days.size), dtype=np.int64)
    counts[:, :n_history_days] = cell_counts.reshape(len(stores), n_history_days)
    store_code, order_day = np.divmod(
        np.repeat(np.arange(cell_counts.size), cell_counts), n_history_days
    )

    hour_weight = np.asarray(HOURLY_ORDER_WEIGHTS)
    hour = rng.choice(hour_weight.size, size=n_orders, p=hour_weight / hour_weight.sum())
    order_second = OPEN_SECONDS[0] + hour * 3600 + rng.integers(0, 3600, n_orders)
    order = np.lexsort((store_code, order_second, order_day))  # chronological ids
    store_code, order_day, order_second = store_code[order], order_day[order], order_second[order]

    # What was ordered. Strong prescriptions are often upsold to thin high-index lenses.
    sphere = np.clip(np.round(rng.gamma(2.0, 1.2, n_orders) * 4.0) / 4.0, 0.0, 12.0)
    lens_names = list(LENS_TYPES)
    lens_share = np.asarray([lens.share for lens in LENS_TYPES.values()])
    lens_code = rng.choice(len(lens_names), size=n_orders, p=lens_share)
    upsold = (sphere >= HIGH_INDEX_SPHERE_DIOPTRES) & (
        rng.random(n_orders) < HIGH_INDEX_UPSELL_SHARE
    )
    lens_code[upsold] = lens_names.index("high_index")
    coating_names = list(COATINGS)
    coating_share = np.asarray([c.share for c in COATINGS.values()])
    coating_code = rng.choice(len(coating_names), size=n_orders, p=coating_share)
    n_items = rng.choice(np.arange(1, len(ITEM_SHARES) + 1), size=n_orders, p=ITEM_SHARES)
    frame_in_stock = (rng.random(n_orders) >= FRAME_OUT_OF_STOCK_SHARE).astype(np.int64)

    # Work starts today, or the next open day after the cut-off. The job reaches the lab
    # electronically and frames in stock are held at the lab, so it is worked on from the
    # lab's first working day on or after that (a Saturday order waits for Monday).
    start_day = np.where(
        order_second < CUTOFF_SECONDS, order_day, cal.open_on_or_after(order_day + 1)
    )
    lab_start_rank = np.searchsorted(cal.lab_days, start_day)

    # The lab glazes lenses into the frame, so it takes the job only once the frame is in.
    supplier_days = rng.integers(SUPPLIER_WORKING_DAYS[0], SUPPLIER_WORKING_DAYS[1] + 1, n_orders)
    delayed = rng.random(n_orders) < SUPPLIER_DELAY_SHARE
    supplier_days += np.where(
        delayed,
        rng.integers(SUPPLIER_DELAY_WORKING_DAYS[0], SUPPLIER_DELAY_WORKING_DAYS[1] + 1, n_orders),
        0,
    )
    lab_start_rank += np.where(frame_in_stock == 1, 0, supplier_days)

    # Lab time in lab working days: recipe, then the queue it joins, then luck.
    lens_days = np.asarray([lens.lab_days for lens in LENS_TYPES.values()])[lens_code]
    surfaced = (lens_code == lens_names.index("single_vision")) & (
        sphere > SURFACING_SPHERE_DIOPTRES
    )
    lens_days = np.where(surfaced, SURFACED_SINGLE_VISION_LAB_DAYS, lens_days)
    coating_days = np.asarray([c.extra_lab_days for c in COATINGS.values()])[coating_code]
    recipe_days = lens_days + coating_days + EXTRA_ITEM_LAB_DAYS * (n_items - 1)
    load = _trailing_week_load(counts, n_history_days)[store_code, order_day]
    queue_factor = np.clip(load, *WORKLOAD_RATIO_BOUNDS) ** WORKLOAD_ELASTICITY
    queue_factor *= (volumes / volumes.mean())[store_code] ** STORE_VOLUME_SLOWDOWN
    drifted = (store_code == stores.index(DRIFT_STORE)) & (order_day >= cal.index_of(DRIFT_START))
    sigma = np.where(drifted, DRIFT_JITTER_SIGMA, LAB_JITTER_SIGMA)
    lab_time = recipe_days * queue_factor * rng.lognormal(-0.5 * sigma**2, sigma)
    # Gamma with shape 4: mean DRIFT_EXTRA_LAB_DAYS, and a wider spread than the old lab.
    lab_time += np.where(drifted, rng.gamma(4.0, DRIFT_EXTRA_LAB_DAYS / 4.0, n_orders), 0.0)
    if scenario == "trend":
        lab_time = _trend_lab_time(lab_time, order_day, n_history_days)
    lab_working_days = np.maximum(np.rint(lab_time).astype(np.int64), 1)

    # Finished at the end of its last lab day, couriered overnight, ready on an open day.
    if scenario == "shock":
        finish_rank = _finish_rank(_shock_capacity(cal), lab_start_rank, lab_working_days)
    else:
        finish_rank = lab_start_rank + lab_working_days - 1
    finish_day = cal.lab_day(finish_rank)
    ready_day = cal.open_on_or_after(finish_day + 1)
    ready_second = READY_FROM_SECONDS + np.minimum(
        rng.exponential(READY_MEAN_DELAY_SECONDS, n_orders),
        READY_LATEST_SECONDS - READY_FROM_SECONDS,
    ).astype(np.int64)

    multifocal = np.isin(lens_code, [lens_names.index("progressive"), lens_names.index("bifocal")])
    promise_day = (
        order_day
        + COMPANY_PROMISE_DAYS
        + COMPANY_PROMISE_MULTIFOCAL_DAYS * multifocal
        + COMPANY_PROMISE_FRAME_ORDER_DAYS * (1 - frame_in_stock)
    )
    promise_day = cal.open_on_or_after(promise_day)  # Sunday or bank holiday: next open day

    day_start = cal.days.astype("datetime64[s]")
    ordered_at = day_start[order_day] + order_second.astype("timedelta64[s]")
    fulfilled_at = day_start[ready_day] + ready_second.astype("timedelta64[s]")
    fulfilled_at[fulfilled_at > np.datetime64(AS_OF, "s")] = np.datetime64("NaT")  # still open
    order_number = np.char.zfill(np.arange(1, n_orders + 1).astype(str), 7)
    return pd.DataFrame(
        {
            "order_id": np.char.add("OPT-", order_number).astype(object),
            "ordered_at": ordered_at,
            "fulfilled_at": fulfilled_at,
            "promised_at": day_start[promise_day],
            "store_id": np.asarray(stores, dtype=object)[store_code],
            "lens_type": np.asarray(lens_names, dtype=object)[lens_code],
            "coating": np.asarray(coating_names, dtype=object)[coating_code],
            "frame_in_stock": frame_in_stock,
            "n_items": n_items.astype(np.int64),
            "sphere_power": sphere,
        },
        columns=list(COLUMNS),
    )


def output_stem(scenario: Scenario = "base") -> str:
    """File name of a scenario's table, without suffix: "optical_orders", "optical_shock_orders"."""
    return OUTPUT_STEM if scenario == "base" else OUTPUT_STEM.replace("_", f"_{scenario}_", 1)


def write_sample_data(
    out_dir: Path,
    n_orders: int = 60_000,
    seed: int = 7,
    file_format: Literal["csv", "parquet"] = "csv",
    scenario: Scenario = "base",
) -> Path:
    """Writes out_dir / "optical_orders.csv" (or .parquet) and returns its path.

    A drift scenario other than "base" goes to out_dir / "optical_<scenario>_orders.csv".

    Atomic: the table is written to a temporary file in `out_dir` and moved into place
    with `os.replace`, so a reader never sees half a file. `out_dir` is created if needed.
    CSV times are "YYYY-MM-DD HH:MM:SS", `promised_at` is "YYYY-MM-DD", open orders have
    an empty `fulfilled_at`; Parquet keeps the times and stores `promised_at` as a date.
    """
    if file_format not in ("csv", "parquet"):
        raise InputError(f"file_format must be csv or parquet, got {file_format!r}", "file_format")
    frame = generate_orders(n_orders=n_orders, seed=seed, scenario=scenario)
    promise_date = frame["promised_at"].to_numpy().astype("datetime64[D]")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = output_stem(scenario)
    target = out_dir / f"{stem}.{file_format}"
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{stem}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.chmod(0o644)  # mkstemp makes it private; the data file is meant to be shared
        if file_format == "csv":
            frame["promised_at"] = np.datetime_as_string(promise_date, unit="D")
            frame.to_csv(tmp, index=False, date_format="%Y-%m-%d %H:%M:%S")
        else:
            frame["promised_at"] = pd.Series(promise_date).astype("date32[pyarrow]")
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)  # leave no half-written temp file behind
        raise
    return target

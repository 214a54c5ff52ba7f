"""The compiled quote path against its references.

- `CompiledTrees` against scikit-learn's model: the same hours, bit for bit, on thousands of
  random and edge-case rows (missing values, unseen and malformed codes, values outside the
  training range, split thresholds and their neighbours), in both compiled forms and for trees
  of up to 32, 64 and more leaves; the quantile model too.
- One order quoted on its own against the same order in `quote_batch`: the same `Promise`,
  for every policy (the adaptive one with a state), unit, zone and cut-off.
- Pickling: the compiled form is never pickled (bundles keep their bytes) and rebuilds itself
  when the model is loaded.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from models import fast, kernels, quoting
from models.calendar import BusinessCalendar, CalendarSpec
from models.control import ControlState
from models.errors import InputError
from models.features import FeatureSchema, fit_schema
from models.policies import CalibrationSlice, make_policy
from models.quoting import (
    Order,
    Promise,
    QuoteEngine,
    promise_at,
    quote,
    quote_batch,
    segment_labels,
)
from models.regressor import DurationRegressor, QuantileRegressor
from models.trained import TrainedModel
from models.tree_compiler import compile_trees

LENSES = ["sv", "prog", "bif"]
STORES = [f"s{i}" for i in range(6)]
START_S = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
SPAN_S = 3.0e7  # about a year


@functools.cache
def calendar_for(zone: str, cutoff_hour: int | None) -> BusinessCalendar:
    spec = CalendarSpec(
        timezone=zone,
        open_weekdays=(0, 1, 2, 3, 4, 5),
        holidays_country="GB",
        cutoff=None if cutoff_hour is None else dt.time(cutoff_hour),
        opens=dt.time(9),
    )
    return BusinessCalendar(spec, first_year=2023, last_year=2027)


def training_orders(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Synthetic orders: (feature columns, order times, hours). Lens and store drive the hours;
    one lens is too rare to get a code, and numbers are sometimes missing."""
    rng = np.random.default_rng(seed)
    lens = rng.choice(LENSES, n).astype(object)
    lens[:3] = "rare"  # known, below MIN_CATEGORY_COUNT: modelled as missing
    store = rng.choice(STORES, n).astype(object)
    store[rng.random(n) < 0.03] = None
    items = rng.integers(1, 4, n).astype(float)
    items[rng.random(n) < 0.05] = np.nan
    power = rng.uniform(0.0, 8.0, n)
    power[rng.random(n) < 0.05] = np.nan
    placed = START_S + rng.uniform(0.0, SPAN_S, n)
    base = np.select([lens == "prog", lens == "bif"], [120.0, 80.0], 48.0)
    store_factor = np.array([1.0 + 0.1 * STORES.index(s) if s else 1.3 for s in store])
    hours = base * store_factor * rng.lognormal(0.0, 0.3, n) + 4.0 * np.nan_to_num(items)
    hours += 6.0 * np.nan_to_num(power, nan=3.0)
    columns = {"lens": lens, "store": store, "items": items, "power": power}
    return columns, placed, hours


@functools.cache
def trained(
    max_leaf_nodes: int = 31, min_samples_leaf: int = 20
) -> tuple[FeatureSchema, DurationRegressor, QuantileRegressor, np.ndarray, np.ndarray]:
    """(schema, duration model, 0.9-quantile model, expected hours, hours) on 2,000 orders."""
    columns, placed, hours = training_orders(2000, seed=0)
    schema = fit_schema(columns, ["lens", "store"], ["items", "power"])
    calendar = calendar_for("UTC", None)
    matrix = schema.encode(columns, calendar.local_parts(placed))
    params = {"max_iter": 40, "max_leaf_nodes": max_leaf_nodes}
    params["min_samples_leaf"] = min_samples_leaf
    # One OpenMP thread: on a busy 2-core machine sklearn's threads wait on each other ~20x.
    with threadpool_limits(1):
        model = DurationRegressor(**params).fit(matrix, hours, schema.categorical_mask)
        quantile = QuantileRegressor(quantile=0.9, **params).fit(
            matrix, hours, schema.categorical_mask
        )
        return schema, model, quantile, model.predict_hours(matrix), hours


def engine_for(
    policy: str,
    unit: str = "day",
    zone: str = "Europe/London",
    cutoff_hour: int | None = 16,
    relative: bool = False,
    max_promise_units: float | None = None,
) -> QuoteEngine:
    schema, model, quantile, expected, hours = trained()
    columns, _, _ = training_orders(2000, seed=0)
    labels = segment_labels(columns, ("store", "lens"), hours.size)
    segments = ("store", "lens") if policy in ("conformal", "adaptive") else ()
    params: dict[str, Any] = {"target_late_rate": 0.1}
    if segments:
        params |= {"segments": segments, "relative": relative}
    censored = np.zeros(hours.size, dtype=bool)
    censored[::50] = True
    buffer_policy = make_policy(policy, **params)
    buffer_policy.fit(CalibrationSlice(expected, hours, censored, labels))
    return QuoteEngine(
        schema=schema,
        expected_trees=model.compiled(),
        quantile_trees=quantile.compiled() if policy == "quantile" else None,
        buffer_rule=buffer_policy.rule,
        policy_name=policy,
        calendar=calendar_for(zone, cutoff_hour),
        unit=unit,  # type: ignore[arg-type]
        target_late_rate=0.1,
        segments=segments,
        max_promise_units=max_promise_units,
    )


def edge_rows(schema: FeatureSchema, model: DurationRegressor, n: int, seed: int) -> np.ndarray:
    """Model rows, shape (n, n_columns): random values mixed with every kind of edge case."""
    rng = np.random.default_rng(seed)
    booster = model.booster_
    n_columns = len(schema.column_names)
    n_cat = len(schema.categorical)
    rows = np.empty((n, n_columns))
    for j in range(n_cat):
        n_codes = len(schema.categorical[j].categories)
        # (No infinity: sklearn's encoder refuses it, and `FeatureSchema.encode` never makes it.)
        odd = np.array([np.nan, -1.0, -0.0, 0.5, 2.5, float(n_codes), 255.0, 256.0, 1e300])
        rows[:, j] = np.where(
            rng.random(n) < 0.7, rng.integers(0, n_codes, n), rng.choice(odd, n)
        ).astype(float)
    # Numeric and time columns: the thresholds the trees split on (which `<=` must send
    # left), their neighbours, values far outside the training range, NaN and infinities.
    thresholds = booster._bin_mapper.bin_thresholds_
    for j in range(n_cat, n_columns):
        edges = np.asarray(thresholds[j], dtype=float)
        near = np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)])
        odd = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, -1e9, 1e9, 1e300])
        pick = rng.random(n)
        rows[:, j] = np.where(
            pick < 0.5,
            rng.uniform(edges.min() - 2.0, edges.max() + 2.0, n),
            np.where(pick < 0.85, rng.choice(near, n), rng.choice(odd, n)),
        )
    return rows


@pytest.mark.parametrize(
    ("max_leaf_nodes", "min_samples_leaf", "max_table_bytes", "form"),
    [
        (31, 20, fast.MAX_MASK_TABLE_BYTES, fast.LeafMaskTrees),  # 32-bit masks
        (48, 5, fast.MAX_MASK_TABLE_BYTES, fast.LeafMaskTrees),  # 64-bit masks
        (100, 2, fast.MAX_MASK_TABLE_BYTES, fast.LeafMaskTrees),  # two words a tree
        (31, 20, 0, fast.WalkedTrees),  # a table over budget: the plain walk
        (100, 2, 0, fast.WalkedTrees),
    ],
)
def test_compiled_hours_equal_the_sklearn_model_bit_for_bit(
    max_leaf_nodes: int, min_samples_leaf: int, max_table_bytes: int, form: type
) -> None:
    schema, model, quantile, _, _ = trained(max_leaf_nodes, min_samples_leaf)
    rows = edge_rows(schema, model, 4000, seed=max_leaf_nodes)
    for regressor, link in ((model, "exp"), (quantile, "identity")):
        compiled = compile_trees(regressor.booster_, link, max_table_bytes)
        assert isinstance(compiled, form)
        with threadpool_limits(1):
            reference = regressor.predict_hours(rows)
        assert np.array_equal(compiled.predict_hours(rows), reference)
        singles = [compiled.predict_hours(row.reshape((1, -1)))[0] for row in rows[:300]]
        assert np.array_equal(np.array(singles), reference[:300])
    if max_leaf_nodes > 64:  # the case the test is for: trees that need two mask words
        assert max(int(t[0].nodes["is_leaf"].sum()) for t in model.booster_._predictors) > 64


@pytest.mark.parametrize("max_table_bytes", [fast.MAX_MASK_TABLE_BYTES, 0])
def test_a_batch_split_across_threads_gives_the_same_hours(
    monkeypatch: pytest.MonkeyPatch, max_table_bytes: int
) -> None:
    schema, model, _, _, _ = trained()
    rows = edge_rows(schema, model, 3001, seed=8)
    monkeypatch.setattr(kernels, "_ROWS_PER_THREAD", 1000)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2})
    compiled = compile_trees(model.booster_, "exp", max_table_bytes)
    with threadpool_limits(1):
        reference = model.predict_hours(rows)
    assert np.array_equal(compiled.predict_hours(rows), reference)


def test_the_regressors_compile_once_and_again_after_a_refit() -> None:
    schema, model, _, _, _ = trained()
    assert model.compiled() is model.compiled()
    columns, placed, hours = training_orders(500, seed=9)
    matrix = schema.encode(columns, calendar_for("UTC", None).local_parts(placed))
    with threadpool_limits(1):
        refit = DurationRegressor(max_iter=10).fit(matrix, hours, schema.categorical_mask)
        first = refit.compiled()
        refit.fit(matrix, hours * 2.0, schema.categorical_mask)
        assert refit.compiled() is not first
        reference = refit.predict_hours(matrix)
    assert np.array_equal(refit.compiled().predict_hours(matrix), reference)


def random_orders(schema: FeatureSchema, n: int, seed: int) -> list[Order]:
    """Orders as the service hands them over: canonical labels, None for missing, unseen
    labels (accepted with a warning), numbers inside and outside the training range."""
    rng = np.random.default_rng(seed)
    lens_choices: list[str | None] = [*LENSES, "rare", "unseen", None]
    store_choices: list[str | None] = [*STORES, "s-new", None]
    orders = []
    for _ in range(n):
        items = float(rng.integers(0, 6)) if rng.random() < 0.9 else None
        power = float(rng.uniform(-4.0, 14.0)) if rng.random() < 0.9 else None
        features = {
            "lens": lens_choices[int(rng.integers(len(lens_choices)))],
            "store": store_choices[int(rng.integers(len(store_choices)))],
            "items": items,
            "power": power,
        }
        placed = START_S + float(rng.uniform(0.0, 2.5 * SPAN_S))
        # Whole minutes now and then: order times exactly on a cut-off or an opening.
        if rng.random() < 0.2:
            placed = round(placed / 3600.0) * 3600.0
        orders.append(Order(features, dt.datetime.fromtimestamp(placed, dt.UTC)))
    return orders


def batch_promises(
    engine: QuoteEngine, orders: list[Order], state: ControlState | None
) -> list[Promise]:
    names = engine.schema.feature_names
    columns = {name: np.array([o.features[name] for o in orders], dtype=object) for name in names}
    for num in engine.schema.numeric:
        columns[num.name] = np.array(
            [np.nan if v is None else v for v in columns[num.name]], dtype=float
        )
    placed = np.array([o.ordered_at.timestamp() for o in orders])
    batch = quote_batch(engine, columns, placed, state)
    return [promise_at(engine, batch, i) for i in range(batch.size)]


ADAPTIVE_STATE = ControlState(
    misses={"s1 / prog": 3.0, "s2": -1.5, "all orders": 2.0, "s3 / sv": 0.5, "s1": 1.0},
    counts={"s1 / prog": 30, "s2": 40, "all orders": 200, "s3 / sv": 10, "s1": 60},
    medians={"all orders": 0.4, "s2": -0.2},
    events={"all orders": 120, "s2": 30},
    n_updates=200,
)


@pytest.mark.parametrize(
    ("policy", "unit", "zone", "cutoff_hour", "relative", "state"),
    [
        ("conformal", "day", "Europe/London", 16, False, None),
        ("conformal", "hour", "America/New_York", 15, True, None),
        ("adaptive", "day", "Australia/Sydney", None, True, ADAPTIVE_STATE),
        ("adaptive", "minute", "Europe/London", 16, False, ADAPTIVE_STATE),
        ("quantile", "day", "UTC", 12, False, None),
        ("fixed", "hour", "Europe/London", None, False, None),
        ("proportional", "minute", "Asia/Kolkata", 18, False, None),
    ],
)
def test_one_order_alone_gets_the_promise_the_batch_gives_it(
    policy: str,
    unit: str,
    zone: str,
    cutoff_hour: int | None,
    relative: bool,
    state: ControlState | None,
) -> None:
    engine = engine_for(policy, unit, zone, cutoff_hour, relative, max_promise_units=6.0)
    orders = random_orders(engine.schema, 300, seed=len(policy) + len(unit))
    alone = [quote(engine, [order], state)[0] for order in orders]
    assert alone == batch_promises(engine, orders, state)
    # More orders than the one-by-one path takes go through the batch: the same promises.
    assert quote(engine, orders, state) == alone
    assert any(p.exceeds_max_promise for p in alone)
    assert any(p.closed_days_skipped for p in alone)


@pytest.mark.parametrize(("policy", "state"), [("adaptive", ADAPTIVE_STATE), ("quantile", None)])
def test_a_batch_encoded_in_slices_gives_every_order_the_same_promise(
    monkeypatch: pytest.MonkeyPatch, policy: str, state: ControlState | None
) -> None:
    # Slices of 97 orders (the last one short), their trees predicted on pool threads while the
    # next slice is encoded: each order's promise is the one it gets alone.
    engine = engine_for(policy, "hour", "Europe/London", 16)
    orders = random_orders(engine.schema, 1000, seed=21)
    alone = [quote(engine, [order], state)[0] for order in orders]
    monkeypatch.setattr(quoting, "PIPELINE_SLICE", 97)
    assert batch_promises(engine, orders, state) == alone


def test_fast_buffers_equal_the_policies_own() -> None:
    rng = np.random.default_rng(4)
    n = 3000
    expected = rng.uniform(1.0, 300.0, n)
    quantile_hours = expected * rng.uniform(0.8, 1.6, n)
    store = rng.choice([*STORES, "s-new"], n).astype(object)
    store[::37] = None
    lens = rng.choice([*LENSES, "unseen"], n).astype(object)
    columns: dict[str, Any] = {"store": store, "lens": lens}
    for policy, relative, state in [
        ("conformal", False, None),
        ("conformal", True, None),
        ("adaptive", True, ADAPTIVE_STATE),
        ("adaptive", False, None),
        ("fixed", False, None),
        ("proportional", False, None),
        ("quantile", False, None),
    ]:
        engine = engine_for(policy, relative=relative)
        segments = engine.segments
        labels = segment_labels(columns, segments, n)
        q = quantile_hours if policy == "quantile" else None
        want = engine.buffer_rule.buffers(expected, labels, q, state)
        got = engine.buffer_rule.column_buffers(expected, columns, segments, q, state)
        assert np.array_equal(got.buffer_hours, want.buffer_hours)
        assert np.array_equal(got.levels, want.levels)
        assert got.segments == want.segments


def test_the_compiled_form_is_never_pickled_and_rebuilds_itself(tmp_path: Path) -> None:
    schema, model, _, _, _ = trained()
    assert "compiled_trees_" in vars(model)
    # The pickle holds the booster only: bundles keep size and format.
    assert "compiled_trees_" not in model.__getstate__()
    joblib.dump(model, tmp_path / "model.joblib", compress=3)
    loaded = joblib.load(tmp_path / "model.joblib")
    rows = edge_rows(schema, model, 500, seed=5)
    assert np.array_equal(loaded.compiled().predict_hours(rows), model.predict_hours(rows))
    assert isinstance(loaded.compiled(), fast.LeafMaskTrees)


def test_quote_refuses_an_order_time_without_a_zone() -> None:
    engine = engine_for("fixed")
    naive = Order(
        {"lens": "sv", "store": "s1", "items": 1.0, "power": 1.0}, dt.datetime(2024, 5, 1)
    )
    for orders in ([naive], [naive] * 40):
        with pytest.raises(InputError, match="no time zone"):
            quote(engine, orders)


@functools.cache
def sample_engine(tmp: Path, policy: str) -> tuple[TrainedModel, Any]:
    """A model trained by `training.train` on 3,000 generated optical-shop orders."""
    from training.data import load_orders
    from training.sample_data import write_sample_data
    from training.spec import load_spec
    from training.train import build_calendar, fit_engine

    write_sample_data(tmp, n_orders=3000, seed=11)
    shutil.copy(Path(__file__).resolve().parents[2] / "data" / "optical.toml", tmp)
    spec = load_spec(tmp / "optical.toml")
    table = load_orders(spec)
    calendar = build_calendar(spec, table, dt.date(2026, 11, 23))
    with threadpool_limits(1):
        model, _ = fit_engine(spec, table, calendar, table.as_of_s + 1.0, policy)
    return model, table


@pytest.mark.parametrize("policy", ["conformal", "quantile"])
def test_a_model_trained_on_sample_data_quotes_the_same(
    tmp_path_factory: pytest.TempPathFactory, policy: str
) -> None:
    trained_model, table = sample_engine(tmp_path_factory.mktemp("sample"), policy)
    engine = trained_model.engine
    calendar = engine.calendar
    rows = np.concatenate(
        [
            engine.schema.encode(table.columns, calendar.local_parts(table.ordered_at_s)),
            edge_rows(engine.schema, trained_model.regressor, 2000, seed=3),
        ]
    )
    pairs = [(trained_model.regressor, engine.expected_trees)]
    if policy == "quantile":
        assert trained_model.quantile_regressor is not None and engine.quantile_trees is not None
        pairs.append((trained_model.quantile_regressor, engine.quantile_trees))
    for model, trees in pairs:
        with threadpool_limits(1):
            reference = model.predict_hours(rows)
        assert np.array_equal(trees.predict_hours(rows), reference)
    picked = np.random.default_rng(2).choice(table.size, 150, replace=False)
    orders = [
        Order(
            {name: _plain(table.columns[name][i]) for name in engine.schema.feature_names},
            dt.datetime.fromtimestamp(float(table.ordered_at_s[i]), dt.UTC),
        )
        for i in picked
    ]
    alone = [quote(engine, [order])[0] for order in orders]
    assert alone == batch_promises(engine, orders, None)
    assert alone == quote(replace(engine), orders)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and np.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value

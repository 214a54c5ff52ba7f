"""`promise models`, `promote` and `rollback` as a person at an 80-column terminal sees them."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from models.registry import PROMOTED_FILE, Registry
from promise_cli import app
from training.cli import RELOAD_NOTE
from training.listing import MODEL_COLUMNS
from training.pipeline import train_bundle

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
runner = CliRunner()


@dataclass(frozen=True)
class TwoBundles:
    root: Path
    full: str  # the sample spec, with a one-fold back-test in its manifest
    other: str  # no coating feature, one buffer for all orders; no back-test


@pytest.fixture(scope="module")
def two(small_sample_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> TwoBundles:
    root = tmp_path_factory.mktemp("cli-models") / "bundles"
    registry = Registry(root)
    spec = root.parent / "other.toml"
    text = small_sample_spec.read_text()
    text = text.replace('["store_id", "lens_type", "coating"]', '["store_id", "lens_type"]')
    spec.write_text(text.replace('segments = ["store_id"]', "segments = []"))
    data = small_sample_spec.parent / "optical_orders.csv"
    with threadpool_limits(1):
        full = train_bundle(small_sample_spec, registry, now=NOW, backtest_folds=1)
        other = train_bundle(spec, registry, now=NOW + dt.timedelta(hours=1), data=data)
    return TwoBundles(root, full.version, other.version)


@pytest.fixture
def registry(two: TwoBundles, tmp_path: Path) -> Path:
    root = shutil.copytree(two.root, tmp_path / "bundles")
    (root / PROMOTED_FILE).unlink(missing_ok=True)
    return root


def listing(registry: Path, columns: int, *options: str) -> str:
    result = runner.invoke(
        app, ["models", "--registry", str(registry), *options], env={"COLUMNS": str(columns)}
    )
    assert result.exit_code == 0, result.output
    return result.output


def table_lines(output: str) -> list[str]:
    return output.split("* promoted")[0].splitlines()


def test_models_fits_80_columns_without_cutting_a_header_or_a_version(
    two: TwoBundles, registry: Path
) -> None:
    Registry(registry).promote(two.full)
    output = listing(registry, 80)
    assert "\u2026" not in output  # nothing shrunk to "p…"
    lines = table_lines(output)
    assert all(len(line) <= 80 for line in lines)
    [header] = [line for line in lines if "version" in line]
    assert header.split() == ["version", "created", "policy", "late/target", "vs", "business"]
    [full] = [line.split() for line in lines if two.full in line]
    assert full[:2] == ["*", two.full] and full[3] == "adaptive"
    assert full[4].endswith("/5.0%") and not full[4].startswith("-")
    assert 0 < float(full[5]) < 2  # the mean promise over the business's own
    assert any(two.other in line and "-/5.0%" in line for line in lines)
    assert "not shown: data, spec, promise, MAE (--wide shows them)" in " ".join(output.split())
    # Narrower still: columns go, by priority; the versions stay whole.
    narrow = listing(registry, 40)
    assert "\u2026" not in narrow
    assert two.full in narrow and two.other in narrow


def test_models_wide_shows_every_column_and_the_data_set(two: TwoBundles, registry: Path) -> None:
    output = listing(registry, 80, "--wide")
    assert "\u2026" not in output
    [header] = [line for line in table_lines(output) if "version" in line]
    assert header.split() == " ".join(MODEL_COLUMNS[1:]).split()
    assert "optical_orders.csv (8,000) 2024-" in output
    assert "optical.toml" in output and "other.toml" in output
    assert "not shown" not in output


def test_models_json_is_one_document_for_scripts(two: TwoBundles, registry: Path) -> None:
    Registry(registry).promote(two.other)
    document = json.loads(listing(registry, 80, "--json"))
    assert document["promoted"] == two.other
    bundles = {b["version"]: b for b in document["bundles"]}
    assert bundles[two.other]["promoted"] and not bundles[two.full]["promoted"]
    assert bundles[two.full]["data"]["rows_used"] == 8_000
    manifest = Registry(registry).manifest(two.full)
    backtest = bundles[two.full]["backtest"]
    assert backtest["late_rate"] == manifest.info["backtest"]["late_rate"]
    assert backtest["ratio_to_company"] == manifest.info["backtest"]["scorecard"]["company_ratio"]
    assert bundles[two.other]["backtest"] is None
    assert bundles[two.other]["segments_by"] == []


def test_promote_refuses_other_fields_with_exit_1_unless_forced(
    two: TwoBundles, registry: Path
) -> None:
    args = ["promote", "--registry", str(registry)]
    first = runner.invoke(app, [*args, two.full])
    assert first.exit_code == 0, first.output
    assert f"promoted {two.full}" in first.output
    assert f"{RELOAD_NOTE} (at once with PROMISE_FOLLOW_PROMOTIONS=true)" in first.output
    refused = runner.invoke(app, [*args, two.other])
    assert refused.exit_code == 1, refused.output
    lines = refused.output.splitlines()
    assert f"refused: {two.other} differs from the promoted {two.full}" in lines[0]
    assert lines[1:] == [
        f"  - feature 'coating' is gone from {two.other}: a point-of-sale request that sends "
        "it is refused",
        f"  - segments: {two.full} keeps a buffer per store_id, {two.other} one buffer for all "
        "orders",
        "use --force to promote it anyway",
    ]
    assert Registry(registry).promoted_version() == two.full
    forced = runner.invoke(app, [*args, two.other, "--force"])
    assert forced.exit_code == 0, forced.output
    assert f"promoted {two.other} (was {two.full})" in forced.output
    assert f"forced: feature 'coating' is gone from {two.other}" in forced.output
    assert f"{RELOAD_NOTE}?force=true" in forced.output
    assert Registry(registry).promoted_version() == two.other


def test_rollback_is_one_command_and_shows_what_it_changes(two: TwoBundles, registry: Path) -> None:
    args = ["--registry", str(registry)]
    nothing = runner.invoke(app, ["rollback", *args])
    assert nothing.exit_code == 1 and "nothing to roll back" in nothing.output
    store = Registry(registry)
    store.promote(two.full)
    store.promote(two.other, force=True)
    shown = runner.invoke(app, ["rollback", *args, "--dry-run"])
    assert shown.exit_code == 0, shown.output
    assert "dry run: nothing changed" in shown.output
    assert store.promoted_version() == two.other
    [version] = [line for line in shown.output.splitlines() if line.startswith("version")]
    assert version.split() == ["version", two.other, two.full]
    [late] = [line for line in shown.output.splitlines() if line.startswith("late/target")]
    assert late.split()[1] == "-/5.0%" and late.split()[2].endswith("/5.0%")
    assert (
        f"changes: feature 'coating' is new in {two.full}: a point-of-sale request without it "
        "is refused" in shown.output
    )
    done = runner.invoke(app, ["rollback", *args])
    assert done.exit_code == 0, done.output
    assert f"rolled back from {two.other} to {two.full}" in done.output
    assert RELOAD_NOTE in done.output
    assert store.promoted_version() == two.full
    assert store.history()[-1].rollback

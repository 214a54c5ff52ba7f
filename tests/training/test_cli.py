"""The `promise` command line's training commands: exit codes and messages, as a user sees
them (through the one app, `promise_cli`)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from models.registry import Registry
from promise_cli import app

runner = CliRunner()


def test_sample_data_writes_the_history(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sample-data", "--out", str(tmp_path), "--orders", "2000"])
    assert result.exit_code == 0, result.output
    assert "wrote 2,000 orders" in result.output
    assert (tmp_path / "optical_orders.csv").read_text().count("\n") == 2001


def test_train_promote_and_list(small_sample_spec: Path, tmp_path: Path) -> None:
    registry = str(tmp_path / "bundles")
    trained = runner.invoke(
        app,
        [
            "train",
            "--spec",
            str(small_sample_spec),
            "--registry",
            registry,
            "--backtest-folds",
            "0",
        ],
    )
    assert trained.exit_code == 0, trained.output
    version = trained.output.strip().splitlines()[-1]
    listed = runner.invoke(app, ["models", "--registry", registry])
    assert version in listed.output and "*" not in listed.output.split(version)[0][-5:]
    promoted = runner.invoke(app, ["promote", version, "--registry", registry])
    assert promoted.exit_code == 0 and f"promoted {version}" in promoted.output
    listed = runner.invoke(app, ["models", "--registry", registry])
    marked = [line for line in listed.output.splitlines() if version in line]
    assert marked and "*" in marked[0]


def test_a_user_mistake_is_one_red_line_and_exit_1(small_sample_spec: Path, tmp_path: Path) -> None:
    spec = tmp_path / "optical.toml"
    shutil.copy(small_sample_spec, spec)
    spec.write_text(spec.read_text().replace('unit = "day"', 'unit = "fortnight"'))
    result = runner.invoke(app, ["train", "--spec", str(spec), "--registry", str(tmp_path)])
    assert result.exit_code == 1
    assert "error:" in result.output and "[quote] unit" in result.output
    assert "Traceback" not in result.output
    missing = runner.invoke(app, ["promote", "nope", "--registry", str(tmp_path)])
    assert missing.exit_code == 1 and "no model version 'nope'" in missing.output


def test_train_reads_another_table_with_data(small_sample_spec: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "orders.csv"
    elsewhere.parent.mkdir()
    shutil.copy(small_sample_spec.parent / "optical_orders.csv", elsewhere)
    spec = tmp_path / "spec" / "optical.toml"
    spec.parent.mkdir()
    shutil.copy(small_sample_spec, spec)
    result = runner.invoke(
        app,
        [
            "train",
            "--spec",
            str(spec),
            "--data",
            str(elsewhere),
            "--registry",
            str(tmp_path / "b"),
            "--backtest-folds",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output


def test_a_scheduled_retrain_promotes_only_a_bundle_that_keeps_the_target(
    small_sample_spec: Path, tmp_path: Path
) -> None:
    registry = str(tmp_path / "bundles")
    args = ["train", "--registry", registry, "--backtest-folds", "1", "--promote-if-on-target"]
    kept = runner.invoke(app, [*args, "--spec", str(small_sample_spec)])
    assert kept.exit_code == 0, kept.output
    good = kept.output.strip().splitlines()[-1]
    assert f"promoted {good}" in kept.output
    # No buffer at all: about half the promises break, and the promoted bundle stays.
    spec = tmp_path / "optical.toml"
    spec.write_text(
        re.sub(
            r'policy = "\w+"', 'policy = "fixed"\nfixed_buffer = 0', small_sample_spec.read_text()
        )
    )
    data = small_sample_spec.parent / "optical_orders.csv"
    broken = runner.invoke(app, [*args, "--spec", str(spec), "--data", str(data)])
    assert broken.exit_code == 1, broken.output
    assert "not promoted: the back-test broke" in broken.output
    assert Registry(Path(registry)).promoted_version() == good

"""`promise train`'s progress: every step says what it does, and its back-test summary (the
long step, ~20-30 s on the sample) tells each fold's step as it goes, as `promise backtest`'s
does (the command line draws both on one live display)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from models.registry import Registry
from training.pipeline import train_bundle

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)


def test_train_tells_each_step_and_each_step_of_its_backtest(
    small_sample_spec: Path, tmp_path: Path
) -> None:
    said: list[str] = []
    heard: list[tuple[str, int, int]] = []

    train_bundle(
        small_sample_spec,
        Registry(tmp_path / "bundles"),
        now=NOW,
        backtest_folds=2,
        progress=said.append,
        backtest_progress=lambda what, done, total: heard.append((what, done, total)),
    )

    assert [message.split()[0] for message in said] == [
        "read",
        "back-testing",
        "fitting",
        "trained",
    ]
    assert said[2] == "fitting the model on the whole history"
    totals = {total for _, _, total in heard}
    assert len(totals) == 1 and totals.pop() > 2
    done = [step for _, step, _ in heard]
    assert done == sorted(done) and done[0] == 0 and done[-1] == heard[-1][2]
    folds = {what.split(" (")[0] for what, _, _ in heard if what.startswith("fold ")}
    assert folds == {"fold 1/2", "fold 2/2"}

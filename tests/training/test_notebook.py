"""Promise in a notebook (issue 20): the README's example runs as written, and the DataFrame
API gives what the command line's code gives."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest

from models.errors import SpecError
from training.notebook import PromiseEngine
from training.sample_data import write_sample_data
from training.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder like the repository's: data/optical.toml and a small sample."""
    folder = tmp_path_factory.mktemp("notebook")
    (folder / "data").mkdir()
    write_sample_data(folder / "data", n_orders=2500, seed=11)
    spec = (ROOT / "data" / "optical.toml").read_text(encoding="utf-8")
    # One fit per fold, as the suite's other back-tests (tests/conftest.py FOLD_CADENCE):
    # the weekly refits of production would refit a hundred times here.
    (folder / "data" / "optical.toml").write_text(
        _with_cadence(spec, refit_every=3650.0, recalibrate_every=3650.0), encoding="utf-8"
    )
    return folder


def _with_cadence(spec: str, **cadence: float) -> str:
    lines = "".join(f"{name} = {value}\n" for name, value in cadence.items())
    if "[backtest]" in spec:
        return spec.replace("[backtest]\n", f"[backtest]\n{lines}", 1)
    return f"{spec}\n[backtest]\n{lines}"


def test_the_readme_notebook_example_runs(
    shop: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [code] = re.findall(r"```python\n(# notebook example.*?)```", readme, flags=re.S)
    monkeypatch.chdir(shop)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "promise_date" in printed and "late_rate" in printed
    assert any((shop / "models" / "bundles").iterdir())


@pytest.fixture(scope="module")
def engine(shop: Path) -> PromiseEngine:
    history = pd.read_csv(shop / "data" / "optical_orders.csv")
    return PromiseEngine.fit(history, load_spec(shop / "data" / "optical.toml"))


def test_quotes_from_a_frame_match_the_one_quoting_path(shop: Path, engine: PromiseEngine) -> None:
    history = pd.read_csv(shop / "data" / "optical_orders.csv")
    new = history.tail(5).drop(columns=["fulfilled_at"])
    naive = engine.quote(new.assign(ordered_at=pd.to_datetime(new["ordered_at"])))
    aware = engine.quote(
        new.assign(ordered_at=pd.to_datetime(new["ordered_at"]).dt.tz_localize("Europe/London"))
    )
    assert naive["deadline_at"].tolist() == aware["deadline_at"].tolist()
    assert list(naive.index) == list(new.index)
    assert naive["deadline_at"].dt.tz is not None
    assert (naive["expected_hours"] > 0).all() and (naive["buffer_hours"] >= 0).all()
    first = naive.iloc[0]
    assert first["promise_date"] == first["promise_local"].date()
    assert first["deadline_at"] > pd.Timestamp(new["ordered_at"].iloc[0], tz="Europe/London")


def test_a_bad_frame_names_what_is_wrong(shop: Path, engine: PromiseEngine) -> None:
    history = pd.read_csv(shop / "data" / "optical_orders.csv")
    with pytest.raises(SpecError, match="has no column 'coating'"):
        engine.quote(history.drop(columns=["coating"]))
    broken = history.copy()
    broken.loc[broken.index[3], "ordered_at"] = "not a time"
    with pytest.raises(SpecError, match=r"the DataFrame.*ordered_at"):
        PromiseEngine.fit(broken, shop / "data" / "optical.toml")
    recent = dt.datetime.now(dt.UTC)
    with pytest.raises(SpecError, match="row 0"):
        engine.quote(history.head(1).assign(ordered_at=pd.Timestamp(recent), sphere_power=999.0))

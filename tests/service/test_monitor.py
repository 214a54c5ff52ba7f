"""`promise monitor`: drift alarms printed for a data scientist, with exit codes cron can act on
(0 no alarm, 2 a segment flagged, 1 a user mistake), over a real ledger, through the one
command line (in this process, and as the `promise` console script)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from models.buffers import AdaptiveBuffers
from models.control import ControlState, learn
from models.registry import Registry
from promise_cli import app
from tests.service.conftest import (
    ClientFactory,
    SettingsFactory,
    TrainedBundles,
    quote_body,
    segment_of,
)

UTC = dt.UTC
OLD_ORDERS = {"max_order_age_days": 60.0}
PROMISE = Path(sys.executable).parent / "promise"


def main(argv: list[str]) -> int:
    """`promise monitor ARGV` through the one app in this process: its exit code; what it
    printed is passed on to stdout and stderr (for capsys)."""
    ran = CliRunner().invoke(app, ["monitor", *argv])
    sys.stdout.write(ran.stdout)
    sys.stderr.write(ran.stderr)
    return ran.exit_code


def _batch(client: TestClient, store: str, n: int, days_ago: float) -> list[dict[str, Any]]:
    at = (dt.datetime.now(UTC) - dt.timedelta(days=days_ago)).isoformat()
    body = {"orders": [{**quote_body(store_id=store), "ordered_at": at} for _ in range(n)]}
    response = client.post("/v1/quotes/batch", json=body)
    assert response.status_code == 201, response.text
    return list(response.json()["quotes"])


def _row(output: str, segment: str) -> list[str]:
    """The table row of a segment, split into cells (columns are 2 or more spaces apart)."""
    cells = [re.split(r"\s{2,}", line.strip()) for line in output.splitlines()]
    rows = [row for row in cells if row[0] == segment]
    assert len(rows) == 1, output
    return rows[0]


@pytest.fixture
def old_client(make_client: ClientFactory) -> TestClient:
    return make_client(**OLD_ORDERS)


def test_a_breaking_segment_is_printed_with_its_advice_and_exit_2(
    old_client: TestClient, make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    quotes = _batch(old_client, "MAN", 40, days_ago=30)  # all due, none fulfilled: all broken
    segment = segment_of(old_client, "MAN")

    code = main(["--database-url", make_settings().database_url])

    out, err = capsys.readouterr()
    assert code == 2 and err == ""
    row = _row(out, segment)
    assert row[1] == quotes[0]["model_version"] and row[2] == "conformal"
    assert row[3:6] == ["40", "40", "100.0%"]
    # "-": no adaptive buffer for conformal promises.
    assert row[6:] == ["91.2%-100.0%", "2.5%-10.0%", "above band !", "-", "-"]
    assert "1 segment flagged" in out
    assert f"{segment} ({quotes[0]['model_version']}): Promises are breaking" in out


def test_the_options_reach_the_check(
    old_client: TestClient, make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    _batch(old_client, "MAN", 40, days_ago=30)
    url = make_settings().database_url

    assert main(["--database-url", url, "--min-decided", "50"]) == 0
    assert "too few decided" in capsys.readouterr().out
    assert main(["--database-url", url, "--window-days", "1"]) == 0
    assert "no promises due in the last 1 days" in capsys.readouterr().out
    code = main(["--database-url", url, "--band-factor", "4", "--confidence", "0.99", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 2
    assert (report["band_factor"], report["confidence"]) == (4.0, 0.99)
    assert report["segments"][0]["band"] == [pytest.approx(0.0125), pytest.approx(0.2)]


def test_kept_promises_and_fresh_quotes_raise_no_alarm(
    old_client: TestClient, make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_settings().database_url
    old_client.post("/v1/quotes", json=quote_body())  # not due yet: not counted
    assert main(["--database-url", url]) == 0
    assert "no promises due in the last 28 days" in capsys.readouterr().out

    for quote in _batch(old_client, "MAN", 30, days_ago=30):
        fulfilled = quote["expected_completion"]  # ready on time
        old_client.post(f"/v1/quotes/{quote['quote_id']}/outcome", json={"fulfilled_at": fulfilled})
    assert main(["--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "within band" in _row(out, segment_of(old_client, "MAN"))
    assert "no alarms: 1 segment checked" in out and "Promises" not in out


def test_the_json_is_the_drift_section_of_v1_performance(
    old_client: TestClient, make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    _batch(old_client, "MAN", 40, days_ago=30)
    _batch(old_client, "LDS", 5, days_ago=30)

    code = main(["--database-url", make_settings().database_url, "--json"])

    printed = json.loads(capsys.readouterr().out)
    served = old_client.get("/v1/performance").json()["drift"]
    assert code == 2 and printed["alarms"] == 1
    for report in (printed, served):
        assert dt.datetime.fromisoformat(report.pop("at")) <= dt.datetime.now(UTC)
    assert printed == served


def test_the_adaptive_policy_shows_where_its_buffer_stands(
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    registry_root: Path,
    trained: TrainedBundles,
    capsys: pytest.CaptureFixture[str],
) -> None:
    Registry(registry_root).promote(trained.adaptive)
    client = make_client(**OLD_ORDERS, control_refresh_seconds=0.0)  # no stale state
    _batch(client, "MAN", 40, days_ago=30)  # all due, none fulfilled: 40 promises broken
    url = make_settings().database_url
    segment = segment_of(client, "MAN")
    # What the core makes of 40 broken promises, learnt at their deadlines (no fulfilment
    # yet: no nowcast).
    engine = Registry(registry_root).load(trained.adaptive).engine
    policy = engine.buffer_rule
    assert isinstance(policy, AdaptiveBuffers)
    path = policy.resolve(("MAN",)).path
    state = learn(ControlState(), [path] * 40, np.ones(40, dtype=bool), 0.05, policy.leaks())
    score, level = policy.score_at(policy.table[segment], state)
    offset = max(score, 0.0) - max(policy.table[segment].score, 0.0)

    assert main(["--database-url", url, "--registry", str(registry_root)]) == 2
    out, err = capsys.readouterr()
    row = _row(out, segment)
    assert err == "" and row[1:3] == [trained.adaptive, "adaptive"]
    assert row[-2:] == [f"{offset:+.1f} h", f"{level:.1%}"]
    assert offset > 24.0 and level > 0.95
    assert main(["--database-url", url, "--registry", str(registry_root), "--json"]) == 2
    (shown,) = json.loads(capsys.readouterr().out)["segments"]
    assert shown["adaptive_offset_hours"] == pytest.approx(offset)
    assert shown["adaptive_level"] == pytest.approx(level)
    assert (shown["adaptive_learnt"], shown["adaptive_offset_ratio"]) == (40, None)
    served = client.get("/v1/performance").json()["drift"]["segments"]
    assert served == [shown]


def test_without_the_registry_the_adaptive_columns_stay_empty_with_a_warning(
    make_client: ClientFactory,
    make_settings: SettingsFactory,
    registry_root: Path,
    trained: TrainedBundles,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    Registry(registry_root).promote(trained.adaptive)
    client = make_client(**OLD_ORDERS)
    _batch(client, "MAN", 40, days_ago=30)

    code = main(["--database-url", make_settings().database_url, "--registry", str(tmp_path)])

    out, err = capsys.readouterr()
    assert code == 2  # the alarm still tells
    assert _row(out, segment_of(client, "MAN"))[-2:] == ["-", "-"]
    assert err.startswith(
        f"warning: adaptive buffers not shown: no model version {trained.adaptive!r}"
    )
    assert err.count("\n") == 1


def test_the_promise_command_runs_it(
    old_client: TestClient, make_settings: SettingsFactory
) -> None:
    quotes = _batch(old_client, "MAN", 40, days_ago=30)
    url = make_settings().database_url

    ran = subprocess.run(
        [str(PROMISE), "monitor", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert ran.returncode == 2, ran.stderr
    assert "above band !" in _row(ran.stdout, segment_of(old_client, "MAN"))
    assert f"({quotes[0]['model_version']}): Promises are breaking" in ran.stdout
    as_json = subprocess.run(
        [str(PROMISE), "monitor", "--database-url", url, "--json", "--min-decided", "41"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["segments"][0]["status"] == "too few decided"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["--database-url", "sqlite:////proc/no-such-folder/ledger.db"],
            "error: the database sqlite:////proc/no-such-folder/ledger.db cannot be reached",
        ),
        (
            ["--database-url", "postgresql+psycopg://promise:s3cret@127.0.0.1:9/ledger"],
            "error: the database postgresql+psycopg://promise:***@127.0.0.1:9/ledger "
            "cannot be reached",
        ),
        (["--database-url", "mysql://promise@db/ledger"], "error: --database-url: use sqlite"),
        (["--window-days", "0"], "error: --window-days: Input should be greater than 0"),
        (
            ["--confidence", "high"],
            "error: Invalid value for '--confidence': Input should be a valid number",
        ),
        (["--windw", "3"], "error: No such option: --windw"),
        (["--min-decide", "5"], "error: No such option: --min-decide"),
    ],
)
def test_a_user_mistake_is_one_line_and_exit_1(
    argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "--database-url" not in argv:
        argv = ["--database-url", f"sqlite:///{tmp_path / 'ledger.db'}", *argv]

    assert main(argv) == 1

    out, err = capsys.readouterr()
    assert out == "" and err.startswith(says) and err.count("\n") == 1
    assert "s3cret" not in err and "Traceback" not in err


def test_the_promise_command_keeps_exit_2_for_alarms(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    for mistake in (["--band-factor", "wide"], ["--min-decide", "5"], ["--windw", "3"]):
        ran = subprocess.run(
            [str(PROMISE), "monitor", "--database-url", url, *mistake],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert ran.returncode == 1, ran.stderr
        assert ran.stderr.startswith("error:") and ran.stderr.count("\n") == 1

"""Bulk import of outcomes from CSV: counts what was recorded, names bad rows precisely."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from models.errors import InputError
from promise_cli import app
from service.ledger import Ledger
from service.ledger.outcomes import OUTCOME_CHUNK
from service.outcomes import import_outcomes, read_outcomes
from tests.service.conftest import quote_body

UTC = dt.UTC


def _quotes(client: TestClient, n: int) -> list[dict[str, str]]:
    return [client.post("/v1/quotes", json=quote_body()).json() for _ in range(n)]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_an_import_records_new_outcomes_and_counts_the_rest(
    client: TestClient, tmp_path: Path
) -> None:
    first, second, third = _quotes(client, 3)
    client.post(
        f"/v1/quotes/{second['quote_id']}/outcome", json={"fulfilled_at": second["ordered_at"]}
    )
    client.post(
        f"/v1/quotes/{third['quote_id']}/outcome", json={"fulfilled_at": third["ordered_at"]}
    )
    later = dt.datetime.fromisoformat(third["ordered_at"]) + dt.timedelta(seconds=1)
    csv = _write(
        tmp_path / "outcomes.csv",
        "\n".join(
            [
                "order,quote_id,fulfilled_at",
                f"a,{first['quote_id']},{first['ordered_at']}",
                f"b,{second['quote_id']},{second['ordered_at']}",
                f"c,{third['quote_id']},{later.isoformat()}",
                "d,Q-NOT-KNOWN,2026-01-01T00:00:00Z",
                "e,Q-STILL-OPEN,",
                "",
            ]
        ),
    )
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]

    report = import_outcomes(csv, ledger, dt.datetime.now(UTC))

    assert (report.rows, report.recorded, report.already_recorded, report.still_open) == (
        5,
        1,
        1,
        1,
    )
    assert report.unknown == [(5, "Q-NOT-KNOWN")]
    assert report.conflicts == [(4, third["quote_id"])]
    stored = client.get(f"/v1/quotes/{first['quote_id']}").json()["outcome"]
    assert stored["source"] == "csv"
    again = import_outcomes(csv, ledger, dt.datetime.now(UTC))
    assert (again.recorded, again.already_recorded) == (0, 2)


BAD_FILES = {
    "no such column": (
        "id,fulfilled_at\nQ-1,2026-01-01T00:00:00Z\n",
        "line 1: no column 'quote_id'",
    ),
    "naive time": (
        "quote_id,fulfilled_at\nQ-1,2026-01-01T00:00:00Z\nQ-2,2026-01-02 10:00\n",
        "line 3, column fulfilled_at: '2026-01-02 10:00' has no time zone",
    ),
    "not a time": (
        "quote_id,fulfilled_at\nQ-1,soon\n",
        "line 2, column fulfilled_at: 'soon' is not an ISO 8601 time",
    ),
    "future": (
        "quote_id,fulfilled_at\nQ-1,2999-01-01T00:00:00Z\n",
        "line 2, column fulfilled_at: '2999-01-01T00:00:00Z' is in the future",
    ),
    "empty id": (
        "quote_id,fulfilled_at\n,2026-01-01T00:00:00Z\n",
        "line 2, column quote_id: empty",
    ),
    "empty file": ("", "the file is empty"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_names_file_line_and_column(tmp_path: Path, case: str) -> None:
    text, words = BAD_FILES[case]
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(InputError) as caught:
        read_outcomes(path, dt.datetime.now(UTC))
    assert str(path) in str(caught.value)
    assert words in str(caught.value)


def test_bytes_that_are_not_utf8_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"quote_id,fulfilled_at\nQ-1,2026-01-01T00:00:00Z\nQ-\xe9,x\n")
    with pytest.raises(InputError, match=r"line 3: not UTF-8 text \(byte 0xe9 at character 3\)"):
        read_outcomes(path, dt.datetime.now(UTC))


def test_the_command_line_reports_counts_and_errors(client: TestClient, tmp_path: Path) -> None:
    [quote] = _quotes(client, 1)
    url = str(client.app.state.settings.database_url)  # type: ignore[attr-defined]
    good = _write(
        tmp_path / "good.csv", f"quote_id,fulfilled_at\n{quote['quote_id']},{quote['ordered_at']}\n"
    )
    bad = _write(tmp_path / "bad.csv", "quote_id,fulfilled_at\nQ-1,never\n")
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        ran = runner.invoke(app, ["import-outcomes", *args])  # the one app, in this process
        return ran.exit_code, ran.stdout, ran.stderr

    code, out, err = run(str(good), "--database-url", url)
    assert (code, err) == (0, ""), err
    assert f"imported {good}" in out and "recorded: 1" in out and "unknown quote ids: 0" in out
    code, out, err = run(str(good), "--database-url", url)  # the ledger kept it
    assert code == 0 and "recorded: 0" in out and "already recorded: 1" in out, err
    for args, says in (
        ((str(bad), "--database-url", url), "line 2, column fulfilled_at"),
        ((str(tmp_path / "missing.csv"), "--database-url", url), "no such file"),
        ((str(good), "--database-url", "mysql://db/ledger"), "error: --database-url: use sqlite"),
        (
            (str(good), "--database-url", "sqlite:////proc/no-such-folder/ledger.db"),
            "error: the database sqlite:////proc/no-such-folder/ledger.db cannot be reached",
        ),
        ((str(good), "--databse-url", url), "error: No such option: --databse-url"),
    ):
        code, out, err = run(*args)
        assert code == 1 and out == "", (args, out)
        assert says in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_a_big_import_tells_its_progress_after_each_transaction(
    client: TestClient, tmp_path: Path
) -> None:
    rows = 2 * OUTCOME_CHUNK + 7
    at = dt.datetime.now(UTC).isoformat()
    lines = "".join(f"Q-{n:06d},{at}\n" for n in range(rows))
    path = _write(tmp_path / "big.csv", "quote_id,fulfilled_at\n" + lines)
    heard: list[tuple[int, int]] = []
    ledger: Ledger = client.app.state.ledger  # type: ignore[attr-defined]

    report = import_outcomes(
        path, ledger, dt.datetime.now(UTC), progress=lambda *p: heard.append(p)
    )

    assert len(report.unknown) == rows
    assert heard == [(OUTCOME_CHUNK, rows), (2 * OUTCOME_CHUNK, rows), (rows, rows)]

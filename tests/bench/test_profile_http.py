"""`bench.profile_http` puts each py-spy sample in the innermost part of the request it names."""

from __future__ import annotations

from pathlib import Path

from bench.profile_http import part_of, shares

LOOP = "run (asyncio/base_events.py:600);data_received (uvicorn/protocols/http/h11_impl.py:10)"
ROUTE = f"{LOOP};app (fastapi/routing.py:300);timed (service/limits.py:95)"


def test_a_sample_goes_to_its_innermost_named_part(tmp_path: Path) -> None:
    insert = (
        "_bootstrap (threading.py:1);run (anyio/_backends/_asyncio.py:9);"
        "_insert_request (service/ledger/quotes.py:160);execute (sqlalchemy/engine/base.py:1)"
    )
    raw = tmp_path / "profile.txt"
    raw.write_text(
        f"{LOOP} 5\n{ROUTE} 3\n{insert} 7\n{ROUTE};info (logging/__init__.py:1) 2\n"
        "always_pong (uvicorn/supervisors/multiprocess.py:1) 9\n",
        encoding="utf-8",
    )

    counts = shares(raw)

    assert counts == {
        "uvicorn + h11 + event loop": 5,
        "Promise middlewares": 3,
        "ledger SQL (SQLAlchemy + driver)": 7,
        "logging (JSON lines)": 2,
    }  # uvicorn's health-check thread is not the request's
    assert part_of("main (somewhere.py)") == "other"

"""Two hosts that share nothing but PostgreSQL (issue 17): separate working folders, separate
registries (the second one empty), each server in its own network namespace where the machine
allows it (else on two loopback ports), reaching the database through a forwarder.

Host 1 serves its promoted bundle; host 2, with an empty registry and only the database URL,
serves the same version, copied from the ledger and checked there. Quotes, outcomes, the
adaptive policy's state and an admin reload made on host 1 are seen on host 2.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest
from sqlalchemy.engine import make_url

from models.registry import Registry
from tests.service.conftest import (
    ADMIN_KEY,
    POS_KEY,
    TrainedBundles,
    bearer,
    fresh_schema,
    postgres_url,
    quote_body,
)
from tests.service.proxy import Forwarder
from tests.service.servers import free_port, running_server, wait_until

pytestmark = pytest.mark.postgres
CHECK_SECONDS = "1"


@dataclass(frozen=True)
class Host:
    """Where a host's server listens, how it reaches the database, how to run a command on it."""

    address: str
    database_host: str
    prefix: tuple[str, ...]


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def _namespace(index: int) -> Iterator[Host]:
    """A network namespace joined to this one by a veth pair (10.231.index.1 here, .2 there)."""
    tag = uuid.uuid4().hex[:6]
    name, outer, inner = f"promise-{tag}", f"pr{tag}a", f"pr{tag}b"
    here, there = f"10.231.{index}.1", f"10.231.{index}.2"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        _run("ip", "link", "set", inner, "netns", name)
        _run("ip", "addr", "add", f"{here}/30", "dev", outer)
        _run("ip", "link", "set", outer, "up")
        for command in (
            ("ip", "addr", "add", f"{there}/30", "dev", inner),
            ("ip", "link", "set", inner, "up"),
            ("ip", "link", "set", "lo", "up"),
        ):
            _run("ip", "netns", "exec", name, *command)
        yield Host(address=there, database_host=here, prefix=("ip", "netns", "exec", name))
    finally:
        subprocess.run(["ip", "link", "del", outer], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def _namespaces_work() -> bool:
    try:
        with _namespace(250):
            return True
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    """Two hosts: network namespaces where the machine allows it, else loopback."""
    if not _namespaces_work():
        yield [Host("127.0.0.1", "127.0.0.1", ()), Host("127.0.0.1", "127.0.0.1", ())]
        return
    with _namespace(1) as first, _namespace(2) as second:
        yield [first, second]


def _buffer_hours(url: str) -> float:
    """The buffer a host gives one order now."""
    answer = httpx.post(f"{url}/v1/quotes", json=quote_body(), headers=bearer(POS_KEY))
    assert answer.status_code == 201, answer.text
    hours: float = answer.json()["buffer_hours"]
    return hours


def _database_url(schema_url: str, forwarder_host: str, forwarder_port: int) -> str:
    url = make_url(schema_url).set(host=forwarder_host, port=forwarder_port)
    return url.render_as_string(hide_password=False)


def test_two_hosts_share_quotes_outcomes_adaptive_state_and_the_served_model(
    hosts: list[Host], trained: TrainedBundles, tmp_path: Path
) -> None:
    base = postgres_url()
    database = make_url(base)
    target = (database.host or "127.0.0.1", database.port or 5432)
    with fresh_schema(base) as schema_url, contextlib.ExitStack() as stack:
        folders = [tmp_path / "host-1", tmp_path / "host-2"]
        shutil.copytree(trained.root, folders[0] / "bundles")
        (folders[1] / "bundles").mkdir(parents=True)  # host 2 has no bundle at all
        Registry(folders[0] / "bundles").promote(trained.adaptive)
        urls = []
        for host, folder in zip(hosts, folders, strict=True):
            port = free_port()
            forwarder = Forwarder(port, target, host=host.database_host)
            forwarder.start()
            stack.callback(forwarder.stop)
            server_port = free_port()
            env = {
                "PROMISE_DATABASE_URL": _database_url(schema_url, host.database_host, port),
                "PROMISE_REGISTRY": str(folder / "bundles"),
                "PROMISE_API_KEYS": POS_KEY,
                "PROMISE_ADMIN_KEY": ADMIN_KEY,
                "PROMISE_SESSION_SECRET": "one-secret-for-every-host-0123456789",
                "PROMISE_MODEL_CHECK_SECONDS": CHECK_SECONDS,
                "PROMISE_CONTROL_REFRESH_SECONDS": "0",
                "PROMISE_MAX_ORDER_AGE_DAYS": "60",
                "PROMISE_ALARM_WINDOW_DAYS": "60",
            }
            command = [
                *host.prefix,
                sys.executable,
                "-m",
                "promise_cli",
                "serve",
                "--host",
                host.address,
                "--port",
                str(server_port),
            ]
            if urls:  # host 1 serves first, so the ledger holds its choice and its bundle
                pos = bearer(POS_KEY)
                assert httpx.post(f"{urls[0]}/v1/quotes", json=quote_body(), headers=pos).is_success
            urls.append(
                stack.enter_context(
                    running_server(
                        command, env, server_port, folder / "server.log", host=host.address
                    )
                )
            )
        one, two = urls
        pos = bearer(POS_KEY)

        models = [httpx.get(f"{url}/v1/model", headers=pos).json()["version"] for url in urls]
        assert models == [trained.adaptive, trained.adaptive]
        assert (folders[1] / "bundles" / trained.adaptive / "serving.npz").is_file()

        quoted_on_two = httpx.post(f"{two}/v1/quotes", json=quote_body(), headers=pos).json()
        seen_on_one = httpx.get(f"{one}/v1/quotes/{quoted_on_two['quote_id']}", headers=pos)
        assert seen_on_one.status_code == 200 and seen_on_one.json() == quoted_on_two
        outcome = {"fulfilled_at": quoted_on_two["ordered_at"]}
        recorded = httpx.post(
            f"{one}/v1/quotes/{quoted_on_two['quote_id']}/outcome", json=outcome, headers=pos
        )
        assert recorded.status_code == 201
        again = httpx.get(f"{two}/v1/quotes/{quoted_on_two['quote_id']}", headers=pos).json()
        assert again["outcome"]["fulfilled_at"] == recorded.json()["outcome"]["fulfilled_at"]

        # The adaptive policy's state is replayed from the shared ledger: a promise broken on
        # host 1's books, its outcome recorded on host 2, moves both hosts' buffers alike.
        before = _buffer_hours(two)
        placed = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
        late = httpx.post(
            f"{one}/v1/quotes",
            json={**quote_body(), "ordered_at": placed.isoformat()},
            headers=pos,
        ).json()
        fulfilled = {"fulfilled_at": dt.datetime.now(dt.UTC).isoformat()}
        assert httpx.post(
            f"{two}/v1/quotes/{late['quote_id']}/outcome", json=fulfilled, headers=pos
        ).is_success
        after = [_buffer_hours(url) for url in urls]
        assert after[0] == after[1] != before
        drift = [httpx.get(f"{url}/v1/performance", headers=pos).json()["drift"] for url in urls]
        for report in drift:
            report.pop("at")  # each host's own clock
        assert drift[0] == drift[1] and drift[0]["segments"]

        # An admin reload on host 1 is followed by host 2 within the check interval.
        Registry(folders[0] / "bundles").promote(trained.conformal)
        reload = httpx.post(f"{one}/v1/model/reload", headers=bearer(ADMIN_KEY))
        assert reload.status_code == 200, reload.text

        def host_two_serves_it() -> bool:
            answer = httpx.get(f"{two}/v1/model", headers=pos).json()
            return bool(answer["version"] == trained.conformal)

        wait_until(host_two_serves_it, "host 2 following host 1's reload")
        assert (folders[1] / "bundles" / trained.conformal / "manifest.json").is_file()
        assert httpx.post(f"{two}/v1/quotes", json=quote_body(), headers=pos).json()[
            "model_version"
        ] == (trained.conformal)

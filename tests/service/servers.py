"""Real servers for the tests: a subprocess on a free loopback port, stopped afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx

# How long a server may take to become ready on a busy machine: a bound, not a speed check.
START_LIMIT_SECONDS = 120.0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after the start limit."""
    deadline = time.monotonic() + START_LIMIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {START_LIMIT_SECONDS:.0f} s")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_server(
    command: Sequence[str],
    env: Mapping[str, str],
    port: int,
    log_path: Path,
    host: str = "127.0.0.1",
) -> Iterator[str]:
    """Start `command` (it must listen on `host`:`port`), wait until /readyz answers 200, yield
    the base URL, then stop it (SIGTERM, then SIGKILL)."""
    with running_process(command, env, port, log_path, host) as (base, _process):
        yield base


def worker_pids(process: subprocess.Popen[bytes]) -> list[int]:
    """The uvicorn worker processes under a `promise serve --workers N` process."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == process.pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


@contextmanager
def running_process(
    command: Sequence[str],
    env: Mapping[str, str],
    port: int,
    log_path: Path,
    host: str = "127.0.0.1",
    ready: bool = True,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`running_server`, yielding the process too (to find and kill its workers); with
    `ready=False` it waits only until the server answers (/healthz), ready or not."""
    base = f"http://{host}:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(process, base, log_path, "/readyz" if ready else "/healthz")
            yield base, process
        finally:
            _stop(process)


def _wait_ready(
    process: subprocess.Popen[bytes], base: str, log_path: Path, path: str = "/readyz"
) -> None:
    deadline = time.monotonic() + START_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"the server exited with {process.returncode}:\n"
                f"{log_path.read_text(errors='replace')[-3000:]}"
            )
        try:
            if httpx.get(f"{base}{path}", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(
        f"the server was not ready within {START_LIMIT_SECONDS:.0f} s:\n"
        f"{log_path.read_text(errors='replace')[-3000:]}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

"""The servers `make bench` starts: a free port, start and stop (its own process group),
readiness, the resident memory of a server's workers and the CPU time they use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server for the block; stop it (SIGTERM, then SIGKILL) whatever happens."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: its workers stop with it
        )  # fmt: skip
        try:
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)  # the group this benchmark created
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_ready(
    port: int, path: str, process: subprocess.Popen[bytes], log: Path | None = None
) -> None:
    """Wait until `path` answers 200; raise naming the server's last log lines when not."""
    deadline = time.monotonic() + 180.0
    url = f"http://127.0.0.1:{port}{path}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{url}: the server exited with {process.returncode}\n{tail}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{url} was not ready within 180 s\n{tail}")


def _children(master: int) -> list[Path]:
    """The /proc folders of process `master`'s children (uvicorn's workers) still running."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        if f"\nPPid:\t{master}\n" in status:
            found.append(entry)
    return found


def _status_field(entry: Path, name: str) -> int | None:
    """A kB figure of /proc/PID/status (None once the process is gone or lacks it)."""
    try:
        status = (entry / "status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields[name].split()[0]) if name in fields else None


def worker_pids(master: int) -> list[int]:
    """The process ids of `master`'s children still running (uvicorn's workers)."""
    return [int(entry.name) for entry in _children(master)]


def cpu_seconds(master: int) -> float:
    """User and system CPU seconds used so far by process `master` and its children (uvicorn's
    workers) still running: divided by the requests answered between two readings, the CPU a
    request costs, which other work on a shared machine does not change as it changes the
    throughput."""
    ticks = 0
    for entry in [Path(f"/proc/{master}"), *_children(master)]:
        try:
            # Fields after the command name (which may hold spaces): utime is the 12th, stime
            # the 13th (proc(5), counted from `state`).
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def worker_rss_mib(master: int) -> list[float]:
    """VmRSS (MiB) of each child of process `master` (uvicorn's workers)."""
    sizes = (_status_field(entry, "VmRSS") for entry in _children(master))
    return sorted(round(kb / 1024.0, 1) for kb in sizes if kb is not None)


def worker_private_mib(master: int) -> list[float]:
    """Private (unshared) memory, MiB, of each child of `master`: RSS less the pages shared
    with other processes (libllvmlite's ~86 MiB of code, for one, is mapped once for all)."""
    sizes = []
    for entry in _children(master):
        try:
            rollup = (entry / "smaps_rollup").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in rollup.splitlines()[1:] if ":" in line)
        private = sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))
        sizes.append(round(private / 1024.0, 1))
    return sorted(sizes)

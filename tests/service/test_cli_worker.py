"""`python -m promise_cli serve --workers 2` keeps its workers lean: uvicorn spawns them, and a
spawned worker re-imports the main module (`promise_cli`, the one command line), so whatever
the command line imports at module level is in every worker. Each worker is checked from
outside, by the shared objects mapped into it (/proc/<pid>/maps), after it has quoted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx2 as httpx

from tests.service.conftest import POS_KEY, TrainedBundles, bearer, quote_body
from tests.service.servers import free_port, running_process, wait_until, worker_pids

# The training stack's packages with compiled extensions, as their folders appear in a path
# of /proc/<pid>/maps (joblib is pure Python and shows in no map; it needs scikit-learn here).
HEAVY = ("sklearn", "scipy", "pandas", "pyarrow", "matplotlib")


def heavy_libraries(pid: int) -> set[str]:
    """The training-stack packages whose shared objects process `pid` has mapped."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split(maxsplit=5)[5] if len(line.split(maxsplit=5)) == 6 else ""
        if "/site-packages/" in path and ".so" in Path(path).name:
            folder = path.split("/site-packages/")[1].split("/")[0]  # pandas, scipy.libs, ...
            name = folder.split(".")[0].replace("scikit_learn", "sklearn")
            found |= {name} & set(HEAVY)
    return found


def test_the_workers_of_the_one_command_line_load_no_training_stack(
    registry_root: Path, trained: TrainedBundles, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "PROMISE_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "PROMISE_REGISTRY": str(registry_root),
        "PROMISE_API_KEYS": POS_KEY,
        "PROMISE_STAFF_KEY": "staff-key-for-the-worker-test",
        "PROMISE_ADMIN_KEY": "admin-key-for-the-worker-test",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    command = [
        sys.executable, "-m", "promise_cli", "serve", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "2",
    ]  # fmt: skip
    with running_process(command, env, port, tmp_path / "server.log") as (base, process):
        wait_until(lambda: len(worker_pids(process)) == 2, "two workers")
        for _ in range(8):  # both workers answer and load their model's kernels
            answer = httpx.post(
                f"{base}/v1/quotes", json=quote_body(), headers=bearer(POS_KEY), timeout=30.0
            )
            assert answer.status_code == 201, answer.text
        workers = worker_pids(process)
        found = {pid: heavy_libraries(pid) for pid in [process.pid, *workers]}
    assert len(workers) == 2
    assert found == {pid: set() for pid in [process.pid, *workers]}


def test_the_check_sees_a_process_that_loaded_the_training_stack() -> None:
    code = "import sys, pandas, sklearn.base; sys.stdin.read()"
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE) as probe:
        try:
            wait_until(lambda: "sklearn" in heavy_libraries(probe.pid), "sklearn mapped")
            assert {"pandas", "sklearn", "scipy"} <= heavy_libraries(probe.pid)
        finally:
            probe.kill()

"""The bench's reading of a server's CPU time (`bench.processes.cpu_seconds`): the process and
its children, as the kernel counts them, whatever the wall clock did meanwhile."""

from __future__ import annotations

import subprocess
import sys

from bench.processes import cpu_seconds

# A child that burns 0.5 s of its own CPU (counted by itself), says so, then waits to be read.
BURN = (
    "import sys, time\n"
    "while time.process_time() < 0.5: pass\n"
    "print('burnt', flush=True); sys.stdin.read()\n"
)


def test_cpu_seconds_count_a_process_and_its_children() -> None:
    with subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys; "
         f"child = subprocess.Popen([sys.executable, '-c', {BURN!r}]); "
         "child.wait()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as master:  # fmt: skip
        assert master.stdin is not None and master.stdout is not None
        assert master.stdout.readline().strip() == "burnt"  # the child still runs

        used = cpu_seconds(master.pid)

        master.stdin.close()  # the child reads its end: it ends, and so does the master
        master.wait(timeout=60)
    assert used >= 0.45  # the child's 0.5 s, less a clock tick of rounding
    assert cpu_seconds(master.pid) == 0.0  # gone: nothing left to count

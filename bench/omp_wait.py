"""How OpenMP's wait policy changes a booster fit, on this machine under its current load.

    python -m bench.omp_wait [--orders 300000] [--rounds 2]

Fits scikit-learn's HistGradientBoostingRegressor (100 iterations, 11 columns of generated
data) in fresh child processes, alternately with `OMP_WAIT_POLICY` unset (the OpenMP runtime's
default: a waiting thread spins for a while before it sleeps) and `PASSIVE` (it sleeps at once:
what `training` sets), and prints each fit's seconds with the load average at its start.
Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

_FIT = """
import sys, time
import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
n = int(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.normal(size=(n, 11))
y = 2 * x[:, 0] + np.sin(x[:, 1]) + rng.normal(size=n)
start = time.perf_counter()
HistGradientBoostingRegressor(max_iter=100, early_stopping=False, random_state=0).fit(x, y)
print(f"{time.perf_counter() - start:.2f}")
"""


def fit_seconds(policy: str | None, orders: int) -> float:
    """One fit in a fresh process with `OMP_WAIT_POLICY=policy` (None: unset): its seconds."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    done = subprocess.run(
        [sys.executable, "-c", _FIT, str(orders)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.omp_wait", description=__doc__)
    parser.add_argument("--orders", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    for _ in range(args.rounds):
        for policy in (None, "PASSIVE"):
            load = os.getloadavg()[0]
            seconds = fit_seconds(policy, args.orders)
            print(f"{policy or 'unset':8} {seconds:6.2f} s  (load average {load:.1f})")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training at scale: 1M and 10M sample orders trained and calibrated, and a back-test of 1M.

    python -m bench.scale [--out bench/results.json] [--sizes 1m,10m] [--work DIR]
                          [--backtest-workers auto|N]

For each size the sample history is generated (`training.sample_data.write_sample_data`, seed 7,
as `bench.run` does; kept in `--work` and reused when the file is there), then `train_bundle`
(read, train, calibrate, save; no back-test) runs in a child process, timed from spawn to exit,
its peak resident memory its own `ru_maxrss`. The 5-fold back-test of 1M orders (the spec's
policy, no trade-off sweep, as `bench.run`) runs in another child, timed around
`run_backtest` alone, the table already read: once on production's cadence (the spec's, weekly
refits), and once with the model refitted once per fold and the buffer still recalibrated
weekly (`[backtest] refit_every` longer than a fold), a different protocol whose late rate is
reported beside its time.

Writes `train_1m_seconds`, `train_1m_peak_mib`, `train_10m_seconds`, `train_10m_peak_mib`,
`backtest_1m_seconds`, `backtest_1m_late_rate`, `backtest_1m_fold_refit_seconds`,
`backtest_1m_fold_refit_late_rate` and `scale_load_average` into the JSON file, merged with
what it holds. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "data" / "optical.toml"
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)  # the training "today", as in bench.run
SIZES = {"1m": 1_000_000, "10m": 10_000_000}
# Longer than any fold: the model is refitted once per fold, the buffer still weekly.
FOLD_REFIT_DAYS = "3650"
TARGETS = {
    "train_1m_seconds": 20.0,
    "train_10m_seconds": 240.0,
    "train_10m_peak_mib": 8192.0,
    "backtest_1m_seconds": 45.0,
}

# Each child prints one JSON line: its figures and its own peak resident memory (KiB on Linux).
_TRAIN = """
import datetime as dt, json, resource, sys
from pathlib import Path
from models.registry import Registry
from training.pipeline import train_bundle
train_bundle(Path(sys.argv[1]), Registry(Path(sys.argv[2])),
             now=dt.datetime.fromisoformat(sys.argv[3]), backtest_folds=0)
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""
_BACKTEST = """
import datetime as dt, json, resource, sys, time
from pathlib import Path
from training.backtest import run_backtest
from training.data import load_orders
from training.spec import load_spec
from training.train import build_calendar
spec = load_spec(Path(sys.argv[1]))
if sys.argv[4] != "spec":
    cadence = spec.backtest.model_copy(update={"refit_every": float(sys.argv[4])})
    spec = spec.model_copy(update={"backtest": cadence})
table = load_orders(spec)
calendar = build_calendar(spec, table, dt.date.fromisoformat(sys.argv[2]))
start = time.perf_counter()
workers = None if sys.argv[3] == "auto" else int(sys.argv[3])
report = run_backtest(
    spec, table, calendar, [spec.quote.policy], 5, tradeoff=False, workers=workers
)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds,
                  "late_rate": report.policies[spec.quote.policy].overall.late_rate,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--sizes", default="1m,10m", help="comma-separated: 1m, 10m")
    parser.add_argument("--work", type=Path, default=None, help="keep the generated data here")
    parser.add_argument("--no-backtest", action="store_true", help="skip the 1M back-test")
    parser.add_argument(
        "--backtest-workers",
        default="auto",
        help="processes training the back-test's refits (auto: one per core; 0: none)",
    )
    args = parser.parse_args(argv)
    sizes = [size.strip() for size in args.sizes.split(",") if size.strip()]
    unknown = [size for size in sizes if size not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; choose from {', '.join(SIZES)}")
    results: dict[str, Any] = {"scale_load_average": list(os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="promise-scale-") as scratch:
        work = args.work or Path(scratch)
        for size in sizes:
            spec = sample(work / size, SIZES[size])
            seconds, peak_kib = train(spec, Path(scratch) / f"registry-{size}")
            results[f"train_{size}_seconds"] = round(seconds, 1)
            results[f"train_{size}_peak_mib"] = round(peak_kib / 1024.0, 0)
            say(f"train {size}: {seconds:.1f} s, peak {peak_kib / 1024.0:,.0f} MiB")
            if size == "1m" and not args.no_backtest:
                for key, refit_every, cadence in (
                    ("", "spec", "production's refits"),
                    ("_fold_refit", FOLD_REFIT_DAYS, "one refit a fold"),
                ):
                    figures = backtest(spec, args.backtest_workers, refit_every)
                    results[f"backtest_1m{key}_seconds"] = round(figures["seconds"], 1)
                    results[f"backtest_1m{key}_late_rate"] = figures["late_rate"]
                    say(
                        f"back-test 1m, 5 folds, {cadence}: {figures['seconds']:.1f} s, "
                        f"late rate {figures['late_rate']:.4f}"
                    )
    results["scale_load_average"] += list(os.getloadavg())
    merge(args.out, results)
    for key, target in TARGETS.items():
        if key in results:
            say(f"{key}: {results[key]} (target <= {target:g})")
    say(f"written: {args.out}")
    return 0


def sample(folder: Path, n_orders: int) -> Path:
    """The sample history of `n_orders` and its spec in `folder` (generated once)."""
    from training.sample_data import write_sample_data

    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "optical_orders.csv").exists():
        start = time.perf_counter()
        write_sample_data(folder, n_orders=n_orders, seed=7)
        say(f"generated {n_orders:,} orders in {time.perf_counter() - start:.0f} s")
    shutil.copy(SPEC, folder / "optical.toml")
    return folder / "optical.toml"


def train(spec: Path, registry: Path) -> tuple[float, int]:
    """`train_bundle` in a child: wall seconds and the child's peak resident KiB."""
    start = time.perf_counter()
    figures = child(_TRAIN, str(spec), str(registry), NOW.isoformat())
    return time.perf_counter() - start, int(figures["peak_kib"])


def backtest(spec: Path, workers: str, refit_every: str) -> dict[str, Any]:
    """The 1M back-test in a child; `refit_every` days ("spec": the spec's cadence)."""
    return child(_BACKTEST, str(spec), NOW.date().isoformat(), workers, refit_every)


def child(code: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the child failed: {done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def merge(path: Path, results: dict[str, Any]) -> None:
    """Update these keys in the JSON file, keeping every other."""
    held: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    held.update(results)
    path.write_text(json.dumps(held, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())

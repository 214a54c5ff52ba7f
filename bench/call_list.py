"""How long the call list takes to assess its open orders: all at once against one by one.

    .venv/bin/python -m bench.call_list --registry DIR [--spec data/optical.toml]
                                        [--orders 4000] [--repeat 5]

Loads the newest bundle in `--registry` (train one with `promise train`), makes `--orders` open
promises of the spec's orders (clock started up to ten days ago, promised 150-300 hours), and
times `models.revision.assess_all` over all of them against `assess` for each, in one run; the
best of `--repeat` runs of each. Prints one line per figure, and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

from models.registry import Registry
from models.revision import OpenPromise, assess, assess_all
from training.data import load_orders
from training.spec import load_spec


def open_promises(
    spec_path: str, names: tuple[str, ...], n: int
) -> tuple[list[OpenPromise], float]:
    """`n` open promises of the spec's orders, and the moment they are assessed at."""
    table = load_orders(load_spec(spec_path))
    rng = np.random.default_rng(0)
    now = float(table.ordered_at_s.max())
    promises = []
    for row in rng.choice(table.size, n, replace=False).tolist():
        start = now - rng.uniform(0.0, 10.0) * 86_400.0
        deadline = start + rng.uniform(150.0, 300.0) * 3600.0
        features = {name: table.columns[name][row] for name in names}
        promises.append(OpenPromise(features, start, start, rng.uniform(100.0, 250.0), deadline))
    return promises, now


def best_seconds(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--spec", default="data/optical.toml")
    parser.add_argument("--orders", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    registry = Registry(args.registry)
    engine = registry.load(registry.manifests()[-1].version).engine
    promises, now = open_promises(args.spec, engine.segments, args.orders)
    together = best_seconds(lambda: assess_all(engine, promises, now), args.repeat)
    apart = best_seconds(lambda: [assess(engine, p, now) for p in promises], args.repeat)
    n = len(promises)
    say(f"all at once: {together * 1e3:.0f} ms for {n} orders ({together / n * 1e6:.1f} us each)")
    say(f"one by one:  {apart * 1e3:.0f} ms ({apart / n * 1e6:.0f} us each)")
    say(f"ratio: {apart / together:.1f}x")


if __name__ == "__main__":
    main()

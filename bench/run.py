"""`make bench`: Promise against naive references, side by side, on one machine and one model.

    python -m bench.run [--orders 1000000] [--out bench/results.json]

Generates the sample history (`training.sample_data`), trains and calibrates a bundle on it in a
child process (wall time, peak resident memory), back-tests it over 5 folds, then measures on
that bundle, each figure in the same run as its reference and on the same orders:

- single quote in process: `quote(engine, [order])` against `bench.reference.NaiveQuoter.quote`
  (one-row DataFrame, sklearn Pipeline.predict, pandas dates), calls interleaved;
- batch: `quote_batch` on 100,000 orders against `NaiveQuoter.quote_frame`, interleaved;
- HTTP: the service's app (`service.app:create_app`, what `promise serve` runs), every quote
  written to a SQLite ledger, and to a fresh PostgreSQL schema when `--postgres-url` or
  $PROMISE_TEST_DATABASE_URL names a database, against the bare endpoint
  (`bench.reference_app.create_bare_app`: the same body validated, a constant answered: the
  stack's ceiling; Promise's figures as multiples of its) and the naive reference
  (`create_app`, no ledger), each started by the same uvicorn command line (2 workers, no
  access log, the service with its JSON logs), 32 keep-alive clients on 127.0.0.1, bounded in
  requests and seconds, the servers measured in turn, twice;
- resident memory of a serving worker after the load;
- worker start-up: a fresh process imports `service.app`, loads the promoted bundle's serving
  form and quotes one order (numba's cache warm from an earlier run), spawn to answer, 5 times;
  then it builds the app and answers one `POST /v1/quotes` (ledger on SQLite); with its
  resident memory and whether any of the training stack got imported;
- resident memory of `promise serve --workers 2` workers after 2,000 quotes, on their own.

The engine is loaded from the serving form (`Registry.load`, what the service does); the naive
reference gets the pickled model (`Registry.load_model`), since it needs the booster.

Prints one table and writes `bench/results.json`. Nothing here asserts a speed: the targets are
shown next to the figures. A section that fails is reported as failed; the others still run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.processes import cpu_seconds, free_port, server, wait_ready, worker_rss_mib

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "data" / "optical.toml"
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)  # the training "today" (calendar range)
BATCH_ORDERS = 100_000
HTTP_CLIENTS = 32
HTTP_ROUNDS = 2
POSTGRES_ENV = "PROMISE_TEST_DATABASE_URL"
KEYS = (
    "single_quote_p50_us",
    "single_quote_p99_us",
    "reference_single_quote_p50_us",
    "batch_quotes_per_s",
    "reference_batch_quotes_per_s",
    "http_quotes_per_s",
    "http_p50_ms",
    "http_p99_ms",
    "reference_http_quotes_per_s",
    "http_bare_per_s",
    "http_bare_p50_ms",
    "http_bare_p99_ms",
    "http_postgres_quotes_per_s",
    "http_postgres_p50_ms",
    "http_postgres_p99_ms",
    "http_cpu_ms",
    "http_bare_cpu_ms",
    "http_postgres_cpu_ms",
    "train_1m_seconds",
    "train_1m_peak_mib",
    "backtest_1m_seconds",
    "worker_rss_mib",
    "worker_startup_seconds",
    "worker_startup_rss_mib",
    "serve_worker_rss_mib",
)


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--orders", type=int, default=1_000_000, help="sample history size")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--single", type=int, default=20_000, help="single quotes timed")
    parser.add_argument("--reference-single", type=int, default=500)
    parser.add_argument(
        "--single-seconds", type=float, default=60.0, help="time budget of the single quotes"
    )
    parser.add_argument("--http-requests", type=int, default=6_000, help="per server and round")
    parser.add_argument("--http-seconds", type=float, default=15.0, help="per server and round")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_ENV, ""),
        help=f"a PostgreSQL database for the HTTP section (a fresh schema in it; default "
        f"${POSTGRES_ENV}; none: SQLite only)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated sections to run after data, train and load "
        "(backtest, single, batch, startup, workers, http; default: all)",
    )
    args = parser.parse_args(argv)
    chosen = {name.strip() for name in args.only.split(",") if name.strip()}
    results: dict[str, Any] = {key: None for key in KEYS}
    results.update(machine=machine(), started_at=dt.datetime.now(dt.UTC).isoformat())
    errors: dict[str, str] = {}
    skipped: list[str] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="promise-bench-") as scratch:
        work = Path(scratch)
        bench = Bench(work, args, results)
        for name, step in (
            ("data", bench.data),
            ("train", bench.train),
            ("load", bench.load),
            ("backtest", bench.backtest),
            ("single", bench.single),
            ("batch", bench.batch),
            ("startup", bench.startup),
            ("workers", bench.workers),
            ("http", bench.http),
        ):
            if chosen and name not in chosen | {"data", "train", "load"}:
                skipped.append(name)
                continue
            say(f"[{time.perf_counter() - began:6.0f} s] {name} ...")
            try:
                step()
            except Exception as err:  # a failed section is reported, the rest still runs
                errors[name] = f"{type(err).__name__}: {err}"
                say(traceback.format_exc())
                if name in ("data", "train", "load"):
                    break  # everything after needs the data and the bundle
    results["errors"] = errors
    results["not_run"] = skipped
    results["load_average_end"] = os.getloadavg()
    results["total_seconds"] = round(time.perf_counter() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    say("")
    say(table(results))
    say(f"\nwritten: {args.out}  ({results['total_seconds']:.0f} s)")
    return 0


class Bench:
    """The benchmark's steps, sharing the work folder, the data and the bundle."""

    def __init__(self, work: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
        self.work = work
        self.args = args
        self.results = results
        self.registry = work / "registry"
        self.spec_path = work / "optical.toml"
        self.version = ""
        self.engine: Any = None
        self.model: Any = None
        self.table: Any = None
        self.calendar: Any = None
        self.spec: Any = None

    # ------------------------------------------------------------------ data and training

    def data(self) -> None:
        from training.sample_data import write_sample_data

        start = time.perf_counter()
        write_sample_data(self.work, n_orders=self.args.orders, seed=7)
        shutil.copy(SPEC, self.spec_path)
        self.results["orders"] = self.args.orders
        self.results["data_seconds"] = round(time.perf_counter() - start, 1)

    def train(self) -> None:
        """`train_bundle` in a child process: its wall time and its peak resident memory."""
        code = (
            "import datetime as dt, sys; from pathlib import Path;"
            "from models.registry import Registry; from training.pipeline import train_bundle;"
            "m = train_bundle(Path(sys.argv[1]), Registry(Path(sys.argv[2])),"
            " now=dt.datetime.fromisoformat(sys.argv[3]), backtest_folds=0);"
            "print(m.version)"
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code, str(self.spec_path), str(self.registry), NOW.isoformat()],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"training failed: {done.stderr[-2000:]}")
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if peak_kib <= before:
            raise RuntimeError("the training child's peak memory could not be read")
        self.version = done.stdout.strip().splitlines()[-1]
        self.results["train_1m_seconds"] = round(seconds, 1)
        self.results["train_1m_peak_mib"] = round(peak_kib / 1024.0, 0)
        from models.registry import Registry

        Registry(self.registry).promote(self.version)
        self.results["bundle_mib"] = round(
            (self.registry / self.version / "model.joblib").stat().st_size / 2**20, 2
        )

    def load(self) -> None:
        from models.registry import Registry
        from training.data import load_orders
        from training.spec import load_spec
        from training.train import build_calendar

        start = time.perf_counter()
        self.spec = load_spec(self.spec_path)
        self.table = load_orders(self.spec)
        self.calendar = build_calendar(self.spec, self.table, NOW.date())
        self.results["load_1m_seconds"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        self.engine = Registry(self.registry).load(self.version).engine  # the serving form
        self.results["load_bundle_seconds"] = round(time.perf_counter() - start, 3)
        self.model = Registry(self.registry).load_model(self.version)  # for the reference
        folder = self.registry / self.version
        self.results["serving_form_mib"] = round(
            sum((folder / name).stat().st_size for name in ("serving.json", "serving.npz")) / 2**20,
            2,
        )
        trees = self.engine.expected_trees
        self.results["model"] = {
            "trees": trees.n_trees,
            "columns": trees.n_columns,
            "compiled_form": type(trees).__name__,
            "segments": len(self.engine.buffer_rule.segment_table()),
        }

    def backtest(self) -> None:
        """5-fold walk-forward back-test of the spec's policy (no trade-off sweep)."""
        from training.backtest import run_backtest

        start = time.perf_counter()
        report = run_backtest(
            self.spec, self.table, self.calendar, [self.spec.quote.policy], 5, tradeoff=False
        )
        self.results["backtest_1m_seconds"] = round(time.perf_counter() - start, 1)
        self.results["backtest_late_rate"] = report.policies[
            self.spec.quote.policy
        ].overall.late_rate

    # ------------------------------------------------------------------ in process

    def orders(self, n: int, seed: int) -> tuple[list[dict[str, Any]], np.ndarray]:
        """n orders of the history (features as the service passes them, times in seconds)."""
        rng = np.random.default_rng(seed)
        rows = rng.choice(self.table.size, n, replace=n > self.table.size)
        names = self.engine.schema.feature_names
        columns = {name: self.table.columns[name][rows].tolist() for name in names}
        features = [{name: _plain(columns[name][i]) for name in names} for i in range(n)]
        return features, self.table.ordered_at_s[rows]

    def single(self) -> None:
        """p50/p99 of one quote, Promise and naive reference interleaved on the same orders."""
        from bench.reference import NaiveQuoter
        from models.quoting import Order, quote

        n_fast = self.args.single
        n_ref = self.args.reference_single
        features, times = self.orders(n_fast, seed=1)
        orders = [
            Order(f, dt.datetime.fromtimestamp(float(t), dt.UTC))
            for f, t in zip(features, times, strict=True)
        ]
        naive = NaiveQuoter(self.model)
        for order in orders[:200]:  # warm-up: caches, branch predictors, lazy imports
            quote(self.engine, [order])
            naive.quote(order.features, order.ordered_at)
        fast_ns: list[int] = []
        ref_ns: list[int] = []
        agree_hours = agree_deadline = 0
        per_round = max(1, n_fast // n_ref)
        clock = time.perf_counter_ns
        budget_ends = time.monotonic() + self.args.single_seconds
        for r in range(n_ref):
            if r >= 100 and time.monotonic() > budget_ends:
                break  # a busy machine: enough samples for the percentiles, keep the run bounded
            order = orders[r]
            t0 = clock()
            answer = naive.quote(order.features, order.ordered_at)
            ref_ns.append(clock() - t0)
            [promise] = quote(self.engine, [order])
            agree_hours += answer["expected_hours"] == promise.expected_hours
            agree_deadline += answer["deadline"].to_pydatetime() == promise.deadline_at
            for order in orders[r * per_round : (r + 1) * per_round]:
                t0 = clock()
                quote(self.engine, [order])
                fast_ns.append(clock() - t0)
        fast = np.array(fast_ns) / 1000.0
        ref = np.array(ref_ns) / 1000.0
        self.results.update(
            single_quote_p50_us=round(float(np.percentile(fast, 50)), 1),
            single_quote_p99_us=round(float(np.percentile(fast, 99)), 1),
            single_quote_n=int(fast.size),
            reference_single_quote_p50_us=round(float(np.percentile(ref, 50)), 1),
            reference_single_quote_p99_us=round(float(np.percentile(ref, 99)), 1),
            reference_single_quote_n=int(ref.size),
            reference_single_agreement={
                "expected_hours": agree_hours / ref.size,
                "deadline": agree_deadline / ref.size,
            },
        )

    def batch(self) -> None:
        """Quotes per second for 100,000 orders, `quote_batch` and the pandas reference."""
        from bench.reference import NaiveQuoter
        from models.quoting import quote_batch

        features, times = self.orders(BATCH_ORDERS, seed=2)
        names = self.engine.schema.feature_names
        numeric = {num.name for num in self.engine.schema.numeric}
        columns = {
            name: np.array(
                [np.nan if f[name] is None else f[name] for f in features]
                if name in numeric
                else [f[name] for f in features],
                dtype=float if name in numeric else object,
            )
            for name in names
        }
        frame = pd.DataFrame(features)
        frame["ordered_at"] = pd.to_datetime(times, unit="s", utc=True)
        naive = NaiveQuoter(self.model)
        fast_s: list[float] = []
        ref_s: list[float] = []
        quote_batch(self.engine, columns, times)  # warm-up
        for _ in range(3):
            gc.collect()
            start = time.perf_counter()
            reference = naive.quote_frame(frame)
            ref_s.append(time.perf_counter() - start)
            for _ in range(3):
                gc.collect()
                start = time.perf_counter()
                batch = quote_batch(self.engine, columns, times)
                fast_s.append(time.perf_counter() - start)
        deadlines = reference["deadline"].to_numpy(dtype="datetime64[us]").astype(np.int64)
        self.results.update(
            batch_quotes_per_s=round(BATCH_ORDERS / float(np.median(fast_s))),
            reference_batch_quotes_per_s=round(BATCH_ORDERS / float(np.median(ref_s))),
            reference_batch_agreement={
                "expected_hours": float(
                    np.mean(reference["expected_hours"].to_numpy() == batch.expected_hours)
                ),
                "deadline": float(
                    np.mean(deadlines == np.round(batch.deadline_s * 1e6).astype(np.int64))
                ),
            },
        )

    # ------------------------------------------------------------------ a fresh worker

    def startup(self) -> None:
        """Spawn to first answer of a fresh worker process (`bench.startup`)."""
        from bench.startup import worker_startup

        features, _ = self.orders(1, seed=4)
        self.results.update(worker_startup(self.registry, self.work, features[0]))

    def workers(self) -> None:
        """Resident memory of `promise serve --workers 2` workers after 2,000 quotes."""
        from bench.startup import serve_worker_rss

        features, _ = self.orders(2_000, seed=5)
        self.results.update(serve_worker_rss(self.registry, self.work, features))

    # ------------------------------------------------------------------ HTTP

    def http(self) -> None:
        """Throughput and latency at 32 clients: the service on SQLite (and on PostgreSQL when
        a URL is given), the bare endpoint (the stack's ceiling) and the naive app, in turn."""
        from bench.load import run_load
        from service.logs import logging_config

        features, _ = self.orders(2_000, seed=3)
        bodies = [json.dumps({"order": f}).encode("utf-8") for f in features]
        env = {**os.environ, "PROMISE_REGISTRY": str(self.registry)}
        env.pop("PROMISE_API_KEYS", None)  # open mode: no keys, loopback only
        ports = {name: free_port() for name in ("service", "postgres", "reference", "bare")}
        log_config = self.work / "log-config.json"  # the service's JSON lines, as it logs
        log_config.write_text(json.dumps(logging_config("INFO")), encoding="utf-8")

        def uvicorn_cmd(name: str, app: str, logs: Path | None = None) -> list[str]:
            """The same uvicorn, flags and 2 workers for every server; access logs off."""
            return [
                sys.executable, "-m", "uvicorn", app, "--factory",
                "--host", "127.0.0.1", "--port", str(ports[name]), "--workers", "2",
                # A loaded machine starts a worker in more than uvicorn's default 5 s.
                "--timeout-worker-healthcheck", "120", "--log-level", "warning",
                *(["--log-config", str(logs)] if logs else []),
            ]  # fmt: skip

        def service_cmd(name: str) -> list[str]:
            return uvicorn_cmd(name, "service.app:create_app", log_config)

        sqlite_env = {
            **env,
            "PROMISE_DATABASE_URL": f"sqlite:///{self.work / 'ledger.db'}",
            "PROMETHEUS_MULTIPROC_DIR": str(self.work / "metrics-sqlite"),
        }
        pg_base = self.args.postgres_url
        for folder in ("metrics-sqlite", "metrics-pg"):  # prometheus_client needs them made
            (self.work / folder).mkdir()
        with ExitStack() as stack:
            started: dict[str, tuple[subprocess.Popen[bytes], str]] = {}  # process, health
            log = self.work.joinpath
            started["service"] = (
                stack.enter_context(server(service_cmd("service"), sqlite_env, log("service.log"))),
                "/readyz",
            )
            if pg_base:
                pg_url = stack.enter_context(fresh_postgres_schema(pg_base))
                pg_env = {
                    **env,
                    "PROMISE_DATABASE_URL": pg_url,
                    "PROMETHEUS_MULTIPROC_DIR": str(self.work / "metrics-pg"),
                }
                started["postgres"] = (
                    stack.enter_context(server(service_cmd("postgres"), pg_env, log("pg.log"))),
                    "/readyz",
                )
            for name, factory in (("reference", "create_app"), ("bare", "create_bare_app")):
                command = uvicorn_cmd(name, f"bench.reference_app:{factory}")
                started[name] = (stack.enter_context(server(command, env, log(f"{name}.log"))),
                                 "/healthz")  # fmt: skip
            for name, (process, path) in started.items():
                wait_ready(ports[name], path, process, self.work / f"{name}.log")
            for name in started:  # warm-up: every worker, every path
                run_load(ports[name], "/v1/quotes", bodies, HTTP_CLIENTS, 400, 30.0)
            rounds: dict[str, list[Any]] = {name: [] for name in started}
            cpu: dict[str, float] = dict.fromkeys(started, 0.0)  # the servers' CPU seconds
            loads: list[float] = []
            for _ in range(HTTP_ROUNDS):
                for name in started:
                    loads.append(os.getloadavg()[0])
                    before = cpu_seconds(started[name][0].pid)
                    result = run_load(
                        ports[name],
                        "/v1/quotes",
                        bodies,
                        HTTP_CLIENTS,
                        self.args.http_requests,
                        self.args.http_seconds,
                    )
                    cpu[name] += cpu_seconds(started[name][0].pid) - before
                    if result.ok == 0:
                        raise RuntimeError(f"{name}: no request succeeded: {result.statuses}")
                    rounds[name].append(result)
            service_rss = worker_rss_mib(started["service"][0].pid)
            reference_rss = worker_rss_mib(started["reference"][0].pid)
        figures = {
            "service": "http",
            "postgres": "http_postgres",
            "reference": "reference_http",
            "bare": "http_bare",
        }
        for name, results in rounds.items():
            prefix = figures[name]
            latencies = [s for r in results for s in r.latencies_s]
            rate_key = f"{prefix}_per_s" if name == "bare" else f"{prefix}_quotes_per_s"
            self.results.update(
                {
                    rate_key: round(float(np.median([r.per_second for r in results])), 1),
                    f"{prefix}_p50_ms": round(float(np.percentile(latencies, 50)) * 1000.0, 1),
                    f"{prefix}_p99_ms": round(float(np.percentile(latencies, 99)) * 1000.0, 1),
                    f"{prefix}_statuses": [r.statuses for r in results],
                    # CPU of the server's processes per request answered: what one costs,
                    # whatever else the shared machine runs meanwhile.
                    f"{prefix}_cpu_ms": round(
                        cpu[name] * 1000.0 / max(1, sum(r.ok for r in results)), 2
                    ),
                }
            )
        self.results["http_load_average"] = [round(min(loads), 1), round(max(loads), 1)]
        self.results.update(
            worker_rss_mib=max(service_rss) if service_rss else None,
            worker_rss_all_mib=service_rss,
            reference_worker_rss_mib=max(reference_rss) if reference_rss else None,
        )
        bare_rate, bare_p99 = self.results["http_bare_per_s"], self.results["http_bare_p99_ms"]
        for prefix in ("http", "http_postgres"):
            if self.results.get(f"{prefix}_quotes_per_s") is not None:
                self.results[f"{prefix}_throughput_vs_bare"] = round(
                    self.results[f"{prefix}_quotes_per_s"] / bare_rate, 2
                )
                self.results[f"{prefix}_p99_vs_bare"] = round(
                    self.results[f"{prefix}_p99_ms"] / bare_p99, 2
                )
                self.results[f"{prefix}_cpu_vs_bare"] = round(
                    self.results[f"{prefix}_cpu_ms"] / self.results["http_bare_cpu_ms"], 2
                )


@contextmanager
def fresh_postgres_schema(base_url: str) -> Iterator[str]:
    """A URL of `base_url`'s database whose search_path is a new, empty schema (the service
    migrates it at start), dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"promise_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


# ---------------------------------------------------------------------- helpers


def _plain(value: Any) -> Any:
    """A table value as JSON and the service take it: None for missing, plain numbers."""
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else float(value)
    return value.item() if isinstance(value, np.generic) else value


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    import numba
    import sklearn

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_start": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "numba": numba.__version__,
    }


# ---------------------------------------------------------------------- the table


def us(v: float) -> str:
    return f"{v:,.1f} µs"


def ms(v: float) -> str:
    return f"{v:,.1f} ms"


def per_s(v: float) -> str:
    return f"{v:,.0f} /s"


def sec(v: float) -> str:
    return f"{v:,.2f} s" if v < 10 else f"{v:,.1f} s"


def mib(v: float) -> str:
    return f"{v:,.0f} MiB"


def table(r: dict[str, Any]) -> str:
    """The README table: each figure, its reference, the ratio and the target."""

    def num(key: str, fmt: Callable[[float], str]) -> str:
        value = r.get(key)
        if value is not None:
            return fmt(float(value))
        # A figure no section gave: its section was left out with --only, or it failed.
        return "not run" if r.get("not_run") else "failed"

    def ratio(fast: str, ref: str, higher_is_better: bool) -> str:
        a, b = r.get(fast), r.get(ref)
        if not a or not b:
            return ""
        return f"{(a / b if higher_is_better else b / a):,.1f}x"

    def times(ours: str, theirs: str) -> str:
        """Ours as a multiple of theirs (the bare endpoint's): 0.8x the throughput, 2x the p99."""
        a, b = r.get(ours), r.get(theirs)
        return f"{a / b:,.2f}x" if a and b else ""

    m = r.get("machine", {})
    rows = [
        ("figure", "Promise", "reference", "ratio", "target"),
        ("single quote p50", num("single_quote_p50_us", us),
         num("reference_single_quote_p50_us", us),
         ratio("single_quote_p50_us", "reference_single_quote_p50_us", False),
         "≤ 50 µs, ≥ 40x"),
        ("single quote p99", num("single_quote_p99_us", us),
         num("reference_single_quote_p99_us", us),
         ratio("single_quote_p99_us", "reference_single_quote_p99_us", False), ""),
        ("batch, 100,000 orders", num("batch_quotes_per_s", per_s),
         num("reference_batch_quotes_per_s", per_s),
         ratio("batch_quotes_per_s", "reference_batch_quotes_per_s", True), "≥ 1,000,000 /s"),
        ("HTTP, 32 clients", num("http_quotes_per_s", per_s),
         num("reference_http_quotes_per_s", per_s),
         ratio("http_quotes_per_s", "reference_http_quotes_per_s", True), "≥ 3x"),
        ("HTTP p50", num("http_p50_ms", ms), num("reference_http_p50_ms", ms), "", ""),
        ("HTTP p99", num("http_p99_ms", ms), num("reference_http_p99_ms", ms), "", ""),
        ("HTTP, SQLite, against the bare endpoint", num("http_quotes_per_s", per_s),
         num("http_bare_per_s", per_s), times("http_quotes_per_s", "http_bare_per_s"),
         "≥ 0.8x"),
        ("HTTP p50, SQLite, against bare", num("http_p50_ms", ms), num("http_bare_p50_ms", ms),
         times("http_p50_ms", "http_bare_p50_ms"), ""),
        ("HTTP p99, SQLite, against bare", num("http_p99_ms", ms), num("http_bare_p99_ms", ms),
         times("http_p99_ms", "http_bare_p99_ms"), "≤ 2x"),
        ("HTTP server CPU per quote, SQLite, against bare", num("http_cpu_ms", ms),
         num("http_bare_cpu_ms", ms), times("http_cpu_ms", "http_bare_cpu_ms"), ""),
        ("HTTP, PostgreSQL, against bare", num("http_postgres_quotes_per_s", per_s),
         num("http_bare_per_s", per_s), times("http_postgres_quotes_per_s", "http_bare_per_s"),
         "≥ 0.8x"),
        ("HTTP p50, PostgreSQL, against bare", num("http_postgres_p50_ms", ms),
         num("http_bare_p50_ms", ms), times("http_postgres_p50_ms", "http_bare_p50_ms"), ""),
        ("HTTP p99, PostgreSQL, against bare", num("http_postgres_p99_ms", ms),
         num("http_bare_p99_ms", ms), times("http_postgres_p99_ms", "http_bare_p99_ms"),
         "≤ 2x"),
        ("HTTP server CPU per quote, PostgreSQL, against bare", num("http_postgres_cpu_ms", ms),
         num("http_bare_cpu_ms", ms), times("http_postgres_cpu_ms", "http_bare_cpu_ms"), ""),
        ("train + calibrate 1M orders", num("train_1m_seconds", sec), "", "", "≤ 60 s"),
        ("training peak memory", num("train_1m_peak_mib", mib), "", "", "≤ 4 GiB"),
        ("back-test, 5 folds, 1M orders", num("backtest_1m_seconds", sec), "", "", ""),
        ("serving worker RSS", num("worker_rss_mib", mib), num("reference_worker_rss_mib", mib),
         "", "≤ 200 MiB"),
        ("serving worker RSS, no reference", num("serve_worker_rss_mib", mib), "", "",
         "≤ 200 MiB"),
        ("worker start-up to first quote", num("worker_startup_seconds", sec), "", "", "< 1 s"),
        ("fresh worker RSS after a quote", num("worker_startup_rss_mib", mib), "", "",
         "≤ 200 MiB"),
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    load = m.get("load_average_start")
    lines.append("")
    lines.append(
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB; "
        f"Python {m.get('python')}, numpy {m.get('numpy')}, scikit-learn "
        f"{m.get('scikit-learn')}, numba {m.get('numba')}; load average at start "
        f"{load[0]:.1f} (shared machine)."
        if load
        else ""
    )
    if r.get("errors"):
        lines.append(f"Failed sections: {r['errors']}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

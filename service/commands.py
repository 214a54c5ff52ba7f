"""The service's commands of `promise`: serve, import-outcomes, monitor.

`promise_cli` adds them to the training commands for the one command line; each calls the
service in this process (no subprocess, no second parser). A `PromiseError` (a bad setting or
option value, an unreachable database, a bad CSV row) ends the command with one red line and
exit 1 (`training.exits`, the one app's rule); `monitor` alone exits 2, when a segment is
flagged. The service modules are imported inside the commands: a serving worker re-imports the
command line, and `promise train` needs none of them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

app = typer.Typer(no_args_is_help=True, help="The quote service's commands.")
console = Console()
errors = Console(stderr=True)
# A point-of-sale key for --seed-sample when the service has keys (open mode needs none).
SEED_KEY_ENV = "PROMISE_SEED_KEY"
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
DatabaseOption = Annotated[
    str | None,
    typer.Option(metavar="URL", help="The ledger (default: PROMISE_DATABASE_URL)."),
]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes sharing the ledger.")] = 1,
    log_level: Annotated[LogLevel, typer.Option(help="Least severe log events shown.")] = "info",
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Check the settings, the address and the port, then exit (0: can start).",
        ),
    ] = False,
    seed_sample: Annotated[
        bool,
        typer.Option(
            "--seed-sample",
            help="Once serving, quote a few sample open orders placed in the past (customers "
            "'Sample customer N', references SAMPLE-N; once a day) so the call list shows "
            "working. For the sample model (make run); an open service or PROMISE_SEED_KEY.",
        ),
    ] = False,
) -> None:
    """Serve the quote API and the staff web form (workers share one ledger). Refused, before
    anything is written, for a bad PROMISE_* setting, a public address without API keys or a
    port in use."""
    from service.server import check as check_server
    from service.server import run

    if check:
        check_server(host, port)
        console.print(f"can serve on http://{escape(host)}:{port}", highlight=False)
        return
    if seed_sample:
        check_server(host, port)  # never seed another server that holds the port
        # A wildcard listen address is reached on loopback; an IPv6 one in brackets.
        local = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        local = f"[{local}]" if ":" in local else local
        seeding = threading.Thread(
            target=_seed_sample,
            args=(f"http://{local}:{port}", os.environ.get(SEED_KEY_ENV) or None),
            name="seed-sample",
            daemon=True,
        )
        seeding.start()
    run(host, port, workers, log_level)


def _seed_sample(base_url: str, api_key: str | None) -> None:
    """`--seed-sample`'s thread: the sample orders once the service answers, logged either
    way; a failure never stops the server."""
    from service.sample_orders import seed_sample_orders

    log = logging.getLogger("service.sample")
    try:
        stored = seed_sample_orders(base_url, api_key)
    except Exception as err:  # the server keeps serving; the log says why there are none
        log.warning("sample.not_seeded", extra={"error": f"{type(err).__name__}: {err}"})
        return
    log.info("sample.seeded", extra={"quotes": stored, "url": base_url})


@app.command("import-outcomes")
def import_outcomes(
    file: Annotated[Path, typer.Argument(help="CSV with columns quote_id,fulfilled_at.")],
    database_url: DatabaseOption = None,
) -> None:
    """Record what really happened to quoted orders, from a CSV file, into the ledger. The
    whole file is checked first: one bad row and nothing is recorded."""
    from service.command_settings import load_settings, migrated_ledger
    from service.outcomes import import_outcomes as record_outcomes

    settings = load_settings({"database_url": database_url})
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    with (
        migrated_ledger(settings) as ledger,
        Progress(
            *columns,
            TimeElapsedColumn(),
            console=errors,
            transient=True,
            disable=not errors.is_terminal,  # a live line is for a person at a terminal
        ) as bar,
    ):
        task = bar.add_task(escape(f"checking {file}"), total=None)

        def show(done: int, total: int) -> None:
            bar.update(task, description="recording outcomes", completed=done, total=total)

        report = record_outcomes(
            file, ledger, dt.datetime.now(dt.UTC), settings.clock_skew_seconds, show
        )
    for line in [f"imported {file}", *report.lines()]:
        console.print(escape(line), highlight=False, soft_wrap=True)


@app.command()
def monitor(
    database_url: DatabaseOption = None,
    registry: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="The bundles, for the served adaptive buffers (default: PROMISE_REGISTRY).",
        ),
    ] = None,
    window_days: Annotated[
        float | None,
        typer.Option(metavar="DAYS", help="Promises due in this many days (default 28)."),
    ] = None,
    band_factor: Annotated[
        float | None,
        typer.Option(metavar="F", help="The band runs from target / F to target x F (default 2)."),
    ] = None,
    confidence: Annotated[
        float | None,
        typer.Option(metavar="C", help="Confidence of the interval (default 0.95)."),
    ] = None,
    min_decided: Annotated[
        int | None,
        typer.Option(metavar="N", help="Decided promises needed before any alarm (default 20)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the drift report as JSON instead.")
    ] = False,
) -> None:
    """Drift alarms: each segment's live late rate against its target band, with advice.

    Exit code 0: no alarm; 2: a segment is flagged (for cron or CI); 1: a user mistake."""
    from service.command_settings import load_settings
    from service.monitor import PIPE_WIDTH, exit_code, read_report, render

    settings = load_settings(
        {
            "database_url": database_url,
            "registry": registry,
            "alarm_window_days": window_days,
            "alarm_band_factor": band_factor,
            "alarm_confidence": confidence,
            "alarm_min_decided": min_decided,
        }
    )
    report, warning = read_report(settings, dt.datetime.now(dt.UTC))
    if warning is not None:
        errors.print(
            f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True
        )
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        terminal = sys.stdout.isatty()
        render(report, Console(file=sys.stdout, width=None if terminal else PIPE_WIDTH))
    raise typer.Exit(exit_code(report))

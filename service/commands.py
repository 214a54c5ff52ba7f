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
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

app = typer.Typer(no_args_is_help=True, help="The quote service's commands.")
console = Console()
errors = Console(stderr=True)
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
    run(host, port, workers, log_level)


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

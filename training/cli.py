"""`promise`: the command line for data scientists and operators.

The only module that prints. A user mistake (`PromiseError`) is one red line on stderr and exit
code 1; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from models.errors import PromiseError
from models.registry import Registry
from training.sample_data import write_sample_data

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Promise: calibrated order promises from your order history.",
)
console = Console()
errors = Console(stderr=True)

DEFAULT_REGISTRY = Path(os.environ.get("PROMISE_REGISTRY", "models/bundles"))
RegistryOption = Annotated[Path, typer.Option(help="Folder of trained bundles.")]
P = ParamSpec("P")
R = TypeVar("R")


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a `PromiseError` into one red line and exit code 1."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except PromiseError as err:
            errors.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from err

    return wrapper


@app.command("sample-data")
@user_errors
def sample_data(
    out: Annotated[Path, typer.Option(help="Folder to write optical_orders.csv into.")] = Path(
        "data"
    ),
    orders: Annotated[int, typer.Option(min=1000, help="How many orders.")] = 60_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
    file_format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
) -> None:
    """Generate the sample order history of an optical-shop chain."""
    if file_format not in ("csv", "parquet"):
        raise typer.BadParameter("use csv or parquet", param_hint="--format")
    path = write_sample_data(out, n_orders=orders, seed=seed, file_format=file_format)  # type: ignore[arg-type]
    console.print(f"wrote {orders:,} orders to {path}")


@app.command()
@user_errors
def train(
    spec: Annotated[Path, typer.Option(help="The dataset spec (TOML).")],
    registry: RegistryOption = DEFAULT_REGISTRY,
    policy: Annotated[str | None, typer.Option(help="Override the spec's policy.")] = None,
    promote: Annotated[bool, typer.Option(help="Promote the new bundle too.")] = False,
    backtest_folds: Annotated[
        int,
        typer.Option(
            min=0, help="Walk-forward folds for the manifest's back-test summary (0: none)."
        ),
    ] = 3,
    data: Annotated[
        Path | None,
        typer.Option(help="Read this order table instead of the spec's [dataset] path."),
    ] = None,
) -> None:
    """Train and calibrate a bundle on the whole history; print its version."""
    from training.pipeline import train_bundle

    manifest = train_bundle(
        spec,
        Registry(registry),
        now=dt.datetime.now(dt.UTC),
        policy=policy,
        backtest_folds=backtest_folds,
        progress=_progress,
        data=data,
    )
    console.print(f"trained {manifest.version}", highlight=False)
    summary = manifest.info.get("backtest")
    if isinstance(summary, dict) and summary:
        console.print(f"back-test: {_summary_text(summary)}", highlight=False)
    if promote:
        Registry(registry).promote(manifest.version)
        console.print(f"promoted {manifest.version}", highlight=False)
    # The version alone on the last line, for scripts: `promise train ... | tail -1`.
    sys.stdout.write(manifest.version + "\n")


@app.command("promote")
@user_errors
def promote_command(
    version: Annotated[str, typer.Argument(help="The bundle version to serve.")],
    registry: RegistryOption = DEFAULT_REGISTRY,
) -> None:
    """Make VERSION the promoted bundle (the service loads it on start or reload)."""
    manifest = Registry(registry).promote(version)
    console.print(f"promoted {manifest.version}", highlight=False)


@app.command()
@user_errors
def models(registry: RegistryOption = DEFAULT_REGISTRY) -> None:
    """List trained bundles, the promoted one marked, with their back-test summaries."""
    store = Registry(registry)
    manifests = store.manifests()
    if not manifests:
        console.print(f"no bundles in {registry}; run `promise train --spec SPEC`")
        return
    promoted = store.promoted_version()
    table = Table(title=f"bundles in {registry}")
    for column in (
        "",
        "version",
        "created",
        "policy",
        "target",
        "back-test late rate",
        "mean promise",
        "MAE",
    ):
        # Versions are copied into `promise promote`: never wrap them.
        table.add_column(column, no_wrap=column in ("", "version", "created"))
    for manifest in manifests:
        summary = manifest.info.get("backtest") or {}
        table.add_row(
            "*" if manifest.version == promoted else "",
            manifest.version,
            manifest.created_at[:19].replace("T", " "),
            manifest.policy,
            f"{manifest.target_late_rate:.1%}",
            _rate(summary.get("late_rate")),
            _hours(summary.get("mean_promise_hours"), manifest.unit),
            _hours(summary.get("mae_hours"), manifest.unit),
        )
    console.print(table)
    console.print("* promoted")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes sharing the ledger.")] = 1,
) -> None:
    """Serve the quote API and the staff web form."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # A string, not an import: training/ and service/ stay independent of each other.
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )


@app.command("import-outcomes")
def import_outcomes(
    file: Annotated[Path, typer.Argument(help="CSV with columns quote_id,fulfilled_at.")],
    database_url: Annotated[
        str | None, typer.Option(help="The ledger (default: PROMISE_DATABASE_URL).")
    ] = None,
) -> None:
    """Record what really happened to quoted orders, from a CSV file, into the ledger."""
    command = [sys.executable, "-m", "service.outcomes", "import", str(file)]
    if database_url:
        command += ["--database-url", database_url]
    # By module name, like `serve`: training/ and service/ stay independent of each other.
    raise typer.Exit(subprocess.call(command))


def _progress(message: str) -> None:
    console.print(f"[dim]{message}[/dim]", highlight=False)


def _summary_text(summary: dict[str, object]) -> str:
    late = summary.get("late_rate")
    target = summary.get("target_late_rate")
    folds = summary.get("folds")
    return f"late rate {_rate(late)} at target {_rate(target)} over {folds} folds"


def _rate(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "-"


def _hours(value: object, unit: str) -> str:
    if not isinstance(value, int | float):
        return "-"
    if unit == "day":
        return f"{value / 24:.1f} d"
    return f"{value:.1f} h" if unit == "hour" else f"{value * 60:.0f} min"


def main() -> None:  # pragma: no cover - console script entry
    app()

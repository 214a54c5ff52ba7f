"""The training commands of `promise`: sample-data, train, backtest, models, promote, rollback,
rebuild-serving.

`promise_cli` adds the service's commands (`service.commands`) to these for the one command
line; `app` here runs the training commands alone (the tests call it). How a command ends (exit
codes, the one red line for a `PromiseError` or a bad option) is `training.exits`. A serving
worker re-imports the command line, so this module imports nothing heavy at module level
(pandas, scikit-learn, scipy, pyarrow, matplotlib, joblib): the commands import what they need.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from models.policy_names import PolicyName
from models.registry import Manifest, Registry
from training import listing
from training.exits import EXIT_NOT_DONE, PromiseGroup

if TYPE_CHECKING:
    from rich.box import Box

    from training.backtest import BacktestReport
    from training.backtest.report_data import CompanyComparison, Figures, PolicyComparison

app = typer.Typer(
    cls=PromiseGroup,
    add_completion=False,
    no_args_is_help=True,
    help="Promise: calibrated order promises from your order history.",
)
console = Console()
errors = Console(stderr=True)

DEFAULT_REGISTRY = Path(os.environ.get("PROMISE_REGISTRY", "models/bundles"))
SIGNING_KEY_VARIABLE = "PROMISE_BUNDLE_SIGNING_KEY"
RegistryOption = Annotated[Path, typer.Option(help="Folder of trained bundles.")]
TRACKING_VARIABLE = "MLFLOW_TRACKING_URI"  # training.tracking's, named here to import it lazily
MlflowOption = Annotated[
    str | None,
    typer.Option(
        "--mlflow",
        metavar="URI",
        help="Log to this MLflow tracking store (default: MLFLOW_TRACKING_URI; needs the "
        "mlflow extra).",
    ),
]
RELOAD_NOTE = (
    "the running service keeps serving its model until an admin reloads it: POST /v1/model/reload"
)
_rate = listing.rate_text
Say = Callable[[str], None]  # a step's message
Show = Callable[[str, int, int], None]  # (what is being done, steps done, steps in all)


@app.command("sample-data")
def sample_data(
    out: Annotated[Path, typer.Option(help="Folder to write optical_orders.csv into.")] = Path(
        "data"
    ),
    orders: Annotated[int, typer.Option(min=1000, help="How many orders.")] = 60_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
    file_format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    scenario: Annotated[
        str,
        typer.Option(
            help="Drift to add: base (none), shock, trend, peak, or all (every one); a drift "
            "goes to optical_<scenario>_orders.csv."
        ),
    ] = "base",
) -> None:
    """Generate the sample order history of an optical-shop chain."""
    from training.sample_data import SCENARIOS, write_sample_data  # pandas: not at start-up

    if file_format not in ("csv", "parquet"):
        raise typer.BadParameter("use csv or parquet", param_hint="--format")
    chosen = SCENARIOS if scenario == "all" else tuple(s for s in SCENARIOS if s == scenario)
    if not chosen:
        raise typer.BadParameter(f"use {', '.join(SCENARIOS)} or all", param_hint="--scenario")
    for name in chosen:
        path = write_sample_data(
            out,
            n_orders=orders,
            seed=seed,
            file_format=file_format,  # type: ignore[arg-type]  # checked above
            scenario=name,
        )
        console.print(f"wrote {orders:,} orders to {path}")


@app.command()
def train(
    spec: Annotated[Path, typer.Option(help="The dataset spec (TOML).")],
    registry: RegistryOption = DEFAULT_REGISTRY,
    policy: Annotated[
        PolicyName | None, typer.Option(help="Override the spec's policy.", show_choices=True)
    ] = None,
    promote: Annotated[bool, typer.Option(help="Promote the new bundle too.")] = False,
    promote_if_on_target: Annotated[
        bool,
        typer.Option(
            help="Promote only if the back-test summary keeps the target late rate (within its "
            "band); else keep the promoted bundle and exit 1. For a scheduled retrain."
        ),
    ] = False,
    backtest_folds: Annotated[
        int,
        typer.Option(
            min=0, help="Walk-forward folds for the manifest's back-test summary (0: none)."
        ),
    ] = 3,
    data: Annotated[
        Path | None,
        typer.Option(help="Read this order table instead of the spec's \\[dataset] path."),
    ] = None,
    mlflow: MlflowOption = None,
) -> None:
    """Train and calibrate a bundle on the whole history; print its version. With an MLflow
    tracking URI, log a run: spec, back-test summary and the bundle."""
    from training.backtest.scorecard import holds_target
    from training.pipeline import train_bundle

    if promote_if_on_target and backtest_folds == 0:
        raise typer.BadParameter(
            "needs a back-test to judge (--backtest-folds 1 or more)",
            param_hint="--promote-if-on-target",
        )

    tracking = _tracking_uri(mlflow)
    reports: dict[str, str] = {}  # the training back-test's files, for the MLflow run

    def keep_reports(report: BacktestReport) -> None:
        if tracking is not None:
            from training.report import report_files

            reports.update(report_files(report))

    with _live_progress(f"training on {spec}") as (say, show):
        manifest = train_bundle(
            spec,
            _registry(registry),
            now=dt.datetime.now(dt.UTC),
            policy=None if policy is None else policy.value,
            backtest_folds=backtest_folds,
            progress=say,
            data=data,
            on_report=keep_reports,
            backtest_progress=show,
        )
    console.print(f"trained {manifest.version}", highlight=False)
    if tracking is not None:
        from training.tracking import log_training

        options = {
            "policy": None if policy is None else policy.value,
            "backtest_folds": backtest_folds,
            "data": data,
        }
        folder = _registry(registry).folder(manifest.version)
        run_id = log_training(tracking, manifest, folder, options, reports=reports or None)
        console.print(f"logged MLflow run {run_id} to {escape(tracking)}", highlight=False)
    summary = manifest.info.get("backtest")
    if isinstance(summary, dict) and summary:
        console.print(f"back-test: {_summary_text(summary)}", highlight=False)
        _print_manifest_scorecard(summary.get("scorecard"))
    kept = None
    if promote_if_on_target and isinstance(summary, dict):
        late, target = summary.get("late_rate"), float(summary["target_late_rate"])
        if not holds_target(late if isinstance(late, float) else None, target):
            kept = (
                f"not promoted: the back-test broke {_rate(late)} of promises (target {target:.1%})"
            )
    if (promote or promote_if_on_target) and kept is None:
        _promote(_registry(registry), manifest.version, force=False)
    elif kept is not None:
        console.print(f"[red]{kept}[/red]", highlight=False)
    # The version alone on the last line, for scripts: `promise train ... | tail -1`.
    sys.stdout.write(manifest.version + "\n")
    if kept is not None:
        raise typer.Exit(code=EXIT_NOT_DONE)


@app.command("promote")
def promote_command(
    version: Annotated[str, typer.Argument(help="The bundle version to serve.")],
    registry: RegistryOption = DEFAULT_REGISTRY,
    force: Annotated[
        bool,
        typer.Option(
            help="Promote it though its features, unit, segments or time zone differ from "
            "the promoted bundle's."
        ),
    ] = False,
    alias: Annotated[
        str | None,
        typer.Option(help="Also register it in MLflow and point this alias at it (champion)."),
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option(help="The MLflow registered model (default: the spec's file name)."),
    ] = None,
    mlflow: MlflowOption = None,
) -> None:
    """Make VERSION the promoted bundle. Refused (exit 1) when it differs from the promoted one
    in what a point-of-sale system sends or sees, unless --force. The running service keeps its
    model until an admin reload (POST /v1/model/reload)."""
    tracking = _tracking_uri(mlflow)
    if alias is not None and tracking is None:
        raise typer.BadParameter(
            f"needs an MLflow tracking store: --mlflow URI or {TRACKING_VARIABLE}",
            param_hint="--alias",
        )
    if alias is None and model_name is not None:
        raise typer.BadParameter("goes with --alias", param_hint="--model-name")
    store = _registry(registry)
    manifest = _promote(store, version, force=force)
    if alias is not None and tracking is not None:
        from training.tracking import register

        done = register(tracking, manifest, store.folder(version), alias, model_name)
        console.print(
            f"MLflow: {escape(done.name)} version {done.version} is {escape(done.name)}"
            f"@{escape(done.alias)} (serve it with PROMISE_MODEL_URI=models:/"
            f"{escape(done.name)}@{escape(done.alias)})",
            highlight=False,
        )


@app.command()
def rollback(
    registry: RegistryOption = DEFAULT_REGISTRY,
    dry_run: Annotated[
        bool, typer.Option(help="Show what rolling back would change, and change nothing.")
    ] = False,
) -> None:
    """Promote again the bundle the promoted one replaced, showing what changes (a second
    rollback undoes the first)."""
    store = _registry(registry)
    made = store.rollback_target()
    assert made.previous is not None  # rollback_target raises NotFound otherwise
    current, previous = store.manifest(made.version), store.manifest(made.previous)
    console.print(listing.comparison_table(current, previous))
    found = store.promotion_differences(previous.version)
    for difference in found:
        console.print(
            f"[yellow]changes:[/yellow] {escape(difference)}", highlight=False, soft_wrap=True
        )
    if not found:
        console.print("same features, unit, segments and time zone", highlight=False)
    if dry_run:
        console.print("dry run: nothing changed", highlight=False)
        return
    store.rollback(now=dt.datetime.now(dt.UTC))
    console.print(f"rolled back from {current.version} to {previous.version}", highlight=False)
    console.print(RELOAD_NOTE + ("?force=true" if found else ""), highlight=False, soft_wrap=True)


def _promote(store: Registry, version: str, force: bool) -> Manifest:
    """Promote, or refuse with the differences one per line and exit 1; say what the running
    service does."""
    previous = store.promoted_version()
    found = store.promotion_differences(version)
    if found and not force:
        errors.print(
            f"[red]refused:[/red] {escape(version)} differs from the promoted "
            f"{escape(str(previous))} in what a point-of-sale system sends or sees:",
            highlight=False,
            soft_wrap=True,
        )
        for difference in found:
            errors.print(f"  - {escape(difference)}", highlight=False, soft_wrap=True)
        errors.print("use --force to promote it anyway", highlight=False)
        raise typer.Exit(code=EXIT_NOT_DONE)
    manifest = store.promote(version, force=force, now=dt.datetime.now(dt.UTC))
    if previous == version:
        console.print(f"{version} was already promoted", highlight=False)
    else:
        was = "" if previous is None else f" (was {previous})"
        console.print(f"promoted {version}{was}", highlight=False)
    for difference in found:
        console.print(
            f"[yellow]forced:[/yellow] {escape(difference)}", highlight=False, soft_wrap=True
        )
    how = (
        "?force=true (it takes other orders)"
        if found
        else " (at once with PROMISE_FOLLOW_PROMOTIONS=true)"
    )
    console.print(f"{RELOAD_NOTE}{how}", highlight=False, soft_wrap=True)
    return manifest


@app.command("rebuild-serving")
def rebuild_serving_command(
    version: Annotated[str, typer.Argument(help="A format-3 bundle (a pickle only).")],
    registry: RegistryOption = DEFAULT_REGISTRY,
) -> None:
    """Give a bundle made before serving forms (format 3) one: unpickle its model (trust it!)
    and save it again as a new format-4 bundle, signed when PROMISE_BUNDLE_SIGNING_KEY is set.
    The old bundle stays; promote the new version to serve it."""
    from models.legacy import rebuild_serving

    manifest = rebuild_serving(_registry(registry), version, dt.datetime.now(dt.UTC))
    console.print(f"rebuilt {version} as {manifest.version}", highlight=False)
    sys.stdout.write(manifest.version + "\n")


def _registry(root: Path) -> Registry:
    """The registry at `root`, signing (and checking) with PROMISE_BUNDLE_SIGNING_KEY if set;
    the key lives in the environment only, never in the registry."""
    return Registry(root, signing_key=os.environ.get(SIGNING_KEY_VARIABLE) or None)


@app.command()
def models(
    registry: RegistryOption = DEFAULT_REGISTRY,
    wide: Annotated[bool, typer.Option(help="Every column, however wide the terminal.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document for scripts, no table.")
    ] = False,
) -> None:
    """List trained bundles, the promoted one marked: data set, spec, back-test late rate
    against its target and the mean promise against the business's own."""

    store = Registry(registry)
    manifests = store.manifests()
    promoted = store.promoted_version()
    if as_json:
        document = {
            "registry": str(registry),
            "promoted": promoted,
            "bundles": [listing.model_document(m, promoted) for m in manifests],
        }
        sys.stdout.write(json.dumps(document, indent=2, allow_nan=False) + "\n")
        return
    if not manifests:
        console.print(f"no bundles in {registry}; run `promise train --spec SPEC`")
        return
    screen = Console()  # now, so that COLUMNS and the terminal's width are read as they are
    table, legend = listing.fitted_models_table(screen, registry, manifests, promoted, wide)
    if wide:
        screen = Console(width=max(screen.width, listing.width_of(screen, table)))
    screen.print(table)
    screen.print("; ".join(legend), highlight=False)


def _tracking_uri(option: str | None) -> str | None:
    """The MLflow tracking store to log to: --mlflow, else MLFLOW_TRACKING_URI, else none."""
    return option or os.environ.get(TRACKING_VARIABLE) or None


@app.command()
def backtest(
    spec: Annotated[Path, typer.Option(help="The dataset spec (TOML).")],
    data: Annotated[
        Path | None,
        typer.Option(help="Read this order table instead of the spec's \\[dataset] path."),
    ] = None,
    policy: Annotated[
        list[PolicyName] | None,
        typer.Option(
            help="A policy to back-test; repeat for several (default: all five).",
            show_choices=True,
        ),
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option(min=1, max=50, help="Walk-forward folds (default: the spec's \\[backtest])."),
    ] = None,
    target: Annotated[
        float | None,
        typer.Option(min=0.001, max=0.499, help="Target late rate (default: the spec's)."),
    ] = None,
    tradeoff: Annotated[
        bool, typer.Option(help="Sweep every policy's buffer level for the trade-off curve.")
    ] = True,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the JSON report to this file.")
    ] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write the HTML report to this file.")
    ] = None,
    mlflow: MlflowOption = None,
) -> None:
    """Walk-forward back-test: how often promises would have been broken, and how long they were.
    With an MLflow tracking URI, log a run: figures per policy, both reports."""

    from rich import box

    from models.units import iso_utc
    from training.backtest import run_backtest
    from training.data import load_orders
    from training.report import report_files
    from training.spec import load_spec
    from training.train import build_calendar

    now = dt.datetime.now(dt.UTC)
    dataset = load_spec(spec)
    if data is not None:
        dataset = dataset.with_data(data)
    policies = [name.value for name in policy or []]
    for name in policies:
        dataset.policy_config(name)  # a policy the spec cannot set up fails before data is read
    orders = load_orders(dataset)
    console.print(
        f"[dim]read {orders.rows_read:,} orders from {escape(str(orders.source))}[/dim]",
        highlight=False,
    )
    calendar = build_calendar(dataset, orders, now.date())
    with _live_progress("back-testing") as (_say, show):
        report = run_backtest(
            dataset,
            orders,
            calendar,
            policies or None,
            folds,
            show,
            target=target,
            tradeoff=tradeoff,
        )
    created_at = iso_utc(now.replace(microsecond=0).timestamp())
    report = dataclasses.replace(report, created_at=created_at)
    console.print(_summary_table(report, box.SIMPLE_HEAD))
    card = report.scorecard
    _print_verdict(card.sentence, card.recommendation.reason, card.warnings)
    tracking = _tracking_uri(mlflow)
    wanted = json_out is not None or html_out is not None or tracking is not None
    files = report_files(report) if wanted else {}
    json_text, html_text = files.get("backtest.json", ""), files.get("backtest.html", "")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json_text, encoding="utf-8")
        console.print(f"wrote the JSON report to {escape(str(json_out))}", highlight=False)
    if html_out is not None:
        html_out.parent.mkdir(parents=True, exist_ok=True)
        html_out.write_text(html_text, encoding="utf-8")
        console.print(f"wrote the HTML report to {escape(str(html_out))}", highlight=False)
    if tracking is not None:
        from training.tracking import log_backtest

        options = dict(
            policies=policies or None, folds=folds, target=target, tradeoff=tradeoff, data=data
        )
        run_id = log_backtest(
            tracking,
            report,
            dataset.model_dump(mode="json", exclude={"source"}),
            str(dataset.source),
            options,
            files,
        )
        console.print(f"logged MLflow run {run_id} to {escape(tracking)}", highlight=False)


def _summary_table(report: BacktestReport, style: Box) -> Table:
    """Per policy and for the company: late rate, promise lengths and the flat rule's."""
    unit = report.unit
    words = {"day": "d", "hour": "h", "minute": "min"}

    def length(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.0f} {words[unit]}" if unit == "minute" else f"{value:.1f} {words[unit]}"

    protocol = report.protocol
    summary = Table(
        title=f"{protocol.folds} folds, {protocol.cutoffs[0][:10]} to "
        f"{protocol.ends[-1][:10]}, target late rate {_rate(report.target_late_rate)}",
        caption="promise: mean from order to deadline; flat: one promise for everyone, "
        "long enough to be as rarely late",
        box=style,
    )
    for heading in ("policy", "late", "promise", "median", "impressed", "flat", "orders"):
        summary.add_column(
            heading, justify="left" if heading == "policy" else "right", no_wrap=True
        )
    comparison = report.comparison
    rows: list[tuple[str, Figures, PolicyComparison | CompanyComparison | None]] = [
        (name, own.overall, comparison.policies.get(name)) for name, own in report.policies.items()
    ]
    company = report.company_promise
    if company is not None:
        rows.append(("company", company.overall, comparison.company_promise))
    for name, figures, flat in rows:
        summary.add_row(
            name,
            _rate(figures.late_rate),
            length(figures.mean_promise_units),
            length(figures.median_promise_units),
            _rate(figures.impressed),
            length(None if flat is None else flat.flat_mean_promise_units),
            f"{figures.n_quotes:,}",
        )
    return summary


@contextmanager
def _live_progress(first: str) -> Iterator[tuple[Say, Show]]:
    """A live display on stderr while a long step runs (gone when it ends; nothing when stderr
    is not a terminal): `say(message)` prints a step's message and names it on a spinner line,
    `show(what, done, total)` drives a bar (the back-test's folds) until the next step."""
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    shown = errors.is_terminal  # in a log or a pipe, the step messages are enough
    with Progress(
        *columns, TimeElapsedColumn(), console=errors, transient=True, disable=not shown
    ) as bar:
        step = bar.add_task(escape(first), total=None)
        steps: list[TaskID] = []

        def say(message: str) -> None:
            console.print(f"[dim]{escape(message)}[/dim]", highlight=False)
            while steps:
                bar.remove_task(steps.pop())
            bar.update(step, description=escape(message))

        def show(what: str, done: int, total: int) -> None:
            if not steps:
                steps.append(bar.add_task(escape(what), total=total))
            bar.update(steps[0], description=escape(what), completed=done, total=total)

        yield say, show


def _print_verdict(sentence: str, reason: str | None, warnings: Sequence[str]) -> None:
    """The scorecard's sentence, its recommendation (a full report's only) and its warnings."""
    console.print(escape(sentence), highlight=False)
    if reason:
        console.print(f"recommended: {escape(reason)}", highlight=False)
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)


def _print_manifest_scorecard(scorecard: object) -> None:
    """The compact scorecard a manifest keeps (JSON read back): sentence and warnings."""
    if not isinstance(scorecard, dict):
        return
    warnings = scorecard.get("warnings") or []
    _print_verdict(str(scorecard.get("sentence", "")), None, [str(w) for w in warnings])


def _summary_text(summary: dict[str, object]) -> str:
    late = summary.get("late_rate")
    target = summary.get("target_late_rate")
    folds = summary.get("folds")
    return f"late rate {_rate(late)} at target {_rate(target)} over {folds} folds"

"""What `promise models` and `promise rollback` show of each bundle: its manifest as cells, in
tables that fit the terminal (`fitted_models_table`), and as one JSON document for scripts.

Columns go by priority (`MODEL_COLUMNS`, most wanted first): a narrow terminal loses the last
ones and is told which; the marker and the version always stay, and a version is never cut,
since people and scripts copy it into `promise promote`. Builds rich tables; `training.cli`
prints them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from models.registry import Manifest

# The columns of `promise models`, most wanted first.
MODEL_COLUMNS = (
    "",
    "version",
    "created",
    "policy",
    "late/target",
    "vs business",
    "data",
    "spec",
    "promise",
    "MAE",
)
KEPT_COLUMNS = 2
RIGHT_ALIGNED = frozenset({"late/target", "vs business", "promise", "MAE"})


def fitted_models_table(
    screen: Console, registry: Path, manifests: Sequence[Manifest], promoted: str | None, wide: bool
) -> tuple[Table, list[str]]:
    """The bundles' table as wide as `screen` allows (every column with `wide`), and the legend
    lines under it (what the columns mean, which were left out)."""
    rows = [model_row(m, promoted, wide=wide) for m in manifests]
    shown = list(MODEL_COLUMNS)
    table = models_table(registry, rows, shown)
    while not wide and len(shown) > KEPT_COLUMNS and width_of(screen, table) > screen.width:
        shown.pop()
        table = models_table(registry, rows, shown)
    legend = ["* promoted"]
    if "late/target" in shown:
        legend.append("late/target: the back-test's late rate and its target")
    if "vs business" in shown:
        legend.append("vs business: mean promise over the business's own at its late rate")
    left_out = [name for name in MODEL_COLUMNS if name not in shown]
    if left_out:
        legend.append(f"not shown: {', '.join(left_out)} (--wide shows them)")
    return table, legend


def comparison_table(current: Manifest, previous: Manifest) -> Table:
    """Rolling back, side by side: what is promoted now and what comes back."""
    table = tight_table("roll back")
    labels = MODEL_COLUMNS[1:]
    table.add_column("", no_wrap=True, min_width=max(map(len, labels)))
    for heading in ("from (promoted now)", "to (promoted before)"):
        table.add_column(heading, no_wrap=True, min_width=len(heading))
    now, before = model_row(current, None), model_row(previous, None)
    for row, manifest in ((now, current), (before, previous)):
        row["created"] = manifest.created_at[:19].replace("T", " ")
    for name in labels:
        table.add_row(name, escape(now[name]), escape(before[name]))
    return table


def models_table(registry: Path, rows: Sequence[dict[str, str]], shown: Sequence[str]) -> Table:
    table = tight_table(f"bundles in {escape(str(registry))}")
    for name in shown:
        table.add_column(
            name,
            justify="right" if name in RIGHT_ALIGNED else "left",
            no_wrap=True,
            min_width=len(name),
        )
    for row in rows:
        table.add_row(*(escape(row[name]) for name in shown))
    return table


def tight_table(title: str) -> Table:
    """A table of one space between columns and none at the edges: 80 columns hold a lot."""
    from rich import box

    return Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
    )


def width_of(screen: Console, table: Table) -> int:

    # Measured as if the screen were unbounded: Measurement clamps to the width it is given.
    return Measurement.get(screen, screen.options.update_width(1 << 16), table).maximum


def model_row(manifest: Manifest, promoted: str | None, wide: bool = False) -> dict[str, str]:
    """One bundle's cells in `promise models`, keyed by column."""
    info = manifest.info
    summary = info.get("backtest") or {}
    card = summary.get("scorecard") or {} if isinstance(summary, dict) else {}
    data = info.get("data") or {}
    created = manifest.created_at[:19].replace("T", " ")
    dataset = "-"
    if isinstance(data, dict) and data.get("path"):
        dataset = Path(str(data["path"])).name
        if isinstance(data.get("rows_used"), int):
            dataset += f" ({data['rows_used']:,})"
        if wide and data.get("first_order") and data.get("last_order"):
            dataset += f" {str(data['first_order'])[:10]}..{str(data['last_order'])[:10]}"
    spec_path = info.get("spec_path")
    ratio = card.get("company_ratio") if isinstance(card, dict) else None
    late = rate_text(summary.get("late_rate"))
    return {
        "": "*" if manifest.version == promoted else "",
        "version": manifest.version,
        "created": created if wide else created[:10],
        "policy": manifest.policy,
        "late/target": f"{late}/{rate_text(manifest.target_late_rate)}",
        "vs business": f"{ratio:.2f}" if isinstance(ratio, int | float) else "-",
        "data": dataset,
        "spec": "-" if not spec_path else (str(spec_path) if wide else Path(spec_path).name),
        "promise": length_text(summary.get("mean_promise_hours"), manifest.unit),
        "MAE": length_text(summary.get("mae_hours"), manifest.unit),
    }


def model_document(manifest: Manifest, promoted: str | None) -> dict[str, object]:
    """One bundle in `promise models --json`: what the table shows, as numbers."""
    info = manifest.info
    summary = info.get("backtest") or {}
    card = summary.get("scorecard") or {}
    backtest = None
    if summary:
        backtest = {
            name: summary.get(name)
            for name in (
                "late_rate",
                "target_late_rate",
                "folds",
                "n_quotes",
                "mean_promise_hours",
                "mae_hours",
                "pinball_loss_hours",
                "flat_mean_promise_hours",
                "company_late_rate",
                "company_mean_promise_hours",
            )
        }
        backtest["ratio_to_company"] = card.get("company_ratio")
    return {
        "version": manifest.version,
        "promoted": manifest.version == promoted,
        "created_at": manifest.created_at,
        "policy": manifest.policy,
        "unit": manifest.unit,
        "target_late_rate": manifest.target_late_rate,
        "segments_by": info.get("segments_by"),
        "spec_path": info.get("spec_path"),
        "spec_sha256": info.get("spec_sha256"),
        "data": info.get("data"),
        "backtest": backtest,
    }


def rate_text(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "-"


def length_text(value: object, unit: str) -> str:
    if not isinstance(value, int | float):
        return "-"
    if unit == "day":
        return f"{value / 24:.1f} d"
    return f"{value:.1f} h" if unit == "hour" else f"{value * 60:.0f} min"

"""The back-test report's plots: matplotlib figures of a `BacktestReport`, as base64 PNG.

Each `*_figure` answers with a figure (None when the report has nothing to draw): the trade-off
curve with today's company promise on it, late rate per segment against the target, late rate
per fold over time, the distribution of earliness, and right-censoring and drift per fold.
Figures are drawn on matplotlib's Agg canvas (no display, no global state); `png_base64`
encodes one for an inline `<img>`.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from models.units import HOURS_PER_UNIT
from training.backtest import COMPANY, FLAT, BacktestReport
from training.backtest.report_data import Figures, PolicyFigures

FIGURE_DPI = 110
UNIT_WORDS = {"day": ("day", "days"), "hour": ("hour", "hours"), "minute": ("minute", "minutes")}
POLICY_LABELS = {
    "fixed": "fixed buffer",
    "proportional": "proportional buffer",
    "quantile": "quantile model",
    "conformal": "conformal",
    "adaptive": "adaptive conformal",
    FLAT: "same promise for everyone",
    COMPANY: "company promise today",
}
COLOURS = {
    "fixed": "#8c6d31",
    "proportional": "#9467bd",
    "quantile": "#17becf",
    "conformal": "#1f77b4",
    "adaptive": "#2ca02c",
    FLAT: "#7f7f7f",
    COMPANY: "#d62728",
}


def label(name: str) -> str:
    """A policy's (or rule's) name as a person reads it."""
    return POLICY_LABELS.get(name, name)


def unit_word(unit: str, count: float) -> str:
    """ "day" or "days" (hours, minutes) for `count` of `unit`."""
    one, many = UNIT_WORDS.get(unit, (unit, unit + "s"))
    return one if count == 1 else many


def pct(share: float | None) -> str:
    """A share as a percentage with one decimal ("-" when unknown)."""
    return "-" if share is None else f"{100 * share:.1f}%"


def png_base64(figure: Figure) -> str:
    """The figure as a base64 PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float = 7.5, height: float = 4.2, columns: int = 1) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, list(axes)


def _colour(name: str) -> str:
    return COLOURS.get(name, "#333333")


def tradeoff_figure(report: BacktestReport) -> Figure | None:
    """Late rate against mean promise per family, each policy run and the company marked."""
    points = report.tradeoff
    if not points:
        return None
    target = report.target_late_rate
    company = report.company_promise
    figure, (ax,) = _figure()
    for family in dict.fromkeys(p.policy for p in points):
        curve = sorted(
            (p.late_rate, p.mean_promise_units)
            for p in points
            if p.policy == family and p.late_rate is not None and p.mean_promise_units is not None
        )
        if not curve:
            continue
        rates, lengths = zip(*curve, strict=True)
        ax.plot(
            [100 * r for r in rates],
            lengths,
            marker="." if family != FLAT else None,
            linestyle="--" if family == FLAT else "-",
            color=_colour(family),
            label=label(family),
        )
    for name, own in report.policies.items():
        if own.overall.late_rate is not None and own.overall.mean_promise_units is not None:
            ax.scatter(
                [100 * own.overall.late_rate],
                [own.overall.mean_promise_units],
                s=60,
                zorder=3,
                color=_colour(name),
                edgecolors="black",
                linewidths=0.6,
            )
    company_rate = None if company is None else company.overall.late_rate
    company_units = None if company is None else company.overall.mean_promise_units
    if company_rate is not None and company_units is not None:
        ax.scatter(
            [100 * company_rate],
            [company_units],
            marker="*",
            s=260,
            color=COLOURS[COMPANY],
            edgecolors="black",
            linewidths=0.6,
            zorder=4,
            label=label(COMPANY),
        )
    ax.axvline(
        100 * target, color="black", linestyle=":", linewidth=1, label=f"target {pct(target)}"
    )
    ax.set_xlabel("promises broken (%)")
    ax.set_ylabel(f"average promise ({unit_word(report.unit, 2)})")
    # Zoom on the useful part: up to a few times the target, and past today's promise.
    shown = [5 * target, 0.25]
    if company_rate is not None:
        shown.append(1.5 * company_rate)
    right = 100 * max(shown)
    ax.set_xlim(0, right)
    visible = [
        p.mean_promise_units
        for p in points
        if p.late_rate is not None
        and p.mean_promise_units is not None
        and 100 * p.late_rate <= right
    ]
    if visible:
        ax.set_ylim(0.95 * min(visible), 1.05 * max(visible))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return figure


def segment_figure(report: BacktestReport, main: str) -> Figure | None:
    """Late rate per segment of the main policy (and the company's) against the target."""
    own = report.policies[main].by_segment
    if not own:
        return None
    target = report.target_late_rate
    company = report.company_promise
    names = sorted(own)
    height = max(2.5, 0.35 * len(names) + 1.2)
    figure, (ax,) = _figure(height=height)
    y = np.arange(len(names), dtype=np.float64)
    bar = 0.38 if company is not None else 0.6
    ax.barh(
        y,
        [_late_pct(own, n) for n in names],
        height=bar,
        color=COLOURS.get(main, "#1f77b4"),
        label=label(main),
    )
    if company is not None:
        theirs = company.by_segment
        ax.barh(
            y + bar,
            [_late_pct(theirs, n) for n in names],
            height=bar,
            color=COLOURS[COMPANY],
            alpha=0.7,
            label=label(COMPANY),
        )
        ax.set_yticks(y + bar / 2)
    else:
        ax.set_yticks(y)
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.axvline(
        100 * target, color="black", linestyle="--", linewidth=1, label=f"target {pct(target)}"
    )
    ax.set_xlabel("promises broken (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return figure


def folds_figure(report: BacktestReport) -> Figure | None:
    """Late rate per fold over time, per policy and for the company."""
    if not report.folds:
        return None
    figure, (ax,) = _figure()
    when = np.array([_instant(f.cutoff) for f in report.folds], dtype="datetime64[s]")
    series: dict[str, PolicyFigures] = dict(report.policies)
    if report.company_promise is not None:
        series[COMPANY] = report.company_promise
    for name, own in series.items():
        rates = [f.figures.late_rate for f in own.by_fold]
        ax.plot(
            when,
            [np.nan if r is None else 100 * r for r in rates],
            marker="o",
            linestyle="--" if name == COMPANY else "-",
            color=_colour(name),
            label=label(name),
        )
    target = report.target_late_rate
    ax.axhline(
        100 * target, color="black", linestyle=":", linewidth=1, label=f"target {pct(target)}"
    )
    ax.set_ylabel("promises broken (%)")
    ax.set_xlabel("fold cut-off (promises given until the next one)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.autofmt_xdate()
    return figure


def earliness_figure(report: BacktestReport, main: str) -> Figure | None:
    """The distribution of units early (negative: late), the main policy's against the
    company's."""
    edges = np.asarray(report.earliness.edges, dtype=np.float64)
    counts = report.earliness.counts
    if edges.size < 2 or main not in counts:
        return None
    figure, (ax,) = _figure()
    for name in (main, COMPANY):
        if name not in counts:
            continue
        values = np.asarray(counts[name], dtype=np.float64)
        total = values.sum()
        if total == 0:
            continue
        ax.stairs(
            100 * values / total,
            edges,
            fill=name == main,
            alpha=0.45 if name == main else 1,
            color=_colour(name),
            label=label(name),
            linewidth=1.5,
        )
    ax.axvline(0, color="black", linewidth=1)
    ax.axvspan(edges[0], min(0.0, float(edges[-1])), color=COLOURS[COMPANY], alpha=0.06)
    ax.set_xlabel(f"{unit_word(report.unit, 2)} early (negative: late)")
    ax.set_ylabel("share of orders (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def diagnostics_figure(report: BacktestReport) -> Figure | None:
    """Per fold: our calibration's late rate against the naive one's, and the median duration
    of the fold's orders against the training data's."""
    folds = report.folds
    if not folds:
        return None
    figure, (left, right) = _figure(width=9.0, height=3.8, columns=2)
    x = np.arange(len(folds), dtype=np.float64)
    labels = [f.cutoff[:10] for f in folds]
    ours = [_pct_value(f.censoring.late_rate) for f in folds]
    naive = [_pct_value(f.censoring.naive_late_rate) for f in folds]
    left.bar(x - 0.2, ours, width=0.4, color=COLOURS["conformal"], label="our calibration")
    left.bar(x + 0.2, naive, width=0.4, color="#ff7f0e", label="latest fulfilled only")
    left.axhline(100 * report.target_late_rate, color="black", linestyle=":", linewidth=1)
    left.set_xticks(x)
    left.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    left.set_ylabel("promises broken (%)")
    left.set_title("Right-censoring", fontsize=10)
    left.legend(fontsize=8)
    scale = HOURS_PER_UNIT[report.unit]
    train = [_scaled(f.drift.train_median_hours, scale) for f in folds]
    actual = [_scaled(f.drift.fold_median_hours, scale) for f in folds]
    right.plot(x, train, marker="o", color="#7f7f7f", label="training data")
    right.plot(x, actual, marker="o", color=COLOURS["conformal"], label="orders of the fold")
    right.set_xticks(x)
    right.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    right.set_ylabel(f"median duration ({unit_word(report.unit, 2)})")
    right.set_title("Drift", fontsize=10)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return figure


def _late_pct(by_segment: Mapping[str, Figures], segment: str) -> float:
    """A segment's late rate in percent, 0 when unknown or absent."""
    own = by_segment.get(segment)
    return 0.0 if own is None or own.late_rate is None else 100 * own.late_rate


def _scaled(hours: float | None, hours_per_unit: float) -> float:
    return float("nan") if hours is None else hours / hours_per_unit


def _pct_value(share: float | None) -> float:
    return float("nan") if share is None else 100 * share


def _instant(iso: str) -> np.datetime64:
    instant = dt.datetime.fromisoformat(iso)
    return np.datetime64(instant.astimezone(dt.UTC).replace(tzinfo=None), "s")

"""The back-test report as one self-contained HTML page a manager can open.

`render_html(report)` takes the JSON report of `training.backtest.run_backtest` and answers with
the page: the scorecard first (targets held, the promise at equal lateness against the
business's and one flat duration's, the recommended policy, warnings), headline figures, the
trade-off curve with today's company promise on it, late rate per segment against the target,
late rate per fold over time, the distribution of earliness, and right-censoring and drift per
fold, and the call list of orders at risk replayed per policy and threshold. Plots are PNG
images drawn with matplotlib's Agg canvas and embedded as base64; every text is escaped (Jinja2
autoescape), so nothing in the data can inject markup. The page loads nothing from anywhere.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from models.units import HOURS_PER_UNIT

COMPANY = "company_promise"
FLAT = "flat"
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
FIGURE_DPI = 110
# The threshold the sentence on orders at risk reads out (the nearest run if it was not).
AT_RISK_HEADLINE_THRESHOLD = 0.5


def render_html(report: Mapping[str, Any]) -> str:
    """The report as a complete HTML document (UTF-8 text, images inline)."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("training", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    template = environment.get_template("backtest_report.html")
    return template.render(**page_context(report))


def page_context(report: Mapping[str, Any]) -> dict[str, Any]:
    """What the template shows: formatted headline texts, tables and base64 PNG plots."""
    unit = str(report["unit"])
    target = float(report["target_late_rate"])
    policies: Mapping[str, Any] = report["policies"]
    main = main_policy(report)
    own = policies[main]
    company = report.get(COMPANY)
    comparison = report["comparison"].get(main, {})
    dataset = report["dataset"]
    protocol = report["protocol"]
    return {
        "title": f"Back-test of {_label(main)} promises",
        "source": dataset["path"],
        "spec": report["spec"]["source"],
        "span": f"{dataset['first_order'][:10]} to {dataset['last_order'][:10]}",
        "created": report.get("created_at"),
        "protocol": _protocol_text(report),
        "scorecard": _scorecard(report),
        "headline": _headline(report, main),
        "summary": _summary_sentence(report, main),
        "policy_rows": _policy_rows(report),
        "fold_rows": _fold_rows(report),
        "at_risk_rows": _at_risk_rows(report),
        "at_risk_intro": _at_risk_intro(unit),
        "at_risk_sentence": _at_risk_sentence(report, main),
        "model": _model_rows(report),
        "definitions": _definitions(unit),
        "plots": [
            plot
            for plot in (
                _plot(
                    "Trade-off: late rate against promise length",
                    _tradeoff_figure(report),
                    "Each line is one way of setting the buffer, from generous (left) to tight "
                    "(right). Lower is shorter promises; left is fewer broken promises."
                    + (" The red star is what the business promises today." if company else ""),
                ),
                _plot(
                    "Late rate per segment",
                    _segment_figure(report, main),
                    f"Share of broken promises in each segment; the dashed line is the "
                    f"{_pct(target)} target.",
                ),
                _plot(
                    "Late rate over time",
                    _folds_figure(report),
                    "Each point is one fold: the promises given from a cut-off to the next, "
                    "with the model trained only on what was known at the cut-off.",
                ),
                _plot(
                    "How early orders were ready",
                    _earliness_figure(report, main),
                    f"{_unit_word(unit, 2).capitalize()} between being ready and the promise; "
                    f"left of zero the promise was broken. The outer bars hold the tails.",
                ),
                _plot(
                    "Right-censoring and drift",
                    _diagnostics_figure(report),
                    "Left: our calibration against a naive one on the latest fulfilled orders "
                    "(open orders dropped). Right: typical duration of each fold's orders "
                    "against the training data's.",
                ),
            )
            if plot is not None
        ],
        "n_folds": protocol["folds"],
        "has_company": company is not None,
        "main_figures": own,
        "comparison": comparison,
    }


def main_policy(report: Mapping[str, Any]) -> str:
    """The policy the headline is about: the spec's if it was run, else the first run."""
    policies: Mapping[str, Any] = report["policies"]
    wanted = report["spec"]["policy"]
    return str(wanted) if wanted in policies else str(next(iter(policies)))


# --------------------------------------------------------------------------- texts


def _scorecard(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The scorecard section: a row per policy and target, the promise at the business's late
    rate per family, the sentence, the recommendation and the warnings (None: no scorecard)."""
    card = report.get("scorecard")
    if not card:
        return None
    unit = str(report["unit"])
    rows = []
    for name, entries in card["policies"].items():
        for entry in entries:
            target, tolerance = entry["target_late_rate"], entry["tolerance"]
            folds = entry["by_fold"]
            held = sum(1 for fold in folds if fold["within_band"])
            rows.append(
                [
                    _label(name),
                    _pct(target),
                    _pct(entry["late_rate"]),
                    f"{_pct(target - tolerance)} to {_pct(target + tolerance)}",
                    _verdict(entry["within_band"]),
                    f"{held} of {len(folds)}",
                    _length(entry["mean_promise_units"], unit),
                    _length(entry["flat_mean_promise_units"], unit),
                    _ratio(entry["ratio_to_flat"]),
                ]
            )
    company = card["company"]
    company_rows = []
    company_intro = ""
    if company is not None:
        company_intro = (
            f"Your own promise: {_pct(company['late_rate'])} broken, "
            f"{_length(company['mean_promise_units'], unit)} on average. Each way of setting the "
            "buffer at that late rate, read off its trade-off curve:"
        )
        company_rows = [
            [
                _label(family),
                _length(entry["mean_promise_units"], unit),
                _length(company["mean_promise_units"], unit),
                _ratio(entry["ratio"]),
            ]
            for family, entry in company["at_company_late_rate"].items()
        ]
    return {
        "sentence": card["sentence"],
        "rows": rows,
        "company_intro": company_intro,
        "company_rows": company_rows,
        "recommendation": card["recommendation"]["reason"],
        "warnings": list(card["warnings"]),
    }


def _headline(report: Mapping[str, Any], main: str) -> list[dict[str, str]]:
    unit = str(report["unit"])
    target = float(report["target_late_rate"])
    own = report["policies"][main]
    cards = [
        {
            "label": "Promises broken",
            "value": _pct(own["late_rate"]),
            "note": f"target {_pct(target)}, {own['n_quotes']:,} orders",
            "tone": _tone(own["late_rate"], target),
        },
        {
            "label": "Average promise",
            "value": _length(own["mean_promise_units"], unit),
            "note": f"median {_length(own['median_promise_units'], unit)}",
            "tone": "neutral",
        },
        {
            "label": "Ready early",
            "value": _pct(own["impressed"]),
            "note": f"at least one {_unit_word(unit, 1)} before the promise",
            "tone": "neutral",
        },
    ]
    company = report.get(COMPANY)
    if company is not None:
        cards.append(
            {
                "label": "Company promise today",
                "value": f"{_pct(company['late_rate'])} broken",
                "note": f"average {_length(company['mean_promise_units'], unit)}",
                "tone": "neutral",
            }
        )
    flat = report["comparison"].get(main, {}).get("flat_mean_promise_units")
    if flat is not None:
        cards.append(
            {
                "label": "Same promise for everyone",
                "value": _length(flat, unit),
                "note": f"needed for the same {_pct(own['late_rate'])} broken",
                "tone": "neutral",
            }
        )
    return cards


def _summary_sentence(report: Mapping[str, Any], main: str) -> str:
    unit = str(report["unit"])
    own = report["policies"][main]
    target = float(report["target_late_rate"])
    parts = [
        f"Over {own['n_quotes']:,} orders quoted as they would have been at the time, "
        f"{_label(main)} promises averaged {_length(own['mean_promise_units'], unit)} and "
        f"{_pct(own['late_rate'])} were broken, against a target of {_pct(target)}."
    ]
    company = report.get(COMPANY)
    if company is not None and company["late_rate"] is not None and own["late_rate"] is not None:
        fewer = company["late_rate"] - own["late_rate"]
        shorter = company["mean_promise_units"] - own["mean_promise_units"]
        parts.append(
            f"The business's own promise broke {_pct(company['late_rate'])} with an average of "
            f"{_length(company['mean_promise_units'], unit)}: the engine breaks "
            f"{_points(fewer)} {'fewer' if fewer >= 0 else 'more'} promises and promises "
            f"{_length(abs(shorter), unit)} {'less' if shorter >= 0 else 'more'} on average."
        )
    flat = report["comparison"].get(main, {}).get("flat_mean_promise_units")
    if flat is not None:
        parts.append(
            f"Promising everyone the same duration would need {_length(flat, unit)} on average "
            f"to break as few."
        )
    return " ".join(parts)


def _protocol_text(report: Mapping[str, Any]) -> str:
    protocol = report["protocol"]
    unit = str(report["unit"])
    horizon = float(protocol["horizon_hours"]) / 24.0
    return (
        f"{protocol['folds']} folds of {horizon:.3g} days from {protocol['cutoffs'][0][:10]} to "
        f"{protocol['ends'][-1][:10]}; at each cut-off the model was trained and calibrated on "
        f"what was known then only, and promises were scored against when orders were really "
        f"ready (data extracted {protocol['as_of'][:16].replace('T', ' ')} UTC, unit: "
        f"{_unit_word(unit, 1)})."
    )


def _policy_rows(report: Mapping[str, Any]) -> list[list[str]]:
    unit = str(report["unit"])
    rows = []
    entries = list(report["policies"].items())
    if report.get(COMPANY) is not None:
        entries.append((COMPANY, report[COMPANY]))
    for name, own in entries:
        rows.append(
            [
                _label(name),
                _pct(own["late_rate"]),
                _length(own["mean_promise_units"], unit),
                _length(own["median_promise_units"], unit),
                _pct(own["impressed"]),
                _pct(own["satisfied"]),
                _pct(own["disappointed"]),
                _length(_units(own["mean_early_hours"], unit), unit),
                _length(_units(own["mean_late_hours"], unit), unit),
                f"{own['n_quotes']:,}",
            ]
        )
    return rows


def _fold_rows(report: Mapping[str, Any]) -> list[list[str]]:
    unit = str(report["unit"])
    rows = []
    for fold in report["folds"]:
        censoring, drift = fold["censoring"], fold["drift"]
        rows.append(
            [
                fold["cutoff"][:10],
                f"{fold['n_orders']:,}",
                f"{censoring['n_open_at_cutoff']:,}",
                _pct(censoring["late_rate"]),
                _pct(censoring["naive_late_rate"]),
                _pct(drift["adaptive_late_rate"]),
                _length(_units(drift["train_median_hours"], unit), unit),
                _length(_units(drift["fold_median_hours"], unit), unit),
                f"{fold['n_unknown']:,}",
            ]
        )
    return rows


def _at_risk_rows(report: Mapping[str, Any]) -> list[list[str]]:
    unit = str(report["unit"])
    rows = []
    for name, entries in report.get("at_risk", {}).items():
        for entry in entries:
            n = entry["n_quotes"]
            rows.append(
                [
                    _label(name),
                    _threshold(entry["threshold"]),
                    f"{entry['flagged']:,} ({_pct(entry['flagged'] / n if n else None)})",
                    f"{_pct(entry['recall'])} of {entry['late']:,}",
                    _pct(entry["false_alarm_share"]),
                    _length(_units(entry["median_warning_hours"], unit), unit),
                    _pct(entry["revised_late_rate"]),
                ]
            )
    return rows


def _at_risk_intro(unit: str) -> str:
    one = _unit_word(unit, 1)
    return (
        "An order still open has a risk of missing its promise, from how long similar orders "
        "took given that it is not ready yet; the risk grows while it stays open. Replayed over "
        "the back-test: a call list that flags an order once its risk reaches a threshold, at "
        f"least one {one} before the promise (a later call leaves no time to act), and offers "
        "an honest new promise at that moment."
    )


def _at_risk_sentence(report: Mapping[str, Any], main: str) -> str:
    """How to read the table, on the main policy at the threshold nearest 50%."""
    entries: Sequence[Mapping[str, Any]] = report.get("at_risk", {}).get(main, [])
    if not entries:
        return ""
    unit = str(report["unit"])
    entry = min(entries, key=lambda e: abs(e["threshold"] - AT_RISK_HEADLINE_THRESHOLD))
    at = f"At {_threshold(entry['threshold'])} risk"
    if entry["recall"] is None:
        return f"No {_label(main)} promise was broken: the call list had nothing to warn of."
    if entry["flagged"] == 0:
        return (
            f"{at}, no order would have been flagged in time: the call list would have warned of "
            f"none of the {entry['late']:,} late orders."
        )
    sentence = (
        f"{at}, the call list would have warned of {_pct(entry['recall'])} of the late orders "
        f"({_label(main)} promises) a median "
        f"{_length(_units(entry['median_warning_hours'], unit), unit)} before their promise; "
        f"{_pct(entry['false_alarm_share'])} of the calls would have been about orders that came "
        f"in time."
    )
    if entry["revised_late_rate"] is not None:
        sentence += (
            f" Had each flagged order been given an honest new promise at the call, "
            f"{_pct(entry['revised_late_rate'])} of those would have been broken too (target "
            f"{_pct(float(report['target_late_rate']))})."
        )
    return sentence


def _model_rows(report: Mapping[str, Any]) -> list[list[str]]:
    unit = str(report["unit"])
    model = report["model"]
    rows = [
        ["mean absolute error", _precise(model["mae_hours"], unit)],
        ["median absolute error", _precise(model["median_absolute_error_hours"], unit)],
    ]
    for name, loss in model["pinball_loss_hours"].items():
        rows.append(
            [
                f"pinball loss at {_pct(model['quantile'])}: {_label(name)}",
                _precise(loss, unit),
            ]
        )
    return rows


def _definitions(unit: str) -> list[tuple[str, str]]:
    one = _unit_word(unit, 1)
    return [
        (
            "Broken (late)",
            "ready after the promised deadline; an order still open when the "
            "data was extracted counts as late once its deadline had passed, and is left out "
            "while it had not (counted as unknown).",
        ),
        ("Impressed", f"ready at least one {one} before the promised {one}."),
        ("Satisfied", f"ready on the promised {one}, in time."),
        ("Disappointed", "ready after the promise (the same as broken)."),
        ("Promise length", "from the order to the promised deadline."),
        (
            "Orders at risk",
            f"flagged when the chance of missing the promise, given the order is still open, "
            f"reaches the threshold at least one {one} before the promise. Late orders warned "
            f"of: the share of broken promises flagged in time; false alarms: the share of "
            f"flagged orders that came in time; warning: from the flag to the promise.",
        ),
        (
            "Same promise for everyone",
            "a rule without a model that promises every order the same "
            "duration; its length is picked in hindsight to break as many promises as the engine, "
            "which flatters the rule.",
        ),
    ]


# --------------------------------------------------------------------------- plots


def _plot(title: str, figure: Figure | None, caption: str) -> dict[str, str] | None:
    if figure is None:
        return None
    return {"title": title, "png": _png_base64(figure), "caption": caption, "alt": title}


def _png_base64(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float = 7.5, height: float = 4.2, columns: int = 1) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, list(axes)


def _tradeoff_figure(report: Mapping[str, Any]) -> Figure | None:
    points: Sequence[Mapping[str, Any]] = report["tradeoff"]
    unit = str(report["unit"])
    target = float(report["target_late_rate"])
    if not points:
        return None
    figure, (ax,) = _figure()
    families = list(dict.fromkeys(str(p["policy"]) for p in points))
    for family in families:
        curve = sorted(
            (p["late_rate"], p["mean_promise_units"])
            for p in points
            if p["policy"] == family
            and p["late_rate"] is not None
            and p["mean_promise_units"] is not None
        )
        if not curve:
            continue
        rates, lengths = zip(*curve, strict=True)
        ax.plot(
            [100 * r for r in rates],
            lengths,
            marker="." if family != FLAT else None,
            linestyle="--" if family == FLAT else "-",
            color=COLOURS.get(family, "#333333"),
            label=_label(family),
        )
    for name, own in report["policies"].items():
        if own["late_rate"] is not None and own["mean_promise_units"] is not None:
            ax.scatter(
                [100 * own["late_rate"]],
                [own["mean_promise_units"]],
                s=60,
                zorder=3,
                color=COLOURS.get(name, "#333333"),
                edgecolors="black",
                linewidths=0.6,
            )
    company = report.get(COMPANY)
    if company is not None and company["late_rate"] is not None:
        ax.scatter(
            [100 * company["late_rate"]],
            [company["mean_promise_units"]],
            marker="*",
            s=260,
            color=COLOURS[COMPANY],
            edgecolors="black",
            linewidths=0.6,
            zorder=4,
            label=_label(COMPANY),
        )
    ax.axvline(
        100 * target, color="black", linestyle=":", linewidth=1, label=f"target {_pct(target)}"
    )
    ax.set_xlabel("promises broken (%)")
    ax.set_ylabel(f"average promise ({_unit_word(unit, 2)})")
    # Zoom on the useful part: up to a few times the target, and past today's promise.
    shown = [5 * target, 0.25]
    if company is not None and company["late_rate"] is not None:
        shown.append(1.5 * company["late_rate"])
    right = 100 * max(shown)
    ax.set_xlim(0, right)
    visible = [
        p["mean_promise_units"]
        for p in points
        if p["late_rate"] is not None
        and p["mean_promise_units"] is not None
        and 100 * p["late_rate"] <= right
    ]
    if visible:
        ax.set_ylim(0.95 * min(visible), 1.05 * max(visible))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return figure


def _segment_figure(report: Mapping[str, Any], main: str) -> Figure | None:
    own = report["policies"][main]["by_segment"]
    if not own:
        return None
    target = float(report["target_late_rate"])
    company = report.get(COMPANY)
    names = sorted(own)
    height = max(2.5, 0.35 * len(names) + 1.2)
    figure, (ax,) = _figure(height=height)
    y = np.arange(len(names), dtype=np.float64)
    bar = 0.38 if company is not None else 0.6
    ax.barh(
        y,
        [100 * (own[n]["late_rate"] or 0.0) for n in names],
        height=bar,
        color=COLOURS.get(main, "#1f77b4"),
        label=_label(main),
    )
    if company is not None:
        theirs = company["by_segment"]
        ax.barh(
            y + bar,
            [100 * ((theirs.get(n) or {}).get("late_rate") or 0.0) for n in names],
            height=bar,
            color=COLOURS[COMPANY],
            alpha=0.7,
            label=_label(COMPANY),
        )
        ax.set_yticks(y + bar / 2)
    else:
        ax.set_yticks(y)
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.axvline(
        100 * target, color="black", linestyle="--", linewidth=1, label=f"target {_pct(target)}"
    )
    ax.set_xlabel("promises broken (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return figure


def _folds_figure(report: Mapping[str, Any]) -> Figure | None:
    folds = report["folds"]
    if not folds:
        return None
    target = float(report["target_late_rate"])
    figure, (ax,) = _figure()
    when = np.array([_date(f["cutoff"]) for f in folds], dtype="datetime64[s]")
    series = {
        name: [f["late_rate"] for f in own["by_fold"]] for name, own in report["policies"].items()
    }
    if report.get(COMPANY) is not None:
        series[COMPANY] = [f["late_rate"] for f in report[COMPANY]["by_fold"]]
    for name, rates in series.items():
        ax.plot(
            when,
            [np.nan if r is None else 100 * r for r in rates],
            marker="o",
            linestyle="--" if name == COMPANY else "-",
            color=COLOURS.get(name, "#333333"),
            label=_label(name),
        )
    ax.axhline(
        100 * target, color="black", linestyle=":", linewidth=1, label=f"target {_pct(target)}"
    )
    ax.set_ylabel("promises broken (%)")
    ax.set_xlabel("fold cut-off (promises given until the next one)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.autofmt_xdate()
    return figure


def _earliness_figure(report: Mapping[str, Any], main: str) -> Figure | None:
    earliness = report["earliness"]
    edges = np.asarray(earliness["edges"], dtype=np.float64)
    counts: Mapping[str, Sequence[int]] = earliness["counts"]
    if edges.size < 2 or main not in counts:
        return None
    unit = str(report["unit"])
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
            color=COLOURS.get(name, "#333333"),
            label=_label(name),
            linewidth=1.5,
        )
    ax.axvline(0, color="black", linewidth=1)
    ax.axvspan(edges[0], min(0.0, float(edges[-1])), color=COLOURS[COMPANY], alpha=0.06)
    ax.set_xlabel(f"{_unit_word(unit, 2)} early (negative: late)")
    ax.set_ylabel("share of orders (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def _diagnostics_figure(report: Mapping[str, Any]) -> Figure | None:
    folds = report["folds"]
    if not folds:
        return None
    unit = str(report["unit"])
    target = float(report["target_late_rate"])
    figure, (left, right) = _figure(width=9.0, height=3.8, columns=2)
    x = np.arange(len(folds), dtype=np.float64)
    labels = [f["cutoff"][:10] for f in folds]
    ours = [_pct_value(f["censoring"]["late_rate"]) for f in folds]
    naive = [_pct_value(f["censoring"]["naive_late_rate"]) for f in folds]
    left.bar(x - 0.2, ours, width=0.4, color=COLOURS["conformal"], label="our calibration")
    left.bar(x + 0.2, naive, width=0.4, color="#ff7f0e", label="latest fulfilled only")
    left.axhline(100 * target, color="black", linestyle=":", linewidth=1)
    left.set_xticks(x)
    left.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    left.set_ylabel("promises broken (%)")
    left.set_title("Right-censoring", fontsize=10)
    left.legend(fontsize=8)
    scale = HOURS_PER_UNIT[unit]
    train = [_scaled(f["drift"]["train_median_hours"], scale) for f in folds]
    actual = [_scaled(f["drift"]["fold_median_hours"], scale) for f in folds]
    right.plot(x, train, marker="o", color="#7f7f7f", label="training data")
    right.plot(x, actual, marker="o", color=COLOURS["conformal"], label="orders of the fold")
    right.set_xticks(x)
    right.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    right.set_ylabel(f"median duration ({_unit_word(unit, 2)})")
    right.set_title("Drift", fontsize=10)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return figure


# --------------------------------------------------------------------------- formatting


def _label(name: str) -> str:
    return POLICY_LABELS.get(name, name)


def _unit_word(unit: str, count: float) -> str:
    one, many = UNIT_WORDS.get(unit, (unit, unit + "s"))
    return one if count == 1 else many


def _units(hours: float | None, unit: str) -> float | None:
    return None if hours is None else hours / HOURS_PER_UNIT[unit]


def _scaled(hours: float | None, hours_per_unit: float) -> float:
    return float("nan") if hours is None else hours / hours_per_unit


def _length(units: float | None, unit: str) -> str:
    if units is None:
        return "-"
    digits = 0 if unit == "minute" else 1
    value = round(units, digits)
    return f"{value:.{digits}f} {_unit_word(unit, value)}"


def _precise(hours: float | None, unit: str) -> str:
    value = _units(hours, unit)
    return "-" if value is None else f"{value:.2f} {_unit_word(unit, 2)}"


def _verdict(within_band: bool | None) -> str:
    if within_band is None:
        return "-"
    return "within" if within_band else "missed"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def _threshold(share: float) -> str:
    return f"{100 * share:.3g}%"


def _pct_value(share: float | None) -> float:
    return float("nan") if share is None else 100 * share


def _points(share: float) -> str:
    return f"{100 * abs(share):.1f} points"


def _tone(late_rate: float | None, target: float) -> str:
    if late_rate is None:
        return "neutral"
    return "good" if late_rate <= target + 0.01 else "bad"


def _date(iso: str) -> np.datetime64:
    instant = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return np.datetime64(instant.astimezone(dt.UTC).replace(tzinfo=None), "s")

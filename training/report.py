"""The back-test report as one self-contained HTML page a manager can open.

`render_html(report)` takes the `BacktestReport` of `training.backtest.run_backtest` and answers
with the page: the scorecard first (targets held, the promise at equal lateness against the
business's and one flat duration's, the recommended policy, warnings), headline figures, the
plots (`training.charts`), and right-censoring and drift per fold, and the call list of orders
at risk replayed per policy and threshold. Every text is escaped (Jinja2 autoescape), so
nothing in the data can inject markup. The page loads nothing from anywhere.
"""

from __future__ import annotations

import json
from typing import Any

import jinja2
from matplotlib.figure import Figure

from models.units import HOURS_PER_UNIT
from training import charts
from training.backtest import COMPANY, BacktestReport
from training.backtest.report_data import Figures, Scorecard
from training.charts import label, pct, unit_word

# The threshold the sentence on orders at risk reads out (the nearest run if it was not).
AT_RISK_HEADLINE_THRESHOLD = 0.5


def report_files(report: BacktestReport) -> dict[str, str]:
    """The report as its two files, by name: `backtest.json` (the JSON form, strict) and
    `backtest.html` (`render_html`)."""
    return {
        "backtest.json": json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n",
        "backtest.html": render_html(report),
    }


def render_html(report: BacktestReport) -> str:
    """The report as a complete HTML document (UTF-8 text, images inline)."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("training", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    template = environment.get_template("backtest_report.html")
    return template.render(**page_context(report))


def page_context(report: BacktestReport) -> dict[str, Any]:
    """What the template shows: formatted headline texts, tables and base64 PNG plots."""
    main = main_policy(report)
    dataset = report.dataset
    return {
        "title": f"Back-test of {label(main)} promises",
        "source": dataset.path,
        "spec": report.spec.source,
        "span": f"{dataset.first_order[:10]} to {dataset.last_order[:10]}",
        "created": report.created_at,
        "protocol": _protocol_text(report),
        "scorecard": _scorecard(report.scorecard),
        "headline": _headline(report, main),
        "summary": _summary_sentence(report, main),
        "policy_rows": _policy_rows(report),
        "fold_rows": _fold_rows(report),
        "at_risk_rows": _at_risk_rows(report),
        "at_risk_intro": _at_risk_intro(report.unit),
        "at_risk_sentence": _at_risk_sentence(report, main),
        "model": _model_rows(report),
        "definitions": _definitions(report.unit),
        "plots": _plots(report, main),
    }


def main_policy(report: BacktestReport) -> str:
    """The policy the headline is about: the spec's if it was run, else the first run."""
    wanted = report.spec.policy
    return wanted if wanted in report.policies else next(iter(report.policies))


def _plots(report: BacktestReport, main: str) -> list[dict[str, str]]:
    unit, target = report.unit, report.target_late_rate
    company = report.company_promise is not None
    plots = (
        _plot(
            "Trade-off: late rate against promise length",
            charts.tradeoff_figure(report),
            "Each line is one way of setting the buffer, from generous (left) to tight "
            "(right). Lower is shorter promises; left is fewer broken promises."
            + (" The red star is what the business promises today." if company else ""),
        ),
        _plot(
            "Late rate per segment",
            charts.segment_figure(report, main),
            f"Share of broken promises in each segment; the dashed line is the "
            f"{pct(target)} target.",
        ),
        _plot(
            "Late rate over time",
            charts.folds_figure(report),
            "Each point is one fold: the promises given from a cut-off to the next, "
            "with the model trained only on what was known at the cut-off.",
        ),
        _plot(
            "How early orders were ready",
            charts.earliness_figure(report, main),
            f"{unit_word(unit, 2).capitalize()} between being ready and the promise; "
            f"left of zero the promise was broken. The outer bars hold the tails.",
        ),
        _plot(
            "Right-censoring and drift",
            charts.diagnostics_figure(report),
            "Left: our calibration against a naive one on the latest fulfilled orders "
            "(open orders dropped). Right: typical duration of each fold's orders "
            "against the training data's.",
        ),
    )
    return [plot for plot in plots if plot is not None]


def _plot(title: str, figure: Figure | None, caption: str) -> dict[str, str] | None:
    if figure is None:
        return None
    return {"title": title, "png": charts.png_base64(figure), "caption": caption, "alt": title}


# --------------------------------------------------------------------------- texts


def _scorecard(card: Scorecard) -> dict[str, Any]:
    """The scorecard section: a row per policy and target, the promise at the business's late
    rate per family, the sentence, the recommendation and the warnings."""
    unit = card.unit
    rows = []
    for name, entries in card.policies.items():
        for entry in entries:
            target, tolerance = entry.target_late_rate, entry.tolerance
            held = sum(1 for fold in entry.by_fold if fold.counts.within_band)
            rows.append(
                [
                    label(name),
                    pct(target),
                    pct(entry.late_rate),
                    f"{pct(target - tolerance)} to {pct(target + tolerance)}",
                    _verdict(entry.within_band),
                    f"{held} of {len(entry.by_fold)}",
                    _length(entry.mean_promise_units, unit),
                    _length(entry.flat_mean_promise_units, unit),
                    _ratio(entry.ratio_to_flat),
                ]
            )
    company = card.company
    company_rows = []
    company_intro = ""
    if company is not None:
        company_intro = (
            f"Your own promise: {pct(company.late_rate)} broken, "
            f"{_length(company.mean_promise_units, unit)} on average. Each way of setting the "
            "buffer at that late rate, read off its trade-off curve:"
        )
        company_rows = [
            [
                label(family),
                _length(entry.mean_promise_units, unit),
                _length(company.mean_promise_units, unit),
                _ratio(entry.ratio),
            ]
            for family, entry in company.at_company_late_rate.items()
        ]
    return {
        "sentence": card.sentence,
        "rows": rows,
        "company_intro": company_intro,
        "company_rows": company_rows,
        "recommendation": card.recommendation.reason,
        "warnings": list(card.warnings),
    }


def _headline(report: BacktestReport, main: str) -> list[dict[str, str]]:
    unit = report.unit
    target = report.target_late_rate
    own = report.policies[main].overall
    cards = [
        {
            "label": "Promises broken",
            "value": pct(own.late_rate),
            "note": f"target {pct(target)}, {own.n_quotes:,} orders",
            "tone": _tone(own.late_rate, target),
        },
        {
            "label": "Average promise",
            "value": _length(own.mean_promise_units, unit),
            "note": f"median {_length(own.median_promise_units, unit)}",
            "tone": "neutral",
        },
        {
            "label": "Ready early",
            "value": pct(own.impressed),
            "note": f"at least one {unit_word(unit, 1)} before the promise",
            "tone": "neutral",
        },
    ]
    company = report.company_promise
    if company is not None:
        cards.append(
            {
                "label": "Company promise today",
                "value": f"{pct(company.overall.late_rate)} broken",
                "note": f"average {_length(company.overall.mean_promise_units, unit)}",
                "tone": "neutral",
            }
        )
    flat = _flat_units(report, main)
    if flat is not None:
        cards.append(
            {
                "label": "Same promise for everyone",
                "value": _length(flat, unit),
                "note": f"needed for the same {pct(own.late_rate)} broken",
                "tone": "neutral",
            }
        )
    return cards


def _flat_units(report: BacktestReport, main: str) -> float | None:
    comparison = report.comparison.policies.get(main)
    return None if comparison is None else comparison.flat_mean_promise_units


def _summary_sentence(report: BacktestReport, main: str) -> str:
    unit = report.unit
    own = report.policies[main].overall
    parts = [
        f"Over {own.n_quotes:,} orders quoted as they would have been at the time, "
        f"{label(main)} promises averaged {_length(own.mean_promise_units, unit)} and "
        f"{pct(own.late_rate)} were broken, against a target of {pct(report.target_late_rate)}."
    ]
    company = None if report.company_promise is None else report.company_promise.overall
    if company is not None:
        parts.append(_against_company(own, company, unit))
    flat = _flat_units(report, main)
    if flat is not None:
        parts.append(
            f"Promising everyone the same duration would need {_length(flat, unit)} on average "
            f"to break as few."
        )
    return " ".join(part for part in parts if part)


def _against_company(own: Figures, company: Figures, unit: str) -> str:
    """How the engine's promise compares with the business's ("" when either is unknown)."""
    if (
        company.late_rate is None
        or own.late_rate is None
        or company.mean_promise_units is None
        or own.mean_promise_units is None
    ):
        return ""
    fewer = company.late_rate - own.late_rate
    shorter = company.mean_promise_units - own.mean_promise_units
    return (
        f"The business's own promise broke {pct(company.late_rate)} with an average of "
        f"{_length(company.mean_promise_units, unit)}: the engine breaks "
        f"{_points(fewer)} {'fewer' if fewer >= 0 else 'more'} promises and promises "
        f"{_length(abs(shorter), unit)} {'less' if shorter >= 0 else 'more'} on average."
    )


def _protocol_text(report: BacktestReport) -> str:
    protocol = report.protocol
    horizon = protocol.horizon_hours / 24.0
    return (
        f"{protocol.folds} folds of {horizon:.3g} days from {protocol.cutoffs[0][:10]} to "
        f"{protocol.ends[-1][:10]}; at each cut-off the model was trained and calibrated on "
        f"what was known then only, and promises were scored against when orders were really "
        f"ready (data extracted {protocol.as_of[:16].replace('T', ' ')} UTC, unit: "
        f"{unit_word(report.unit, 1)})."
    )


def _policy_rows(report: BacktestReport) -> list[list[str]]:
    unit = report.unit
    entries = list(report.policies.items())
    if report.company_promise is not None:
        entries.append((COMPANY, report.company_promise))
    return [
        [
            label(name),
            pct(own.overall.late_rate),
            _length(own.overall.mean_promise_units, unit),
            _length(own.overall.median_promise_units, unit),
            pct(own.overall.impressed),
            pct(own.overall.satisfied),
            pct(own.overall.disappointed),
            _length(_units(own.overall.mean_early_hours, unit), unit),
            _length(_units(own.overall.mean_late_hours, unit), unit),
            f"{own.overall.n_quotes:,}",
        ]
        for name, own in entries
    ]


def _fold_rows(report: BacktestReport) -> list[list[str]]:
    unit = report.unit
    return [
        [
            fold.cutoff[:10],
            f"{fold.n_orders:,}",
            f"{fold.censoring.n_open_at_cutoff:,}",
            pct(fold.censoring.late_rate),
            pct(fold.censoring.naive_late_rate),
            pct(fold.drift.adaptive_late_rate),
            _length(_units(fold.drift.train_median_hours, unit), unit),
            _length(_units(fold.drift.fold_median_hours, unit), unit),
            f"{fold.n_unknown:,}",
        ]
        for fold in report.folds
    ]


def _at_risk_rows(report: BacktestReport) -> list[list[str]]:
    unit = report.unit
    rows = []
    for name, entries in report.at_risk.items():
        for entry in entries:
            n = entry.n_quotes
            rows.append(
                [
                    label(name),
                    _threshold(entry.threshold),
                    f"{entry.flagged:,} ({pct(entry.flagged / n if n else None)})",
                    f"{pct(entry.recall)} of {entry.late:,}",
                    pct(entry.false_alarm_share),
                    _length(_units(entry.median_warning_hours, unit), unit),
                    pct(entry.revised_late_rate),
                ]
            )
    return rows


def _at_risk_intro(unit: str) -> str:
    one = unit_word(unit, 1)
    return (
        "An order still open has a risk of missing its promise, from how long similar orders "
        "took given that it is not ready yet; the risk grows while it stays open. Replayed over "
        "the back-test: a call list that flags an order once its risk reaches a threshold, at "
        f"least one {one} before the promise (a later call leaves no time to act), and offers "
        "an honest new promise at that moment."
    )


def _at_risk_sentence(report: BacktestReport, main: str) -> str:
    """How to read the table, on the main policy at the threshold nearest 50%."""
    entries = report.at_risk.get(main, ())
    if not entries:
        return ""
    unit = report.unit
    entry = min(entries, key=lambda e: abs(e.threshold - AT_RISK_HEADLINE_THRESHOLD))
    at = f"At {_threshold(entry.threshold)} risk"
    if entry.recall is None:
        return f"No {label(main)} promise was broken: the call list had nothing to warn of."
    if entry.flagged == 0:
        return (
            f"{at}, no order would have been flagged in time: the call list would have warned of "
            f"none of the {entry.late:,} late orders."
        )
    sentence = (
        f"{at}, the call list would have warned of {pct(entry.recall)} of the late orders "
        f"({label(main)} promises) a median "
        f"{_length(_units(entry.median_warning_hours, unit), unit)} before their promise; "
        f"{pct(entry.false_alarm_share)} of the calls would have been about orders that came "
        f"in time."
    )
    if entry.revised_late_rate is not None:
        sentence += (
            f" Had each flagged order been given an honest new promise at the call, "
            f"{pct(entry.revised_late_rate)} of those would have been broken too (target "
            f"{pct(report.target_late_rate)})."
        )
    return sentence


def _model_rows(report: BacktestReport) -> list[list[str]]:
    unit = report.unit
    model = report.model
    rows = [
        ["mean absolute error", _precise(model.mae_hours, unit)],
        ["median absolute error", _precise(model.median_absolute_error_hours, unit)],
    ]
    for name, loss in model.pinball_loss_hours.items():
        rows.append([f"pinball loss at {pct(model.quantile)}: {label(name)}", _precise(loss, unit)])
    return rows


def _definitions(unit: str) -> list[tuple[str, str]]:
    one = unit_word(unit, 1)
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


# --------------------------------------------------------------------------- formatting


def _units(hours: float | None, unit: str) -> float | None:
    return None if hours is None else hours / HOURS_PER_UNIT[unit]


def _length(units: float | None, unit: str) -> str:
    if units is None:
        return "-"
    digits = 0 if unit == "minute" else 1
    value = round(units, digits)
    return f"{value:.{digits}f} {unit_word(unit, value)}"


def _precise(hours: float | None, unit: str) -> str:
    value = _units(hours, unit)
    return "-" if value is None else f"{value:.2f} {unit_word(unit, 2)}"


def _verdict(within_band: bool | None) -> str:
    if within_band is None:
        return "-"
    return "within" if within_band else "missed"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _threshold(share: float) -> str:
    return f"{100 * share:.3g}%"


def _points(share: float) -> str:
    return f"{100 * abs(share):.1f} points"


def _tone(late_rate: float | None, target: float) -> str:
    if late_rate is None:
        return "neutral"
    return "good" if late_rate <= target + 0.01 else "bad"

"""The scorecard: band verdicts, ratios at equal lateness, the recommendation, the warnings and
the sentence, on small scored quotes built in code; and one real back-test that carries it into
the JSON, the HTML page and the command line."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape
from typer.testing import CliRunner

from training.backtest import FLAT, SCORECARD_TARGETS, Scored, run_backtest
from training.backtest.report_data import (
    CompanyCard,
    FallbackCount,
    FamilyAtRate,
    FoldLateCounts,
    LateCounts,
    TargetEntry,
    TradeoffPoint,
)
from training.backtest.scorecard import (
    BAND_TOLERANCES,
    build_scorecard,
    compact_scorecard,
    company_entry,
    fallback_counts,
    fallback_warning,
    is_within_band,
    recommend,
    runs_at_targets,
    segment_warnings,
    segments_hold,
    target_entry,
)
from training.cli import app
from training.data import load_orders
from training.json_form import to_json
from training.report import render_html
from training.spec import load_spec
from training.train import build_calendar

TODAY = dt.date(2026, 11, 23)


def scored(
    late: Sequence[bool],
    promise_hours: float | Sequence[float],
    *,
    folds: Sequence[int] | None = None,
    segments: Sequence[str] | None = None,
    hours_per_unit: float = 24.0,
) -> Scored:
    """Quotes with every outcome known: `late` per order, promises of `promise_hours`."""
    n = len(late)
    hours = np.broadcast_to(np.asarray(promise_hours, dtype=np.float64), (n,)).copy()
    nothing = np.full(n, np.nan)
    return Scored(
        rows=np.arange(n, dtype=np.intp),
        fold=np.asarray(folds if folds is not None else [0] * n, dtype=np.int64),
        ordered_at_s=np.zeros(n),
        clock_start_s=np.zeros(n),
        deadline_s=hours * 3600.0,
        known=np.ones(n, dtype=bool),
        late=np.asarray(late, dtype=bool),
        impressed=np.zeros(n, dtype=bool),
        promise_hours=hours,
        promise_units=hours / hours_per_unit,
        early_hours=nothing,
        early_units=nothing,
        late_hours=nothing,
        expected_hours=hours,
        promised_hours=hours,
        actual_hours=hours,
        segment=np.array(segments if segments is not None else [""] * n, dtype=object),
    )


def late_share(
    n_late: int, n: int, promise_hours: float = 24.0, hours_per_unit: float = 24.0
) -> Scored:
    return scored([i < n_late for i in range(n)], promise_hours, hours_per_unit=hours_per_unit)


def curve(
    policy: str, rates_and_hours: Sequence[tuple[float, float]], hours_per_unit: float = 24.0
) -> list[TradeoffPoint]:
    """Trade-off points of one family: (late rate, mean promise hours)."""
    return [
        TradeoffPoint(
            policy=policy,
            target_late_rate=None,
            late_rate=rate,
            mean_promise_hours=hours,
            median_promise_hours=None,
            mean_promise_units=hours / hours_per_unit,
            n_quotes=0,
        )
        for rate, hours in rates_and_hours
    ]


# --------------------------------------------------------------------------- the band


def test_every_scorecard_target_has_a_band() -> None:
    assert set(BAND_TOLERANCES) == set(SCORECARD_TARGETS) == {0.05, 0.10}


@pytest.mark.parametrize(
    ("target", "n_late", "within"),
    [
        (0.05, 35, True),  # 3.5%: the lower edge
        (0.05, 65, True),  # 6.5%: the upper edge (65/1000 - 0.05 is a hair above 0.015)
        (0.05, 34, False),
        (0.05, 66, False),
        (0.05, 50, True),
        (0.10, 80, True),  # 8.0%
        (0.10, 120, True),  # 12.0%
        (0.10, 79, False),
        (0.10, 121, False),
        (0.10, 65, False),  # within the 5% band, not the 10% one
    ],
)
def test_the_band_verdict_includes_its_edges(target: float, n_late: int, within: bool) -> None:
    entry = target_entry(late_share(n_late, 1000), target, [])
    assert entry.late_rate == pytest.approx(n_late / 1000)
    assert entry.within_band is within
    assert entry.deviation == pytest.approx(n_late / 1000 - target)


def test_no_known_outcome_has_no_verdict() -> None:
    assert is_within_band(None, 0.05) is None
    entry = target_entry(None, 0.10, [])
    assert entry.late_rate is None and entry.within_band is None
    assert entry.by_fold == () and entry.n_quotes == 0


def test_late_rates_per_fold_and_segment_come_with_their_counts() -> None:
    # Fold 0: 100 orders, 5 late; fold 1: 100 orders, 9 late. Segment A holds the late ones of
    # fold 0 and 45 on-time orders; B the rest.
    late = [i < 5 for i in range(100)] + [i < 9 for i in range(100)]
    folds = [0] * 100 + [1] * 100
    segments = ["A"] * 50 + ["B"] * 150
    entry = target_entry(scored(late, 48.0, folds=folds, segments=segments), 0.05, [])
    assert entry.late_rate == pytest.approx(0.07) and entry.within_band is False
    assert (entry.n_quotes, entry.n_late) == (200, 14)
    assert entry.by_fold == (
        FoldLateCounts(fold=0, counts=LateCounts(0.05, n_quotes=100, n_late=5, within_band=True)),
        FoldLateCounts(fold=1, counts=LateCounts(0.09, n_quotes=100, n_late=9, within_band=False)),
    )
    assert entry.by_segment["A"] == LateCounts(
        late_rate=0.1, n_quotes=50, n_late=5, within_band=False
    )
    assert entry.by_segment["B"].n_late == 9
    assert entry.by_segment["B"].late_rate == pytest.approx(9 / 150)


# --------------------------------------------------------------------------- ratios


def test_the_ratio_to_the_flat_rule_is_read_at_the_same_late_rate() -> None:
    # 5% late at 72 h; the flat rule needs 100 h at 0% and 60 h at 10%: 80 h at 5%.
    flat = curve(FLAT, [(0.0, 100.0), (0.10, 60.0)])
    entry = target_entry(late_share(10, 200, promise_hours=72.0), 0.05, flat)
    assert entry.mean_promise_hours == pytest.approx(72.0)
    assert entry.mean_promise_units == pytest.approx(3.0)
    assert entry.flat_mean_promise_hours == pytest.approx(80.0)
    assert entry.flat_mean_promise_units == pytest.approx(80.0 / 24)
    assert entry.ratio_to_flat == pytest.approx(0.9)
    # A late rate off the flat curve has no ratio.
    off = target_entry(late_share(30, 200, promise_hours=72.0), 0.10, flat)
    assert off.late_rate == pytest.approx(0.15)
    assert off.flat_mean_promise_hours is None and off.ratio_to_flat is None


def test_each_family_is_read_at_the_company_late_rate_against_the_company_promise() -> None:
    # The business breaks 20% of promises of 50 h; conformal needs 40 h at 20% (between 50 h at
    # 10% and 30 h at 30%); adaptive's curve stops at 10%; the flat rule needs 60 h.
    company = late_share(20, 100, promise_hours=50.0)
    points = [
        *curve("conformal", [(0.10, 50.0), (0.30, 30.0)]),
        *curve("adaptive", [(0.05, 55.0), (0.10, 45.0)]),
        *curve(FLAT, [(0.10, 70.0), (0.30, 50.0)]),
    ]
    entry = company_entry(company, ["conformal", "adaptive"], points)
    assert entry.late_rate == pytest.approx(0.2)
    assert entry.mean_promise_hours == pytest.approx(50.0)
    at = entry.at_company_late_rate
    assert at["conformal"].mean_promise_hours == pytest.approx(40.0)
    assert at["conformal"].mean_promise_units == pytest.approx(40.0 / 24)
    assert at["conformal"].ratio == pytest.approx(0.8)
    assert at["adaptive"] == FamilyAtRate(
        mean_promise_hours=None, mean_promise_units=None, ratio=None
    )
    assert at[FLAT].ratio == pytest.approx(1.2)
    # No trade-off points at all (no sweep): nothing to read.
    bare = company_entry(company, ["conformal"], [])
    assert bare.at_company_late_rate["conformal"].ratio is None


# --------------------------------------------------------------------------- the recommendation


def entries(*late_rates_and_ratios: tuple[float | None, float | None]) -> list[TargetEntry]:
    """A policy's scorecard entries at 5% and 10%: (late rate, ratio to flat) each."""
    result = []
    for target, (late_rate, flat_ratio) in zip(
        SCORECARD_TARGETS, late_rates_and_ratios, strict=True
    ):
        result.append(
            TargetEntry(
                target_late_rate=target,
                tolerance=BAND_TOLERANCES[target],
                late_rate=late_rate,
                deviation=None if late_rate is None else late_rate - target,
                within_band=is_within_band(late_rate, target),
                n_quotes=0,
                n_late=0,
                mean_promise_hours=None,
                flat_mean_promise_hours=None,
                mean_promise_units=None,
                flat_mean_promise_units=None,
                ratio_to_flat=flat_ratio,
                by_fold=(),
                by_segment={},
            )
        )
    return result


def company_ratios(**ratios: float | None) -> CompanyCard:
    """A business promise of which only each family's ratio at its late rate is known."""
    return CompanyCard(
        late_rate=None,
        n_quotes=0,
        mean_promise_hours=None,
        mean_promise_units=None,
        at_company_late_rate={
            family: FamilyAtRate(None, None, ratio) for family, ratio in ratios.items()
        },
    )


def test_the_shortest_policy_within_the_band_at_both_targets_is_recommended() -> None:
    policies = {
        "conformal": entries((0.055, 0.90), (0.105, 0.80)),  # mean ratio 0.85
        "adaptive": entries((0.050, 0.80), (0.100, 0.84)),  # mean ratio 0.82: shortest
        "fixed": entries((0.080, 0.50), (0.110, 0.50)),  # shortest of all, but 8% at 5%
    }
    chosen = recommend(policies, None)
    assert chosen.policy == "adaptive" and chosen.within_band is True
    assert chosen.basis == "flat" and chosen.ratio == pytest.approx(0.82)
    assert "adaptive: the shortest promises of the 2 within the band" in chosen.reason
    assert "0.82x one flat duration" in chosen.reason


def test_with_a_company_promise_the_ratio_to_it_decides() -> None:
    policies = {
        "conformal": entries((0.055, 0.90), (0.105, 0.80)),
        "adaptive": entries((0.050, 0.80), (0.100, 0.84)),
    }
    company = company_ratios(conformal=0.88, adaptive=0.93, **{FLAT: 1.1})
    chosen = recommend(policies, company)
    assert (chosen.policy, chosen.basis) == ("conformal", "company")
    assert chosen.ratio == pytest.approx(0.88)
    assert "0.88x your own promise at your late rate" in chosen.reason
    # A family off the curve at the company's rate ranks after those on it.
    off_curve = company_ratios(conformal=None, adaptive=0.93, **{FLAT: 1.1})
    assert recommend(policies, off_curve).policy == "adaptive"


def test_a_policy_breaking_far_more_promises_at_one_busy_segment_is_not_recommended() -> None:
    def with_segment(rows: list[TargetEntry], rate: float, n_quotes: int) -> list[TargetEntry]:
        def late(late_rate: float, n: int) -> LateCounts:
            return LateCounts(late_rate=late_rate, n_quotes=n, n_late=0, within_band=None)

        return [
            dataclasses.replace(
                row,
                by_segment={
                    "LDS": late(row.target_late_rate, 5000),
                    "MAN": late(rate + row.target_late_rate - 0.05, n_quotes),
                },
            )
            for row in rows
        ]

    shorter = entries((0.055, 0.80), (0.105, 0.78))
    longer = entries((0.050, 0.85), (0.100, 0.84))
    # MAN 10% late at a 5% target, twice the band's 1.5 points away: conformal is out ...
    policies = {
        "conformal": with_segment(shorter, 0.10, 4906),
        "adaptive": with_segment(longer, 0.062, 4906),
    }
    assert not segments_hold(policies["conformal"]) and segments_hold(policies["adaptive"])
    chosen = recommend(policies, None)
    assert chosen.policy == "adaptive"
    assert "the only one of 2 within the band at every target, its segments too" in chosen.reason
    # ... but a segment with few quotes is too noisy to judge by, and 7.9% is within twice.
    few = {"conformal": with_segment(entries((0.055, 0.80), (0.105, 0.78)), 0.10, 900)}
    assert recommend({**few, "adaptive": policies["adaptive"]}, None).policy == "conformal"
    assert segments_hold(with_segment(entries((0.055, 0.8), (0.105, 0.8)), 0.079, 4906))


def test_when_none_is_within_the_band_the_nearest_is_recommended_and_says_so() -> None:
    policies = {
        "conformal": entries((0.071, 0.80), (0.105, 0.80)),  # worst: 2.1 points at 5%
        "adaptive": entries((0.052, 0.85), (0.125, 0.85)),  # worst: 2.5 points at 10%
        "quantile": entries((None, None), (0.10, 0.70)),  # unknown at 5%: never nearest
    }
    chosen = recommend(policies, None)
    assert chosen.policy == "conformal" and chosen.within_band is False
    assert chosen.reason.startswith("No policy kept within the band at every target")
    assert "2.1 points off the 5.0% target" in chosen.reason


# --------------------------------------------------------------------------- warnings


def test_small_segments_are_named_with_the_folds_they_fell_back_in() -> None:
    per_fold = [
        {"MAN": "all orders", "NCL": "all orders"},
        {"MAN": "all orders"},
        {"MAN": "all orders", "NCL": "all orders", "LDS": "LDS / lens"},
    ]
    counts = fallback_counts(per_fold)
    assert counts == {
        "LDS": FallbackCount(n_folds=1, served_by=("LDS / lens",)),
        "MAN": FallbackCount(n_folds=3, served_by=("all orders",)),
        "NCL": FallbackCount(n_folds=2, served_by=("all orders",)),
    }
    assert fallback_warning(counts, 3) == (
        "Too few calibration orders for a buffer mostly their own: MAN in every fold (borrowing "
        "from all orders); NCL in 2 of 3 folds (borrowing from all orders); LDS in 1 of 3 folds "
        "(borrowing from LDS / lens)."
    )
    assert fallback_warning(fallback_counts([{}, {}]), 2) is None
    # Named by the spec's segment columns, for keys like market ids that are bare numbers.
    assert fallback_warning(
        fallback_counts([{"5": "all orders", "6": "all orders"}]), 1, ["m"]
    ) == (
        "Too few calibration orders for a buffer mostly their own: m 5, 6 in every fold (borrowing "
        "from all orders)."
    )
    nested = fallback_counts([{"MAN / varifocal": "MAN", "6 / single": "all orders"}])
    assert fallback_warning(nested, 1, ["store_id", "lens_type"]) == (
        "Too few calibration orders for a buffer mostly their own: store_id 6 / lens_type single "
        "in every fold (borrowing from all orders); store_id MAN / lens_type varifocal in every "
        "fold (borrowing from store_id MAN)."
    )


def test_a_missed_target_and_the_small_segments_are_warned_of() -> None:
    on_time = late_share(10, 200)  # 5%
    loose = late_share(30, 200)  # 15%: misses the 10% band
    card = build_scorecard(
        "day",
        0.05,
        {"conformal": {0.05: on_time, 0.10: loose}},
        None,
        [],
        [{"MAN": "all orders"}, {}],
    )
    assert list(card.warnings) == [
        "Too few calibration orders for a buffer mostly their own: MAN in 1 of 2 folds (borrowing "
        "from "
        "all orders).",
        "conformal missed the 10.0% target: 15.0% late, outside 8.0% to 12.0% (off in 1 of 1 "
        "folds).",
    ]
    assert card.recommendation.within_band is False


def test_segments_outside_the_band_are_warned_of_by_name() -> None:
    # MAN breaks 12 of 100 promises, LDS 5 of 100: 8.5% overall. MAN misses the 5% band, and
    # LDS the 10% one from below (promises longer than the target asks for).
    late = [i < 5 for i in range(100)] + [i < 12 for i in range(100)]
    segments = ["LDS"] * 100 + ["MAN"] * 100
    quotes = scored(late, 48.0, segments=segments)
    entries = [target_entry(quotes, target, []) for target in SCORECARD_TARGETS]
    assert segment_warnings("conformal", entries, ["store_id"]) == [
        "conformal at the 5.0% target: store_id MAN 12.0% late (of 100), outside 3.5% to 6.5%.",
        "conformal at the 10.0% target: store_id LDS 5.0% late (of 100), outside 8.0% to 12.0%.",
    ]


# --------------------------------------------------------------------------- the sentence


def test_the_sentence_compares_with_the_business_at_its_own_late_rate() -> None:
    # 13.7% late (137 of 1000) at 24.6 days; conformal's curve gives 22.1 days there.
    company = late_share(137, 1000, promise_hours=24.6 * 24)
    points = curve("conformal", [(0.05, 30.0 * 24), (0.10, 25.0 * 24), (0.20, 19.23 * 24)])
    card = build_scorecard(
        "day",
        0.05,
        {"conformal": {0.05: late_share(50, 1000, 30 * 24), 0.10: late_share(100, 1000, 25 * 24)}},
        company,
        points,
        [{}],
    )
    assert card.company is not None
    assert card.company.at_company_late_rate["conformal"].mean_promise_units == (
        pytest.approx(25.0 - 0.037 / 0.10 * (25.0 - 19.23))
    )
    assert card.sentence == (
        "At your own 13.7% late rate the engine (conformal) needs 22.9 days against your 24.6."
    )
    assert card.recommendation.policy == "conformal"
    # Longer than the business's: it says the engine does not beat it.
    slower = curve("conformal", [(0.10, 30.0 * 24), (0.20, 26.0 * 24)])
    card = build_scorecard(
        "day", 0.05, {"conformal": {0.05: late_share(50, 1000)}}, company, slower, [{}]
    )
    assert card.sentence.endswith(
        "needs 28.5 days against your 24.6: it does not beat your promise at equal lateness."
    )


def test_without_a_company_promise_the_sentence_compares_with_the_flat_rule() -> None:
    minutes = 1 / 60
    at_five = late_share(50, 1000, promise_hours=80.8 * minutes, hours_per_unit=minutes)
    at_ten = late_share(100, 1000, promise_hours=70.0 * minutes, hours_per_unit=minutes)
    flat = curve(FLAT, [(0.0, 100.0 * minutes), (0.10, 63.2 * minutes)], hours_per_unit=minutes)
    card = build_scorecard(
        "minute", 0.05, {"conformal": {0.05: at_five, 0.10: at_ten}}, None, flat, [{}]
    )
    flat_at_five = 100.0 - 0.5 * (100.0 - 63.2)  # 81.6 minutes
    assert card.policies["conformal"][0].ratio_to_flat == pytest.approx(80.8 / flat_at_five)
    assert card.sentence == (
        "At a 5.0% target the engine's promises (conformal) average 80.8 minutes, 0.99x one flat "
        "duration for everyone at the same late rate."
    )
    assert card.company is None


def test_runs_at_targets_take_the_sweep_levels_or_the_run_itself() -> None:
    run, level = late_share(10, 200), late_share(20, 200)
    at = runs_at_targets({"conformal": run, "adaptive": run}, {("conformal", 0.10): level}, 0.05)
    assert at == {"conformal": {0.05: run, 0.10: level}, "adaptive": {0.05: run}}


def test_the_compact_form_keeps_one_policy_s_rates_ratios_sentence_and_warnings() -> None:
    flat = curve(FLAT, [(0.0, 100.0), (0.20, 60.0)])
    card = build_scorecard(
        "hour",
        0.05,
        {"conformal": {0.05: late_share(10, 200, 72.0), 0.10: late_share(20, 200, 64.0)}},
        None,
        flat,
        [{"MAN": "all orders"}],
    )
    compact = compact_scorecard(card, "conformal")
    json.dumps(to_json(compact), allow_nan=False)
    five, ten = compact.targets
    assert (five.target_late_rate, five.late_rate, five.within_band) == (0.05, 0.05, True)
    assert (ten.target_late_rate, ten.late_rate, ten.within_band) == (0.10, 0.10, True)
    # 72 h against the flat rule's 90 h at 5%, 64 h against its 80 h at 10%.
    assert (five.ratio_to_flat, ten.ratio_to_flat) == (pytest.approx(0.8), pytest.approx(0.8))
    assert compact.company_ratio is None and compact.recommended == "conformal"
    assert compact.sentence == card.sentence
    assert list(compact.warnings) == [
        "Too few calibration orders for a buffer mostly their own: MAN in every fold (borrowing "
        "from all orders)."
    ]


# --------------------------------------------------------------------------- a real back-test


def test_a_real_backtest_opens_with_the_scorecard_in_json_html_and_the_terminal(
    small_sample_spec: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "backtest",
            "--spec",
            str(small_sample_spec),
            "--policy",
            "conformal",
            "--folds",
            "2",
            "--no-tradeoff",
            "--json",
            str(out / "report.json"),
            "--html",
            str(out / "report.html"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert next(iter(report)) == "created_at" and list(report)[1] == "scorecard"
    card = report["scorecard"]
    five, ten = card["policies"]["conformal"]
    assert (five["target_late_rate"], ten["target_late_rate"]) == (0.05, 0.10)
    # The spec's target is 5%: that entry is the run the report's figures are about.
    own = report["policies"]["conformal"]
    assert five["late_rate"] == own["late_rate"] and five["n_quotes"] == own["n_quotes"]
    # A looser target breaks more promises with shorter ones, and both are scored per fold.
    assert ten["late_rate"] > five["late_rate"]
    assert ten["mean_promise_hours"] < five["mean_promise_hours"]
    assert (
        sum(f["n_quotes"] for f in ten["by_fold"]) == ten["n_quotes"] and len(ten["by_fold"]) == 2
    )
    assert five["ratio_to_flat"] == pytest.approx(
        five["mean_promise_hours"] / five["flat_mean_promise_hours"]
    )
    company = card["company"]
    assert company["late_rate"] == report["company_promise"]["late_rate"]
    assert card["recommendation"]["policy"] == "conformal"
    # 8,000 orders in 8 stores: no store has the 200 calibration orders of a buffer of its own.
    assert set(card["fallbacks"]) == set(own["by_segment"])
    assert any(
        w.startswith("Too few calibration orders for a buffer mostly their own: store_id ")
        and "MAN" in w
        for w in card["warnings"]
    )
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<title>Back-test of conformal promises · Promise</title>" in page
    assert page.index('id="scorecard"') < page.index('id="headline"')
    for text in (card["sentence"], card["recommendation"]["reason"], *card["warnings"]):
        assert str(escape(text)) in page
    assert f"{100 * ten['late_rate']:.1f}%" in page
    printed = " ".join(result.stdout.split())
    for text in (card["sentence"], card["recommendation"]["reason"], *card["warnings"]):
        assert " ".join(text.split()) in printed
    # Segment names come from the data: a warning naming one is escaped on the page.
    spec = load_spec(small_sample_spec)
    table = load_orders(spec)
    typed = run_backtest(
        spec, table, build_calendar(spec, table, TODAY), ["conformal"], 2, tradeoff=False
    )
    warnings = (*typed.scorecard.warnings, "segment <b>x</b> & co")
    hostile = dataclasses.replace(
        typed, scorecard=dataclasses.replace(typed.scorecard, warnings=warnings)
    )
    assert "segment &lt;b&gt;x&lt;/b&gt; &amp; co" in render_html(hostile)

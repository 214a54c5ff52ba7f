"""The scorecard that opens every back-test report: does the engine hold its targets, and does it
beat the business (or one flat duration for everyone) at equal lateness?

`build_scorecard` answers with a `Scorecard` (training.backtest.report_data) from scored quotes
and trade-off points:

```
Scorecard
├── targets          Band per target: the target and its tolerance (`BAND_TOLERANCES`)
├── policies         name -> TargetEntry per target: late rate, within the band, per fold and per
│                    segment late rates with counts, mean promise (hours, units), the flat rule's
│                    mean promise at the same late rate and the ratio of the two
├── company          CompanyCard: the business's late rate and mean promise, and per policy
│                    family the mean promise at that late rate off the trade-off curve, over the
│                    business's (None without a business promise)
├── recommendation   Recommendation: policy, within_band, ratio, basis, reason
├── sentence         one plain sentence in the spec's units
├── fallbacks        segment -> FallbackCount: too small for a buffer of its own
└── warnings         texts: small segments, targets missed, and the recommended policy's
                     segments outside a band
```

Ratios are of mean promise lengths in hours (below 1: the engine promises shorter). Rates are
shares in [0, 1]; a late rate is within the band when it lies within the target's tolerance
either side of it, edges included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from models.policies import GLOBAL_SEGMENT, SEGMENT_SEPARATOR
from models.units import Unit
from training.backtest.report_data import (
    FLAT,
    Band,
    CompactScorecard,
    CompactTarget,
    CompanyCard,
    FallbackCount,
    FamilyAtRate,
    FoldLateCounts,
    LateCounts,
    Recommendation,
    Scorecard,
    TargetEntry,
    TradeoffPoint,
)
from training.backtest.scoring import Scored, figures
from training.backtest.tradeoff import curve_lengths
from training.backtest.walk import SCORECARD_TARGETS

BoolArray = NDArray[np.bool_]

# Target late rate -> how far (a share, either side) the realised late rate may fall from it.
BAND_TOLERANCES: Mapping[float, float] = {0.05: 0.015, 0.10: 0.02}
# Late rates are ratios of counts: 13/200 - 0.05 is 0.015000000000000006, still on the edge.
BAND_EPSILON = 1e-9
# The engine's claim holds per segment too: a policy is recommended only if every segment with at
# least this many scored quotes lies within this many times the band (a segment's late rate is
# noisier than the whole's: 1,000 quotes at 5% have a standard error of 0.7 points).
SEGMENT_EVIDENCE_QUOTES = 1000
SEGMENT_BAND_FACTOR = 2.0
UNIT_WORDS: Mapping[str, str] = {"day": "days", "hour": "hours", "minute": "minutes"}


# --------------------------------------------------------------------------- the band


def band_tolerance(target: float) -> float:
    """The tolerance (a share) of a scorecard target; KeyError names a target without a band."""
    for known, tolerance in BAND_TOLERANCES.items():
        if math.isclose(known, target):
            return tolerance
    raise KeyError(f"no scorecard band for a {target:.1%} target")


def holds_target(late_rate: float | None, target: float) -> bool:
    """Whether a back-test's late rate keeps the claim "at most `target` late": at most the
    target plus its band's tolerance (30% of the target for a target without a band)."""
    try:
        tolerance = band_tolerance(target)
    except KeyError:
        tolerance = 0.3 * target
    return late_rate is not None and late_rate <= target + tolerance + BAND_EPSILON


def is_within_band(late_rate: float | None, target: float) -> bool | None:
    """Whether `late_rate` lies within the target's band (edges included); None without one."""
    if late_rate is None:
        return None
    return abs(late_rate - target) <= band_tolerance(target) + BAND_EPSILON


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


# --------------------------------------------------------------------------- one policy


def runs_at_targets(
    policies: Mapping[str, Scored],
    swept: Mapping[tuple[str, float], Scored],
    target_late_rate: float,
    targets: Sequence[float] = SCORECARD_TARGETS,
) -> dict[str, dict[float, Scored]]:
    """Per policy run, its quotes at each scorecard target: the sweep of that name and target,
    or the run itself when the report's target is that target (absent: left out)."""
    result: dict[str, dict[float, Scored]] = {}
    for name, own in policies.items():
        at: dict[float, Scored] = {}
        for target in targets:
            at_target = next(
                (s for (n, t), s in swept.items() if n == name and math.isclose(t, target)), None
            )
            if at_target is None and math.isclose(target, target_late_rate):
                at_target = own
            if at_target is not None:
                at[target] = at_target
        result[name] = at
    return result


def target_entry(
    scored: Scored | None, target: float, points: Sequence[TradeoffPoint]
) -> TargetEntry:
    """One policy at one scorecard target: late rate and band verdict overall, per fold and per
    segment (with counts), mean promise (hours, spec units) against the flat rule's at the same
    late rate (`points`: trade-off points with the flat rule's), and their ratio.

    `scored` None (the target was not run): every figure None."""
    own = None if scored is None else figures(scored)
    late_rate = None if own is None else own.late_rate
    mean_hours = None if own is None else own.mean_promise_hours
    flat_hours, flat_units = curve_lengths(points, FLAT, late_rate)
    return TargetEntry(
        target_late_rate=target,
        tolerance=band_tolerance(target),
        late_rate=late_rate,
        deviation=None if late_rate is None else late_rate - target,
        within_band=is_within_band(late_rate, target),
        n_quotes=0 if own is None else own.n_quotes,
        n_late=0 if own is None else own.n_late,
        mean_promise_hours=mean_hours,
        flat_mean_promise_hours=flat_hours,
        mean_promise_units=None if own is None else own.mean_promise_units,
        flat_mean_promise_units=flat_units,
        ratio_to_flat=ratio(mean_hours, flat_hours),
        by_fold=() if scored is None else _by_fold(scored, target),
        by_segment={} if scored is None else _by_segment(scored, target),
    )


def _late_counts(scored: Scored, mask: BoolArray, target: float) -> LateCounts:
    own = figures(scored, mask)
    return LateCounts(
        late_rate=own.late_rate,
        n_quotes=own.n_quotes,
        n_late=own.n_late,
        within_band=is_within_band(own.late_rate, target),
    )


def _by_fold(scored: Scored, target: float) -> tuple[FoldLateCounts, ...]:
    folds = sorted({int(k) for k in scored.fold.tolist()})
    return tuple(FoldLateCounts(k, _late_counts(scored, scored.fold == k, target)) for k in folds)


def _by_segment(scored: Scored, target: float) -> dict[str, LateCounts]:
    segments = sorted({str(s) for s in scored.segment.tolist() if s != ""})
    return {seg: _late_counts(scored, scored.segment == seg, target) for seg in segments}


# --------------------------------------------------------------------------- the business


def company_entry(
    company: Scored, families: Sequence[str], points: Sequence[TradeoffPoint]
) -> CompanyCard:
    """The business's own promise: late rate and mean promise, and for each policy family (and
    the flat rule) the mean promise at that late rate off its trade-off curve (None off the
    curve) and its ratio to the business's."""
    own = figures(company)
    at_rate: dict[str, FamilyAtRate] = {}
    for family in [*families, FLAT]:
        hours, units = curve_lengths(points, family, own.late_rate)
        at_rate[family] = FamilyAtRate(hours, units, ratio(hours, own.mean_promise_hours))
    return CompanyCard(
        late_rate=own.late_rate,
        n_quotes=own.n_quotes,
        mean_promise_hours=own.mean_promise_hours,
        mean_promise_units=own.mean_promise_units,
        at_company_late_rate=at_rate,
    )


# --------------------------------------------------------------------------- the verdicts


def mean_ratio_to_flat(entries: Sequence[TargetEntry]) -> float | None:
    """The mean over targets of a policy's ratio to the flat rule (None: none known)."""
    known = [e.ratio_to_flat for e in entries if e.ratio_to_flat is not None]
    return None if not known else float(np.mean(known))


def worst_deviation(entries: Sequence[TargetEntry]) -> float:
    """The largest distance (a share) of a policy's late rate from a target (inf: unknown)."""
    if not entries:
        return math.inf
    return max(math.inf if e.deviation is None else abs(e.deviation) for e in entries)


def segments_hold(entries: Sequence[TargetEntry]) -> bool:
    """Whether every well-observed segment lies within `SEGMENT_BAND_FACTOR` times the band."""
    for e in entries:
        allowed = SEGMENT_BAND_FACTOR * e.tolerance
        for segment in e.by_segment.values():
            rate = segment.late_rate
            if rate is None or segment.n_quotes < SEGMENT_EVIDENCE_QUOTES:
                continue  # too few quotes to judge by
            if abs(rate - e.target_late_rate) > allowed + BAND_EPSILON:
                return False
    return True


def recommend(
    policies: Mapping[str, Sequence[TargetEntry]], company: CompanyCard | None
) -> Recommendation:
    """The policy to use on this data.

    Among the policies within the band at every scorecard target (and whose well-observed
    segments are within twice it, `segments_hold`), the one with the shortest
    promise: the lowest ratio to the business's at its late rate where there is a business
    promise (`basis` "company"; those off the curve rank after, by the flat ratio), else the
    lowest mean ratio to the flat rule (`basis` "flat"). When none is within the band
    everywhere, the one whose worst distance from a target is smallest, and `within_band` is
    False."""
    if not policies:
        return Recommendation(None, False, None, None, "")
    at_company = {} if company is None else company.at_company_late_rate

    def shortness(name: str) -> tuple[str | None, float | None]:
        at_rate = at_company.get(name)
        if at_rate is not None and at_rate.ratio is not None:
            return "company", at_rate.ratio
        flat = mean_ratio_to_flat(policies[name])
        return (None, None) if flat is None else ("flat", flat)

    def rank(name: str) -> tuple[int, float]:
        basis, value = shortness(name)
        order = {"company": 0, "flat": 1}.get(basis or "", 2)
        return order, math.inf if value is None else value

    held = [
        name
        for name, entries in policies.items()
        if entries and all(e.within_band for e in entries) and segments_hold(entries)
    ]
    if held:
        best = min(held, key=rank)
        basis, value = shortness(best)
        return Recommendation(
            best, True, value, basis, _held_reason(best, policies, held, basis, value)
        )
    nearest = min(policies, key=lambda name: worst_deviation(policies[name]))
    worst = worst_deviation(policies[nearest])
    if math.isinf(worst):
        reason = "No policy had a known outcome at every target: nothing to recommend."
        return Recommendation(None, False, None, None, reason)
    # Every deviation is known here: the worst is finite.
    entry = max(policies[nearest], key=lambda e: abs(e.deviation or 0.0))
    basis, value = shortness(nearest)
    reason = (
        f"No policy kept within the band at every target; {nearest} came nearest "
        f"(at worst {100 * worst:.1f} points off the {entry.target_late_rate:.1%} target)."
    )
    return Recommendation(nearest, False, value, basis, reason)


def _held_reason(
    best: str,
    policies: Mapping[str, Sequence[TargetEntry]],
    held: Sequence[str],
    basis: str | None,
    value: float | None,
) -> str:
    against = {
        "company": f"{value or 0.0:.2f}x your own promise at your late rate",
        "flat": f"{value or 0.0:.2f}x one flat duration for everyone",
    }.get(basis or "", "nothing to compare its length with")
    if len(policies) == 1:
        which = "within the band"
    elif len(held) == 1:
        which = f"the only one of {len(policies)} within the band"
    else:
        which = f"the shortest promises of the {len(held)} within the band"
    return f"{best}: {which} at every target, its segments too ({against})."


def verdict_sentence(
    unit: str,
    policy: str | None,
    entries: Sequence[TargetEntry],
    company: CompanyCard | None,
    report_target: float,
) -> str:
    """Whether the engine beats the business at equal lateness, in the spec's units (one
    decimal): at the business's own late rate where there is a business promise and a policy's
    curve reaches it (the recommended `policy` first, else the shortest), else `policy` against
    the flat rule at the scorecard target nearest the report's."""
    words = UNIT_WORDS.get(unit, unit)
    if company is not None and company.late_rate is not None:
        reached = {
            name: e.mean_promise_units
            for name, e in company.at_company_late_rate.items()
            if name != FLAT and e.mean_promise_units is not None
        }
        theirs = company.mean_promise_units
        if reached and theirs is not None:
            name = policy if policy in reached else min(reached, key=lambda n: reached[n])
            engine = reached[name]
            sentence = (
                f"At your own {company.late_rate:.1%} late rate the engine ({name}) needs "
                f"{engine:.1f} {words} against your {theirs:.1f}."
            )
            if round(engine, 1) >= round(theirs, 1):
                sentence = sentence[:-1] + ": it does not beat your promise at equal lateness."
            return sentence
    if policy is None or not entries:
        return "No policy was scored: the engine cannot be compared."
    entry = min(entries, key=lambda e: abs(e.target_late_rate - report_target))
    head = f"At a {entry.target_late_rate:.1%} target"
    if entry.mean_promise_units is None or entry.late_rate is None:
        return f"{head} the engine ({policy}) had no known outcome to compare."
    mean = f"the engine's promises ({policy}) average {entry.mean_promise_units:.1f} {words}"
    if entry.ratio_to_flat is None:
        text = (
            f"{head} {mean}; one flat duration for everyone does not reach its "
            f"{entry.late_rate:.1%} late rate on the trade-off curve."
        )
    else:
        text = (
            f"{head} {mean}, {entry.ratio_to_flat:.2f}x one flat duration for everyone at the "
            f"same late rate."
        )
    if company is not None and company.late_rate is not None:
        text += " Your own promise's late rate lies off every policy's trade-off curve."
    return text


# --------------------------------------------------------------------------- warnings


def fallback_counts(fallbacks_by_fold: Sequence[Mapping[str, str]]) -> dict[str, FallbackCount]:
    """Segment -> in how many folds it was too small for a buffer of its own, and the parent
    keys that served it (`fallbacks_by_fold`: per fold, segment -> serving key)."""
    folds: dict[str, int] = {}
    parents: dict[str, list[str]] = {}
    for fallbacks in fallbacks_by_fold:
        for segment, parent in fallbacks.items():
            folds[segment] = folds.get(segment, 0) + 1
            served_by = parents.setdefault(segment, [])
            if parent not in served_by:
                served_by.append(parent)
    return {seg: FallbackCount(folds[seg], tuple(parents[seg])) for seg in sorted(folds)}


def segment_label(key: str, columns: Sequence[str]) -> str:
    """A segment key as a person reads it: "market_id 6", "store_id MAN / lens_type varifocal"
    (the key itself when the columns are not known or do not match it)."""
    values = key.split(SEGMENT_SEPARATOR)
    if key == GLOBAL_SEGMENT or not columns or len(values) > len(columns):
        return key
    return SEGMENT_SEPARATOR.join(f"{c} {v}" for c, v in zip(columns, values, strict=False))


def segments_label(keys: Sequence[str], columns: Sequence[str]) -> str:
    """Several segment keys in one phrase: "store_id BHM, LDS" when each is one value of the one
    segment column, else each labelled in full (`segment_label`)."""
    if len(columns) == 1 and not any(k == GLOBAL_SEGMENT or SEGMENT_SEPARATOR in k for k in keys):
        return f"{columns[0]} {', '.join(keys)}"
    return ", ".join(segment_label(key, columns) for key in keys)


def fallback_warning(
    counts: Mapping[str, FallbackCount], n_folds: int, columns: Sequence[str] = ()
) -> str | None:
    """One warning naming the segments whose buffer was mostly their parent's (by the spec's
    segment `columns`) and in how many of the `n_folds` folds, segments alike grouped
    ("store_id BHM, LDS in every fold (borrowing from all orders)")."""
    if not counts:
        return None
    groups: dict[tuple[int, tuple[str, ...]], list[str]] = {}
    for segment, c in counts.items():
        parents = tuple(segment_label(parent, columns) for parent in c.served_by)
        groups.setdefault((c.n_folds, parents), []).append(segment)
    parts = []
    for (n, parents), segments in sorted(groups.items(), key=lambda g: (-g[0][0], g[0][1])):
        folds = "every fold" if n == n_folds else f"{n} of {n_folds} folds"
        named = segments_label(segments, columns)
        parts.append(f"{named} in {folds} (borrowing from {', '.join(parents)})")
    return "Too few calibration orders for a buffer mostly their own: " + "; ".join(parts) + "."


def missed_warnings(policies: Mapping[str, Sequence[TargetEntry]]) -> list[str]:
    """One warning per policy and target whose late rate fell outside the band (or is unknown)."""
    warnings = []
    for name, entries in policies.items():
        for e in entries:
            target, tolerance = e.target_late_rate, e.tolerance
            if e.within_band is None or e.late_rate is None:
                warnings.append(f"{name} at the {target:.1%} target: no known outcome.")
            elif not e.within_band:
                missed = sum(1 for fold in e.by_fold if fold.counts.within_band is False)
                warnings.append(
                    f"{name} missed the {target:.1%} target: {e.late_rate:.1%} late, outside "
                    f"{target - tolerance:.1%} to {target + tolerance:.1%}"
                    f" (off in {missed} of {len(e.by_fold)} folds)."
                )
    return warnings


def segment_warnings(
    name: str, entries: Sequence[TargetEntry], columns: Sequence[str] = ()
) -> list[str]:
    """For one policy (the recommended one), per target, the segments whose late rate fell
    outside the band: "conformal at the 5.0% target: store_id MAN 10.0% late (of 3,712), outside
    3.5% to 6.5%"."""
    warnings = []
    for e in entries:
        target, tolerance = e.target_late_rate, e.tolerance
        off = [
            f"{segment_label(segment, columns)} {seg.late_rate:.1%} late (of {seg.n_quotes:,})"
            for segment, seg in e.by_segment.items()
            if seg.within_band is False and seg.late_rate is not None
        ]
        if off:
            warnings.append(
                f"{name} at the {target:.1%} target: {', '.join(off)}, outside "
                f"{target - tolerance:.1%} to {target + tolerance:.1%}."
            )
    return warnings


# --------------------------------------------------------------------------- the scorecard


def build_scorecard(
    unit: Unit,
    target_late_rate: float,
    runs: Mapping[str, Mapping[float, Scored]],
    company: Scored | None,
    points: Sequence[TradeoffPoint],
    fallbacks_by_fold: Sequence[Mapping[str, str]],
    segment_columns: Sequence[str] = (),
    targets: Sequence[float] = SCORECARD_TARGETS,
) -> Scorecard:
    """The scorecard (see the module docstring) of policy runs at each scorecard target
    (`runs_at_targets`), the business's scored promise (or None), the trade-off points (policy
    families and the flat rule), each fold's segment fallbacks and the columns that segment
    keys are made of (the spec's `[quote] segments`, for the warnings)."""
    policies = {
        name: tuple(target_entry(at.get(target), target, points) for target in targets)
        for name, at in runs.items()
    }
    families = list(dict.fromkeys([*runs, *(p.policy for p in points)]))
    business = (
        None
        if company is None
        else company_entry(company, [f for f in families if f != FLAT], points)
    )
    recommendation = recommend(policies, business)
    chosen = recommendation.policy
    counts = fallback_counts(fallbacks_by_fold)
    small = fallback_warning(counts, len(fallbacks_by_fold), segment_columns)
    warnings = [] if small is None else [small]
    warnings += missed_warnings(policies)
    if chosen is not None:
        warnings += segment_warnings(chosen, policies[chosen], segment_columns)
    chosen_entries = policies.get(chosen, ()) if chosen else ()
    return Scorecard(
        targets=tuple(Band(t, band_tolerance(t)) for t in targets),
        unit=unit,
        policies=policies,
        company=business,
        recommendation=recommendation,
        sentence=verdict_sentence(unit, chosen, chosen_entries, business, target_late_rate),
        fallbacks=counts,
        warnings=tuple(warnings),
    )


def compact_scorecard(scorecard: Scorecard, policy: str) -> CompactScorecard:
    """What a bundle's manifest keeps of the scorecard for `policy`: its late rate, band verdict
    and ratio to the flat rule at each target, its ratio to the business's promise at the
    business's late rate (None without one), the recommendation, the sentence, the warnings."""
    company = scorecard.company
    at_rate = None if company is None else company.at_company_late_rate.get(policy)
    return CompactScorecard(
        policy=policy,
        targets=tuple(
            CompactTarget(e.target_late_rate, e.late_rate, e.within_band, e.ratio_to_flat)
            for e in scorecard.policies.get(policy, ())
        ),
        company_ratio=None if at_rate is None else at_rate.ratio,
        recommended=scorecard.recommendation.policy,
        sentence=scorecard.sentence,
        warnings=scorecard.warnings,
    )

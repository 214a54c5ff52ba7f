"""Online control of the adaptive buffer: what outcomes and open orders say since calibration.

A calibrated buffer is as old as its calibration slice. Two signals move it between refits
(conformal PID control, Angelopoulos, Candes & Tibshirani, "Conformal PID control for time
series prediction", 2023):

- **Quantile tracking with an integral term, learnt at deadlines.** Per segment key (every depth:
  global, store, store and lens) a leaky sum of misses `M <- leak * M + (late - target)`. Each
  promise is learnt at its deadline, kept or broken, never before: learning a kept promise at
  its (early) fulfilment and a broken one at its deadline would feed the controller mostly kept
  promises at first and shorten promises just when they start to break. The policy turns `M` into
  a bounded offset in units of the segment's score spread (`models.policies.AdaptivePolicy`).
- **A nowcast of the shift (the scorecaster).** The middle of the residual distribution is known
  long before its tail: a censored median needs only half the durations. `nowcast_median` is
  the median residual of the orders in progress in a recent window, by a Kaplan-Meier estimate
  with delayed entry (each order enters the risk set at its residual when the window opens,
  orders still open are censored at their age), so a slow-down shows as soon as orders age past
  their expected completion, weeks before their deadlines.

The state is a pure function of the order history: `learn` is a left fold over decided
promises in deadline order, so a back-test stepping through time and a service replaying its
ledger from scratch reach the same numbers.

Fitted on the calibration slice, per segment (`SegmentControl`): how far one unit of offset moves
the score, how fast misses count, how long they are remembered and the nowcast's window. The
offset is bounded in units of the segment's score spread (its quantile at 1 - target less its
median), so the buffer can never collapse to the largest calibration score, the failure of plain
adaptive conformal inference at a level near zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from models.pooling import SegmentBuffer
from models.scores import CalibrationSlice, residual_scores, score_distribution
from models.segments import segment_keys

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

# The adaptive offset, in units of the segment's score spread (its quantile at 1 - target less
# its median): the integral of misses moves it within [MIN, MAX], the nowcast's shift of the
# whole distribution too, and both together stay within [-MAX, MAX]; the score never drops below
# the median score (moved by the nowcast's shift), so it cannot collapse either way.
MIN_CONTROL_OFFSET = -1.0
MAX_CONTROL_OFFSET = 4.0
# A nowcast resting on this many fulfilments weighs as much as its parent's.
NOWCAST_PRIOR_EVENTS = 50
# The nowcast window holds about this many fulfilments of the segment, within these multiples of
# its median expectation (and never more than the calibration slice's span); a small segment's
# fewer fulfilments weigh less against its parent's (NOWCAST_PRIOR_EVENTS).
NOWCAST_EVENTS = 100
NOWCAST_MIN_WINDOW = 0.5
NOWCAST_MAX_WINDOW = 4.0


@dataclass(frozen=True, slots=True)
class ControlState:
    """Per segment key: the leaky sum of misses, outcomes learnt, and the nowcast median.

    `medians` holds the nowcast's median residual score of the key's recent orders (in the
    policy's score scale) and `events` how many fulfilments it rests on."""

    misses: Mapping[str, float] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    medians: Mapping[str, float] = field(default_factory=dict)
    events: Mapping[str, int] = field(default_factory=dict)
    n_updates: int = 0


def learn(
    state: ControlState,
    paths: Sequence[Sequence[str]],
    late: BoolArray,
    target: float,
    leaks: Mapping[str, float],
) -> ControlState:
    """The state after learning decided promises, in the order given (their deadlines').

    `paths[i]` are the segment keys promise i counts for (global first); `leaks[key]` the share
    of the sum kept per outcome (1: a plain integral); a key without one keeps everything."""
    misses = dict(state.misses)
    counts = dict(state.counts)
    for path, was_late in zip(paths, late.tolist(), strict=True):
        error = (1.0 if was_late else 0.0) - target
        for key in path:
            misses[key] = leaks.get(key, 1.0) * misses.get(key, 0.0) + error
            counts[key] = counts.get(key, 0) + 1
    return ControlState(
        misses=misses,
        counts=counts,
        medians=state.medians,
        events=state.events,
        n_updates=state.n_updates + int(late.size),
    )


def with_nowcast(
    state: ControlState, medians: Mapping[str, float], events: Mapping[str, int]
) -> ControlState:
    """The state with the nowcast replaced (keys without an estimate are left out)."""
    return ControlState(
        misses=state.misses,
        counts=state.counts,
        medians=dict(medians),
        events=dict(events),
        n_updates=state.n_updates,
    )


def nowcast_median(
    clock_start_s: FloatArray,
    expected_hours: FloatArray,
    fulfilled_s: FloatArray,
    now_s: float,
    window_hours: float,
    relative: bool,
) -> tuple[float | None, int]:
    """(median residual score, fulfilments seen) of orders in progress in the last window.

    Kaplan-Meier with delayed entry over the orders started before `now_s` and not fulfilled
    before the window opened: each enters at its residual when the window opens (or at its
    start), leaves at its fulfilment (an event) or at `now_s` while open (censored). When the
    estimate does not reach one half, the largest residual seen (a lower bound of the median);
    None when no order was in progress or none was fulfilled in the window."""
    opens_s = now_s - window_hours * 3600.0
    open_now = ~(fulfilled_s <= now_s)
    seen = (clock_start_s < now_s) & (open_now | (fulfilled_s > opens_s))
    if not seen.any():
        return None, 0
    start = clock_start_s[seen]
    expected = expected_hours[seen]
    is_event = ~open_now[seen]
    leaves_s = np.where(is_event, fulfilled_s[seen], now_s)
    entry = residual_scores((np.maximum(start, opens_s) - start) / 3600.0, expected, relative)
    exit_ = residual_scores((leaves_s - start) / 3600.0, expected, relative)
    events = np.sort(exit_[is_event])
    if events.size == 0:
        return None, 0
    values, deaths = np.unique(events, return_counts=True)
    # In the risk set at x: entered by x and not yet left (leaving at x counts as there).
    entered = np.searchsorted(np.sort(entry), values, side="right")
    left = np.searchsorted(np.sort(exit_), values, side="left")
    at_risk = np.maximum(entered - left, deaths)
    survival = np.cumprod(1.0 - deaths / at_risk)
    reached = np.flatnonzero(survival <= 0.5)
    if reached.size == 0:
        # More than half survive everything seen: the median lies beyond the oldest order, a
        # lower bound that is itself the signal (a slow-down before any slowed order is done).
        return float(exit_.max()), int(events.size)
    return float(values[reached[0]]), int(events.size)


@dataclass(frozen=True, slots=True)
class SegmentControl:
    """How the adaptive policy moves one segment's buffer (all fitted on the calibration slice).

    `scale`: the score spread that one unit of offset is; `gain`: offset per unit of the miss
    sum; `flight`: about how many of the segment's promises are open at once (outcomes per
    promise length: a controller that has learnt this many weighs as much as its parent);
    `leak`: the share of the miss sum kept per outcome, forgetting over about the time a refit
    takes to absorb a change (settle time and calibration span); `baseline_median`: the
    calibration slice's median residual score, which the nowcast compares against;
    `window_hours`: the nowcast's window; `floor`: the lowest score served (the median)."""

    scale: float
    gain: float
    flight: float
    leak: float
    baseline_median: float
    window_hours: float
    floor: float


def fit_controls(
    calibration: CalibrationSlice,
    table: Mapping[str, SegmentBuffer],
    depth: int,
    relative: bool,
    target_late_rate: float,
    control_gain: float,
) -> dict[str, SegmentControl]:
    """A `SegmentControl` for every calibrated segment of `table` (segments down to `depth`);
    `control_gain`: a whole promise-length of outcomes all late (less the target) moves the
    offset by this many score spreads."""
    span_hours, lag_hours = _calibration_window_hours(calibration)
    reached = (
        calibration.needed_hours if calibration.reached_hours is None else calibration.reached_hours
    )
    residual = residual_scores(reached, calibration.expected_hours, relative)
    # How long a promise stays open, about: what each calibration order needed.
    promised = np.maximum(calibration.needed_hours, calibration.expected_hours)
    controls: dict[str, SegmentControl] = {}
    for at_depth in range(depth + 1):
        keys = np.array(segment_keys(calibration.segment_labels, at_depth), dtype=object)
        distinct, inverse = np.unique(keys, return_inverse=True)
        for j, key in enumerate(distinct.tolist()):
            segment = table.get(key)
            if segment is None:
                continue
            members = np.flatnonzero(inverse == j)
            per_hour = members.size / span_hours
            flight = max(1.0, per_hour * float(np.mean(promised[members])))
            memory = max(2.0, per_hour * (span_hours + lag_hours))
            dist = segment.distribution
            baseline = score_distribution(residual[members], calibration.censored[members])
            typical_hours = float(np.median(calibration.expected_hours[members]))
            # Long enough for NOWCAST_EVENTS fulfilments, short enough to be news: a window
            # spanning weeks of history would see a shock only as its average.
            window = min(
                span_hours,
                NOWCAST_MAX_WINDOW * typical_hours,
                max(NOWCAST_EVENTS / max(per_hour, 1e-9), NOWCAST_MIN_WINDOW * typical_hours),
            )
            controls[key] = SegmentControl(
                scale=max(dist.spread(target_late_rate), 1e-3 * max(abs(segment.score), 1.0)),
                gain=control_gain / flight,
                flight=flight,
                leak=1.0 - 1.0 / memory,
                baseline_median=baseline.quantile(0.5),
                window_hours=window,
                floor=dist.quantile(0.5),
            )
    return controls


def _calibration_window_hours(calibration: CalibrationSlice) -> tuple[float, float]:
    """(span, lag) in hours: from the first to the last calibration order placed, and from the
    last to the cut-off. Unknown placements: a nominal 1,000-hour span and no lag."""
    if calibration.placed_s is None or calibration.placed_s.size == 0:
        return 1000.0, 0.0
    first, last = float(calibration.placed_s.min()), float(calibration.placed_s.max())
    cutoff = last if calibration.cutoff_s is None else calibration.cutoff_s
    return max((last - first) / 3600.0, 1.0), max((cutoff - last) / 3600.0, 0.0)


def controlled_score(
    segment: SegmentBuffer,
    controls: Mapping[str, SegmentControl],
    state: ControlState,
    use_nowcast: bool,
) -> float:
    """The segment's score moved by the state: each key of its path, from the global one down,
    blends its own offset (and nowcast shift) with its parent's by how much it has learnt."""
    offset = 0.0
    shift = 0.0
    for key in segment.path:
        control = controls[key]
        n = state.counts.get(key, 0)
        weight = n / (n + control.flight)
        offset = weight * control.gain * state.misses.get(key, 0.0) + (1.0 - weight) * offset
        median = state.medians.get(key)
        if median is not None and use_nowcast:
            events = state.events.get(key, 0)
            weight = events / (events + NOWCAST_PRIOR_EVENTS)
            own_shift = (median - control.baseline_median) / control.scale
            shift = weight * own_shift + (1.0 - weight) * shift
    control = controls[segment.key]
    offset = min(MAX_CONTROL_OFFSET, max(MIN_CONTROL_OFFSET, offset))
    shift = min(MAX_CONTROL_OFFSET, max(-MAX_CONTROL_OFFSET, shift))
    moved = min(MAX_CONTROL_OFFSET, max(-MAX_CONTROL_OFFSET, offset + shift))
    return max(segment.score + control.scale * moved, control.floor + control.scale * shift)


@dataclass(frozen=True, slots=True)
class OrdersSeen:
    """Orders the nowcast reads, shape (n,) each: clock start and fulfilment (epoch seconds,
    NaN while open) and the model's expected hours."""

    clock_start_s: FloatArray
    expected_hours: FloatArray
    fulfilled_s: FloatArray


def segment_nowcasts(
    controls: Mapping[str, SegmentControl],
    orders: OrdersSeen,
    paths: Sequence[Sequence[str]],
    now_s: float,
    relative: bool,
) -> tuple[dict[str, float], dict[str, int]]:
    """(median residual score, fulfilments) per segment key, from the orders in progress in
    each key's window before `now_s` (`nowcast_median`); `paths[i]` are the keys order i counts
    for."""
    members_of: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        for key in path:
            members_of.setdefault(key, []).append(i)
    medians: dict[str, float] = {}
    events: dict[str, int] = {}
    for key, index in members_of.items():
        control = controls.get(key)
        if control is None:
            continue
        members = np.array(index)
        median, n_events = nowcast_median(
            orders.clock_start_s[members],
            orders.expected_hours[members],
            orders.fulfilled_s[members],
            now_s,
            control.window_hours,
            relative,
        )
        if median is not None:
            medians[key] = median
            events[key] = n_events
    return medians, events

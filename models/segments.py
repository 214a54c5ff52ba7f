"""Segment keys: the cell an order's segment values name at each depth (Mondrian segments).

With `segments = ["store_id", "lens_type"]` an order of store MAN and lens sv lies in "all
orders" (depth 0), "MAN" (depth 1) and "MAN / sv" (depth 2); a missing value reads "(missing)".
Buffers, risk distributions and the back-test's scorecard all name their segments this way.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

GLOBAL_SEGMENT = "all orders"
SEGMENT_SEPARATOR = " / "

Columns = Mapping[str, Sequence[object] | NDArray[np.generic]]


def segment_keys(labels: Sequence[Sequence[str | None]], depth: int) -> list[str]:
    """Segment keys at `depth` (0 = global) for each order's tuple of segment labels."""
    if depth == 0:
        return [GLOBAL_SEGMENT] * len(labels)
    # Few distinct label tuples, many orders: join each distinct tuple once.
    rows = list(map(tuple, labels))
    keys = {row: segment_key(row, depth) for row in dict.fromkeys(rows)}
    return list(map(keys.__getitem__, rows))


def segment_key(values: Sequence[str | None], depth: int) -> str:
    """The key of one order's segment at `depth` (0 = global)."""
    if depth == 0:
        return GLOBAL_SEGMENT
    return SEGMENT_SEPARATOR.join(_label(v) for v in values[:depth])


def _label(value: str | None) -> str:
    return "(missing)" if value is None else value


def segment_labels(columns: Columns, segments: Sequence[str], n: int) -> list[tuple[Any, ...]]:
    """Each order's tuple of segment values (empty tuples when there are no segments)."""
    if not segments:
        return [()] * n
    return list(zip(*(columns[name] for name in segments), strict=True))


def distinct_labels(
    columns: Columns, segments: Sequence[str], n: int
) -> tuple[NDArray[np.int64], list[tuple[Any, ...]]]:
    """(inverse, distinct): each order's index (n,) into the distinct tuples of its segment
    values, in order of first appearance, told apart as dictionary keys (as `segment_labels`'
    tuples would be). One pass over the orders: a few hundred ns for one order, ~0.1 us an order
    in a batch."""
    if not segments:
        return np.zeros(n, dtype=np.int64), [()]
    for name in segments:
        if len(columns[name]) != n:
            raise ValueError(
                f"segment column {name!r} has {len(columns[name])} values, expected {n}"
            )
    # Each order's position of the first order with its values, all in C (`map` with the
    # dictionary's own `setdefault`, no Python-level loop); then those positions, which rise in
    # order of first appearance, are numbered 0, 1, ...
    # One segment column is keyed by its values themselves: no tuple to build and hash per order.
    first_seen: dict[Any, int] = {}
    one = len(segments) == 1
    rows = columns[segments[0]] if one else zip(*(columns[name] for name in segments), strict=True)
    positions = np.fromiter(
        map(first_seen.setdefault, rows, itertools.count()), dtype=np.int64, count=n
    )
    firsts = np.fromiter(first_seen.values(), dtype=np.int64, count=len(first_seen))
    distinct = [(value,) for value in first_seen] if one else list(first_seen)
    return np.searchsorted(firsts, positions), distinct

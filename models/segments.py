"""Segment keys: the cell an order's segment values name at each depth (Mondrian segments).

With `segments = ["store_id", "lens_type"]` an order of store MAN and lens sv lies in "all
orders" (depth 0), "MAN" (depth 1) and "MAN / sv" (depth 2); a missing value reads "(missing)".
Buffers, risk distributions and the back-test's scorecard all name their segments this way.
"""

from __future__ import annotations

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
    keys = {row: segment_key(row, depth) for row in dict.fromkeys(map(tuple, labels))}
    return [keys[tuple(row)] for row in labels]


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
    values, which are told apart as dictionary keys (as `segment_labels`' tuples would be)."""
    if not segments:
        return np.zeros(n, dtype=np.int64), [()]
    combined = np.zeros(n, dtype=np.int64)
    uniques: list[list[Any]] = []
    for name in segments:
        column = columns[name]
        if len(column) != n:
            raise ValueError(f"segment column {name!r} has {len(column)} values, expected {n}")
        # Two passes that stay in C (dict.fromkeys, map): ~30 ns an order, not ~200.
        values = list(dict.fromkeys(column))
        index = {value: code for code, value in enumerate(values)}
        codes = np.fromiter(map(index.__getitem__, column), dtype=np.int64, count=n)
        combined = combined * max(len(values), 1) + codes
        uniques.append(values)
    distinct_codes, inverse = np.unique(combined, return_inverse=True)
    distinct: list[tuple[Any, ...]] = []
    for code in distinct_codes.tolist():
        parts: list[Any] = []
        for values in reversed(uniques):
            code, part = divmod(code, len(values))
            parts.append(values[part])
        distinct.append(tuple(reversed(parts)))
    return inverse.astype(np.int64, copy=False), distinct

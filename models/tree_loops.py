"""The loops over tree tables, as source: `models.kernels` compiles them ahead of time.

`models.fast` turns a fitted booster into arrays (leaf masks, or nodes for a plain walk); these
loops read them. They are plain Python in the subset numba compiles (nopython): `models.kernels`
builds them once into a native module (numba.pycc, releasing the GIL) and every process loads
that, so no worker loads numba or LLVM. The functions here are never called from Python (they
would be ~1,000x slower): they are what gets compiled. Sums run in tree order, without
fast-math, so they equal sklearn's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Schema codes a categorical feature can have: sklearn gives categorical features < 256 bins.
CODES = 256
# Walk: columns of `models.fast.WalkedTrees.nodes`, the flags in its info word (its row of
# `bitsets` above them).
COLUMN, LEFT, RIGHT, INFO = 0, 1, 2, 3
LEAF, CATEGORICAL, MISSING_LEFT, FLAG_BITS = 1, 2, 4, 3
# Leaf masks: rows predicted side by side, so that the CPU overlaps their serial sums.
_BLOCK = 8
# Index of the lowest set bit of a 64-bit word by de Bruijn multiplication (no branch, no loop).
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_SHIFT = np.uint64(58)
_ZERO = np.uint64(0)
_LOWEST_BIT = np.zeros(64, dtype=np.int64)
for _bit in range(64):
    _LOWEST_BIT[((1 << _bit) * 0x03F79D71B4CB0A89 % (1 << 64)) >> 58] = _bit
del _bit
_LOWEST_BIT.flags.writeable = False


# --------------------------------------------------------------------------- leaf masks


def _bin(x: float, features: IntArray, edges: FloatArray, f: int) -> int:
    """The bin of value `x` of used feature `f` (see `models.fast.LeafMaskTrees`)."""
    low = features[f, 2]
    high = features[f, 3]
    if features[f, 1]:  # categorical: high = number of codes; bin `high` = missing or no code
        if 0.0 <= x < high and x == math.floor(x):
            return int(x)
        return int(high)
    if math.isnan(x):
        return int(high - low + 1)
    # The number of edges below x, so that x <= edge k iff the bin is <= k.
    lo = low
    hi = high
    while lo < hi:
        mid = (lo + hi) >> 1
        if edges[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return int(lo - low)


def _mask_block(
    rows: FloatArray,
    start: int,
    stop: int,
    features: IntArray,
    edges: FloatArray,
    masks: NDArray[Any],
    leaf_values: FloatArray,
    baseline: float,
    reachable: NDArray[Any],
    leaves: IntArray,
    sums: FloatArray,
    out: FloatArray,
) -> None:
    """Raw predictions of rows[start:stop] (at most `_BLOCK` rows) into out[start:stop].

    Scratch: `reachable` (_BLOCK, mask width), `leaves` (_BLOCK, n_trees), `sums` (_BLOCK,).
    Each row's sum runs in tree order as sklearn's does; the rows of a block are summed side
    by side so that the CPU overlaps their (otherwise serial) additions."""
    n_trees = leaf_values.shape[0]
    width = masks.shape[1]
    words = width // n_trees
    word_bits = masks.itemsize * 8
    n_features = features.shape[0]
    for b in range(stop - start):
        row = rows[start + b]
        reach = reachable[b]
        everything = masks[0]  # row 0: every leaf
        for j in range(width):
            reach[j] = everything[j]
        for f in range(n_features):
            chosen = masks[features[f, 4] + _bin(row[features[f, 0]], features, edges, f)]
            for j in range(width):
                reach[j] &= chosen[j]
        exits = leaves[b]
        if words == 1:  # up to 64 leaves a tree: one word, no search (the usual case)
            for t in range(n_trees):
                word = np.uint64(reach[t])
                exits[t] = _LOWEST_BIT[((word & (_ZERO - word)) * _DEBRUIJN) >> _DEBRUIJN_SHIFT]
        else:
            for t in range(n_trees):
                leaf = 0
                for w in range(words):  # the exit leaf: the lowest bit set
                    word = np.uint64(reach[t * words + w])
                    if word != _ZERO:
                        lowest = word & (_ZERO - word)
                        leaf = w * word_bits + _LOWEST_BIT[(lowest * _DEBRUIJN) >> _DEBRUIJN_SHIFT]
                        break
                exits[t] = leaf
        sums[b] = 0.0 + baseline  # sklearn starts from zeros and adds the baseline
    for t in range(n_trees):
        values = leaf_values[t]
        for b in range(stop - start):
            sums[b] += values[leaves[b, t]]
    for b in range(stop - start):
        out[start + b] = sums[b]


def _mask_rows(
    rows: FloatArray,
    features: IntArray,
    edges: FloatArray,
    masks: NDArray[Any],
    leaf_values: FloatArray,
    baseline: float,
    out: FloatArray,
) -> None:
    """Raw predictions of every row of `rows` (n, n_columns) into `out` (n,)."""
    reachable = np.empty((_BLOCK, masks.shape[1]), dtype=masks.dtype)
    leaves = np.empty((_BLOCK, leaf_values.shape[0]), dtype=np.int64)
    sums = np.empty(_BLOCK, dtype=np.float64)
    n = rows.shape[0]
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        _mask_block(
            rows,
            start,
            stop,
            features,
            edges,
            masks,
            leaf_values,
            baseline,
            reachable,
            leaves,
            sums,
            out,
        )


# --------------------------------------------------------------------------- walk


def _walk_row(
    row: FloatArray,
    nodes: NDArray[np.int32],
    values: FloatArray,
    bitsets: IntArray,
    roots: NDArray[np.int32],
    baseline: float,
) -> float:
    """The raw prediction for one row: baseline plus each tree's leaf, in tree order."""
    total = 0.0 + baseline
    for tree in range(roots.shape[0]):
        node = roots[tree]
        info = nodes[node, INFO]
        while not info & LEAF:
            value = row[nodes[node, COLUMN]]
            if math.isnan(value):
                go_left = (info & MISSING_LEFT) != 0
            elif info & CATEGORICAL:
                if 0.0 <= value < CODES and value == math.floor(value):
                    code = int(value)
                    word = bitsets[info >> FLAG_BITS, code >> 5]
                    go_left = ((word >> (code & 31)) & 1) != 0
                else:  # the ordinal encoder would have answered NaN
                    go_left = (info & MISSING_LEFT) != 0
            else:
                go_left = value <= values[node]
            node = nodes[node, LEFT] if go_left else nodes[node, RIGHT]
            info = nodes[node, INFO]
        total += values[node]
    return total


def _walk_rows(
    rows: FloatArray,
    nodes: NDArray[np.int32],
    values: FloatArray,
    bitsets: IntArray,
    roots: NDArray[np.int32],
    baseline: float,
    out: FloatArray,
) -> None:
    """`_walk_row` for each row of `rows` (n, n_columns) into `out` (n,)."""
    for i in range(rows.shape[0]):
        out[i] = _walk_row(rows[i], nodes, values, bitsets, roots, baseline)

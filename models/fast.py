"""The compiled inside of the quote path: the booster's trees in tables, a compiled loop over them.

`models.quoting` is the one quoting path; this module makes it fast without changing a single
number. The scikit-learn model stays the reference: `CompiledTrees.predict_raw` answers bit for
bit what `HistGradientBoostingRegressor._raw_predict` answers for the same matrix (the tests
compare them on thousands of random and edge-case rows).

How sklearn (1.6 - 1.9) predicts, from `_hist_gradient_boosting/_predictor.pyx`, and how we match:

- Categorical columns first pass an `OrdinalEncoder` (the booster's `_preprocessor`): a code the
  encoder did not see becomes NaN. A categorical split sends the ordinal left if it is in the
  node's raw left bitset, else right if the bin mapper knows it, else (unknown) the node's
  missing-value way. We ask the fitted encoder what each schema code 0..255 becomes and fold
  the three cases into one answer per (node, code): the walk reads the schema matrix as it is,
  and any value that is not an integral code (NaN, negative, fractional, too large) goes the
  missing-value way, as the encoder's NaN does. (An infinite code, which sklearn's encoder
  refuses with ValueError, goes that way too; `FeatureSchema.encode` never makes one.)
- The encoder moves categorical columns first; nodes are mapped back to schema columns once.
- A numeric split sends a value left iff `value <= num_threshold` (raw thresholds: the binned
  ones only serve training), NaN the missing-value way.
- The raw prediction is `0 + baseline` plus each iteration's tree, added in order in float64;
  our loops add in the same order, without fast-math, so the sums are identical. The
  log-duration model's `exp` is numpy's, never libm's inside the loop: numpy's SIMD `exp`
  differs from libm's in the last bit for about 5% of inputs.

Two compiled forms (`compile_trees` picks):

- `LeafMaskTrees` (QuickScorer-style; Lucchese et al., SIGIR 2015). Every split of a feature
  compares that feature with a threshold or a code, so its outcome depends only on which bin
  the value falls in (between two consecutive thresholds the feature's splits use, or its code,
  or missing). For each (feature, bin) we precompute, per tree, a mask of the leaves the value
  can still reach: all leaves except the left subtrees of the splits that send the bin right.
  A row's exit leaf in each tree is the lowest bit of the AND of its features' masks: the
  leftmost leaf that no split sending the row right rules out, which is the leaf the walk
  reaches. A row costs a binary search per feature, n_features x n_trees word ANDs (vectorised)
  and n_trees additions in tree order, instead of n_trees dependent walks whose branches the
  CPU mispredicts: about 10x faster a row here (300 trees of 31 leaves).
- `WalkedTrees`: the plain walk, for models whose mask table would exceed
  `MAX_MASK_TABLE_BYTES` (size: total bins x trees x ceil(leaves / 32) 4-byte words, 8-byte
  words above 32 leaves).

The loops are numba, compiled `nogil` (service threads quote in parallel; a large batch is
split across the cores) and `cache=True`, falling back to in-memory compilation where no cache
folder is writable (read-only site-packages and no writable `NUMBA_CACHE_DIR` or home).

Buffers: the conformal and adaptive policies' per-segment answers are looked up once per
distinct segment (`policy.resolve`) instead of once per order, with `BufferPolicy.buffers`'
arithmetic; the other policies are vectorised already and are called as they are.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numba
import numpy as np
from numpy.typing import NDArray
from sklearn.utils.validation import check_is_fitted

from models.control import ControlState
from models.policies import (
    GLOBAL_SEGMENT,
    AdaptivePolicy,
    BufferAnswer,
    BufferPolicy,
    ConformalPolicy,
    FixedPolicy,
    ProportionalPolicy,
    QuantilePolicy,
)

__all__ = [
    "MAX_MASK_TABLE_BYTES",
    "CompiledTrees",
    "LeafMaskTrees",
    "WalkedTrees",
    "buffer_one",
    "buffers",
    "compile_trees",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
_F = TypeVar("_F", bound=Callable[..., Any])

# Above this a model is walked rather than masked: a worker must not grow by hundreds of MB
# for a legal but extreme spec (2,000 trees of 255 leaves on 20 features would need ~330 MB).
MAX_MASK_TABLE_BYTES = 64 * 1024 * 1024
# Schema codes a categorical feature can have: sklearn gives categorical features < 256 bins.
_CODES = 256
# Walk: columns of `WalkedTrees.nodes` and the flags in its info word (row of `bitsets` above).
_COLUMN, _LEFT, _RIGHT, _INFO = 0, 1, 2, 3
_LEAF, _CATEGORICAL, _MISSING_LEFT, _FLAG_BITS = 1, 2, 4, 3
# Leaf masks: rows predicted side by side, so that the CPU overlaps their serial sums.
_BLOCK = 8
# A batch gets one thread per this many rows (up to the cores): ~10 ms of work each.
_ROWS_PER_THREAD = 10_000
# Index of the lowest set bit of a 64-bit word by de Bruijn multiplication (no branch, no loop).
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_SHIFT = np.uint64(58)
_ZERO = np.uint64(0)
_LOWEST_BIT = np.zeros(64, dtype=np.int64)
for _bit in range(64):
    _LOWEST_BIT[((1 << _bit) * 0x03F79D71B4CB0A89 % (1 << 64)) >> 58] = _bit
del _bit
_LOWEST_BIT.flags.writeable = False


def _jit(function: _F) -> _F:
    """`function` compiled by numba (nopython, releases the GIL), cached on disk if possible.

    numba looks for a writable cache folder when the function is decorated (next to the source,
    then `NUMBA_CACHE_DIR`, then the user's cache) and raises RuntimeError if there is none;
    then we compile in memory at first call instead (a few seconds once per process).
    """
    try:
        return cast(_F, numba.njit(cache=True, nogil=True)(function))
    except RuntimeError:
        return cast(_F, numba.njit(cache=False, nogil=True)(function))


# --------------------------------------------------------------------------- leaf masks


def _bin(x: float, features: IntArray, edges: FloatArray, f: int) -> int:
    """The bin of value `x` of used feature `f` (see `LeafMaskTrees`)."""
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


_bin_jit = _jit(_bin)


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
            chosen = masks[features[f, 4] + _bin_jit(row[features[f, 0]], features, edges, f)]
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


_mask_block_jit = _jit(_mask_block)


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
        _mask_block_jit(
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


_mask_rows_jit = _jit(_mask_rows)


def _mask_one(
    row: FloatArray,
    features: IntArray,
    edges: FloatArray,
    masks: NDArray[Any],
    leaf_values: FloatArray,
    baseline: float,
) -> float:
    """The raw prediction of one row (n_columns,), with scratch of its own (callers on other
    threads share nothing)."""
    out = np.empty(1, dtype=np.float64)
    _mask_block_jit(
        row.reshape((1, row.shape[0])),
        0,
        1,
        features,
        edges,
        masks,
        leaf_values,
        baseline,
        np.empty((1, masks.shape[1]), dtype=masks.dtype),
        np.empty((1, leaf_values.shape[0]), dtype=np.int64),
        np.empty(1, dtype=np.float64),
        out,
    )
    return float(out[0])


_mask_one_jit = _jit(_mask_one)


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
        info = nodes[node, _INFO]
        while not info & _LEAF:
            value = row[nodes[node, _COLUMN]]
            if math.isnan(value):
                go_left = (info & _MISSING_LEFT) != 0
            elif info & _CATEGORICAL:
                if 0.0 <= value < _CODES and value == math.floor(value):
                    code = int(value)
                    word = bitsets[info >> _FLAG_BITS, code >> 5]
                    go_left = ((word >> (code & 31)) & 1) != 0
                else:  # the ordinal encoder would have answered NaN
                    go_left = (info & _MISSING_LEFT) != 0
            else:
                go_left = value <= values[node]
            node = nodes[node, _LEFT] if go_left else nodes[node, _RIGHT]
            info = nodes[node, _INFO]
        total += values[node]
    return total


_walk_row_jit = _jit(_walk_row)


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
        out[i] = _walk_row_jit(rows[i], nodes, values, bitsets, roots, baseline)


_walk_rows_jit = _jit(_walk_rows)


# --------------------------------------------------------------------------- compiled trees


class _Hours:
    """What both compiled forms answer: raw predictions, and hours as the regressor gives them."""

    __slots__ = ()

    n_columns: int
    inverse_link: str

    def predict_raw(self, matrix: FloatArray) -> FloatArray:
        raise NotImplementedError

    def predict_raw_one(self, row: FloatArray) -> float:
        raise NotImplementedError

    def _rows(self, matrix: FloatArray) -> FloatArray:
        rows = np.ascontiguousarray(matrix, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_columns:
            raise ValueError(f"expected a matrix of {self.n_columns} columns, got {rows.shape}")
        return rows

    def _row(self, row: FloatArray) -> FloatArray:
        if row.shape != (self.n_columns,) or row.dtype != np.float64:
            raise ValueError(f"expected a float64 row of {self.n_columns} values, got {row.shape}")
        return np.ascontiguousarray(row)

    def predict_hours(self, matrix: FloatArray) -> FloatArray:
        """The source regressor's `predict_hours`, shape (n,), for a matrix (n, n_columns)."""
        raw = self.predict_raw(matrix)
        return np.exp(raw) if self.inverse_link == "exp" else raw

    def predict_hours_one(self, row: FloatArray) -> float:
        """`predict_hours` for one row of shape (n_columns,)."""
        raw = self.predict_raw_one(row)
        # numpy's exp on a scalar runs the loop it runs on arrays: the same bits.
        return float(np.exp(raw)) if self.inverse_link == "exp" else raw


@dataclass(frozen=True, slots=True, eq=False)
class LeafMaskTrees(_Hours):
    """Trees as per-(feature, bin) leaf masks (see the module docstring).

    `features` (n_used_features, 5) int64: schema column, categorical flag, then for a numeric
    feature its slice [low, high) of `edges` (sorted thresholds its splits use), for a
    categorical one low = 0 and high = its number of codes, and last the row of its bin 0 in
    `masks`. Bins of a numeric feature: 0..len(edges) by edges below the value, then missing;
    of a categorical one: the code, then missing (also any value that is no code).
    `masks` (1 + n_bins, n_trees * words) uint32 or uint64: row 0 is all ones, bit l of tree
    t's words set iff leaf l (left to right) stays reachable. `leaf_values` (n_trees,
    words * word bits) float64, leaves left to right, zero padded.
    """

    n_columns: int
    inverse_link: str
    baseline: float
    features: IntArray
    edges: FloatArray
    masks: NDArray[Any]
    leaf_values: FloatArray

    @property
    def n_trees(self) -> int:
        return int(self.leaf_values.shape[0])

    def predict_raw(self, matrix: FloatArray) -> FloatArray:
        """Raw predictions, shape (n,), for a schema matrix of shape (n, n_columns)."""
        rows = self._rows(matrix)
        out = np.empty(rows.shape[0], dtype=np.float64)
        _on_cores(
            lambda part, into: _mask_rows_jit(
                part, self.features, self.edges, self.masks, self.leaf_values, self.baseline, into
            ),
            rows,
            out,
        )
        return out

    def predict_raw_one(self, row: FloatArray) -> float:
        """The raw prediction for one float64 row of shape (n_columns,)."""
        return float(
            _mask_one_jit(
                self._row(row),
                self.features,
                self.edges,
                self.masks,
                self.leaf_values,
                self.baseline,
            )
        )


@dataclass(frozen=True, slots=True, eq=False)
class WalkedTrees(_Hours):
    """Trees as flat node arrays for a plain walk (models too big for leaf masks).

    `nodes` (n_nodes, 4) int32: the schema column a split reads, its left and right child
    (absolute), an info word (flags: leaf, categorical, missing goes left; above them the
    node's row in `bitsets`). `values` (n_nodes,): a split's threshold, a leaf's value.
    `bitsets` (n_categorical_splits, 8) int64 holding uint32 words: bit s set iff schema code
    s goes left. `roots` (n_trees,) int32.
    """

    n_columns: int
    inverse_link: str
    baseline: float
    nodes: NDArray[np.int32]
    values: FloatArray
    bitsets: IntArray
    roots: NDArray[np.int32]

    @property
    def n_trees(self) -> int:
        return int(self.roots.size)

    def predict_raw(self, matrix: FloatArray) -> FloatArray:
        """Raw predictions, shape (n,), for a schema matrix of shape (n, n_columns)."""
        rows = self._rows(matrix)
        out = np.empty(rows.shape[0], dtype=np.float64)
        _on_cores(
            lambda part, into: _walk_rows_jit(
                part, self.nodes, self.values, self.bitsets, self.roots, self.baseline, into
            ),
            rows,
            out,
        )
        return out

    def predict_raw_one(self, row: FloatArray) -> float:
        """The raw prediction for one float64 row of shape (n_columns,)."""
        return float(
            _walk_row_jit(
                self._row(row), self.nodes, self.values, self.bitsets, self.roots, self.baseline
            )
        )


CompiledTrees = LeafMaskTrees | WalkedTrees


def _on_cores(
    kernel: Callable[[FloatArray, FloatArray], None], rows: FloatArray, out: FloatArray
) -> None:
    """`kernel(rows, out)` over consecutive slices of the rows, one thread per core this process
    may run on (the loops release the GIL; each slice writes only its part of `out`). Batches
    under `_ROWS_PER_THREAD` rows a core run in the calling thread: a thread costs ~0.1 ms."""
    n = rows.shape[0]
    threads = min(len(os.sched_getaffinity(0)), n // _ROWS_PER_THREAD)
    if threads <= 1:
        kernel(rows, out)
        return
    bounds = np.linspace(0, n, threads + 1).astype(int).tolist()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = [
            pool.submit(kernel, rows[start:stop], out[start:stop])
            for start, stop in itertools.pairwise(bounds)
        ]
        for part in parts:
            part.result()  # re-raises what a thread raised


@dataclass(frozen=True, slots=True)
class _Split:
    """One split node, as both compiled forms need it."""

    tree: int
    node: int
    column: int  # schema column
    is_categorical: bool
    missing_left: bool
    threshold: float  # numeric splits
    goes_left: NDArray[np.bool_]  # categorical splits: by schema code, shape (256,)
    first_leaf: int  # the node's left subtree holds leaves [first_leaf, middle_leaf)
    middle_leaf: int


def compile_trees(
    booster: Any, inverse_link: str, max_table_bytes: int = MAX_MASK_TABLE_BYTES
) -> CompiledTrees:
    """A fitted `HistGradientBoostingRegressor` in compiled form: leaf masks unless their table
    would exceed `max_table_bytes`, else a plain walk (~0.2 s for 300 trees of 31 leaves).

    `inverse_link` maps raw predictions to hours: "exp" (a log-duration model) or "identity".
    Raises `ValueError` for a booster this module does not know (several trees per iteration,
    another link): a bug to fix here, not a user's mistake.
    """
    if inverse_link not in ("exp", "identity"):
        raise ValueError(f"inverse_link must be exp or identity, not {inverse_link!r}")
    check_is_fitted(booster, "_predictors")
    if booster.n_trees_per_iteration_ != 1 or any(len(it) != 1 for it in booster._predictors):
        raise ValueError("compile_trees handles regression boosters (one tree per iteration)")
    link = type(booster._loss.link).__name__
    if link != "IdentityLink":
        raise ValueError(f"compile_trees handles the identity link only, not {link}")
    n_columns = int(booster.n_features_in_)
    trees = [iteration[0] for iteration in booster._predictors]
    splits = _splits(booster, trees, n_columns)
    baseline = float(np.asarray(booster._baseline_prediction).ravel()[0])
    masked = _leaf_masks(trees, splits, n_columns, baseline, inverse_link, max_table_bytes)
    compiled = masked or _walked(trees, splits, n_columns, baseline, inverse_link)
    with warnings.catch_warnings():
        # numba says when it cannot write its cache: that costs time, not correctness.
        warnings.simplefilter("ignore", numba.NumbaWarning)
        # Load (or compile) the loops now rather than in the first quote.
        compiled.predict_raw(np.zeros((1, n_columns)))
        compiled.predict_raw_one(np.zeros(n_columns))
    return compiled


def _splits(booster: Any, trees: Sequence[Any], n_columns: int) -> list[_Split]:
    """Every split of every tree, with schema columns and left-subtree leaf ranges."""
    source, ordinals = _booster_columns(booster, n_columns)
    known, f_idx_map = booster._bin_mapper.make_known_categories_bitsets()
    splits: list[_Split] = []
    for t, predictor in enumerate(trees):
        nodes = predictor.nodes
        ranges = _left_leaf_ranges(nodes)
        for index in np.flatnonzero(~nodes["is_leaf"].astype(bool)).tolist():
            node = nodes[index]
            k = int(node["feature_idx"])
            missing_left = bool(node["missing_go_to_left"])
            is_categorical = bool(node["is_categorical"])
            goes_left = np.zeros(0, dtype=bool)
            if is_categorical:
                row = int(node["bitset_idx"])
                if row >= predictor.raw_left_cat_bitsets.shape[0]:
                    raise ValueError("a categorical split without its bitset")
                goes_left = _codes_left(
                    ordinals[k],
                    predictor.raw_left_cat_bitsets[row],
                    known[f_idx_map[k]],
                    missing_left,
                )
            first, middle = ranges[index]
            splits.append(
                _Split(
                    tree=t,
                    node=index,
                    column=int(source[k]),
                    is_categorical=is_categorical,
                    missing_left=missing_left,
                    threshold=float(node["num_threshold"]),
                    goes_left=goes_left,
                    first_leaf=first,
                    middle_leaf=middle,
                )
            )
    return splits


def _left_leaf_ranges(nodes: NDArray[Any]) -> dict[int, tuple[int, int]]:
    """For each split node, the left-to-right indices [first, middle) of its left subtree's
    leaves (its right subtree's leaves follow from `middle`)."""
    ranges: dict[int, tuple[int, int]] = {}
    next_leaf = 0
    # Iterative in-order walk: (node, state) with state 0 = enter, 1 = left done.
    stack: list[tuple[int, int]] = [(0, 0)]
    first_of: dict[int, int] = {}
    while stack:
        index, state = stack.pop()
        node = nodes[index]
        if node["is_leaf"]:
            next_leaf += 1
            continue
        if state == 0:
            first_of[index] = next_leaf
            stack.append((index, 1))
            stack.append((int(node["left"]), 0))
        else:
            ranges[index] = (first_of[index], next_leaf)
            stack.append((int(node["right"]), 0))
    return ranges


def _leaf_order(nodes: NDArray[Any]) -> list[int]:
    """The leaf node indices of one tree, left to right."""
    order: list[int] = []
    stack = [0]
    while stack:
        index = stack.pop()
        node = nodes[index]
        if node["is_leaf"]:
            order.append(index)
        else:
            stack.append(int(node["right"]))
            stack.append(int(node["left"]))
    return order


def _booster_columns(booster: Any, n_columns: int) -> tuple[IntArray, dict[int, IntArray]]:
    """(source, ordinals): booster column k reads schema column `source[k]`; for a categorical
    booster column k, `ordinals[k][s]` is the ordinal the booster's encoder gives schema code
    s in [0, 256), or -1 where the encoder answers NaN (a code it did not see in training)."""
    preprocessor = booster._preprocessor
    if preprocessor is None:  # no categorical feature: the booster reads the matrix as it is
        return np.arange(n_columns, dtype=np.int64), {}
    source = np.full(n_columns, -1, dtype=np.int64)
    for name, transformer, columns in preprocessor.transformers_:
        selected = np.asarray(columns)
        inputs = np.flatnonzero(selected) if selected.dtype == bool else selected.astype(np.int64)
        if inputs.size == 0 or (isinstance(transformer, str) and transformer == "drop"):
            continue
        source[np.arange(n_columns)[preprocessor.output_indices_[name]]] = inputs
    if sorted(source.tolist()) != list(range(n_columns)):
        raise ValueError("the booster's column transformer does not map columns one to one")
    # Ask the encoder itself what each code becomes: probe rows holding 0..255 in every column.
    probe = np.repeat(np.arange(_CODES, dtype=np.float64)[:, None], n_columns, axis=1)
    encoded = np.asarray(preprocessor.transform(probe), dtype=np.float64)
    ordinals: dict[int, IntArray] = {}
    for k in np.flatnonzero(booster._is_categorical_remapped).tolist():
        column = encoded[:, k]
        if (column[~np.isnan(column)] >= _CODES).any():
            raise ValueError("a categorical feature with 256 or more categories")
        ordinals[k] = np.where(np.isnan(column), -1, column).astype(np.int64)
    return source, ordinals


def _codes_left(
    ordinals: IntArray, left: NDArray[np.uint32], known: NDArray[np.uint32], missing_left: bool
) -> NDArray[np.bool_]:
    """By schema code (256,): whether a categorical split sends the code left.

    sklearn, for the encoded ordinal o: left if o is in the left bitset; else right if the
    bin mapper knows o; else (unknown) the missing-value way, as for an unseen code (NaN)."""
    seen = ordinals >= 0
    o = np.where(seen, ordinals, 0)
    in_left = ((left[o >> 5] >> (o & 31)) & 1).astype(bool)
    is_known = ((known[o >> 5] >> (o & 31)) & 1).astype(bool)
    return np.where(seen & (in_left | is_known), in_left, missing_left)


def _leaf_masks(
    trees: Sequence[Any],
    splits: Sequence[_Split],
    n_columns: int,
    baseline: float,
    inverse_link: str,
    max_table_bytes: int,
) -> LeafMaskTrees | None:
    """The leaf-mask form, or None when its table would exceed `max_table_bytes`."""
    n_trees = len(trees)
    max_leaves = max((int(t.nodes["is_leaf"].sum()) for t in trees), default=1)
    word_bits = 32 if max_leaves <= 32 else 64
    words = -(-max_leaves // word_bits)
    dtype = np.uint32 if word_bits == 32 else np.uint64
    by_column: dict[int, list[_Split]] = {}
    for split in splits:
        by_column.setdefault(split.column, []).append(split)
    columns = sorted(by_column)
    features = np.zeros((len(columns), 5), dtype=np.int64)
    edge_parts: list[FloatArray] = []
    n_edges = 0
    n_rows = 1  # row 0: every leaf reachable
    for f, column in enumerate(columns):
        on_column = by_column[column]
        if on_column[0].is_categorical:
            stack = np.stack([s.goes_left for s in on_column])
            # Codes above the last one any split tells apart behave like missing values.
            differs = np.flatnonzero((stack != stack[:, -1:]).any(axis=0))
            n_codes = int(differs[-1]) + 1 if differs.size else 0
            features[f] = (column, 1, 0, n_codes, n_rows)
            n_rows += n_codes + 1
        else:
            edges = np.unique(np.array([s.threshold for s in on_column], dtype=np.float64))
            edge_parts.append(edges)
            features[f] = (column, 0, n_edges, n_edges + edges.size, n_rows)
            n_edges += edges.size
            n_rows += edges.size + 2
    itemsize = np.dtype(dtype).itemsize
    if n_rows * n_trees * words * itemsize > max_table_bytes:
        return None
    all_edges = np.concatenate(edge_parts) if edge_parts else np.zeros(0, dtype=np.float64)
    full = (1 << word_bits) - 1
    masks = np.full((n_rows, n_trees * words), full, dtype=dtype)
    position = {column: f for f, column in enumerate(columns)}
    for split in splits:
        f = position[split.column]
        _, is_categorical, low, high, start = features[f].tolist()
        if is_categorical:
            goes_left = np.append(split.goes_left[:high], split.missing_left)
        else:
            k = int(np.searchsorted(all_edges[low:high], split.threshold))
            goes_left = np.arange(high - low + 2) <= k
            goes_left[-1] = split.missing_left
        # Sent right: the split's left subtree is out of reach.
        cleared = ~((1 << split.middle_leaf) - (1 << split.first_leaf))
        word_masks = [(cleared >> (w * word_bits)) & full for w in range(words)]
        rows = start + np.flatnonzero(~goes_left)
        span = slice(split.tree * words, (split.tree + 1) * words)
        masks[rows, span] &= np.array(word_masks, dtype=dtype)
    leaf_values = np.zeros((n_trees, words * word_bits), dtype=np.float64)
    for t, predictor in enumerate(trees):
        order = _leaf_order(predictor.nodes)
        leaf_values[t, : len(order)] = predictor.nodes["value"][order]
    return LeafMaskTrees(
        n_columns=n_columns,
        inverse_link=inverse_link,
        baseline=baseline,
        features=_frozen(features),
        edges=_frozen(np.ascontiguousarray(all_edges)),
        masks=_frozen(masks),
        leaf_values=_frozen(leaf_values),
    )


def _walked(
    trees: Sequence[Any],
    splits: Sequence[_Split],
    n_columns: int,
    baseline: float,
    inverse_link: str,
) -> WalkedTrees:
    """The plain-walk form: every tree's nodes one after another."""
    offsets = np.cumsum([0] + [int(t.nodes.size) for t in trees])
    n_nodes = int(offsets[-1])
    nodes = np.zeros((n_nodes, 4), dtype=np.int32)
    values = np.zeros(n_nodes, dtype=np.float64)
    for t, predictor in enumerate(trees):
        tree = predictor.nodes
        span = slice(int(offsets[t]), int(offsets[t + 1]))
        nodes[span, _INFO] = np.where(tree["is_leaf"].astype(bool), _LEAF, 0)
        values[span] = tree["value"]  # leaves; splits get their thresholds below
    bitset_rows: list[IntArray] = []
    for split in splits:
        at = int(offsets[split.tree]) + split.node
        tree = trees[split.tree].nodes
        nodes[at, _COLUMN] = split.column
        nodes[at, _LEFT] = int(offsets[split.tree]) + int(tree[split.node]["left"])
        nodes[at, _RIGHT] = int(offsets[split.tree]) + int(tree[split.node]["right"])
        info = _MISSING_LEFT if split.missing_left else 0
        if split.is_categorical:
            info |= _CATEGORICAL | (len(bitset_rows) << _FLAG_BITS)
            words = np.packbits(split.goes_left, bitorder="little").view("<u4")
            bitset_rows.append(words.astype(np.int64))
        else:
            values[at] = split.threshold
        nodes[at, _INFO] = info
    bitsets = np.stack(bitset_rows) if bitset_rows else np.zeros((0, 8), dtype=np.int64)
    return WalkedTrees(
        n_columns=n_columns,
        inverse_link=inverse_link,
        baseline=baseline,
        nodes=_frozen(nodes),
        values=_frozen(values),
        bitsets=_frozen(np.ascontiguousarray(bitsets)),
        roots=_frozen(offsets[:-1].astype(np.int32)),
    )


def _frozen(array: NDArray[Any]) -> NDArray[Any]:
    array.flags.writeable = False  # shared by every thread that quotes with the engine
    return array


# --------------------------------------------------------------------------- buffers


def buffer_one(
    policy: BufferPolicy,
    expected_hours: float,
    labels: Sequence[Any],
    quantile_hours: float | None,
    state: ControlState | None,
) -> tuple[float, str, float]:
    """(buffer hours, segment key, level) for one order: `policy.buffers`' numbers, computed
    on Python floats (a one-element `buffers` call costs ~20 us of numpy overhead)."""
    kind = type(policy)
    if kind is ConformalPolicy or kind is AdaptivePolicy:
        assert isinstance(policy, ConformalPolicy)
        segment = policy.resolve(labels)
        score, level = policy.score_at(segment, state)
        if policy.cfg.relative:
            return expected_hours * max(score, 0.0), segment.key, level
        return max(score, 0.0) + 0.0, segment.key, level
    level = 1.0 - policy.cfg.target_late_rate
    if kind is FixedPolicy:
        return float(policy.buffer_hours_), GLOBAL_SEGMENT, level
    if kind is ProportionalPolicy:
        return expected_hours * policy.ratio_, GLOBAL_SEGMENT, level
    if kind is QuantilePolicy and quantile_hours is not None:
        return max(quantile_hours - expected_hours, 0.0), GLOBAL_SEGMENT, level
    return policy.buffer_one(expected_hours, labels, quantile_hours, state)


def buffers(
    policy: BufferPolicy,
    expected_hours: FloatArray,
    columns: Mapping[str, Sequence[object] | NDArray[np.generic]],
    segments: Sequence[str],
    quantile_hours: FloatArray | None,
    state: ControlState | None,
) -> BufferAnswer:
    """`policy.buffers` for a batch; conformal and adaptive policies resolve each distinct
    segment once (a dictionary pass per segment column) instead of once per order."""
    n = int(expected_hours.size)
    kind = type(policy)
    if not (kind is ConformalPolicy or kind is AdaptivePolicy):
        labels = _labels(columns, segments, n)
        return policy.buffers(expected_hours, labels, quantile_hours, state)
    assert isinstance(policy, ConformalPolicy)
    check_is_fitted(policy, "table_")
    inverse, distinct = _factorize(columns, segments, n)
    keys: list[str] = []
    scores = np.empty(len(distinct))
    levels = np.empty(len(distinct))
    for j, values in enumerate(distinct):
        segment = policy.resolve(values)
        keys.append(segment.key)
        scores[j], levels[j] = policy.score_at(segment, state)
    score = scores[inverse]
    if policy.cfg.relative:
        buffer = expected_hours * np.maximum(score, 0.0)
    else:
        buffer = np.maximum(score, 0.0) + np.zeros_like(expected_hours)
    segment_keys: list[str] = np.array(keys, dtype=object)[inverse].tolist()
    return BufferAnswer(buffer, segment_keys, levels[inverse])


def _labels(
    columns: Mapping[str, Sequence[object] | NDArray[np.generic]], segments: Sequence[str], n: int
) -> list[tuple[Any, ...]]:
    if not segments:
        return [()] * n
    return list(zip(*(columns[name] for name in segments), strict=True))


def _factorize(
    columns: Mapping[str, Sequence[object] | NDArray[np.generic]], segments: Sequence[str], n: int
) -> tuple[IntArray, list[tuple[Any, ...]]]:
    """(inverse, distinct): each order's index (n,) into the distinct tuples of its segment
    values. Values are told apart as dictionary keys, as `ConformalPolicy.buffers` does."""
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

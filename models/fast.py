"""Compiled trees: a fitted booster as tables that predict its numbers bit for bit, fast.

`models.quoting` is the one quoting path; this module makes it fast without changing a single
number. The tables are plain arrays (a serving bundle stores them, `models.serving_form`);
`models.tree_compiler` builds them from a fitted scikit-learn booster, which stays the reference:
`CompiledTrees.predict_raw` answers bit for bit what `HistGradientBoostingRegressor._raw_predict`
answers for the same matrix (the tests compare them on thousands of random and edge-case rows).
Sums run in tree order, in float64, without fast-math, as sklearn's do; the log-duration model's
`exp` is numpy's, never libm's inside the loop: numpy's SIMD `exp` differs from libm's in the last
bit for about 5% of inputs.

Two compiled forms (`models.tree_compiler.compile_trees` picks):

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

The loops over these tables are `models.tree_loops`', compiled ahead of time by `models.kernels`
(releasing the GIL; a large batch is split across the cores).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.kernels import mask_rows, on_cores, walk_rows

__all__ = ["MAX_MASK_TABLE_BYTES", "CompiledTrees", "LeafMaskTrees", "WalkedTrees", "frozen"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Above this a model is walked rather than masked: a worker must not grow by hundreds of MB
# for a legal but extreme spec (2,000 trees of 255 leaves on 20 features would need ~330 MB).
MAX_MASK_TABLE_BYTES = 64 * 1024 * 1024


# --------------------------------------------------------------------------- compiled trees


class _Hours:
    """What both compiled forms answer: raw predictions, and hours as the regressor gives them."""

    __slots__ = ()

    n_columns: int
    inverse_link: str

    def predict_raw(self, matrix: FloatArray) -> FloatArray:
        raise NotImplementedError

    def _rows(self, matrix: FloatArray) -> FloatArray:
        rows = np.ascontiguousarray(matrix, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_columns:
            raise ValueError(f"expected a matrix of {self.n_columns} columns, got {rows.shape}")
        return rows

    def predict_hours(self, matrix: FloatArray) -> FloatArray:
        """The source regressor's `predict_hours`, shape (n,), for a matrix (n, n_columns)."""
        return self.hours(self.predict_raw(matrix))

    def hours(self, raw: FloatArray) -> FloatArray:
        """Raw predictions as the regressor's hours (one numpy pass, however they were cut)."""
        return np.exp(raw) if self.inverse_link == "exp" else raw


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
        on_cores(
            lambda part, into: mask_rows(
                part, self.features, self.edges, self.masks, self.leaf_values, self.baseline, into
            ),
            rows,
            out,
        )
        return out


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
        on_cores(
            lambda part, into: walk_rows(
                part, self.nodes, self.values, self.bitsets, self.roots, self.baseline, into
            ),
            rows,
            out,
        )
        return out


CompiledTrees = LeafMaskTrees | WalkedTrees


def frozen(array: NDArray[Any]) -> NDArray[Any]:
    array.flags.writeable = False  # shared by every thread that quotes with the engine
    return array

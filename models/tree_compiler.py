"""Tree compiler: a fitted scikit-learn booster -> `models.fast`'s compiled tables.

Training-side only (it reads scikit-learn's fitted internals); the tables it builds are plain
arrays that quote without scikit-learn.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.utils.validation import check_is_fitted

from models.fast import (
    MAX_MASK_TABLE_BYTES,
    CompiledTrees,
    FloatArray,
    IntArray,
    LeafMaskTrees,
    WalkedTrees,
    frozen,
)
from models.tree_loops import (
    CATEGORICAL,
    CODES,
    COLUMN,
    FLAG_BITS,
    INFO,
    LEAF,
    LEFT,
    MISSING_LEFT,
    RIGHT,
)

__all__ = ["compile_trees"]


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
    return masked or _walked(trees, splits, n_columns, baseline, inverse_link)


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
    probe = np.repeat(np.arange(CODES, dtype=np.float64)[:, None], n_columns, axis=1)
    encoded = np.asarray(preprocessor.transform(probe), dtype=np.float64)
    ordinals: dict[int, IntArray] = {}
    for k in np.flatnonzero(booster._is_categorical_remapped).tolist():
        column = encoded[:, k]
        if (column[~np.isnan(column)] >= CODES).any():
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
        features=frozen(features),
        edges=frozen(np.ascontiguousarray(all_edges)),
        masks=frozen(masks),
        leaf_values=frozen(leaf_values),
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
        nodes[span, INFO] = np.where(tree["is_leaf"].astype(bool), LEAF, 0)
        values[span] = tree["value"]  # leaves; splits get their thresholds below
    bitset_rows: list[IntArray] = []
    for split in splits:
        at = int(offsets[split.tree]) + split.node
        tree = trees[split.tree].nodes
        nodes[at, COLUMN] = split.column
        nodes[at, LEFT] = int(offsets[split.tree]) + int(tree[split.node]["left"])
        nodes[at, RIGHT] = int(offsets[split.tree]) + int(tree[split.node]["right"])
        info = MISSING_LEFT if split.missing_left else 0
        if split.is_categorical:
            info |= CATEGORICAL | (len(bitset_rows) << FLAG_BITS)
            words = np.packbits(split.goes_left, bitorder="little").view("<u4")
            bitset_rows.append(words.astype(np.int64))
        else:
            values[at] = split.threshold
        nodes[at, INFO] = info
    bitsets = np.stack(bitset_rows) if bitset_rows else np.zeros((0, 8), dtype=np.int64)
    return WalkedTrees(
        n_columns=n_columns,
        inverse_link=inverse_link,
        baseline=baseline,
        nodes=frozen(nodes),
        values=frozen(values),
        bitsets=frozen(np.ascontiguousarray(bitsets)),
        roots=frozen(offsets[:-1].astype(np.int32)),
    )

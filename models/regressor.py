"""The fulfilment-duration model: histogram gradient boosting on the log of the duration.

Durations are skewed with a heavy tail, so the model learns log-hours with squared error and
answers `exp` of that: a robust central estimate (close to the median) that is never negative.
Categorical columns use the booster's native categorical splits; NaN means missing, which the
booster routes down the branch it learnt for missing values (unseen categories arrive as NaN).

Each regressor compiles its booster for quoting (`models.fast`) when it is fitted or unpickled,
so a fitted model never changes while it quotes; the compiled form is never pickled.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.utils.validation import check_is_fitted

from models.fast import CompiledTrees
from models.tree_compiler import compile_trees

FloatArray = NDArray[np.float64]

# One minute: the shortest duration the log scale distinguishes.
MIN_HOURS = 1.0 / 60.0
# Where a fitted regressor keeps its compiled form: rebuilt from the booster, never pickled (a
# bundle keeps its size and format; numba's machine code belongs to the process).
_COMPILED = "compiled_trees_"


class _CompiledBooster(BaseEstimator):
    """What both regressors share: a fitted booster and its compiled form."""

    # How the booster's raw predictions become hours: "exp" or "identity".
    _inverse_link: ClassVar[str]

    def _fit_booster(
        self, booster: HistGradientBoostingRegressor, matrix: FloatArray, target: FloatArray
    ) -> None:
        booster.fit(matrix, target)
        self.booster_ = booster
        self.compiled_trees_ = compile_trees(booster, self._inverse_link)

    def compiled(self) -> CompiledTrees:
        """This model compiled for quoting: `predict_hours`' numbers, bit for bit, in ~1 us a
        row instead of ~10 (see `models.fast`)."""
        try:
            return self.compiled_trees_
        except AttributeError:
            check_is_fitted(self, "booster_")  # NotFittedError before a fit
            raise

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()
        return {key: value for key, value in state.items() if key != _COMPILED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "booster_" in state:
            self.compiled_trees_ = compile_trees(self.booster_, self._inverse_link)


class DurationRegressor(_CompiledBooster):
    """Predicts fulfilment hours (from the clock start) for rows of the feature matrix."""

    _inverse_link = "exp"

    def __init__(
        self,
        max_iter: int = 300,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 40,
        random_state: int = 0,
    ) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def fit(
        self, matrix: FloatArray, hours: FloatArray, categorical_mask: NDArray[np.bool_]
    ) -> Self:
        booster = _booster(self, categorical_mask, loss="squared_error")
        self._fit_booster(booster, matrix, np.log(np.maximum(hours, MIN_HOURS)))
        return self

    def predict_hours(self, matrix: FloatArray) -> FloatArray:
        """Expected hours, shape (n,), for a matrix of shape (n, n_columns)."""
        check_is_fitted(self, "booster_")
        return np.asarray(np.exp(self.booster_.predict(matrix)), dtype=np.float64)


class QuantileRegressor(_CompiledBooster):
    """Predicts the `quantile` of fulfilment hours directly (quantile loss)."""

    _inverse_link = "identity"

    def __init__(
        self,
        quantile: float = 0.95,
        max_iter: int = 300,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 40,
        random_state: int = 0,
    ) -> None:
        self.quantile = quantile
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def fit(
        self, matrix: FloatArray, hours: FloatArray, categorical_mask: NDArray[np.bool_]
    ) -> Self:
        booster = _booster(self, categorical_mask, loss="quantile", quantile=self.quantile)
        self._fit_booster(booster, matrix, hours)
        return self

    def predict_hours(self, matrix: FloatArray) -> FloatArray:
        check_is_fitted(self, "booster_")
        return np.asarray(self.booster_.predict(matrix), dtype=np.float64)


def _booster(
    params: DurationRegressor | QuantileRegressor,
    categorical_mask: NDArray[np.bool_],
    **loss: object,
) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        **loss,
        max_iter=params.max_iter,
        learning_rate=params.learning_rate,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        categorical_features=categorical_mask,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=15,
        random_state=params.random_state,
    )

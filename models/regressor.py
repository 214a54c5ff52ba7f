"""The fulfilment-duration model: histogram gradient boosting on the log of the duration.

Durations are skewed with a heavy tail, so the model learns log-hours with squared error and
answers `exp` of that: a robust central estimate (close to the median) that is never negative.
Categorical columns use the booster's native categorical splits; NaN means missing, which the
booster routes down the branch it learnt for missing values (unseen categories arrive as NaN).
"""

from __future__ import annotations

import threading
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.utils.validation import check_is_fitted

from models.fast import CompiledTrees, compile_trees

FloatArray = NDArray[np.float64]

# One minute: the shortest duration the log scale distinguishes.
MIN_HOURS = 1.0 / 60.0


class DurationRegressor(BaseEstimator):
    """Predicts fulfilment hours (from the clock start) for rows of the feature matrix."""

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
        self.booster_ = _booster(self, categorical_mask, loss="squared_error")
        self.booster_.fit(matrix, np.log(np.maximum(hours, MIN_HOURS)))
        return self

    def predict_hours(self, matrix: FloatArray) -> FloatArray:
        """Expected hours, shape (n,), for a matrix of shape (n, n_columns)."""
        check_is_fitted(self, "booster_")
        return np.asarray(np.exp(self.booster_.predict(matrix)), dtype=np.float64)

    def compiled(self) -> CompiledTrees:
        """This model compiled for quoting: `predict_hours`' numbers, bit for bit, in ~1 us a
        row instead of ~10 (see `models.fast`). Built on the first call, then kept."""
        return _compiled(self, "exp")

    def __getstate__(self) -> dict[str, Any]:
        return _without_compiled(super().__getstate__())


class QuantileRegressor(BaseEstimator):
    """Predicts the `quantile` of fulfilment hours directly (quantile loss)."""

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
        self.booster_ = _booster(self, categorical_mask, loss="quantile", quantile=self.quantile)
        self.booster_.fit(matrix, hours)
        return self

    def predict_hours(self, matrix: FloatArray) -> FloatArray:
        check_is_fitted(self, "booster_")
        return np.asarray(self.booster_.predict(matrix), dtype=np.float64)

    def compiled(self) -> CompiledTrees:
        """This model compiled for quoting: `predict_hours`' numbers, bit for bit."""
        return _compiled(self, "identity")

    def __getstate__(self) -> dict[str, Any]:
        return _without_compiled(super().__getstate__())


# Where a regressor keeps its compiled form: with the booster it was built from, so that a
# refit rebuilds it. Engines of a back-test share a regressor across policies: built once.
_COMPILED = "_compiled_trees"
_COMPILE_LOCK = "_compile_lock"


def _compiled(model: DurationRegressor | QuantileRegressor, inverse_link: str) -> CompiledTrees:
    # Every quote passes here: plain dictionary reads first (check_is_fitted costs ~4 us).
    state = model.__dict__
    found: tuple[HistGradientBoostingRegressor, CompiledTrees] | None = state.get(_COMPILED)
    if found is not None and found[0] is state.get("booster_"):
        return found[1]
    check_is_fitted(model, "booster_")
    # One builder at a time: a service's first requests arrive together, and 30 threads each
    # compiling the same model would hold the first answers for seconds. (setdefault is
    # atomic: every thread gets the same lock.)
    with state.setdefault(_COMPILE_LOCK, threading.Lock()):
        found = state.get(_COMPILED)
        if found is None or found[0] is not model.booster_:
            found = (model.booster_, compile_trees(model.booster_, inverse_link))
            setattr(model, _COMPILED, found)
    return found[1]


def _without_compiled(state: dict[str, Any]) -> dict[str, Any]:
    # Never pickled: a bundle keeps its size and format, and a loaded model compiles anew
    # (numba's machine code belongs to the process, its cache to the machine).
    return {key: value for key, value in state.items() if key not in (_COMPILED, _COMPILE_LOCK)}


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

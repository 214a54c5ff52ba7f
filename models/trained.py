"""A trained model as data scientists keep it: the fitted scikit-learn estimators and the engine
they make.

Training pickles this (`model.joblib`, `models.registry`) so that a notebook can load and inspect
the booster, the quantile model and the policy; the service never reads it: it quotes from the
engine's serving form, plain arrays and JSON (`models.serving_form`).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.policies import BufferPolicy
from models.quoting import QuoteEngine
from models.regressor import DurationRegressor, QuantileRegressor


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """The estimators one fit made, and the quote engine compiled from them."""

    engine: QuoteEngine
    regressor: DurationRegressor
    quantile_regressor: QuantileRegressor | None
    policy: BufferPolicy

"""The detector: LightGBM on account features, Platt-calibrated, with thresholds set on organic
validation accounts for target false-positive rates, and per-account reasons from LightGBM's
feature contributions."""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from distillguard.training.metrics import threshold_at_fpr

DEFAULT_LGB_PARAMS: dict = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 10,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "num_boost_round": 300,
    "num_threads": 2,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
REVIEW_FPR = 0.01
BLOCK_FPR = 0.001
DECISIONS = ("allow", "review", "block")


def train_booster(X: pd.DataFrame, y: np.ndarray, *, seed: int, params: dict | None = None) -> lgb.Booster:
    """Fit LightGBM on the feature table; deterministic for a seed."""
    p = {**DEFAULT_LGB_PARAMS, **(params or {}), "seed": seed}
    rounds = int(p.pop("num_boost_round"))
    data = lgb.Dataset(X.to_numpy(dtype=np.float64), label=np.asarray(y), feature_name=list(X.columns),
                       free_raw_data=False)
    return lgb.train(p, data, num_boost_round=rounds)


@dataclass
class Thresholds:
    review: float
    block: float
    review_fpr: float = REVIEW_FPR
    block_fpr: float = BLOCK_FPR

    def decide(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores)
        return np.where(s > self.block, "block", np.where(s > self.review, "review", "allow"))


@dataclass
class Detector:
    """A trained booster plus its calibration and operating thresholds."""

    booster: lgb.Booster
    feature_names: list[str]
    calibration: tuple[float, float] = (1.0, 0.0)  # Platt: sigmoid(a * margin + b)
    thresholds: Thresholds = field(default_factory=lambda: Thresholds(0.5, 0.9))

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(X[self.feature_names].to_numpy(dtype=np.float64), raw_score=True)

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of harvesting, per row."""
        a, b = self.calibration
        return 1.0 / (1.0 + np.exp(-(a * self.margin(X) + b)))

    def calibrate(self, X_val: pd.DataFrame, y_val: np.ndarray) -> None:
        """Platt scaling on validation accounts (monotone: it moves no account past another)."""
        m = self.margin(X_val).reshape(-1, 1)
        if len(np.unique(y_val)) < 2:
            raise ValueError("calibration needs both classes in the validation accounts")
        lr = LogisticRegression(C=1e4).fit(m, y_val)
        self.calibration = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))

    def set_thresholds(self, organic_val: pd.DataFrame) -> None:
        """Review and block thresholds at the target false-positive rates of organic validation accounts."""
        s = self.score(organic_val)
        self.thresholds = Thresholds(threshold_at_fpr(s, REVIEW_FPR), threshold_at_fpr(s, BLOCK_FPR))

    def reasons(self, X: pd.DataFrame, top: int = 3) -> list[list[str]]:
        """Per row, the features pushing the score up most: 'name=value (+contribution)'."""
        contrib = self.booster.predict(X[self.feature_names].to_numpy(dtype=np.float64), pred_contrib=True)
        contrib = contrib[:, :-1]  # last column is the bias
        out = []
        values = X[self.feature_names].to_numpy(dtype=np.float64)
        for r in range(len(X)):
            order = np.argsort(-contrib[r])[:top]
            out.append([f"{self.feature_names[j]}={values[r, j]:.3g} (+{contrib[r, j]:.2f})"
                        for j in order if contrib[r, j] > 0])
        return out

    def importance(self) -> pd.Series:
        gain = self.booster.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.feature_names).sort_values(ascending=False)

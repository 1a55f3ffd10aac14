"""The detector: LightGBM on account features, with monotone constraints on one-sided evidence,
missing values filled with the organic median (absence of evidence looks like a typical organic
account, never like a harvester), Platt calibration, `review` / `block` thresholds set on the
out-of-fold scores of every organic training account, and readable reasons from LightGBM's feature
contributions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from distillguard.features.catalog import BY_NAME, monotone_constraints
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
#: An account with at most this many prompts is judged against thresholds set on new organic accounts
#: (organic accounts cut to their first prompts) at these false-positive rates: evidence must grow
#: with what is seen, and a newcomer's first harmless question must pass.
COLD_MAX_PROMPTS = 4
COLD_REVIEW_FPR = 0.001
COLD_BLOCK_FPR = 0.0001
DECISIONS = ("allow", "review", "block")
OOF_FOLDS = 4


def train_booster(X: pd.DataFrame, y: np.ndarray, *, seed: int, params: dict | None = None,
                  monotone: list[int] | None = None) -> lgb.Booster:
    """Fit LightGBM on the feature table; deterministic for a seed. `monotone` (one per column, +1 or 0)
    constrains the score to rise with one-sided evidence only."""
    p = {**DEFAULT_LGB_PARAMS, **(params or {}), "seed": seed}
    if monotone is not None and any(monotone):
        p["monotone_constraints"] = list(monotone)
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
    cold_review: float = -math.inf  # for accounts with at most `cold_max_prompts` prompts (never below review)
    cold_block: float = -math.inf
    cold_max_prompts: int = COLD_MAX_PROMPTS

    def decide(self, scores: np.ndarray, volumes: np.ndarray | None = None) -> np.ndarray:
        """allow / review / block per score; with `volumes` (prompts per account), small accounts are
        judged against the cold-start thresholds."""
        s = np.asarray(scores, dtype=float)
        review, block = self.per_account(len(s), volumes)
        return np.where(s > block, "block", np.where(s > review, "review", "allow"))

    def per_account(self, n: int, volumes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The (review, block) thresholds each of `n` accounts is judged against: the cold-start ones for
        accounts with at most `cold_max_prompts` prompts (when `volumes` is given)."""
        review = np.full(n, self.review)
        block = np.full(n, self.block)
        if volumes is not None:
            small = np.asarray(volumes) <= self.cold_max_prompts
            review[small] = max(self.review, self.cold_review)
            block[small] = max(self.block, self.cold_block)
        return review, block

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Reason:
    """One piece of evidence behind a score."""

    feature: str
    value: float
    organic: float  # the organic median of the feature in training
    contribution: float  # log-odds
    text: str  # the analyst's sentence

    def __str__(self) -> str:
        return f"{self.text} [+{self.contribution:.1f}]"


class DetectorNotFittedError(ValueError):
    """A detector without a trained booster refuses to score."""


@dataclass
class Detector:
    """A trained booster plus its calibration, operating thresholds and organic reference values."""

    booster: lgb.Booster
    feature_names: list[str]
    calibration: tuple[float, float] = (1.0, 0.0)  # Platt: sigmoid(a * margin + b)
    thresholds: Thresholds = field(default_factory=lambda: Thresholds(0.5, 0.9))
    organic_median: dict[str, float] = field(default_factory=dict)  # fills NaN; the reference in reasons

    def matrix(self, X: pd.DataFrame) -> np.ndarray:
        if self.booster is None:
            raise DetectorNotFittedError("this detector has no trained booster: fit it with fit_detector()")
        missing = [c for c in self.feature_names if c not in X.columns]
        if missing:
            raise KeyError(f"the feature table lacks the model's features {missing[:5]} (a model of another version?)")
        frame = X[self.feature_names]
        if self.organic_median:
            frame = frame.fillna(self.organic_median)
        return frame.to_numpy(dtype=np.float64)

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        m = self.matrix(X)
        return self.booster.predict(m, raw_score=True)

    def probability(self, margin: np.ndarray) -> np.ndarray:
        a, b = self.calibration
        return 1.0 / (1.0 + np.exp(-(a * np.asarray(margin) + b)))

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of harvesting, per row."""
        return self.probability(self.margin(X))

    def decide(self, X: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
        """The decision for each row of the feature table `X` with its `scores` (small accounts are
        judged against the cold-start thresholds)."""
        return self.thresholds.decide(scores, X["volume"].to_numpy() if "volume" in X else None)

    def evidence(self, X: pd.DataFrame, top: int = 3) -> list[list[Reason]]:
        """Per row, the evidence pushing the score up most, in an analyst's words (e.g. '62% of its
        prompts ask for step-by-step or full reasoning traces (organic: 3%)') with the feature, its
        value, the organic median and the contribution in log-odds. A feature the account had no
        value for (too few prompts, a field it does not send) is never evidence."""
        m = self.matrix(X)
        contrib = self.booster.predict(m, pred_contrib=True)[:, :-1]  # last column: the bias
        raw = X[self.feature_names].to_numpy(dtype=np.float64)
        out = []
        for r in range(len(X)):
            row = dict(zip(self.feature_names, raw[r]))
            picked: list[Reason] = []
            for j in np.argsort(-contrib[r]):
                if contrib[r, j] <= 0 or len(picked) == top:
                    break
                if math.isnan(raw[r, j]):
                    continue
                name = self.feature_names[j]
                picked.append(Reason(name, float(raw[r, j]), self.organic_median.get(name, float("nan")),
                                     float(contrib[r, j]), self._sentence(name, raw[r, j], row)))
            out.append(picked)
        return out

    def reasons(self, X: pd.DataFrame, top: int = 3) -> list[list[str]]:
        """`evidence` as sentences with their contribution: '... (organic: 3%) [+2.1]'."""
        return [[str(r) for r in rs] for rs in self.evidence(X, top)]

    def _sentence(self, name: str, value: float, row: dict[str, float]) -> str:
        organic = self.organic_median.get(name, float("nan"))
        spec = BY_NAME.get(name)
        template = spec.reason if spec is not None else ""
        if template:
            try:
                counts = {f"{k}_count": 2.0 ** v - 1 for k, v in row.items() if -60 < v < 60}
                return template.format(value=value, organic=organic, **row, **counts)
            except (ValueError, KeyError, IndexError):
                pass
        return f"{name} = {value:.3g} (organic median {organic:.3g})"

    def importance(self) -> pd.Series:
        gain = self.booster.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.feature_names).sort_values(ascending=False)


def _group_folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold of each row, the same for every row of one group (an account and its augmented copies)."""
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(uniq, rng.permutation(len(uniq)) % k))
    return np.array([fold_of[g] for g in groups])


def fit_detector(X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, organic_reference: np.ndarray,
                 X_val: pd.DataFrame, y_val: np.ndarray, *, seed: int, params: dict | None = None,
                 cold_reference: np.ndarray | None = None) -> Detector:
    """Fit the detector on training rows `X`/`y` (`groups`: the account each row stands for, so that
    augmented copies share a fold with their original; `organic_reference`: bool, the rows that are real
    organic accounts; `cold_reference`: bool, organic accounts cut to their first prompts), calibrate it
    on validation, and set its thresholds on the out-of-fold scores of the organic training accounts
    together with the organic validation accounts (cold-start thresholds: on the cut copies and the
    small organic accounts)."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2 or len(np.unique(y_val)) < 2:
        raise ValueError("training and validation both need organic and harvesting accounts")
    names = list(X.columns)
    median = X[organic_reference].median().fillna(0.0)
    detector = Detector(None, names, organic_median={k: float(v) for k, v in median.items()})  # type: ignore[arg-type]
    M = X[names].fillna(detector.organic_median)
    monotone = monotone_constraints(names)
    detector.booster = train_booster(M, y, seed=seed, params=params, monotone=monotone)

    folds = _group_folds(np.asarray(groups), OOF_FOLDS, seed)
    oof = np.full(len(y), np.nan)
    for f in range(OOF_FOLDS):
        test = folds == f
        if test.all() or not test.any() or len(np.unique(y[~test])) < 2:
            continue
        b = train_booster(M[~test], y[~test], seed=seed, params=params, monotone=monotone)
        oof[test] = b.predict(M[test].to_numpy(dtype=np.float64), raw_score=True)

    val_margin = detector.margin(X_val)
    lr = LogisticRegression(C=1e4).fit(val_margin.reshape(-1, 1), y_val)
    detector.calibration = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
    organic_scores = np.concatenate([detector.probability(oof[organic_reference & np.isfinite(oof)]),
                                     detector.probability(val_margin[np.asarray(y_val) == 0])])
    thresholds = Thresholds(threshold_at_fpr(organic_scores, REVIEW_FPR), threshold_at_fpr(organic_scores, BLOCK_FPR))
    small = np.asarray(X["volume"] <= COLD_MAX_PROMPTS) if "volume" in X else np.zeros(len(X), dtype=bool)
    cold = (organic_reference & small) | (cold_reference if cold_reference is not None else False)
    small_val = np.asarray(X_val["volume"] <= COLD_MAX_PROMPTS) if "volume" in X_val else np.zeros(len(X_val), bool)
    cold_scores = np.concatenate([detector.probability(oof[cold & np.isfinite(oof)]),
                                  detector.probability(val_margin[(np.asarray(y_val) == 0) & small_val])])
    if len(cold_scores):
        thresholds.cold_review = threshold_at_fpr(cold_scores, COLD_REVIEW_FPR)
        thresholds.cold_block = threshold_at_fpr(cold_scores, COLD_BLOCK_FPR)
    detector.thresholds = thresholds
    return detector

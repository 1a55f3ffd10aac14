"""The per-prompt harvest-intent model: how much one prompt looks like what a harvesting campaign
asks for, learnt from labelled campaigns, with the project's written exemplars as a prior.

Inputs per distinct prompt text (`prompt_inputs`): its embedding, the embeddings of its first and
last sentence (wrappers sit at the edges) and its best similarity to each intent's exemplars
(`elicitation.INTENT_EXEMPLARS`). A logistic regression is fitted on prompts of harvesting accounts
against prompts of organic accounts. Labels are per account, and a campaign mixes mundane prompts
in (hydra): after a first fit, harvest-account prompts that score like ordinary organic ones are
relabelled organic and the model is fitted again (one round of multiple-instance refinement).
Texts many accounts send are common language and are labelled organic whoever sent them.

The learnt probability is combined with the exemplar prior by a noisy-OR, so that an intent with
few or no labelled campaigns (a style the training data lacks) is not scored zero:
`p = 1 - (1 - p_learnt) * (1 - prior_weight * p_prior)`, where `p_prior` rises from 0 to 1 as a
prompt's best exemplar similarity goes from the organic 99th percentile to its maximum over the
labelled harvest prompts. Platt scaling on held-out prompts calibrates the learnt part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression


class PromptIntentNotFittedError(ValueError, AttributeError):
    """The model has not been fitted (or calibrated) and refuses to score."""


@dataclass(frozen=True)
class PromptInputs:
    """Model inputs for distinct prompt texts: (u, 3d) embeddings of the whole prompt, its first and
    its last sentence, and (u, k) best exemplar similarities per intent."""

    vectors: np.ndarray
    exemplar_scores: np.ndarray

    def __len__(self) -> int:
        return len(self.vectors)

    def take(self, rows: np.ndarray) -> PromptInputs:
        return PromptInputs(self.vectors[rows], self.exemplar_scores[rows])

    def matrix(self) -> np.ndarray:
        return np.hstack([self.vectors, self.exemplar_scores]).astype(np.float32, copy=False)


class PromptIntentModel:
    """Estimator contract: `__init__` stores hyper-parameters; `fit` learns trailing-underscore state;
    `predict_proba` refuses an unfitted model."""

    def __init__(self, *, C: float = 1.0, refine_quantile: float = 0.8, prior_weight: float = 0.5,
                 max_texts: int = 200_000, seed: int = 0) -> None:
        self.C = C
        self.refine_quantile = refine_quantile
        self.prior_weight = prior_weight
        self.max_texts = max_texts
        self.seed = seed

    def get_params(self) -> dict:
        return {"C": self.C, "refine_quantile": self.refine_quantile, "prior_weight": self.prior_weight,
                "max_texts": self.max_texts, "seed": self.seed}

    def __repr__(self) -> str:
        fitted = "fitted" if hasattr(self, "coef_") else "unfitted"
        return f"PromptIntentModel({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())}) [{fitted}]"

    # -- fitting ---------------------------------------------------------------------------------

    def fit(self, inputs: PromptInputs, labels: np.ndarray) -> PromptIntentModel:
        """`labels[i]` is 1 when distinct text i was sent by a harvesting account (and by few accounts
        overall), 0 when it is organic or common language. Both classes are needed."""
        y = np.asarray(labels, dtype=np.int64)
        if len(y) != len(inputs):
            raise ValueError(f"labels has {len(y)} rows but inputs {len(inputs)}")
        if set(np.unique(y)) != {0, 1}:
            raise ValueError("the prompt intent model needs prompts of both classes (organic and harvesting)")
        rng = np.random.default_rng(self.seed)
        rows = np.arange(len(y))
        if len(rows) > self.max_texts:  # keep every positive, sample the organic side
            pos, neg = rows[y == 1], rows[y == 0]
            keep = max(self.max_texts - len(pos), len(pos))
            rows = np.sort(np.concatenate([pos, rng.choice(neg, size=min(keep, len(neg)), replace=False)]))
        X, y = inputs.take(rows).matrix(), y[rows]
        first = self._logistic().fit(X, y)
        p = first.predict_proba(X)[:, 1]
        cut = np.quantile(p[y == 0], self.refine_quantile)
        refined = np.where((y == 1) & (p < cut), 0, y)  # harvest prompts that look organic: hydra
        model = self._logistic().fit(X, refined) if refined.any() else first
        self.coef_ = model.coef_[0].astype(np.float64)
        self.intercept_ = float(model.intercept_[0])
        self.relabelled_ = int(((y == 1) & (refined == 0)).sum())
        self.positives_ = int(refined.sum())
        ex = inputs.exemplar_scores[rows]
        best = ex.max(axis=1)
        self.prior_low_ = float(np.quantile(best[y == 0], 0.99))
        high = best[refined == 1].max() if refined.any() else best.max()
        self.prior_high_ = float(max(high, self.prior_low_ + 1e-3))
        self.calibration_ = (1.0, 0.0)
        return self

    def _logistic(self) -> LogisticRegression:
        return LogisticRegression(C=self.C, max_iter=3000, random_state=self.seed)

    def calibrate(self, inputs: PromptInputs, labels: np.ndarray) -> PromptIntentModel:
        """Platt scaling of the learnt margin on held-out prompts (labels as in `fit`)."""
        self._check()
        y = np.asarray(labels, dtype=np.int64)
        if set(np.unique(y)) != {0, 1}:
            return self  # nothing to calibrate against; keep the fitted scale
        m = self._margin(inputs).reshape(-1, 1)
        lr = LogisticRegression(C=1e4).fit(m, y)
        self.calibration_ = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        return self

    # -- scoring ---------------------------------------------------------------------------------

    def _check(self) -> None:
        if not hasattr(self, "coef_"):
            raise PromptIntentNotFittedError("PromptIntentModel is not fitted: call fit() on labelled prompts first")

    def _margin(self, inputs: PromptInputs) -> np.ndarray:
        return inputs.matrix().astype(np.float64) @ self.coef_ + self.intercept_

    def learnt_proba(self, inputs: PromptInputs) -> np.ndarray:
        self._check()
        a, b = self.calibration_
        return 1.0 / (1.0 + np.exp(-(a * self._margin(inputs) + b)))

    def prior_proba(self, inputs: PromptInputs) -> np.ndarray:
        """The exemplar prior: 0 at or below the organic 99th percentile of best exemplar similarity,
        rising linearly to 1 at the highest similarity seen on labelled harvest prompts."""
        self._check()
        best = inputs.exemplar_scores.max(axis=1)
        return np.clip((best - self.prior_low_) / (self.prior_high_ - self.prior_low_), 0.0, 1.0)

    def predict_proba(self, inputs: PromptInputs) -> np.ndarray:
        """(u,) probability that each distinct prompt asks for what harvesters harvest."""
        p = self.learnt_proba(inputs)
        return 1.0 - (1.0 - p) * (1.0 - self.prior_weight * self.prior_proba(inputs))

    # -- persistence -----------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        self._check()
        return {"coef": self.coef_, "scalars": np.array([self.intercept_, *self.calibration_, self.prior_low_,
                                                          self.prior_high_, self.relabelled_, self.positives_])}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict) -> PromptIntentModel:
        m = cls(**params)
        m.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        s = arrays["scalars"]
        m.intercept_, m.calibration_ = float(s[0]), (float(s[1]), float(s[2]))
        m.prior_low_, m.prior_high_ = float(s[3]), float(s[4])
        m.relabelled_, m.positives_ = int(s[5]), int(s[6])
        return m

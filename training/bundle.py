"""The registered model: one folder with the classifier, the feature state (organic baseline,
intent thresholds), feature config, calibration, decision thresholds and the embedder's identity.
`serving/` and `score` load it from disk, with no network."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb

from distillguard.features.pipeline import EmbeddingContext, FeatureState
from distillguard.training.model import Detector, Thresholds

BUNDLE_FORMAT = "distillguard-detector-bundle/v2"


class BundleError(ValueError):
    """A model bundle that cannot be loaded (missing, corrupt, other format)."""


@dataclass
class DetectorBundle:
    detector: Detector
    state: FeatureState
    info: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path = Path(path)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        self.detector.booster.save_model(str(path / "classifier.txt"))
        self.state.save(path / "feature_state")
        t = self.detector.thresholds
        (path / "bundle.json").write_text(json.dumps({
            "format": BUNDLE_FORMAT,
            "feature_names": self.detector.feature_names,
            "calibration": list(self.detector.calibration),
            "thresholds": t.to_dict(),
            "organic_median": self.detector.organic_median,
            "embedder": self.state.identity.to_dict(),
            "profile": self.state.profile,
            "info": self.info,
        }, indent=2, default=str))

    @classmethod
    def load(cls, path: Path) -> DetectorBundle:
        path = Path(path)
        try:
            meta = json.loads((path / "bundle.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BundleError(f"{path}: not a readable model bundle ({exc})") from None
        if meta.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{path}: bundle format {meta.get('format')!r}, this version reads {BUNDLE_FORMAT!r} "
                              "(a model trained by another version: retrain it)")
        booster = lgb.Booster(model_file=str(path / "classifier.txt"))
        t = meta["thresholds"]
        detector = Detector(booster, list(meta["feature_names"]), tuple(meta["calibration"]),
                            Thresholds(**t),
                            {k: float(v) for k, v in meta.get("organic_median", {}).items()})
        return cls(detector, FeatureState.load(path / "feature_state"), meta.get("info", {}))

    def open_embeddings(self, store_dir: Path) -> EmbeddingContext:
        """The embedder this bundle was built with, refusing any other."""
        ctx = EmbeddingContext.open(self.state.profile, store_dir)
        if ctx.embedder.identity != self.state.identity:
            raise BundleError(f"this machine's {self.state.profile} embedder ({ctx.embedder.identity.fingerprint}) "
                              f"differs from the model's ({self.state.identity.fingerprint})")
        return ctx

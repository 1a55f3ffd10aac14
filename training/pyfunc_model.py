"""The MLflow pyfunc wrapper that registers a detector bundle as one model."""

from __future__ import annotations

import mlflow.pyfunc


class DetectorPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the bundle folder logged with the model; `predict` takes an events frame."""

    def load_context(self, context) -> None:
        from distillguard.training.bundle import DetectorBundle

        self.bundle = DetectorBundle.load(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None):
        import tempfile
        from pathlib import Path

        from distillguard.training.inference import Inference

        store = Path(tempfile.gettempdir()) / "distillguard-embeddings"
        return Inference.open(self.bundle, store).score_events(model_input).table()

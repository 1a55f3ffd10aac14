"""The MLflow pyfunc wrapper that registers a detector bundle as one model, with its signature: events
in the traffic contract in, one row per account out (score, decision, the thresholds that decided it,
reasons)."""

import tempfile
from pathlib import Path

import mlflow.pyfunc
import pandas as pd


def model_signature():
    """The pyfunc's signature: the events contract's columns in (the optional ones may be missing; `ts`
    in UTC without a time zone and `asn` a double, as MLflow's schema check wants), the scores table out."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("string", "account_id"), ColSpec("datetime", "ts"), ColSpec("string", "prompt"),
                     *(ColSpec("string", c, required=False) for c in ("conversation_id", "model", "ip")),
                     ColSpec("double", "asn", required=False),
                     *(ColSpec("string", c, required=False) for c in ("payment_fingerprint", "user_agent"))])
    outputs = Schema([ColSpec("string", "account_id"), ColSpec("double", "score"), ColSpec("string", "decision"),
                      ColSpec("double", "review_threshold"), ColSpec("double", "block_threshold"),
                      ColSpec("string", "reasons")])
    return ModelSignature(inputs=inputs, outputs=outputs)


class DetectorPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the bundle folder logged with the model; `predict` takes an events frame."""

    def load_context(self, context) -> None:
        from distillguard.training.bundle import DetectorBundle

        self.bundle = DetectorBundle.load(context.artifacts["bundle"])

    # the type hint tells MLflow the input is a frame (its schema comes from the logged signature)
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from distillguard.training.inference import Inference

        store = Path(tempfile.gettempdir()) / "distillguard-embeddings"
        inference = Inference.open(self.bundle, store)
        # MLflow's schema check passes timestamps only without a time zone: the contract's are UTC
        events = model_input.assign(ts=pd.to_datetime(model_input["ts"], utc=True))
        if "asn" in events:  # a double in the signature, so that a missing ASN can pass MLflow's check
            events["asn"] = pd.array(events["asn"].round(), dtype="Int64")
        return inference.score_events(events).table(inference.bundle.detector.thresholds)

"""The Python API: a registered model as an object, and a DataFrame of events scored in one call.

    from distillguard import load_detector, score_events
    detector = load_detector(mlruns="mlruns")          # the champion, with its embedder
    scores = score_events(events_df, detector)         # one row per account

Heavy imports (pandas, MLflow, the embedder) happen inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from distillguard.training.inference import Inference

CHAMPION_URI = "models:/distillguard@champion"
DEFAULT_STORE = Path("runs/embeddings")
FRAME_NAME = "events DataFrame"


def load_detector(mlruns: str | Path = "mlruns", model_uri: str = CHAMPION_URI,
                  store: str | Path = DEFAULT_STORE) -> Inference:
    """The registered model `model_uri` of the registry folder `mlruns`, opened with the embedder it was
    trained with (its embeddings cached under `store`). Raises `RegistryError` (no such registry, version
    or alias) or `BundleError` (a model this version cannot read), both `ValueError`s."""
    from distillguard.training.inference import Inference
    from distillguard.training.registry import Registry
    from distillguard.training.train_job import load_bundle

    mlruns = Path(mlruns)
    if not (mlruns / "mlflow.db").exists():
        from distillguard.training.registry import RegistryError

        raise RegistryError(f"{mlruns}: no registry there (train a model first, or pass mlruns=)")
    return Inference.open(load_bundle(Registry(mlruns), model_uri), Path(store))


def contract_events(events: pd.DataFrame) -> pd.DataFrame:
    """`events` checked and typed as the traffic contract says (the same checks as an events file);
    a row that breaks it raises `ContractError` naming the row (1-based position) and the field."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from distillguard.data.errors import ContractError
    from distillguard.data.readers import read_events

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.parquet"
        try:
            pq.write_table(pa.Table.from_pandas(events, preserve_index=False), path)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise ContractError(FRAME_NAME, f"cannot be read as events: {exc}") from None
        try:
            return read_events(path)
        except ContractError as exc:
            raise ContractError(FRAME_NAME, exc.reason, row=exc.row, field=exc.field) from None


def score_events(events: pd.DataFrame, detector: Inference | None = None, *, mlruns: str | Path = "mlruns",
                 model_uri: str = CHAMPION_URI, store: str | Path = DEFAULT_STORE,
                 with_reasons: bool = True) -> pd.DataFrame:
    """Score every account of `events` (a DataFrame in the traffic contract: account_id, ts, prompt and the
    optional columns) as one population, with `detector` or, without one, the model `load_detector` opens.
    Returns one row per account: account_id, score, decision (allow / review / block), the review and block
    thresholds the decision was taken at, and reasons."""
    from distillguard.data.errors import ContractError

    frame = contract_events(events)
    if frame.empty:
        raise ContractError(FRAME_NAME, "holds no events")
    detector = detector if detector is not None else load_detector(mlruns, model_uri, store)
    scored = detector.score_events(frame, with_reasons=with_reasons)
    return scored.table(detector.bundle.detector.thresholds)

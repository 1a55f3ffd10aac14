"""Batch and gateway meet: a batch `score` run seeds a serving state, so that the gateway answers an
account the batch job flagged at once instead of `allow, pending`.

The scored events are appended to the state's event log (they are the population the worker will
rebuild from, and the windows it reads) and each account's batch score is stored as its current
score. The worker later reads the appended events, rescores the accounts against its population
state and, the events and the model being the same, finds the same scores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from distillguard.serving.state_store import EVENT_FIELDS, EventLog, ScoreBoard
from distillguard.training.inference import ScoredAccounts


def _event_rows(events: pd.DataFrame) -> list[tuple]:
    ts_us = events["ts"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    cols = {f: (events[f].astype(object).where(events[f].notna(), None).tolist() if f in events else
                [None] * len(events)) for f in EVENT_FIELDS if f not in ("account_id", "ts_us", "prompt")}
    asn = [None if v is None else int(v) for v in cols["asn"]]
    return [(a, int(t), p, c, m, ip, s, pf, ua) for a, t, p, c, m, ip, s, pf, ua in zip(
        events["account_id"].astype(str).tolist(), ts_us.tolist(), events["prompt"].tolist(), cols["conversation_id"],
        cols["model"], cols["ip"], asn, cols["payment_fingerprint"], cols["user_agent"])]


def seed_state(folder: Path, events: pd.DataFrame, scored: ScoredAccounts, model_version: str,
               chunk: int = 50_000) -> tuple[int, int]:
    """Append `events` to the state's log and store `scored` as the accounts' current scores.
    Returns (events appended, accounts seeded)."""
    log, board = EventLog(folder), ScoreBoard(folder)
    rows = _event_rows(events)
    for lo in range(0, len(rows), chunk):
        log.append(rows[lo:lo + chunk])
    through = {a: int(i) for a, i in log.conn().execute(
        "SELECT account_id, MAX(id) FROM events GROUP BY account_id").fetchall()}
    results = []
    for i, acc in enumerate(scored.features.index):
        feats = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in scored.features.iloc[i].to_dict().items()}
        results.append({"account_id": str(acc), "score": round(float(scored.scores[i]), 6),
                        "decision": str(scored.decisions[i]), "reasons": scored.reasons[i], "features": feats,
                        "model_version": model_version, "window_size": int(scored.features["volume"].iloc[i]),
                        "through": through.get(str(acc), 0)})
    board.seed(results)
    return len(rows), len(results)

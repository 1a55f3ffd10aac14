"""The background refresh: rescore dirty accounts in micro-batches, off the request path.

Each batch takes the longest-waiting dirty accounts, reads their rolling windows from the state
store, adds the windows of other recently active accounts as context (cross-account coordination
features need campaign siblings in the same frame), builds features, scores, and stores score,
decision, reasons and features for the batch's accounts only.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from distillguard.serving.config import ServeSettings
from distillguard.serving.models import ModelHolder
from distillguard.serving.state_store import EventLog, ScoreBoard

log = logging.getLogger("distillguard.serving")


def _finite(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


@dataclass
class RefreshStats:
    refreshed_accounts: int = 0
    batches: int = 0
    errors: int = 0
    last_batch_seconds: float = 0.0
    busy_seconds: float = 0.0
    backlog_accounts: int = 0
    backlog_events: int = 0
    oldest_dirty_since: float | None = None


class RefreshWorker:
    def __init__(self, log: EventLog, board: ScoreBoard, models: ModelHolder, settings: ServeSettings) -> None:
        self.log, self.board, self.models, self.settings = log, board, models, settings
        self.stats = RefreshStats()
        self._recent: OrderedDict[str, None] = OrderedDict()  # accounts by last event, newest last

    def ingest(self, limit: int = 50_000) -> int:
        """Queue the accounts of events appended since the cursor."""
        new = self.log.new_events(self.board.cursor(), limit)
        self.board.enqueue(new)
        for _, acc, _ in new:
            self._recent[acc] = None
            self._recent.move_to_end(acc)
        while len(self._recent) > 10 * max(self.settings.context_accounts, 1):
            self._recent.popitem(last=False)
        return len(new)

    def recent_accounts(self, limit: int, exclude: set[str]) -> list[str]:
        """The accounts with the newest events (seen since this worker started), `exclude` left out."""
        out = []
        for acc in reversed(self._recent):
            if len(out) >= limit:
                break
            if acc not in exclude:
                out.append(acc)
        return out

    def observe_backlog(self) -> None:
        b = self.board.backlog()
        unread = max(0, self.log.max_id() - self.board.cursor())
        self.stats.backlog_accounts, self.stats.backlog_events = b.accounts, b.events + unread
        self.stats.oldest_dirty_since = b.oldest_dirty_since

    def refresh_once(self) -> int:
        """Refresh one batch; returns the number of accounts refreshed (0: nothing to do or no model)."""
        model = self.models.current
        s = self.settings
        if model is None:
            return 0
        batch = self.board.dirty_accounts(s.refresh_batch_accounts)
        if not batch:
            return 0
        import pandas as pd

        from distillguard.features.pipeline import build_features

        t0 = time.perf_counter()
        max_age_us = int(s.window_age_hours * 3600e6)
        own, through = self.log.windows(batch, s.window_events, max_age_us)
        context_ids = self.recent_accounts(s.context_accounts, set(batch)) if s.context_accounts else []
        frames = [own]
        if context_ids:
            frames.append(self.log.windows(context_ids, s.context_window_events, max_age_us)[0])
        events = pd.concat([f for f in frames if not f.empty], ignore_index=True)
        results = []
        if not own.empty:
            features = build_features(events, model.bundle.state, model.ctx)
            features = features.loc[features.index.isin(set(own["account_id"]))]
            det = model.bundle.detector
            scores = det.score(features)
            decisions = det.decide(features, scores)
            reasons = det.reasons(features)
            sizes = own.groupby("account_id").size()
            for i, acc in enumerate(features.index):
                results.append({"account_id": acc, "score": round(float(scores[i]), 6),
                                "decision": str(decisions[i]), "reasons": reasons[i],
                                "features": _finite(features.iloc[i].to_dict()), "model_version": model.version,
                                "window_size": int(sizes[acc]), "through": int(through[acc])})
        done = {r["account_id"] for r in results}
        for acc in batch:  # no events left to score (cannot happen unless rows were removed by hand)
            if acc not in done:
                results.append({"account_id": acc, "score": None, "decision": None, "reasons": [], "features": None,
                                "model_version": None, "window_size": 0, "through": int(through.get(acc, 0))})
        self.board.store(results)
        elapsed = time.perf_counter() - t0
        st = self.stats
        st.refreshed_accounts += len(batch)
        st.batches += 1
        st.last_batch_seconds = elapsed
        st.busy_seconds += elapsed
        log.debug("refreshed %d accounts (+%d context, %d events) in %.3f s", len(batch), len(context_ids),
                  len(events), elapsed)
        return len(batch)

    def step(self) -> int:
        """One round: a batch (errors counted and retried next round) and a backlog reading."""
        try:
            self.ingest()
            self.observe_backlog()  # the queue this batch starts from
            n = self.refresh_once()
        except Exception:  # one bad batch must not stop refreshing
            log.exception("refresh batch failed")
            self.stats.errors += 1
            n = 0
        return n

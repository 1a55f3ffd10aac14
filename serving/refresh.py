"""The background refresh: rescore accounts off the request path, against one population state.

The worker holds the population state of the scoring window (`features.population`), built with
the same code a batch `score` runs: when a model is loaded (at start, after a restart, on a new
champion) it reads the window of every account active in the event log (an event received within
the model's `window_days`, by the server's clock) and scores them all as one population, exactly as
`distillguard score` would on the same events. From then on, each
micro-batch takes the longest-waiting dirty accounts, reads their windows, replaces their
contributions in the state and rescores them against it; when nothing is dirty, a sweep rescores
the accounts refreshed longest ago, so that an account whose neighbours changed (a text that became
common, a campaign that grew) converges to the score a batch job gives. An account's score never
depends on which accounts shared its batch.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from distillguard.serving.config import ServeSettings
from distillguard.serving.models import LoadedModel, ModelHolder
from distillguard.serving.state_store import EventLog, ScoreBoard
from distillguard.serving.storage_faults import is_storage_fault

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
    population_accounts: int = 0
    population_built_at: float | None = None
    population_build_seconds: float = 0.0
    swept_accounts: int = 0
    sweeps_completed: int = 0  # full passes over the population since it was built
    expired_accounts: int = 0


class RefreshWorker:
    def __init__(self, log: EventLog, board: ScoreBoard, models: ModelHolder, settings: ServeSettings) -> None:
        self.log, self.board, self.models, self.settings = log, board, models, settings
        self.stats = RefreshStats()
        self.population = None  # features.population.PopulationState of `self._built_for`
        self._built_for: str | None = None
        self._sweep_started = 0.0

    # -- queue ------------------------------------------------------------------------------------

    def ingest(self, limit: int = 50_000) -> int:
        """Queue the accounts of events appended since the cursor."""
        new = self.log.new_events(self.board.cursor(), limit)
        self.board.enqueue(new)
        return len(new)

    def observe_backlog(self) -> None:
        b = self.board.backlog()
        unread = max(0, self.log.max_id() - self.board.cursor())
        self.stats.backlog_accounts, self.stats.backlog_events = b.accounts, b.events + unread
        self.stats.oldest_dirty_since = b.oldest_dirty_since

    # -- scoring ----------------------------------------------------------------------------------

    def _window(self, model: LoadedModel) -> tuple[int, int]:
        cfg = model.bundle.state.config
        return cfg.window_events, int(cfg.window_days * 86_400e6)

    def _score(self, model: LoadedModel, accounts: list[str], *, rebuild: bool = False) -> int:
        """Read the windows of `accounts`, score them against the population state (a fresh one when
        `rebuild`), store the results and take them off the queue. Returns how many were stored."""
        from distillguard.features.population import PopulationState
        from distillguard.training.inference import Inference

        max_events, max_age_us = self._window(model)
        own, through = self.log.windows(accounts, max_events, max_age_us)
        if rebuild:
            self.population = PopulationState()
        results = []
        if not own.empty:
            scored = Inference(model.bundle, model.ctx).score_events(own, population=self.population)
            sizes = scored.features["volume"]
            for i, acc in enumerate(scored.features.index):
                results.append({"account_id": acc, "score": round(float(scored.scores[i]), 6),
                                "decision": str(scored.decisions[i]), "reasons": scored.reasons[i],
                                "features": _finite(scored.features.iloc[i].to_dict()),
                                "model_version": model.version, "window_size": int(sizes[acc]),
                                "through": int(through[acc])})
        done = {r["account_id"] for r in results}
        for acc in accounts:  # nothing left in its window: it left the population
            if acc not in done:
                if self.population is not None:
                    self.population.replace(acc, None)
                results.append({"account_id": acc, "score": None, "decision": None, "reasons": [], "features": None,
                                "model_version": None, "window_size": 0, "through": int(through.get(acc, 0))})
        self.board.store(results)
        return len(results)

    def ensure_population(self, model: LoadedModel) -> None:
        """Build the population state of the window from the event log (and score every account in it)
        when the worker has none yet or a new model is serving."""
        if self.population is not None and self._built_for == model.version:
            return
        t0 = time.perf_counter()
        _, max_age_us = self._window(model)
        accounts = self.log.active_accounts(max_age_us)
        self.ingest()
        self._score(model, accounts, rebuild=True)
        self._built_for = model.version
        self._sweep_started = time.time()
        st = self.stats
        st.population_accounts = self.population.accounts
        st.population_built_at = time.time()
        st.population_build_seconds = time.perf_counter() - t0
        st.refreshed_accounts += len(accounts)
        log.info("population state of %d accounts built and scored with v%s in %.1f s", len(accounts),
                 model.version, st.population_build_seconds)

    def refresh_once(self) -> int:
        """Refresh one batch of dirty accounts, or (nothing dirty) sweep the accounts refreshed longest
        ago; returns the number of dirty accounts refreshed (0: nothing to do or no model)."""
        model = self.models.current
        s = self.settings
        if model is None:
            return 0
        self.ensure_population(model)
        batch = self.board.dirty_accounts(s.refresh_batch_accounts)
        if not batch:
            self._sweep(model)
            return 0
        t0 = time.perf_counter()
        self._score(model, batch)
        elapsed = time.perf_counter() - t0
        st = self.stats
        st.refreshed_accounts += len(batch)
        st.batches += 1
        st.last_batch_seconds = elapsed
        st.busy_seconds += elapsed
        st.population_accounts = self.population.accounts
        log.debug("refreshed %d accounts in %.3f s", len(batch), elapsed)
        return len(batch)

    def _sweep(self, model: LoadedModel) -> None:
        """Rescore the accounts refreshed longest ago (their neighbours may have changed) and drop the
        accounts whose newest event left the window."""
        s = self.settings
        if s.sweep_batch_accounts <= 0:
            return
        stale = self.board.refreshed_before(self._sweep_started, s.sweep_batch_accounts)
        if not stale:
            if time.time() - self._sweep_started < s.sweep_interval_s:
                return  # a sweep at most every sweep_interval_s: an idle worker stays idle
            self.stats.sweeps_completed += 1
            self._sweep_started = time.time()
            _, max_age_us = self._window(model)
            expired = self.board.scored_accounts() - set(self.log.active_accounts(max_age_us))
            for acc in expired:
                self.population.replace(acc, None)
            self.board.forget(expired)
            self.stats.expired_accounts += len(expired)
            return
        self._score(model, stale)
        self.stats.swept_accounts += len(stale)

    def step(self) -> int:
        """One round: a batch (errors counted and retried next round) and a backlog reading."""
        try:
            self.ingest()
            self.observe_backlog()  # the queue this batch starts from
            n = self.refresh_once()
        except Exception as exc:  # one bad batch must not stop refreshing
            if is_storage_fault(exc):
                raise  # a full or read-only state: the worker's loop backs off (worker.py)
            log.exception("refresh batch failed")
            self.stats.errors += 1
            n = 0
        return n

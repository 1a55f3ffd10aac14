"""The one scoring core behind every endpoint and gateway adapter: record the event durably,
answer from the account's stored state, never wait for the model."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timezone

from distillguard.serving.config import ServeSettings
from distillguard.serving.metrics import ServingMetrics
from distillguard.serving.schemas import EventIn, Verdict
from distillguard.serving.state_store import EventLog, ScoreBoard, StoredScore
from distillguard.serving.supervisor import WorkerSupervisor

log = logging.getLogger("distillguard.serving")


class PromptTooLong(ValueError):
    def __init__(self, field: tuple, limit: int) -> None:
        super().__init__(f"prompt longer than {limit} characters")
        self.field, self.limit = field, limit


def prompt_digest(prompt: str) -> str:
    """What logs carry instead of a prompt: a short hash and the length."""
    return f"sha256:{hashlib.sha256(prompt.encode('utf-8', 'surrogatepass')).hexdigest()[:16]} len={len(prompt)}"


def _row(e: EventIn, now_us: int) -> tuple:
    ts_us = int(e.ts.timestamp() * 1_000_000) if e.ts is not None else now_us
    return (e.account_id, ts_us, e.prompt, e.conversation_id, e.model, e.ip, e.asn, e.payment_fingerprint,
            e.user_agent)


class ScoringCore:
    def __init__(self, events: EventLog, board: ScoreBoard, worker: WorkerSupervisor, settings: ServeSettings,
                 metrics: ServingMetrics) -> None:
        self.events, self.board, self.worker, self.settings, self.metrics = events, board, worker, settings, metrics

    def _check_sizes(self, events: Sequence[EventIn], loc: tuple) -> None:
        limit = self.settings.max_prompt_chars
        for i, e in enumerate(events):
            if len(e.prompt) > limit:
                raise PromptTooLong((*loc, i, "prompt") if len(events) > 1 or loc else ("prompt",), limit)

    def record(self, events: Sequence[EventIn], *, loc: tuple = ()) -> int:
        """Commit `events`; returns how many were stored."""
        self._check_sizes(events, loc)
        now_us = int(time.time() * 1_000_000)
        n = self.events.append([_row(e, now_us) for e in events])
        self.metrics.events.inc(len(events))
        return n

    def verdict(self, account_id: str) -> Verdict:
        """The account's answer from its stored score (no model call)."""
        state = self.board.score(account_id) or StoredScore(None, None, [], None, None)
        model = self.worker.status().model_version
        over = self.metrics.over_bound
        scored_at = datetime.fromtimestamp(state.last_refresh, timezone.utc) if state.last_refresh else None
        if state.score is not None and state.decision is not None:
            v = Verdict(account_id=account_id, decision=state.decision, score=state.score,
                        model_version=state.model_version, reasons=state.reasons, scored_at=scored_at,
                        degraded=model is None, backlog_over_bound=over)
        elif model is not None:
            v = Verdict(account_id=account_id, decision="allow", score=None, model_version=model,
                        reasons=[], scored_at=None, pending=True, backlog_over_bound=over)
        else:
            decision = "allow" if self.settings.fail_mode == "open" else "block"
            v = Verdict(account_id=account_id, decision=decision, score=None, model_version=None,
                        reasons=[f"no model loaded (fail-{self.settings.fail_mode})"], scored_at=None,
                        pending=True, degraded=True, backlog_over_bound=over)
        self.metrics.decisions.labels(v.decision).inc()
        return v

    def check(self, event: EventIn) -> Verdict:
        self.record([event])
        v = self.verdict(event.account_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("check account=%s prompt=%s decision=%s", event.account_id, prompt_digest(event.prompt),
                      v.decision)
        return v

"""The one scoring core behind every endpoint and gateway adapter: record the event durably,
answer from the account's stored state, never wait for the model."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from distillguard.serving.client_time import ClientClockPolicy
from distillguard.serving.config import ServeSettings
from distillguard.serving.metrics import ServingMetrics
from distillguard.serving.schemas import EventIn, Verdict
from distillguard.serving.state_store import EventLog, ScoreBoard, StoredScore
from distillguard.serving.storage_faults import (
    StateUnavailable,
    StorageHealth,
    is_storage_fault,
)
from distillguard.serving.supervisor import WorkerSupervisor
from distillguard.serving.verdicts import VerdictStore, apply_verdict

log = logging.getLogger("distillguard.serving")


class PromptTooLong(ValueError):
    def __init__(self, field: tuple, limit: int) -> None:
        super().__init__(f"prompt longer than {limit} characters")
        self.field, self.limit = field, limit


def prompt_digest(prompt: str) -> str:
    """What logs carry instead of a prompt: a short hash and the length."""
    return f"sha256:{hashlib.sha256(prompt.encode('utf-8', 'surrogatepass')).hexdigest()[:16]} len={len(prompt)}"


def _row(e: EventIn, ts_us: int) -> tuple:
    return (e.account_id, ts_us, e.prompt, e.conversation_id, e.model, e.ip, e.asn, e.payment_fingerprint,
            e.user_agent)


class ScoringCore:
    def __init__(self, events: EventLog, board: ScoreBoard, worker: WorkerSupervisor, settings: ServeSettings,
                 metrics: ServingMetrics, verdicts: VerdictStore | None = None) -> None:
        self.events, self.board, self.worker, self.settings, self.metrics = events, board, worker, settings, metrics
        self.verdicts = verdicts  # analyst verdicts override the model's decision (`serving/verdicts.py`)
        self.clock = ClientClockPolicy.of(settings.max_clock_skew_s, settings.max_backdate_days)
        self.health = StorageHealth(settings.state_path, on_failure=metrics.state_write_failures.inc,
                                    probe=lambda: events.put("control", "write_probe", str(time.time())))

    def _check_sizes(self, events: Sequence[EventIn], loc: tuple) -> None:
        limit = self.settings.max_prompt_chars
        for i, e in enumerate(events):
            if len(e.prompt) > limit:
                raise PromptTooLong((*loc, i, "prompt") if len(events) > 1 or loc else ("prompt",), limit)

    def record(self, events: Sequence[EventIn], *, loc: tuple = ()) -> int:
        """Commit `events`; returns how many were stored."""
        self._check_sizes(events, loc)
        now_us = int(time.time() * 1_000_000)
        rows, clamped = [], []
        for e in events:  # the client's ts judged against the arrival time (serving/client_time.py)
            ts_us, side = self.clock.judge(int(e.ts.timestamp() * 1_000_000) if e.ts is not None else None, now_us)
            rows.append(_row(e, ts_us))
            if side is not None:
                clamped.append(side)
        try:
            n = self.events.append(rows)
        except (sqlite3.Error, OSError) as exc:
            if not is_storage_fault(exc):
                raise
            raise StateUnavailable(self.health.failed(exc)) from None
        self.health.ok()
        self.metrics.events.inc(len(events))
        for side in clamped:
            self.metrics.ts_clamped.labels(side).inc()
        return n

    def degraded_verdict(self, account_id: str, reason: str) -> Verdict:
        """The answer when the state could not take the account's event: its stored decision if that
        can still be read, else the one `fail_mode` gives; marked degraded, `reason` among the reasons."""
        try:
            state = self.board.score(account_id)
        except (sqlite3.Error, OSError) as exc:
            if not is_storage_fault(exc):
                raise
            state = None
        if state is not None and state.score is not None and state.decision is not None:
            v = Verdict(account_id=account_id, decision=state.decision, score=state.score,
                        model_version=state.model_version, reasons=[*state.reasons, reason], degraded=True,
                        scored_at=datetime.fromtimestamp(state.last_refresh, UTC) if state.last_refresh
                        else None, backlog_over_bound=self.metrics.over_bound)
        else:
            v = Verdict(account_id=account_id, decision="allow" if self.settings.fail_mode == "open" else "block",
                        score=None, model_version=None, reasons=[f"{reason} (fail-{self.settings.fail_mode})"],
                        scored_at=None, pending=True, degraded=True, backlog_over_bound=self.metrics.over_bound)
        if self.verdicts is not None:  # held in memory: an analyst's verdict stands while the disk is down
            v = apply_verdict(v, self.verdicts.active(account_id))
        self.metrics.decisions.labels(v.decision).inc()
        return v

    def verdict(self, account_id: str) -> Verdict:
        """The account's answer from its stored score (no model call)."""
        try:
            state = self.board.score(account_id) or StoredScore(None, None, [], None, None)
        except (sqlite3.Error, OSError) as exc:
            if not is_storage_fault(exc):
                raise
            return self.degraded_verdict(account_id, f"stored score unreadable: {self.health.failed(exc)}")
        model = self.worker.status().model_version
        over = self.metrics.over_bound
        scored_at = datetime.fromtimestamp(state.last_refresh, UTC) if state.last_refresh else None
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
        if self.verdicts is not None:
            v = apply_verdict(v, self.verdicts.active(account_id))
        self.metrics.decisions.labels(v.decision).inc()
        return v

    def check(self, event: EventIn) -> Verdict:
        """Record `event` and answer for its account. A state that cannot take the write (full or
        read-only disk) never fails the gateway: the answer is the fail-mode one, marked degraded."""
        try:
            self.record([event])
        except StateUnavailable as exc:
            v = self.degraded_verdict(event.account_id, f"event not recorded: {exc.reason}")
        else:
            v = self.verdict(event.account_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("check account=%s prompt=%s decision=%s", event.account_id, prompt_digest(event.prompt),
                      v.decision)
        return v

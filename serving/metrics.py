"""Prometheus metrics of one serving app (its own registry, so several apps can live in a process)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class ServingMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.over_bound = False  # read on the request path, set by the refresh worker
        # `code`: the HTTP status answered (500 when the app raised before answering)
        self.request_latency = Histogram("distillguard_request_seconds", "Request latency by endpoint and status code",
                                         ["endpoint", "code"], buckets=LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("distillguard_decisions_total", "Answers by decision", ["decision"], registry=r)
        self.events = Counter("distillguard_events_ingested_total", "Events durably recorded", registry=r)
        self.ts_clamped = Counter("distillguard_events_ts_clamped_total", "Events whose client ts lay beyond the "
                                  "allowed skew from their arrival, stored clamped (side: ahead/behind)", ["side"],
                                  registry=r)
        self.state_write_failures = Counter("distillguard_state_write_failures_total",
                                            "Writes the state could not take (full or read-only disk)", registry=r)
        self.backlog_accounts = Gauge("distillguard_backlog_accounts", "Dirty accounts awaiting a refresh", registry=r)
        self.backlog_events = Gauge("distillguard_backlog_events", "Recorded events not yet in a score", registry=r)
        self.backlog_over_bound = Gauge("distillguard_backlog_over_bound",
                                        "1 while the backlog exceeds its bound (answers come from older scores)",
                                        registry=r)
        self.refresh_lag = Gauge("distillguard_refresh_lag_seconds", "Age of the oldest unrefreshed change",
                                 registry=r)
        self.refresh_batch_seconds = Gauge("distillguard_refresh_last_batch_seconds", "Time of the last refresh batch",
                                           registry=r)
        self.refreshed_accounts = Counter("distillguard_refreshed_accounts_total", "Account refreshes", registry=r)
        self.refresh_errors = Counter("distillguard_refresh_errors_total", "Failed refresh batches", registry=r)
        self.model_version = Gauge("distillguard_model_version", "Serving model version (0: none loaded)",
                                   registry=r)
        self.model_loaded = Gauge("distillguard_model_loaded", "1 once a model is loaded", registry=r)
        self.model_info = Info("distillguard_model", "The serving model (version \"none\" before one is loaded)",
                               registry=r)
        self.model_info.info({"version": "none"})
        self.worker_restarts = Counter("distillguard_worker_restarts_total", "Times the refresh worker was restarted",
                                       registry=r)
        self._worker_pid: int | None = None  # the worker whose counts the counters below have taken
        self._seen = {"refreshed_accounts": 0, "errors": 0, "restarts": 0}

    def _count(self, counter: Counter, key: str, total: int) -> None:
        """Add to `counter` what a running total (the worker's, or the restarts) gained since last read."""
        if total > self._seen[key]:
            counter.inc(total - self._seen[key])
        self._seen[key] = total

    def update_from_worker(self, status: dict | None, backlog_bound: int, restarts: int) -> None:
        """Mirror the refresh worker's reported status into this process's metrics."""
        self._count(self.worker_restarts, "restarts", restarts)
        if not status:
            self.model_loaded.set(0)
            self.model_info.info({"version": "none"})
            return
        if status.get("pid") != self._worker_pid:  # a new worker counts from 0
            self._worker_pid = status.get("pid")
            self._seen.update(refreshed_accounts=0, errors=0)
        v = status.get("model_version")
        self.model_loaded.set(1 if v else 0)
        self.model_version.set(float(v) if v and str(v).isdigit() else 0)
        self.model_info.info({"version": str(v or "none")})
        self.backlog_accounts.set(status["backlog_accounts"])
        self.backlog_events.set(status["backlog_events"])
        oldest = status.get("oldest_dirty_since")
        self.refresh_lag.set(max(0.0, time.time() - oldest) if oldest else 0.0)
        self.over_bound = status["backlog_accounts"] > backlog_bound
        self.backlog_over_bound.set(int(self.over_bound))
        self.refresh_batch_seconds.set(status["last_batch_seconds"])
        self._count(self.refresh_errors, "errors", status["errors"])
        self._count(self.refreshed_accounts, "refreshed_accounts", status["refreshed_accounts"])

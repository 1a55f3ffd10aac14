"""The FastAPI app: the gateway endpoint, bulk ingestion, account views, health and metrics.

Request handlers only validate, commit and read stored state (async, on the event loop: a SQLite
commit in WAL mode costs well under a millisecond). The model lives in the refresh worker process
(`worker.py`), which loads it, swaps champions and refreshes scores; this process never waits on it.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
import sqlite3
import time
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from distillguard.serving.adapters import envoy_router, litellm_router
from distillguard.serving.auth_guard import FailedAuthLimiter, check_key_strength, client_address
from distillguard.serving.config import ServeSettings
from distillguard.serving.metrics import ServingMetrics
from distillguard.serving.request_body import BodyLimitMiddleware, validate_json
from distillguard.serving.schemas import BatchAck, EventBatchIn, EventIn, Verdict
from distillguard.serving.scoring import PromptTooLong, ScoringCore
from distillguard.serving.state_store import EventLog, ScoreBoard
from distillguard.serving.storage_faults import StateUnavailable, is_storage_fault
from distillguard.serving.supervisor import WorkerSupervisor
from distillguard.serving.ui import UiAuth, mount_ui
from distillguard.serving.verdict_routes import Roles, verdict_api_router
from distillguard.serving.verdicts import VerdictStore

log = logging.getLogger("distillguard.serving")

_ENDPOINT_LABELS = {"/v1/check": "check", "/v1/events:batch": "events_batch", "/healthz": "healthz",
                    "/readyz": "readyz", "/metrics": "metrics", "/beta/litellm_basic_guardrail_api": "litellm",
                    "/admin/reload": "admin_reload"}


def _sizes(name: str, db) -> dict[str, int | None]:
    """A state database's size on disk for /readyz: the data and, apart, its write-ahead log."""
    try:
        data, wal = db.size_bytes()
    except OSError:
        data, wal = None, None
    return {f"{name}_bytes": data, f"{name}_wal_bytes": wal}


def _endpoint(path: str) -> str:
    if path in _ENDPOINT_LABELS:
        return _ENDPOINT_LABELS[path]
    if path.startswith("/v1/accounts/"):
        return "account"
    if path.startswith("/envoy/authz"):
        return "envoy"
    return "other"


class _LatencyMiddleware:
    """Pure ASGI timing (no per-request task or body buffering, unlike BaseHTTPMiddleware)."""

    def __init__(self, app, metrics: ServingMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        code = "500"  # unless a response starts

        async def send_and_note(message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.request_latency.labels(_endpoint(scope["path"]), code).observe(time.perf_counter() - t0)


def _presents_key(request: Request) -> bool:
    """Whether the request carries any credential (valid or not) in a header `require_key` reads."""
    h = request.headers
    return bool(h.get("authorization") or h.get("x-api-key") or h.get("x-distillguard-api-key"))


def _auth_dependency(settings: ServeSettings, limiter: FailedAuthLimiter):
    keys = [k.encode() for k in settings.api_keys]

    def valid(candidate: str | None) -> bool:
        if not candidate:
            return False
        c = candidate.encode()
        return any(hmac.compare_digest(c, k) for k in keys)  # no early exit on a near match

    async def require_key(request: Request) -> None:
        if not settings.auth_enabled:
            return
        h = request.headers
        auth = h.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        offered = (bearer, h.get("x-api-key"), h.get("x-distillguard-api-key"))
        if any(offered):
            limiter.refuse_if_locked(request)  # 429 before any comparison (`auth_guard.py`)
        # LiteLLM sends its api_key as x-api-key; Envoy can add x-distillguard-api-key
        if not any(valid(k) for k in offered):
            if any(offered):
                limiter.failed(client_address(request))
            raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})

    return require_key


def create_app(settings: ServeSettings, *, log_level: str = "INFO") -> FastAPI:
    check_key_strength(settings.api_keys)  # WeakKeyError: one line naming the setting, never the key
    limiter = FailedAuthLimiter(settings.auth_max_failures, settings.auth_failure_window_s)
    ui_auth = UiAuth(settings, limiter)  # one /ui session registry for the pages and the verdict routes
    metrics = ServingMetrics()
    # checkpoints (an fsync) happen in the worker, never inside a request
    events = EventLog(settings.state_path, synchronous=settings.sqlite_synchronous, autocheckpoint=False)
    board = ScoreBoard(settings.state_path, synchronous=settings.sqlite_synchronous, autocheckpoint=False)
    worker = WorkerSupervisor(settings, events, board, log_level=log_level)
    verdicts = VerdictStore(settings.state_path, synchronous=settings.sqlite_synchronous)
    core = ScoringCore(events, board, worker, settings, metrics, verdicts)

    def observe_worker() -> None:
        worker.ensure_running()
        metrics.update_from_worker(worker.status().raw, settings.backlog_bound_accounts, worker.restarts)

    async def watch_worker() -> None:
        while True:
            try:
                observe_worker()
            except Exception:  # metrics must not take serving down
                log.exception("reading the refresh worker's status failed")
            await asyncio.sleep(0.5)

    retention = {"deleted_events": 0, "last_run": None}

    async def enforce_retention() -> None:
        # events received longer ago than the retention leave the log, a small chunk per transaction so
        # that a request never waits long for the write lock
        while True:
            try:
                before = time.time() - settings.retention_days * 86_400
                while (n := events.delete_received_before(before, limit=2_000)) > 0:
                    retention["deleted_events"] += n
                    await asyncio.sleep(0.05)
                retention["last_run"] = time.time()
            except Exception:
                log.exception("retention failed")
            await asyncio.sleep(settings.retention_check_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker.start()
        app.state.ui_pages.start()  # the analyst pages' process warms up while the gateway serves
        watcher = asyncio.create_task(watch_worker())
        retainer = asyncio.create_task(enforce_retention())
        gc.freeze()  # startup objects (FastAPI, pydantic) stay out of every later collection
        try:
            yield
        finally:
            watcher.cancel()
            retainer.cancel()
            worker.stop()

    app = FastAPI(title="distillguard", lifespan=lifespan)
    app.state.core, app.state.worker, app.state.verdicts = core, worker, verdicts
    app.add_middleware(_LatencyMiddleware, metrics=metrics)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)  # 413 before parsing (request_body.py)

    @app.exception_handler(StateUnavailable)
    async def state_unavailable(request: Request, exc: StateUnavailable) -> JSONResponse:
        # nothing was stored, so nothing is acknowledged: the sender retries (the gateway paths never get here)
        return JSONResponse({"detail": exc.reason}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(sqlite3.Error)
    async def state_error(request: Request, exc: sqlite3.Error) -> JSONResponse:
        if not is_storage_fault(exc):
            raise exc
        return JSONResponse({"detail": core.health.failed(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(PromptTooLong)
    async def too_long(request: Request, exc: PromptTooLong) -> JSONResponse:
        return JSONResponse({"detail": [{"type": "string_too_long", "loc": ["body", *exc.field],
                                         "msg": str(exc), "ctx": {"max_length": exc.limit}}]}, status_code=422)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    require_key = _auth_dependency(settings, limiter)
    secured = APIRouter(dependencies=[Depends(require_key)])

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        st = worker.status()
        raw = st.raw or {}
        storage_error = core.health.current()  # a probe write: a full or read-only state turns readiness red
        fault = storage_error or worker.down_reason()
        try:
            logged = events.max_id()
        except (sqlite3.Error, OSError):
            logged = None
        body = {"ready": st.model_version is not None and not fault, "model_version": st.model_version,
                "error": fault or raw.get("model_error"),
                "refresh": {k: raw.get(k) for k in ("backlog_accounts", "backlog_events", "population_accounts",
                                                    "population_built_at", "sweeps_completed", "refreshed_accounts",
                                                    "errors", "batches", "last_batch_seconds", "busy_seconds",
                                                    "swept_accounts")} | {"status_at": raw.get("at")},
                "storage": {**_sizes("events", events), "events_logged": logged, **_sizes("scores", board),
                            "retention_days": settings.retention_days, **retention, "error": storage_error,
                            "write_failures": core.health.failures},
                "worker": {"restarts": worker.restarts, "last_exit": worker.last_exit,
                           "restart_delay_s": worker.restart_delay_s},
                "pids": {"server": os.getpid(), "worker": raw.get("pid")}}
        if settings.auth_enabled and not _presents_key(request):
            body = {"ready": body["ready"]}  # an orchestrator's probe, without a key: nothing else is revealed
        else:
            await require_key(request)  # a wrong key is 401, not the short answer
        return JSONResponse(body, status_code=200 if st.model_version is not None and not fault else 503)


    # The hot path skips FastAPI's generic body decoding and response encoding (jsonable_encoder
    # cost more than the SQLite commit); the 422 body has FastAPI's shape.
    @app.post("/v1/check", response_model=Verdict, openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": EventIn.model_json_schema()}}, "required": True}})
    async def check(request: Request) -> Response:
        await require_key(request)
        event = validate_json(EventIn, await request.body())  # 422 naming the field (request_body.py)
        return Response(core.check(event).model_dump_json(), media_type="application/json")

    # the body is read by the handler, after the key check (a declared body would be parsed first)
    @secured.post("/v1/events:batch", response_model=BatchAck, openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": EventBatchIn.model_json_schema()}}, "required": True}})
    async def events_batch(request: Request) -> BatchAck:
        batch = validate_json(EventBatchIn, await request.body())
        if len(batch.events) > settings.max_batch_events:
            raise HTTPException(422, [{"type": "too_long", "loc": ["body", "events"],
                                       "msg": f"at most {settings.max_batch_events} events per batch"}])
        # on the event loop: this process has one writer connection, so no request waits on a lock
        core.record(batch.events, loc=("events",))
        return BatchAck(accepted=len(batch.events), accounts=len({e.account_id for e in batch.events}))

    @secured.get("/v1/accounts/{account_id:path}")  # an id may hold "/" (sent as %2F)
    async def account(account_id: str) -> dict:
        logged = events.account(account_id)
        if logged is None:
            raise HTTPException(404, f"unknown account {account_id}")
        scored = board.account(account_id) or {"dirty": True, "refreshed_through": 0}
        row = {"account_id": account_id, **logged, **scored}
        # dirty until a refresh has read the account's newest event (the worker may not have seen it yet)
        row["dirty"] = bool(scored["dirty"] or logged["last_event_id"] > scored["refreshed_through"])
        if row.get("last_refresh"):
            row["staleness_s"] = round(time.time() - row["last_refresh"], 3)
        row["analyst_verdict"] = (a.as_dict() if (a := verdicts.active(account_id)) else None)
        return row

    async def metrics_endpoint() -> Response:
        observe_worker()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if settings.metrics_access != "off":  # "open": a scraper needs no key
        (app if settings.metrics_access == "open" else secured).get("/metrics")(metrics_endpoint)

    @secured.post("/admin/reload")
    async def reload() -> dict:
        try:
            st = await worker.reload()
        except TimeoutError as exc:
            raise HTTPException(503, str(exc)) from None
        if st.get("model_version") is None:
            raise HTTPException(503, f"no model could be loaded: {st.get('model_error')}")
        return {"model_version": st["model_version"]}

    secured.include_router(verdict_api_router(Roles(settings, ui_auth)))  # 401 above, 403 within
    secured.include_router(litellm_router(core))
    secured.include_router(envoy_router(core))
    app.include_router(secured)
    mount_ui(app, settings, ui_auth)  # the analyst pages under /ui (their own login; rendered in a process of their own)
    return app

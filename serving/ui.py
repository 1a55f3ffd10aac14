"""The analyst browser under `/ui`: server-rendered pages over a workbench snapshot, read-only but
for the analyst verdict forms (`verdict_routes.py`).

The pages are rendered in a page process of their own (`ui_pages.py`, started on the first page
request, at a lower CPU priority, and restarted if it dies): a page can take a few hundred
milliseconds of Python, and run in this process, even on a thread-pool thread, that time comes out
of `/v1/check`'s latency through the GIL (p99 8 ms -> 80-150 ms with analysts browsing). The
handlers here only check the key, validate the query and wait for the page on a pipe, so neither
the event loop nor the GIL waits on one. Pages are rendered one at a time.

Auth: the same API keys as the rest of the API, as a bearer header (or `x-api-key`), or as an
HttpOnly, SameSite=Strict session cookie issued by the `/ui/login` form. The cookie holds an
expiry, a nonce and an HMAC keyed by the API key that logged in and a secret of this server
process, never the key itself: a restart ends every session, and `/ui/logout` revokes the session's
nonce, so a copied cookie stops working at once. Wrong keys count against the client's address
(`auth_guard.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import select
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from distillguard.serving import ui_pages
from distillguard.serving.auth_guard import FailedAuthLimiter, client_address
from distillguard.serving.config import ServeSettings

log = logging.getLogger("distillguard.serving.ui")

COOKIE = "distillguard_ui"
PAGE_TIMEOUT_S = 120.0  # the first search loads the embedder (seconds); nothing else comes close

HEADERS = {
    # everything the pages load is served by this app; SVG is inline, no script runs
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # pages may carry user text
}


# -- auth -------------------------------------------------------------------------------------------

class UiAuth:
    """Keys and sessions of the pages. A session is signed with the key that logged in and a secret
    of this server process, so a restart ends every session; logging out revokes the session's nonce
    (kept until the session would have expired), so a copy of the cookie stops working at once."""

    def __init__(self, settings: ServeSettings, limiter: FailedAuthLimiter | None = None) -> None:
        self.enabled = settings.auth_enabled
        self._keys = [k.encode() for k in settings.api_keys]
        self.lifetime_s = int(settings.ui_session_hours * 3600)
        self.limiter = limiter or FailedAuthLimiter(settings.auth_max_failures, settings.auth_failure_window_s)
        self._process_secret = secrets.token_bytes(32)
        self._revoked: dict[str, float] = {}  # nonce -> the session's expiry

    def key_match(self, candidate: str | None) -> bytes | None:
        """The configured key equal to `candidate`, compared in constant time against every key."""
        if not candidate:
            return None
        c = candidate.encode()
        found = None
        for k in self._keys:  # no early exit on a match
            if hmac.compare_digest(c, k):
                found = k
        return found

    def _sign(self, key: bytes, payload: str) -> str:
        message = b"distillguard-ui-session|" + self._process_secret + b"|" + payload.encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def issue(self, key: bytes) -> str:
        payload = f"{int(time.time()) + self.lifetime_s}.{secrets.token_hex(12)}"
        return f"{payload}.{self._sign(key, payload)}"

    def session_ok(self, token: str | None) -> bool:
        return self.session_key(token) is not None

    def session_key(self, token: str | None) -> bytes | None:
        """The key that logged in the session `token`, when the token is valid and unexpired."""
        if not token or token.count(".") != 2:
            return None
        expiry, nonce, sig = token.split(".")
        if not expiry.isdigit() or int(expiry) < time.time() or nonce in self._revoked:
            return None
        found = None
        for k in self._keys:
            if hmac.compare_digest(sig.encode(), self._sign(k, f"{expiry}.{nonce}").encode()):
                found = k
        return found

    def revoke(self, token: str | None) -> bool:
        """End the session `token` (logout); False when it was no valid session."""
        if self.session_key(token) is None:
            return False
        expiry, nonce, _ = token.split(".")
        now = time.time()
        self._revoked = {n: t for n, t in self._revoked.items() if t >= now}  # expired ones need no entry
        self._revoked[nonce] = float(expiry)
        return True

    def check_key(self, request: Request, offered: str) -> bytes | None:
        """The configured key equal to `offered`; a locked-out address gets 429 before any comparison,
        and a wrong key counts against its address (`auth_guard.py`)."""
        self.limiter.refuse_if_locked(request)
        key = self.key_match(offered)
        if key is None:
            self.limiter.failed(client_address(request))
        return key

    @staticmethod
    def header_key(request: Request) -> str | None:
        h = request.headers
        auth = h.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        return bearer or h.get("x-api-key") or h.get("x-distillguard-api-key")

    def require(self, request: Request) -> None:
        """Pages: a valid key header or session cookie; a browser without either goes to the login
        form, anything else (or a wrong key) gets 401."""
        if not self.enabled:
            return
        offered = self.header_key(request)
        if offered is not None:
            if self.check_key(request, offered) is None:
                raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
            return
        if self.session_ok(request.cookies.get(COOKIE)):
            return
        if "text/html" in request.headers.get("accept", ""):
            # the path as sent (an account id's %2F stays encoded)
            target = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1").split("?")[0] + (
                f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(303, "log in first", headers={"Location": f"/ui/login?next={quote(target, safe='')}"})
        raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})


def _safe_next(target: str | None) -> str:
    """Only redirect to a page of this UI (no open redirect to another host)."""
    if target and target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


# -- the page process ---------------------------------------------------------------------------------

class PageProcess:
    """The page process (`python -m distillguard.serving.ui_pages`): started on the first page,
    started again when it dies or hangs. Pages go to it one at a time over its stdin and come back
    on its stdout; the waiting happens in a thread-pool thread, blocked on a pipe (no GIL held)."""

    def __init__(self, cfg: ui_pages.UiConfig) -> None:
        self.cfg = cfg
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._lock = threading.Lock()

    def _ensure(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                log.warning("the /ui page process exited with %s; starting a new one", self.proc.returncode)
                self.restarts += 1
            env = {**os.environ, ui_pages.CONFIG_ENV: json.dumps(asdict(self.cfg))}
            env.pop("DISTILLGUARD_API_KEYS", None)  # it needs no keys
            env.pop("DISTILLGUARD_ANALYST_KEYS", None)
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = "1"  # one core's worth of threads; the other cores stay with the server
            self.proc = subprocess.Popen([sys.executable, "-m", "distillguard.serving.ui_pages", str(os.getpid())],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        return self.proc

    def start(self) -> None:
        """Start the process now (it opens the snapshot and loads the embedder in the background),
        so that the first page does not wait for them."""
        with self._lock:
            self._ensure()

    def _kill(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def exchange(self, route: str, params: dict) -> dict | None:
        """The page's answer, or None when the process died (twice) or took too long."""
        request = json.dumps({"route": route, "params": params}).encode() + b"\n"
        with self._lock:
            for _ in range(2):
                proc = self._ensure()
                try:
                    proc.stdin.write(request)
                    proc.stdin.flush()
                    ready, _, _ = select.select([proc.stdout], [], [], PAGE_TIMEOUT_S)
                    line = proc.stdout.readline() if ready else None
                except OSError:  # a broken pipe: it died
                    line = b""
                if line:
                    return json.loads(line)
                self._kill(proc)
                if line is None:
                    log.warning("a /ui page (%s) took over %.0f s; restarted the page process", route, PAGE_TIMEOUT_S)
                    return None
        return None

    async def page(self, route: str, **params) -> Response:
        answer = await run_in_threadpool(self.exchange, route, params)
        if answer is None:
            return HTMLResponse("<h1>This page failed</h1><p>See the server's log.</p>", 503, headers=HEADERS)
        return HTMLResponse(answer["body"], answer["status"],
                            headers={**HEADERS, "Server-Timing": f"render;dur={answer['ms']}"})

    def close(self) -> None:
        with self._lock:
            if self.proc is not None:
                self.proc.stdin.close()  # it exits at the end of its input
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._kill(self.proc)


def _int_or_none(v: str | None) -> int | None:
    if v is None or not v.strip():
        return None
    try:
        return int(v)
    except ValueError:
        raise HTTPException(422, f"not an integer: {v!r}") from None


async def _form(request: Request, max_fields: int) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, max_num_fields=max_fields).items()}


# -- routes ---------------------------------------------------------------------------------------------

def ui_router(settings: ServeSettings, pages: PageProcess, auth: UiAuth | None = None) -> APIRouter:
    from distillguard.serving.verdict_routes import Roles, verdict_form_router

    auth = auth or UiAuth(settings)
    roles = Roles(settings, auth)  # who may set analyst verdicts from the pages
    login_page = ui_pages.environment().get_template("login.html")
    router = APIRouter(include_in_schema=False)
    secured = APIRouter(dependencies=[Depends(auth.require)], include_in_schema=False)

    def login_html(target: str, error: str | None, status: int = 200) -> HTMLResponse:
        body = login_page.render(next=target, error=error, info=None, page="login", redact=settings.ui_redact_prompts,
                                 auth=auth.enabled)
        return HTMLResponse(body, status, headers=HEADERS)

    @router.get("/login")
    async def login_form(next: str | None = None) -> Response:
        if not auth.enabled:
            return RedirectResponse(_safe_next(next), 303)
        return login_html(_safe_next(next), None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request, 8)
        target = _safe_next(form.get("next"))
        if not auth.enabled:
            return RedirectResponse(target, 303)
        try:
            key = auth.check_key(request, form.get("key", "").strip())
        except HTTPException as exc:  # this address is locked out after too many wrong keys
            resp = login_html(target, "Too many wrong keys from this address; try again later.", exc.status_code)
            resp.headers.update(exc.headers or {})
            return resp
        if key is None:
            await asyncio.sleep(0.3)  # slows guessing; the key is never logged
            return login_html(target, "That key is not valid.", 401)
        resp = RedirectResponse(target, 303)
        resp.set_cookie(COOKIE, auth.issue(key), max_age=auth.lifetime_s, path="/ui", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
        return resp

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        auth.revoke(request.cookies.get(COOKIE))  # a copy of the cookie is refused from now on
        resp = RedirectResponse("/ui/login", 303)
        resp.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
        return resp

    @secured.get("/")
    async def ranked(decision: str | None = None, component: str | None = None, model_version: str | None = None,
                     page: int = 1) -> Response:
        return await pages.page("ranked", decision=decision if decision in ui_pages.DECISIONS else None,
                                component=_int_or_none(component), model_version=model_version or None,
                                page=max(1, page))

    @secured.get("/accounts/{account_id:path}")  # an id may hold "/" (links send it as %2F)
    async def account(account_id: str, request: Request) -> Response:
        return await pages.page("account", account_id=account_id, **roles.page_params(request))

    @secured.get("/campaigns")
    async def campaigns(min_size: int = 2) -> Response:
        return await pages.page("campaigns", min_size=min_size)

    @secured.get("/campaigns/{component}")
    async def campaign(component: int, request: Request, selected: str | None = None) -> Response:
        return await pages.page("campaign", component=component, selected=selected, **roles.page_params(request))

    @secured.get("/clusters/{cluster}")
    async def cluster(cluster: int) -> Response:
        return await pages.page("cluster", cluster=cluster)

    def query(q: str | None) -> str:
        q = (q or "").strip()
        if len(q) > settings.max_prompt_chars:
            raise HTTPException(422, f"at most {settings.max_prompt_chars} characters")
        return q

    @secured.get("/search")
    async def search_get(q: str | None = None) -> Response:
        return await pages.page("search", q=query(q))

    @secured.post("/search")
    async def search_post(request: Request) -> Response:
        # the pasted prompt travels in the body (not the URL, the history or a log)
        return await pages.page("search", q=query((await _form(request, 4)).get("q")))

    @secured.get("/map")
    async def embedding_map(account: str | None = None, component: str | None = None) -> Response:
        return await pages.page("map", account=account or None, component=_int_or_none(component))

    secured.include_router(verdict_form_router(roles))
    router.include_router(secured)
    return router


def mount_ui(app: FastAPI, settings: ServeSettings, auth: UiAuth | None = None) -> None:
    """The pages under /ui and their stylesheet under /ui/static (public: it holds no data)."""
    cfg = ui_pages.UiConfig(workbench_dir=str(settings.workbench_dir), state_path=str(settings.state_path),
                            store=str(settings.store), redact=settings.ui_redact_prompts, auth=settings.auth_enabled,
                            redact_logs=settings.logs_redacted)
    pages = PageProcess(cfg)
    app.state.ui_pages = pages
    app.mount("/ui/static", StaticFiles(directory=ui_pages.HERE / "static"), name="ui-static")
    app.include_router(ui_router(settings, pages, auth), prefix="/ui")

    @app.get("/ui", include_in_schema=False)
    async def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/", 307)

"""Who may set analyst verdicts, and the routes that set, undo and list them.

Roles: every configured key passes the API's key check; only the keys in `analyst_keys` may set or
undo a verdict (a gateway key gets 403). A verdict records the analyst key's name, never the key.

- API: `POST /v1/accounts/{id}/verdict` (`VerdictIn`), `DELETE /v1/accounts/{id}/verdict` (an undo
  entry: history is kept), `GET /v1/verdicts` (those in force, or `?history=true` every entry).
- `/ui` forms: the account page and the campaign page post here. A browser proves the post comes
  from our page with a CSRF token bound to its session (an HMAC, keyed by the key that logged in, of
  the session cookie, which is HttpOnly and SameSite=Strict); a caller sending its key in a header
  needs no token (no ambient credential to abuse). Each answer is a redirect back to the page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from distillguard.serving.config import ServeSettings
from distillguard.serving.request_body import validate_json
from distillguard.serving.ui import COOKIE, UiAuth
from distillguard.serving.verdicts import VerdictKind, VerdictStore

CAMPAIGN_MAX = 128
NOTE_MAX = 2_000
GROUP_MAX = 5_000  # accounts in one campaign-page post
UNAUTHENTICATED = "unauthenticated"  # `by` when the server runs without keys (local experiments only)


class VerdictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: VerdictKind
    campaign: str | None = Field(default=None, max_length=CAMPAIGN_MAX, validate_default=True)
    note: str | None = Field(default=None, max_length=NOTE_MAX)

    @field_validator("campaign")
    @classmethod
    def _campaign(cls, v: str | None, info: ValidationInfo) -> str | None:
        v = v.strip() if v else None
        if not v and info.data.get("verdict") == "harvesting":
            raise ValueError("a harvesting verdict needs the campaign's name")
        return v


@dataclass(frozen=True)
class Caller:
    analyst: str | None  # the analyst key's name; None: not allowed to set verdicts
    header_key: bool  # authenticated by a key header (else by the /ui session cookie)


class Roles:
    def __init__(self, settings: ServeSettings, auth: UiAuth) -> None:
        self.auth, self.enabled = auth, settings.auth_enabled
        self._names = {k.encode(): name for name, k in settings.analyst_keys.items()}
        self._secret = secrets.token_bytes(32)  # CSRF tokens without auth (local experiments only)

    def caller(self, request: Request) -> Caller:
        """Who calls (the key check already passed)."""
        if not self.enabled:
            return Caller(UNAUTHENTICATED, header_key=False)
        offered = self.auth.header_key(request)
        if offered is not None:
            key = self.auth.key_match(offered)
            return Caller(self._names.get(key) if key else None, header_key=True)
        key = self.auth.session_key(request.cookies.get(COOKIE))
        return Caller(self._names.get(key) if key else None, header_key=False)

    def csrf_token(self, request: Request) -> str:
        """The token our pages put in their forms: bound to this browser's session."""
        if not self.enabled:
            return hmac.new(self._secret, b"csrf", hashlib.sha256).hexdigest()
        token = request.cookies.get(COOKIE) or ""
        key = self.auth.session_key(token)
        if key is None:
            return ""
        return hmac.new(key, b"distillguard-ui-csrf|" + token.encode(), hashlib.sha256).hexdigest()

    def require_analyst(self, request: Request) -> str:
        caller = self.caller(request)
        if caller.analyst is None:
            raise HTTPException(403, "this key cannot set verdicts: an analyst key is needed (`analyst_keys`)")
        return caller.analyst

    def page_params(self, request: Request) -> dict:
        """What a page needs to offer the verdict forms: the analyst's name (None: show no forms)
        and the CSRF token of this session."""
        caller = self.caller(request)
        return {"judge": {"analyst": caller.analyst,
                          "csrf": "" if caller.header_key or caller.analyst is None else self.csrf_token(request)}}


def _store(request: Request) -> VerdictStore:
    return request.app.state.verdicts


@contextmanager
def _stored() -> Iterator[None]:
    """A verdict the state cannot take (full or read-only disk) is a 503 saying so, never a 500."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise HTTPException(503, f"the verdict was not stored: {type(exc).__name__}: {exc}") from None


# -- the API ----------------------------------------------------------------------------------------------

def verdict_api_router(roles: Roles) -> APIRouter:
    """Mounted behind the API's key check (401 comes from there); roles are checked here (403)."""
    router = APIRouter()

    # the body is read in the handler, after the key and role checks (a declared body is parsed first)
    @router.post("/v1/accounts/{account_id:path}/verdict", status_code=201, openapi_extra={"requestBody": {
        "content": {"application/json": {"schema": VerdictIn.model_json_schema()}}, "required": True}})
    async def set_verdict(account_id: str, request: Request) -> dict:
        by = roles.require_analyst(request)
        _check_account(account_id)
        body = validate_json(VerdictIn, await request.body())  # 422 naming the field
        with _stored():
            entry = _store(request).set_many([account_id], body.verdict, body.campaign, body.note, by=by, via="api")[0]
        return entry.as_dict()

    @router.delete("/v1/accounts/{account_id:path}/verdict")
    async def undo_verdict(account_id: str, request: Request, note: str | None = None) -> dict:
        by = roles.require_analyst(request)
        with _stored():
            undone = _store(request).undo_many([account_id], _note(note), by=by, via="api")
        if not undone:
            raise HTTPException(404, f"account {account_id} has no verdict in force")
        return undone[0].as_dict()

    @router.get("/v1/verdicts")
    async def list_verdicts(request: Request, history: bool = False, account_id: str | None = None) -> dict:
        store = _store(request)
        if history:
            entries = store.history(account_id)
        else:
            entries = [e for e in store.all_active() if account_id is None or e.account_id == account_id]
        return {"verdicts": [e.as_dict() for e in entries], "count": len(entries)}

    return router


def _check_account(account_id: str) -> None:
    if not account_id or len(account_id) > 256:
        raise HTTPException(422, [{"type": "string_length", "loc": ["path", "account_id"],
                                   "msg": "account_id must be 1 to 256 characters"}])


def _note(note: str | None) -> str | None:
    note = (note or "").strip() or None
    if note is not None and len(note) > NOTE_MAX:
        raise HTTPException(422, [{"type": "string_too_long", "loc": ["body", "note"],
                                   "msg": f"at most {NOTE_MAX} characters"}])
    return note


# -- the /ui forms ------------------------------------------------------------------------------------------

async def _form_lists(request: Request) -> dict[str, list[str]]:
    body = (await request.body()).decode("utf-8", "replace")
    try:
        return parse_qs(body, max_num_fields=GROUP_MAX + 8)
    except ValueError:
        raise HTTPException(413, f"at most {GROUP_MAX} accounts in one post") from None


def _apply_form(request: Request, roles: Roles, form: dict[str, list[str]], accounts: list[str]) -> None:
    by = roles.require_analyst(request)
    if not roles.caller(request).header_key:  # a browser: the post must come from our page
        token = (form.get("csrf") or [""])[0]
        if not hmac.compare_digest(token.encode(), roles.csrf_token(request).encode()):
            raise HTTPException(403, "this form is stale or did not come from this site: reload the page")
    action = (form.get("action") or [""])[0]
    note = _note((form.get("note") or [""])[0])
    if not accounts:
        raise HTTPException(422, [{"type": "missing", "loc": ["body", "account"], "msg": "no account"}])
    for a in accounts:
        _check_account(a)
    store = _store(request)
    if action == "undo":
        with _stored():
            store.undo_many(accounts, note, by=by, via="ui")
        return
    if action not in ("harvesting", "organic"):
        raise HTTPException(422, [{"type": "literal_error", "loc": ["body", "action"],
                                   "msg": "action must be harvesting, organic or undo"}])
    campaign = (form.get("campaign") or [""])[0].strip() or None
    if campaign is not None and len(campaign) > CAMPAIGN_MAX:
        raise HTTPException(422, [{"type": "string_too_long", "loc": ["body", "campaign"],
                                   "msg": f"at most {CAMPAIGN_MAX} characters"}])
    if action == "harvesting" and campaign is None:
        raise HTTPException(422, [{"type": "missing", "loc": ["body", "campaign"],
                                   "msg": "a harvesting verdict needs the campaign's name"}])
    with _stored():
        store.set_many(accounts, action, campaign, note, by=by, via="ui")


def verdict_form_router(roles: Roles) -> APIRouter:
    """Mounted under /ui behind the pages' auth (key header or session cookie)."""
    router = APIRouter(include_in_schema=False)

    @router.post("/accounts/{account_id:path}/verdict")
    async def account_form(account_id: str, request: Request) -> Response:
        form = await _form_lists(request)
        _apply_form(request, roles, form, [account_id])
        return RedirectResponse(f"/ui/accounts/{quote(account_id, safe='')}#verdict", 303)

    @router.post("/campaigns/{component}/verdict")
    async def campaign_form(component: int, request: Request) -> Response:
        form = await _form_lists(request)
        _apply_form(request, roles, form, list(dict.fromkeys(form.get("account", []))))
        return RedirectResponse(f"/ui/campaigns/{component}#verdict", 303)

    return router

"""Gateway adapters: a real gateway needs configuration only. Both call the same scoring core.

- LiteLLM Generic Guardrail API (`guardrail: generic_guardrail_api`, `api_base: <this server>`, our
  key as `headers: {Authorization: "Bearer <key>"}` or as `api_key`, which LiteLLM sends as
  `x-api-key`): LiteLLM POSTs `/beta/litellm_basic_guardrail_api` with `texts`, `structured_messages`,
  `input_type` and `request_data` (the caller's `user_api_key_*` ids; `user_api_key_end_user_id` is
  the request's OpenAI `user` field); we answer `{"action": "BLOCKED"|"NONE"}`, and LiteLLM refuses a
  BLOCKED request with a 400 carrying our `blocked_reason`. Checked against litellm 1.103.10 (the
  version tests/test_litellm_gateway.py runs).
- Envoy ext_authz, HTTP service (`path_prefix: /envoy/authz`, `with_request_body` for the prompt,
  our key added with `headers_to_add: x-distillguard-api-key`): 200 allows, 403 with the reason
  denies; `x-distillguard-score` and `x-distillguard-decision` carry the verdict either way.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from distillguard.serving.schemas import EventIn
from distillguard.serving.scoring import ScoringCore


# What LiteLLM puts in `request_data` for a caller on the master key: the proxy admin's user id and
# the master key's alias instead of a hash. They name no account; taken as one, all such traffic
# would be scored (and blocked) together.
LITELLM_PLACEHOLDER_IDS = frozenset({"default_user_id", "litellm_proxy_master_key"})


class LiteLLMGuardrailRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_type: str = "request"
    texts: list[str] | None = None
    structured_messages: list[dict[str, Any]] | None = None
    request_data: dict[str, Any] = {}
    model: str | None = None
    litellm_call_id: str | None = None
    litellm_trace_id: str | None = None


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        parts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n".join(parts) if parts else None
    return None


def last_user_prompt(messages: list[dict[str, Any]] | None, texts: list[str] | None) -> str | None:
    for m in reversed(messages or []):
        if m.get("role") == "user" and (text := _content_text(m.get("content"))) is not None:
            return text
    return texts[-1] if texts else None


def conversation_key(messages: list[dict[str, Any]] | None) -> str | None:
    """A chat's id from its opening (the system messages and the first user message): an OpenAI-style
    client resends the whole history every turn, so all turns of one conversation share it, and a
    single-turn request is a conversation of its own. (LiteLLM's `litellm_trace_id` is a fresh uuid
    per request unless the client sets one, so it would make every account look single-turn.)"""
    opening = []
    for m in messages or []:
        role = m.get("role")
        if role in ("system", "developer", "user"):
            opening.append([role, _content_text(m.get("content"))])
        if role == "user":
            digest = hashlib.sha256(json.dumps(opening, ensure_ascii=False).encode("utf-8", "surrogatepass"))
            return "chat:" + digest.hexdigest()[:24]
    return None


def litellm_account(request_data: dict, fields: tuple[str, ...]) -> str | None:
    """The account a LiteLLM request belongs to: the first of `fields` present in `request_data`
    that is not one of LiteLLM's placeholders (the master key's), or None."""
    return next((str(v) for f in fields
                 if (v := request_data.get(f)) and str(v) not in LITELLM_PLACEHOLDER_IDS), None)


def litellm_router(core: ScoringCore) -> APIRouter:
    router = APIRouter()
    s = core.settings

    @router.post("/beta/litellm_basic_guardrail_api")
    async def litellm_guardrail(body: LiteLLMGuardrailRequest) -> dict:
        if body.input_type != "request":
            return {"action": "NONE"}
        account = litellm_account(body.request_data, s.litellm_identity_fields)
        prompt = last_user_prompt(body.structured_messages, body.texts)
        if account is None or prompt is None or not prompt.strip():
            return {"action": "NONE"}
        # a caller's long prompt or `user` must not turn into an error LiteLLM refuses the request on
        conversation = conversation_key(body.structured_messages) or body.litellm_trace_id
        v = core.check(EventIn(account_id=account[:256], prompt=prompt[: s.max_prompt_chars],
                               model=body.model[:512] if body.model else None, conversation_id=conversation))
        blocked = v.decision == "block" or (v.decision == "review" and s.litellm_block_on_review)
        if blocked:
            return {"action": "BLOCKED", "blocked_reason": f"distillguard: account {v.decision} "
                    f"(score {v.score:.3f}, model v{v.model_version})" if v.score is not None
                    else f"distillguard: {v.decision}"}
        return {"action": "NONE"}

    return router


def envoy_router(core: ScoringCore) -> APIRouter:
    router = APIRouter()
    header = core.settings.envoy_account_header

    @router.api_route("/envoy/authz/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    async def envoy_authz(path: str, request: Request) -> Response:
        account = request.headers.get(header)
        if not account:
            return JSONResponse({"reason": f"missing {header} header"}, status_code=403)
        prompt = ""
        raw = await request.body()
        if raw:
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = None
            if isinstance(payload, dict):
                prompt = last_user_prompt(payload.get("messages"), None) or (
                    payload["prompt"] if isinstance(payload.get("prompt"), str) else "")
        if len(prompt) > core.settings.max_prompt_chars:
            prompt = prompt[: core.settings.max_prompt_chars]
        # a request without a prompt (no body, no user message) records no event: it is answered
        # from the account's stored verdict, never with an invented empty prompt
        v = core.check(EventIn(account_id=account[:256], prompt=prompt)) if prompt.strip() else \
            core.verdict(account[:256])
        headers = {"x-distillguard-decision": v.decision,
                   "x-distillguard-score": "" if v.score is None else f"{v.score:.6f}"}
        if v.decision == "block":
            return JSONResponse({"reason": f"distillguard: account blocked (score {v.score})"}, status_code=403,
                                headers=headers)
        return Response(status_code=200, headers=headers)

    return router

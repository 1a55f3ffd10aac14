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
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from distillguard.serving.request_body import parse_json, validate_json
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

    # the body is read by the handler, after the router's key check (a declared body would be parsed first)
    @router.post("/beta/litellm_basic_guardrail_api", openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": LiteLLMGuardrailRequest.model_json_schema()}}, "required": True}})
    async def litellm_guardrail(request: Request) -> dict:
        body = validate_json(LiteLLMGuardrailRequest, await request.body())  # 422 naming the field
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
            by = "analyst verdict, model " if v.analyst_verdict else ""
            return {"action": "BLOCKED", "blocked_reason": f"distillguard: account {v.decision} "
                    f"({by}score {v.score:.3f}, model v{v.model_version})" if v.score is not None
                    else f"distillguard: {v.decision}" + (" (analyst verdict)" if by else "")}
        return {"action": "NONE"}

    return router


def envoy_prompt(raw: bytes, content_type: str | None, partial: bool = False) -> str | None:
    """The prompt of a request Envoy forwarded with its body, or None. A JSON body (by its content
    type, or without one, by its first character) must be readable: invalid UTF-8 or JSON, a lone
    surrogate, or `messages` that is not a list of objects is a 422 naming the field (Envoy passes
    the refusal to the client). Other bodies (uploads, forms) carry no prompt, nor does a body Envoy
    cut at its `max_request_bytes` (`partial`, from `x-envoy-auth-partial-body`) that no longer parses."""
    if not raw:
        return None
    if content_type is not None and "json" not in content_type.lower():
        return None
    if content_type is None and raw.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        payload = parse_json(raw)
    except RequestValidationError:
        if partial:
            return None
        raise
    if not isinstance(payload, dict):
        return None
    messages = payload.get("messages")
    if messages is not None:
        if not isinstance(messages, list):
            raise RequestValidationError([{"type": "list_type", "loc": ["body", "messages"],
                                           "msg": "messages must be a list of chat messages"}])
        if bad := [i for i, m in enumerate(messages) if not isinstance(m, dict)]:
            raise RequestValidationError([{"type": "dict_type", "loc": ["body", "messages", i],
                                           "msg": "a chat message must be an object"} for i in bad[:20]])
    text = payload.get("prompt")
    return last_user_prompt(messages, None) or (text if isinstance(text, str) else None)


def envoy_router(core: ScoringCore) -> APIRouter:
    router = APIRouter()
    header = core.settings.envoy_account_header

    @router.api_route("/envoy/authz/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    async def envoy_authz(path: str, request: Request) -> Response:
        account = request.headers.get(header)
        if not account:
            return JSONResponse({"reason": f"missing {header} header"}, status_code=403)
        prompt = envoy_prompt(await request.body(), request.headers.get("content-type"),
                              request.headers.get("x-envoy-auth-partial-body", "").lower() == "true") or ""
        if len(prompt) > core.settings.max_prompt_chars:
            prompt = prompt[: core.settings.max_prompt_chars]
        # a request without a prompt (no body, no user message) records no event: it is answered
        # from the account's stored verdict, never with an invented empty prompt
        v = core.check(EventIn(account_id=account[:256], prompt=prompt)) if prompt.strip() else \
            core.verdict(account[:256])
        headers = {"x-distillguard-decision": v.decision,
                   "x-distillguard-score": "" if v.score is None else f"{v.score:.6f}"}
        if v.decision == "block":
            by = "analyst verdict, model " if v.analyst_verdict else ""
            return JSONResponse({"reason": f"distillguard: account blocked ({by}score {v.score})"}, status_code=403,
                                headers=headers)
        return Response(status_code=200, headers=headers)

    return router

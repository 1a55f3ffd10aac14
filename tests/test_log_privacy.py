"""With redaction on, no log line carries prompt text: not a validation error, not a traceback."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
from serving_helpers import Server

MARKER = "ZEBRAQUINCE-7741"


def _hostile_bodies() -> list[tuple[str, bytes, dict]]:
    """Requests that fail inside the server, each carrying the marker prompt where a message could echo it."""
    m = MARKER
    litellm = {"user_api_key_user_id": "u1"}
    return [
        ("/v1/check", f'{{"account_id":"a","prompt":"{m} '.encode() + b"\xff\xfe\"}", {}),
        ("/v1/events:batch", f'{{"events":[{{"account_id":"a","prompt":"{m} '.encode() + b"\xff\"}]}", {}),
        ("/v1/check", json.dumps({"account_id": "a", "prompt": f"{m} \udc80"}).encode(), {}),
        ("/v1/check", json.dumps({"account_id": "a", "prompt": m, "asn": 2**63}).encode(), {}),
        ("/v1/events:batch", json.dumps({"events": [{"account_id": "a", "prompt": m, "asn": 2**64}]}).encode(), {}),
        ("/v1/check", f'{{"account_id":"a","prompt":"{m}","asn":NaN}}'.encode(), {}),
        ("/v1/check", json.dumps({"account_id": "a", "prompt": m, "ts": f"{m} o'clock"}).encode(), {}),
        ("/beta/litellm_basic_guardrail_api", json.dumps({"texts": [f"{m} \ud800"], "request_data": litellm},
                                                         ensure_ascii=True).encode(), {}),
        ("/beta/litellm_basic_guardrail_api", f'{{"texts":["{m} '.encode() + b"\xff\"]}", {}),
        ("/envoy/authz/v1/chat", f'{{"messages":{{"role":"user","content":"{m}"}}}}'.encode(), {"x-account-id": "e"}),
        ("/envoy/authz/v1/chat", f'{{"messages":[{{"role":"user","content":"{m} '.encode() + b"\xff\"}]}",
         {"x-account-id": "e"}),
    ]


@pytest.mark.parametrize("setting", ["ui_redact_prompts", "redact_logs"])
def test_no_log_line_carries_a_prompt_when_redaction_is_on(tmp_path, setting):
    s = Server(tmp_path, log_level="debug", **{setting: True}).start(ready="/healthz")
    try:
        answers = [(path, httpx.post(s.url + path, content=body, timeout=30,  # a connection each
                                     headers={**s.client.headers, "content-type": "application/json", **headers}))
                   for path, body, headers in _hostile_bodies()]
        # a prompt that is accepted goes to the debug log as a digest only
        assert s.client.post("/v1/check", json={"account_id": "ok", "prompt": f"{MARKER} fine"}).status_code == 200
    finally:
        s.stop()
    log = s.log_path.read_bytes()
    assert b"check account=ok prompt=sha256:" in log  # the debug log was on
    assert MARKER.encode() not in log, [line for line in log.splitlines() if MARKER.encode() in line][:3]
    assert [(p, r.status_code) for p, r in answers if r.status_code >= 500] == []


def test_a_logged_exception_keeps_type_and_stack_but_not_its_message():
    """Through the handlers uvicorn configures: the filter is on each of them."""
    import uvicorn
    from distillguard.serving.log_privacy import WITHHELD, withhold_exception_messages
    from distillguard.serving.schemas import EventIn
    from pydantic import ValidationError

    uvicorn.Config(app=lambda *a: None, log_level="info")  # configures uvicorn's handlers, as serve() does
    withhold_exception_messages()
    handler = logging.getLogger("uvicorn").handlers[0]
    out = io.StringIO()
    old_stream = handler.setStream(out)
    try:
        try:
            try:
                EventIn.model_validate({"account_id": "a", "prompt": MARKER, "asn": "not a number " + MARKER})
            except ValidationError as exc:
                raise RuntimeError(f"while checking {MARKER}") from exc
        except RuntimeError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    finally:
        handler.setStream(old_stream)
    text = out.getvalue()
    assert "Exception in ASGI application" in text and "pydantic_core._pydantic_core.ValidationError" in text
    assert "RuntimeError" in text and "test_log_privacy.py" in text and WITHHELD in text
    assert MARKER not in text, text


@pytest.mark.parametrize("settings, redacted", [({}, False), ({"redact_logs": True}, True),
                                                ({"ui_redact_prompts": True}, True)])
def test_ui_redaction_implies_log_redaction(settings, redacted):
    from distillguard.serving.config import ServeSettings

    assert ServeSettings(**settings).logs_redacted is redacted

"""Hostile requests against the real server (uvicorn in a subprocess, no model: it answers by its
fail mode): malformed bodies are 4xx naming the field and keep the connection, bodies are limited
before they are read, account ids with "/" stay reachable, weak keys are refused at start-up,
wrong keys lock their address out, and logging out revokes the /ui cookie."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from distillguard.serving.auth_guard import key_weakness
from serving_helpers import AUTH, KEY, Server, free_port

MAX_BODY = 1_000_000
MAX_FAILURES = 5
GOOD = {"account_id": "limits-good", "prompt": "what is a monad?"}
SECRET = f"secret-prompt-{uuid.uuid4().hex}"  # must never reach the server's log


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("limits"), "limits", max_body_bytes=MAX_BODY,
               auth_max_failures=MAX_FAILURES, auth_failure_window_s=300).start(ready="/healthz")
    yield s
    s.stop()


def _vm(pid: int) -> dict[str, int]:
    """The process's resident memory now and at its peak (kB), from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM")}


def _local_port(response: httpx.Response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


ENVOY = {"x-account-id": "limits-envoy", "content-type": "application/json"}
LITELLM = "/beta/litellm_basic_guardrail_api"
BAD_UTF8 = SECRET.encode() + b" \xff\xfe tail"
BIG_ASN_BATCH = b'{"events":[{"account_id":"a","prompt":"hi","asn":18446744073709551616}]}'

# (route, extra headers, body, the field the error must name)
MALFORMED = {
    "check-asn-2**63": ("/v1/check", {}, b'{"account_id":"a","prompt":"hi","asn":9223372036854775808}', ["asn"]),
    "check-asn-nan": ("/v1/check", {}, b'{"account_id":"a","prompt":"hi","asn":NaN}', ["asn"]),
    "check-bad-utf8": ("/v1/check", {}, b'{"account_id":"a","prompt":"' + BAD_UTF8 + b'"}', ["prompt"]),
    "check-surrogate": ("/v1/check", {}, b'{"account_id":"a","prompt":"hi \\ud800"}', ["prompt"]),
    "batch-asn-2**64": ("/v1/events:batch", {}, BIG_ASN_BATCH, ["events", 0, "asn"]),
    "batch-asn-nan": ("/v1/events:batch", {}, b'{"events":[{"account_id":"a","prompt":"hi","asn":NaN}]}',
                      ["events", 0, "asn"]),
    "batch-bad-utf8": ("/v1/events:batch", {}, b'{"events":[{"account_id":"a","prompt":"ok"},{"account_id":"a",'
                       b'"prompt":"' + BAD_UTF8 + b'"}]}', ["events", 1, "prompt"]),
    "batch-surrogate": ("/v1/events:batch", {}, b'{"events":[{"account_id":"\\udc00x","prompt":"hi"}]}',
                        ["events", 0, "account_id"]),
    "litellm-bad-utf8": (LITELLM, {}, b'{"texts":["' + BAD_UTF8 + b'"],"request_data":{"user_api_key_user_id":"u"}}',
                         ["texts", 0]),
    "litellm-surrogate": (LITELLM, {}, (b'{"structured_messages":[{"role":"user","content":"hi \\ud83d"}],'
                                        b'"request_data":{"user_api_key_user_id":"u"}}'),
                          ["structured_messages", 0, "content"]),
    "envoy-bad-utf8": ("/envoy/authz/v1/chat/completions", ENVOY, b'{"messages":[{"role":"user","content":"'
                       + BAD_UTF8 + b'"}]}', ["messages", 0, "content"]),
    "envoy-surrogate": ("/envoy/authz/v1/chat/completions", ENVOY, b'{"prompt":"hi \\ud800"}', ["prompt"]),
    "envoy-messages-not-a-list": ("/envoy/authz/v1/chat/completions", ENVOY, b'{"messages":"hello"}', ["messages"]),
    "envoy-message-not-an-object": ("/envoy/authz/v1/chat/completions", ENVOY, b'{"messages":["hello"]}',
                                    ["messages", 0]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_body_is_4xx_naming_the_field_and_keeps_the_connection(server, case):
    path, headers, body, field = MALFORMED[case]
    with httpx.Client(base_url=server.url, headers={**AUTH, "content-type": "application/json"}, timeout=30) as c:
        bad = c.post(path, content=body, headers=headers)
        assert bad.status_code in (400, 422), bad.text
        assert any(d["loc"] == ["body", *field] for d in bad.json()["detail"]), bad.text
        assert SECRET not in bad.text  # the error does not echo the prompt
        good = c.post("/v1/check", json=GOOD)  # the next request, on the same keep-alive connection
        assert good.status_code == 200, good.text
        assert _local_port(good) == _local_port(bad)
    log = server.log_path.read_text(errors="replace")
    assert SECRET not in log and "Exception in ASGI application" not in log, log[-2000:]


def test_envoy_without_a_prompt_records_no_event(server):
    for body in (b"", b'{"messages": []}', b'{"model": "m"}'):
        r = server.client.post("/envoy/authz/v1/models", content=body,
                               headers={"x-account-id": "envoy-no-prompt", "content-type": "application/json"})
        assert r.status_code == 200 and r.headers["x-distillguard-decision"] == "allow"
    assert server.client.get("/v1/accounts/envoy-no-prompt").status_code == 404  # no invented prompt=""


ODD_IDS = ["team/alice", "org/../x", "a b?c#d%e&f", "ünï/cödé/"]


def test_account_ids_with_a_slash_are_reachable(server):
    for account in ODD_IDS:
        assert server.client.post("/v1/check", json={"account_id": account, "prompt": "hello there"}).status_code == 200
        r = server.client.get(f"/v1/accounts/{quote(account, safe='')}")
        assert r.status_code == 200, (account, r.text)
        assert r.json()["account_id"] == account and r.json()["n_events"] == 1
        # the page route takes the whole id (no snapshot here: the page says how to build one, not 404)
        page = server.client.get(f"/ui/accounts/{quote(account, safe='')}")
        assert page.status_code != 404, (account, page.status_code)


def _batch_body(size: int) -> bytes:
    event = json.dumps({"account_id": "big", "prompt": "x" * 200, "ip": "10.0.0.1"}).encode()
    n = size // (len(event) + 1)
    return b'{"events":[' + b",".join([event] * n) + b"]}"


def test_keyless_oversized_body_is_refused_before_it_is_read(server):
    body = _batch_body(64 * 1024 * 1024)
    pid = server.proc.pid
    before = _vm(pid)
    with httpx.Client(base_url=server.url, timeout=60) as bare:
        for path in ("/v1/events:batch", LITELLM, "/envoy/authz/v1/chat/completions"):
            t0 = time.perf_counter()
            r = bare.post(path, content=body, headers={"content-type": "application/json", "x-account-id": "big"})
            assert r.status_code == 401, r.text
            print(f"{path}: 401 after {time.perf_counter() - t0:.2f} s for {len(body) / 2**20:.0f} MiB")
    after = _vm(pid)
    print(f"server RSS {before['VmRSS'] / 1024:.0f} -> {after['VmRSS'] / 1024:.0f} MiB, "
          f"peak {before['VmHWM'] / 1024:.0f} -> {after['VmHWM'] / 1024:.0f} MiB")
    # a parsed body of 64 MiB costs hundreds of MiB of Python objects; an unread one nothing
    assert after["VmRSS"] - before["VmRSS"] < 40 * 1024 and after["VmHWM"] - before["VmHWM"] < 40 * 1024


def test_authenticated_oversized_body_is_413(server):
    body = _batch_body(MAX_BODY + 10_000)

    def chunks():
        for lo in range(0, len(body), 64 * 1024):
            yield body[lo:lo + 64 * 1024]

    with httpx.Client(base_url=server.url, headers={**AUTH, "content-type": "application/json"}, timeout=60) as c:
        for path, headers in (("/v1/events:batch", {}), ("/v1/check", {}), (LITELLM, {}),
                              ("/envoy/authz/v1/chat/completions", ENVOY)):
            r = c.post(path, content=body, headers=headers)  # Content-Length says it: refused unread
            assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"], (path, r.text)
        r = c.post("/v1/events:batch", content=chunks())  # chunked, no length: refused once past the limit
        assert r.status_code == 413, r.text
        assert c.post("/v1/events:batch", content=_batch_body(MAX_BODY // 2)).status_code == 200


def test_key_strength_rule():
    assert key_weakness("k1") == "2 characters (at least 16)"
    assert key_weakness("a" * 40) == "1 distinct characters (at least 8)"
    assert key_weakness("abcabcabcabcabcabcab") is not None
    assert key_weakness(KEY) is None and key_weakness("Zq3-w9xK_p2LmT7v") is None


def test_weak_keys_are_refused_at_start(tmp_path):
    weak = "ab" * 12  # long enough, two distinct characters
    env = {**os.environ, "DISTILLGUARD_API_KEYS": f"{KEY},{weak}"}
    res = subprocess.run([sys.executable, "-m", "distillguard.cli", "serve", "--state", str(tmp_path / "s"),
                          "--mlruns", str(tmp_path / "m"), "--port", str(free_port())], env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 1, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "api_keys" in lines[0] and "key 2 of 2 is too weak: 2 distinct" in lines[0], res.stderr
    assert weak not in res.stderr and KEY not in res.stderr and "Traceback" not in res.stderr


def test_repeated_wrong_keys_lock_out_that_address_only(server):
    attacker = httpx.Client(base_url=server.url, timeout=30,
                            transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with attacker:
        for i in range(MAX_FAILURES):
            r = attacker.post("/v1/check", json=GOOD, headers={"Authorization": f"Bearer guess-{i:012d}"})
            assert r.status_code == 401, r.text
        r = attacker.post("/v1/check", json=GOOD, headers={"Authorization": "Bearer guess-again-000"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0, r.text
        # locked: even the right key is not compared, on the API and the login form alike
        assert attacker.post("/v1/check", json=GOOD, headers=AUTH).status_code == 429
        assert attacker.post("/ui/login", data={"key": KEY}).status_code == 429
    assert server.client.post("/v1/check", json=GOOD).status_code == 200  # another client is untouched
    with httpx.Client(base_url=server.url, timeout=30) as other:
        assert other.post("/ui/login", data={"key": KEY}).status_code == 303


def test_logout_revokes_the_session_cookie(server):
    with httpx.Client(base_url=server.url, timeout=60) as browser:
        login = browser.post("/ui/login", data={"key": KEY, "next": "/ui/"})
        assert login.status_code == 303
        copied = login.cookies["distillguard_ui"]
        assert browser.get("/ui/").status_code not in (401, 303)  # the session opens the pages
        assert browser.post("/ui/logout").status_code == 303
    with httpx.Client(base_url=server.url, timeout=60, cookies={"distillguard_ui": copied}) as replay:
        assert replay.get("/ui/").status_code == 401
        r = replay.get("/ui/", headers={"Accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")

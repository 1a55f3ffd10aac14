"""The app in-process (no model in the registry): fail-open and fail-closed, settings, digests."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from distillguard.serving.app import create_app
from distillguard.serving.config import ServeSettings, load_settings
from distillguard.serving.scoring import prompt_digest

APP_KEY = "app-test-key-9e4c1b7d2a"
AUTH = {"Authorization": f"Bearer {APP_KEY}"}


def _app(tmp_path, **kw) -> TestClient:
    settings = ServeSettings(state_path=tmp_path / "state", mlruns=tmp_path / "no-mlruns", store=tmp_path / "store",
                             api_keys=(APP_KEY,), champion_poll_s=0, **kw)
    return TestClient(create_app(settings))


@pytest.mark.parametrize("mode, decision", [("open", "allow"), ("closed", "block")])
def test_no_model_answers_by_the_fail_mode(tmp_path, mode, decision):
    with _app(tmp_path, fail_mode=mode) as client:
        r = client.post("/v1/check", json={"account_id": "a", "prompt": "hello"}, headers=AUTH)
        assert r.status_code == 200
        v = r.json()
        assert v["decision"] == decision and v["degraded"] and v["score"] is None
        assert client.get("/readyz", headers=AUTH).status_code == 503
        assert client.get("/healthz").status_code == 200
        # the event was still recorded
        assert client.get("/v1/accounts/a", headers=AUTH).json()["n_events"] == 1
        assert client.get("/v1/accounts/unknown", headers=AUTH).status_code == 404


def test_settings_merge_file_arguments_and_env_keys(tmp_path, monkeypatch):
    cfg = tmp_path / "serve.json"
    cfg.write_text(json.dumps({"api_keys": ["file-key"], "refresh_batch_accounts": 50, "fail_mode": "closed"}))
    monkeypatch.setenv("DISTILLGUARD_API_KEYS", " env-a, env-b ,")
    s = load_settings(cfg, refresh_batch_accounts=None, state_path=tmp_path / "s")
    assert s.api_keys == ("file-key", "env-a", "env-b")
    assert s.refresh_batch_accounts == 50 and s.fail_mode == "closed" and s.state_path == tmp_path / "s"
    assert "env-a" not in repr(s)
    with pytest.raises(ValueError):
        ServeSettings(fail_mode="sometimes")


def test_logs_carry_a_digest_not_the_prompt():
    d = prompt_digest("my secret prompt")
    assert "secret" not in d and d.endswith("len=16")


def test_backlog_past_its_bound_is_reported_and_answers_continue(tmp_path):
    import time

    with _app(tmp_path, backlog_bound_accounts=1, refresh_idle_s=0.05) as client:
        for acc in ("a", "b", "c"):
            assert client.post("/v1/check", json={"account_id": acc, "prompt": "hi"}, headers=AUTH).status_code == 200
        deadline = time.time() + 30
        while time.time() < deadline:
            metrics = client.get("/metrics", headers=AUTH).text
            if "distillguard_backlog_over_bound 1.0" in metrics:
                break
            time.sleep(0.2)
        assert "distillguard_backlog_over_bound 1.0" in metrics and "distillguard_backlog_accounts 3.0" in metrics
        time.sleep(0.3)  # the answer's flag is re-read every 0.25 s
        v = client.post("/v1/check", json={"account_id": "d", "prompt": "hi"}, headers=AUTH).json()
        assert v["backlog_over_bound"] and v["decision"] == "allow"
        assert client.get("/v1/accounts/a", headers=AUTH).json()["n_events"] == 1


def test_litellm_account_prefers_the_key_owner_over_the_callers_user_field():
    from distillguard.serving.adapters import litellm_account
    from distillguard.serving.config import ServeSettings

    fields = ServeSettings().litellm_identity_fields
    # a virtual key's owner is the account, whatever `user` the caller puts in the request
    assert litellm_account({"user_api_key_user_id": "owner-1", "user_api_key_hash": "h1",
                            "user_api_key_end_user_id": "rotating-42"}, fields) == "owner-1"
    assert litellm_account({"user_api_key_hash": "h1", "user_api_key_end_user_id": "rotating-42"}, fields) == "h1"
    # on the master key LiteLLM sends placeholders: the caller's `user` is all there is
    assert litellm_account({"user_api_key_user_id": "default_user_id", "user_api_key_hash": "litellm_proxy_master_key",
                            "user_api_key_end_user_id": "alice"}, fields) == "alice"
    assert litellm_account({"user_api_key_user_id": "default_user_id"}, fields) is None

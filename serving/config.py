"""Serving configuration: declared once, validated, passed in.

Sources, later wins: defaults, the JSON config file, `DISTILLGUARD_<FIELD>` environment variables
(every field; `serving/settings_env.py`), explicit arguments; for API keys the `DISTILLGUARD_API_KEYS`
environment variable (comma-separated) is added to the file's keys.
Analyst keys (`analyst_keys`, also `DISTILLGUARD_ANALYST_KEYS`) are API keys that may also set
analyst verdicts (`serving/verdict_routes.py`); the plain API keys are the gateway's.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from distillguard.serving.settings_env import settings_from_env
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

API_KEYS_ENV = "DISTILLGUARD_API_KEYS"
ANALYST_KEYS_ENV = "DISTILLGUARD_ANALYST_KEYS"  # "name:key,name:key" (or bare keys), added to the file's


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state_path: Path = Path("runs/serve")  # folder: events.sqlite (server) and scores.sqlite (worker)
    mlruns: Path = Path("mlruns")
    store: Path = Path("runs/embeddings")
    model_uri: str = "models:/distillguard@champion"

    # -- safety -----------------------------------------------------------------------------------
    api_keys: tuple[str, ...] = Field(default=(), repr=False)
    # keys that may also set analyst verdicts, by the name verdicts record (`{"alice": "<key>"}`; a list of
    # keys gets names "key-<sha256 prefix>"); they are API keys as well. Gateway keys cannot set verdicts.
    analyst_keys: dict[str, str] = Field(default_factory=dict, repr=False)
    allow_unauthenticated: bool = False  # only for local experiments; serve() refuses no keys otherwise
    # no model loaded: "open" answers allow (degraded), "closed" answers block (degraded)
    fail_mode: Literal["open", "closed"] = "open"
    max_prompt_chars: int = Field(default=32_000, gt=0)
    max_batch_events: int = Field(default=5_000, gt=0)
    # a client's `ts` dated more than max_clock_skew_s after the event's arrival, or more than max_backdate_days
    # (the scoring window) before it, is stored clamped to that bound (serving/client_time.py); a window is
    # bounded by arrival, never by `ts`. Replaying older history: raise max_backdate_days
    max_clock_skew_s: float = Field(default=300.0, ge=0)
    max_backdate_days: float = Field(default=42.0, gt=0)
    # a larger request body is refused (413) before it is read or parsed, and only once its key passed
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    # this many wrong keys from one client address within the window lock it out (429) for the window
    auth_max_failures: int = Field(default=10, gt=0)
    auth_failure_window_s: float = Field(default=60.0, gt=0)
    # NORMAL survives a kill -9 of the server (the WAL is in the OS cache); FULL also a power loss
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"

    # -- background refresh ---------------------------------------------------------------------
    refresh_batch_accounts: int = Field(default=256, gt=0)  # a batch has ~0.35 s fixed cost
    # when nothing is dirty, rescore this many of the accounts refreshed longest ago per round, so that
    # scores follow their neighbours (0: never sweep)
    sweep_batch_accounts: int = Field(default=256, ge=0)
    sweep_interval_s: float = Field(default=30.0, ge=0)  # a new sweep over the population at most this often

    # -- retention --------------------------------------------------------------------------------
    # events received longer ago leave the log (the model's scoring window is 42 days: keep at least that;
    # shorter, a restarted server rebuilds its windows without their oldest days)
    retention_days: float = Field(default=45.0, gt=0)
    retention_check_s: float = Field(default=600.0, gt=0)
    refresh_idle_s: float = Field(default=0.2, gt=0)
    backlog_bound_accounts: int = Field(default=5_000, gt=0)
    champion_poll_s: float = Field(default=30.0, ge=0)  # 0: only POST /admin/reload

    # -- gateway adapters ------------------------------------------------------------------------
    # the first present, non-placeholder field names the account: the key's owner, then the key, and
    # only then the caller-chosen `user` field (which a harvester on one key could rotate at will)
    litellm_identity_fields: tuple[str, ...] = ("user_api_key_user_id", "user_api_key_hash",
                                                 "user_api_key_end_user_id")
    litellm_block_on_review: bool = False
    envoy_account_header: str = "x-account-id"

    # -- analyst browser (/ui) ------------------------------------------------------------------
    workbench_path: Path | None = None  # snapshot folder (`distillguard workbench build --out`); None: <state_path>/workbench
    ui_redact_prompts: bool = False  # pages show prompts as hash and length only (analysts not cleared to read user text)
    # no log line carries prompt text: logged exceptions keep type and stack, not their message (on
    # whenever ui_redact_prompts is: who may not read prompts on the pages may not read them in logs)
    redact_logs: bool = False
    ui_session_hours: float = Field(default=12.0, gt=0)  # lifetime of the /ui login cookie

    # -- operations -------------------------------------------------------------------------------
    # GET /metrics: "key" needs an API key, "open" answers a scraper without one, "off" is 404
    metrics_access: Literal["key", "open", "off"] = "key"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v):
        if isinstance(v, str):
            v = v.split(",")
        return tuple(k.strip() for k in v if k and k.strip())

    @field_validator("analyst_keys", mode="before")
    @classmethod
    def _name_analyst_keys(cls, v):
        return named_keys(v)

    @model_validator(mode="after")
    def _analyst_keys_are_api_keys(self):
        missing = [k for k in self.analyst_keys.values() if k not in self.api_keys]
        if missing:  # frozen: set through object.__setattr__, once, while validating
            object.__setattr__(self, "api_keys", (*self.api_keys, *missing))
        return self

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys) or not self.allow_unauthenticated

    @property
    def logs_redacted(self) -> bool:
        return self.redact_logs or self.ui_redact_prompts

    @property
    def workbench_dir(self) -> Path:
        return self.workbench_path if self.workbench_path is not None else self.state_path / "workbench"


def named_keys(v) -> dict[str, str]:
    """Analyst keys by name from a {name: key} mapping, a list of keys or "name:key,key" text; a key
    without a name is named by a prefix of its SHA-256 (never the key itself)."""
    if isinstance(v, dict):
        items = [(str(n).strip(), str(k).strip()) for n, k in v.items()]
    else:
        parts = v.split(",") if isinstance(v, str) else list(v)
        items = []
        for p in (str(p).strip() for p in parts):
            name, sep, key = p.partition(":")
            items.append((name.strip(), key.strip()) if sep else ("", p))
    named = {}
    for name, key in items:
        if key:
            named[name or f"key-{hashlib.sha256(key.encode()).hexdigest()[:8]}"] = key
    return named


def load_settings(config_path: Path | None = None, **overrides) -> ServeSettings:
    """Settings from the optional JSON file, then the environment, then `overrides` (None values ignored)."""
    fields: dict = {}
    if config_path is not None:
        fields.update(json.loads(Path(config_path).read_text()))
    fields.update(settings_from_env(ServeSettings, skip=("api_keys", "analyst_keys")))  # those two: merged below
    fields.update({k: v for k, v in overrides.items() if v is not None})
    env_keys = [k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip()]
    if env_keys:
        file_keys = ServeSettings._split_keys(fields.get("api_keys", ()))
        fields["api_keys"] = tuple(dict.fromkeys([*file_keys, *env_keys]))
    env_analysts = named_keys(os.environ.get(ANALYST_KEYS_ENV, ""))
    if env_analysts:
        fields["analyst_keys"] = {**named_keys(fields.get("analyst_keys", {})), **env_analysts}
    return ServeSettings(**fields)

"""Serving configuration: declared once, validated, passed in.

Sources, later wins: defaults, the JSON config file, explicit arguments, and for API keys the
`DISTILLGUARD_API_KEYS` environment variable (comma-separated) added to the file's keys.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

API_KEYS_ENV = "DISTILLGUARD_API_KEYS"


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state_path: Path = Path("runs/serve")  # folder: events.sqlite (server) and scores.sqlite (worker)
    mlruns: Path = Path("mlruns")
    store: Path = Path("runs/embeddings")
    model_uri: str = "models:/distillguard@champion"

    # -- safety -----------------------------------------------------------------------------------
    api_keys: tuple[str, ...] = Field(default=(), repr=False)
    allow_unauthenticated: bool = False  # only for local experiments; serve() refuses no keys otherwise
    # no model loaded: "open" answers allow (degraded), "closed" answers block (degraded)
    fail_mode: Literal["open", "closed"] = "open"
    max_prompt_chars: int = Field(default=32_000, gt=0)
    max_batch_events: int = Field(default=5_000, gt=0)
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
    ui_session_hours: float = Field(default=12.0, gt=0)  # lifetime of the /ui login cookie

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v):
        if isinstance(v, str):
            v = v.split(",")
        return tuple(k.strip() for k in v if k and k.strip())

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys) or not self.allow_unauthenticated

    @property
    def workbench_dir(self) -> Path:
        return self.workbench_path if self.workbench_path is not None else self.state_path / "workbench"


def load_settings(config_path: Path | None = None, **overrides) -> ServeSettings:
    """Settings from the optional JSON file, then `overrides` (None values ignored), plus env keys."""
    fields: dict = {}
    if config_path is not None:
        fields.update(json.loads(Path(config_path).read_text()))
    fields.update({k: v for k, v in overrides.items() if v is not None})
    env_keys = [k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip()]
    if env_keys:
        file_keys = ServeSettings._split_keys(fields.get("api_keys", ()))
        fields["api_keys"] = tuple(dict.fromkeys([*file_keys, *env_keys]))
    return ServeSettings(**fields)

"""Request and response bodies. Bad input is a 422 naming the field (FastAPI's `loc`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

AccountId = Annotated[StrictStr, Field(min_length=1, max_length=256)]
Meta = Annotated[StrictStr | None, Field(default=None, max_length=512)]
Asn = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]  # the traffic contract's int64 (a larger one is a 422)


class EventIn(BaseModel):
    """One prompt event; the fields of the traffic contract (`ts` defaults to the arrival time)."""

    model_config = ConfigDict(extra="ignore")

    account_id: AccountId
    prompt: StrictStr
    ts: datetime | None = None
    conversation_id: Meta = None
    model: Meta = None
    ip: Meta = None
    asn: Asn | None = None
    payment_fingerprint: Meta = None
    user_agent: Meta = None

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():  # the traffic contract refuses blank prompts, here as in `validate`
            raise ValueError("prompt is empty or whitespace only")
        return v

    @field_validator("ts")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)


class EventBatchIn(BaseModel):
    events: list[EventIn] = Field(min_length=1)


class AnalystVerdictInfo(BaseModel):
    """An analyst's verdict in force on the account (`serving/verdicts.py`)."""

    verdict: Literal["harvesting", "organic"]
    campaign: str | None
    by: str  # the analyst key's name, never the key
    at: datetime


class Verdict(BaseModel):
    account_id: str
    decision: Literal["allow", "review", "block"]
    score: float | None
    model_version: str | None  # the model that produced `score` (the serving one while pending)
    reasons: list[str]
    scored_at: datetime | None  # when the score was computed (its staleness is now - scored_at)
    pending: bool = False  # no score yet: the first refresh of this account has not run
    degraded: bool = False  # no model loaded: the answer comes from the fail-open/closed policy
    backlog_over_bound: bool = False
    # set when an analyst verdict decides the answer: the model's own decision stays beside it
    model_decision: Literal["allow", "review", "block"] | None = None
    analyst_verdict: AnalystVerdictInfo | None = None


class BatchAck(BaseModel):
    accepted: int
    accounts: int

"""The traffic contract: the one format in which events and labels enter distillguard.

Events are one row per prompt; labels are one row per account. Both are documented in README.md
("The traffic contract"); this module is the single place their columns and types are declared.
"""

from __future__ import annotations

import pyarrow as pa

EVENT_REQUIRED: tuple[str, ...] = ("account_id", "ts", "prompt")
EVENT_OPTIONAL: tuple[str, ...] = (
    "conversation_id",
    "model",
    "ip",
    "asn",
    "payment_fingerprint",
    "user_agent",
)
EVENT_COLUMNS: tuple[str, ...] = EVENT_REQUIRED + EVENT_OPTIONAL

#: Arrow schema of a validated events table. `ts` is always UTC.
EVENTS_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("conversation_id", pa.string()),
        pa.field("model", pa.string()),
        pa.field("ip", pa.string()),
        pa.field("asn", pa.int64()),
        pa.field("payment_fingerprint", pa.string()),
        pa.field("user_agent", pa.string()),
    ]
)

LABEL_COLUMNS: tuple[str, ...] = ("account_id", "label", "campaign")

#: Arrow schema of a validated labels table. `label` is 1 for harvesting, 0 for organic;
#: `campaign` names the campaign, or the organic archetype for label 0.
LABELS_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
        pa.field("campaign", pa.string(), nullable=False),
    ]
)

SUPPORTED_SUFFIXES: tuple[str, ...] = (".parquet", ".jsonl", ".csv")

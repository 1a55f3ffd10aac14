"""Network and billing metadata judged against the population: many accounts behind one IP or one
payment card, or an account that changes IP on every request (rotating proxies). One-sided
evidence: an absent field (an SDK, a gateway that forwards only a key's hash, a proxy that strips
the address) gives the neutral 0, never a raised score."""

from __future__ import annotations

import numpy as np
import pandas as pd

from distillguard.features.feature_spec import BEHAVIOUR, Feature
from distillguard.features.rows import AccountRows

FAMILY = "metadata"
KIND = BEHAVIOUR
ROTATION_MIN_PROMPTS = 5

COLUMNS: tuple[Feature, ...] = (
    Feature("ip_shared_accounts", FAMILY, "log2 of the most accounts sharing one of the account's IPs (0: none "
            "shared, or no IP)", "[0, inf)", "one of its IPs is shared by {ip_shared_accounts_count:.0f} other accounts",
            +1, "ip", KIND),
    Feature("payment_shared_accounts", FAMILY, "log2 of the most accounts sharing one of the account's payment "
            "fingerprints (0: none shared, or none sent)", "[0, inf)",
            "its payment card is shared by {payment_shared_accounts_count:.0f} other accounts", +1,
            "payment_fingerprint", KIND),
    Feature("ip_rotation", FAMILY, "distinct IPs per prompt, for accounts with 5 or more prompts carrying an IP "
            "(0 otherwise)", "[0, 1]", "it changes IP on {value:.0%} of its requests (organic: {organic:.0%})", +1,
            "ip", KIND),
)


def _shared(values: np.ndarray | None, codes: np.ndarray, n_acc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max accounts sharing one of the account's values, distinct values, prompts carrying a value)."""
    shared, distinct, carried = np.zeros(n_acc), np.zeros(n_acc), np.zeros(n_acc)
    if values is None:
        return shared, distinct, carried
    frame = pd.DataFrame({"a": codes, "v": values}).dropna()
    if frame.empty:
        return shared, distinct, carried
    carried[:] = np.bincount(frame["a"].to_numpy(), minlength=n_acc)
    pairs = frame.drop_duplicates()
    per_value = pairs.groupby("v")["a"].nunique()
    pairs = pairs.assign(n=pairs["v"].map(per_value).to_numpy())
    g = pairs.groupby("a")
    idx = g.size().index.to_numpy()
    shared[idx] = g["n"].max().to_numpy()
    distinct[idx] = g.size().to_numpy()
    return shared, distinct, carried


def compute(rows: AccountRows) -> dict[str, np.ndarray]:
    n_acc = rows.n_accounts
    ip_shared, ip_distinct, ip_carried = _shared(rows.column("ip"), rows.codes, n_acc)
    pay_shared, _, _ = _shared(rows.column("payment_fingerprint"), rows.codes, n_acc)
    rotation = np.where(ip_carried >= ROTATION_MIN_PROMPTS, ip_distinct / np.maximum(ip_carried, 1), 0.0)
    return {"ip_shared_accounts": np.log2(np.maximum(ip_shared, 1)),
            "payment_shared_accounts": np.log2(np.maximum(pay_shared, 1)),
            "ip_rotation": rotation}

"""Network and billing metadata judged against the population: many accounts behind one IP or one
payment card, or an account that changes IP on every request (rotating proxies). One-sided
evidence: an absent field (an SDK, a gateway that forwards only a key's hash, a proxy that strips
the address) gives the neutral 0, never a raised score."""

from __future__ import annotations

import numpy as np
import pandas as pd

from distillguard.features.feature_spec import BEHAVIOUR, Feature
from distillguard.features.population import PopulationState
from distillguard.features.rows import AccountRows

FAMILY = "metadata"
KIND = BEHAVIOUR
ROTATION_MIN_PROMPTS = 3  # a burner account behind rotating proxies shows it within a few requests

COLUMNS: tuple[Feature, ...] = (
    Feature("ip_shared_accounts", FAMILY, "log2 of the most accounts sharing one of the account's IPs (0: none "
            "shared, or no IP)", "[0, inf)", "one of its IPs is shared by {ip_shared_accounts_count:.0f} other accounts",
            +1, "ip", KIND),
    Feature("payment_shared_accounts", FAMILY, "log2 of the most accounts sharing one of the account's payment "
            "fingerprints (0: none shared, or none sent)", "[0, inf)",
            "its payment card is shared by {payment_shared_accounts_count:.0f} other accounts", +1,
            "payment_fingerprint", KIND),
    Feature("ip_rotation", FAMILY, "distinct IPs per prompt, for accounts with 3 or more prompts carrying an IP "
            "(0 otherwise)", "[0, 1]", "it changes IP on {value:.0%} of its requests (organic: {organic:.0%})", +1,
            "ip", KIND),
)


def _max_shared(rows: AccountRows, population: PopulationState, field_name: str) -> np.ndarray:
    """Per account, the most accounts of the population sharing one of its values (0: none sent)."""
    out = np.zeros(rows.n_accounts)
    values = rows.column(field_name)
    if values is None:
        return out
    frame = pd.DataFrame({"a": rows.codes, "v": values}).dropna().drop_duplicates()
    if frame.empty:
        return out
    frame["n"] = population.values_accounts(field_name, frame["v"].tolist())
    g = frame.groupby("a")["n"].max()
    out[g.index.to_numpy()] = g.to_numpy()
    return out


def _rotation(rows: AccountRows) -> np.ndarray:
    """Distinct IPs per prompt carrying one, for accounts with at least `ROTATION_MIN_PROMPTS` such prompts."""
    out = np.zeros(rows.n_accounts)
    values = rows.column("ip")
    if values is None:
        return out
    frame = pd.DataFrame({"a": rows.codes, "v": values}).dropna()
    if frame.empty:
        return out
    carried = frame.groupby("a").size()
    distinct = frame.drop_duplicates().groupby("a").size()
    enough = carried[carried >= ROTATION_MIN_PROMPTS].index
    out[enough.to_numpy()] = (distinct[enough] / carried[enough]).to_numpy()
    return out


def compute(rows: AccountRows, population: PopulationState) -> dict[str, np.ndarray]:
    return {"ip_shared_accounts": np.log2(np.maximum(_max_shared(rows, population, "ip"), 1)),
            "payment_shared_accounts": np.log2(np.maximum(_max_shared(rows, population, "payment_fingerprint"), 1)),
            "ip_rotation": _rotation(rows)}

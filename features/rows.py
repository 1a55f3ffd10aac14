"""The scored events as every feature family reads them: rows grouped by account (account a's rows
are `order[bounds[a]:bounds[a+1]]`, in time order), with the prompt-level inputs aligned to rows.
Built once per feature table; pure data, no I/O."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from distillguard.features import templating as TP


@dataclass
class PromptTable:
    """Prompt-level inputs aligned with the rows of the events frame they were computed for."""

    text_ids: np.ndarray  # (n,) row of each prompt's distinct normalised text in unique_vectors
    unique_vectors: np.ndarray  # (u, d) float32 unit vectors
    intent_scores: np.ndarray  # (n, len(INTENTS)) best exemplar similarity per intent
    harvest_p: np.ndarray | None = None  # (n,) per-prompt harvest probability (None: no prompt model)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        return self.unique_vectors[self.text_ids[rows]]


def account_seed(account_id: str) -> int:
    """The seed of an account's samples: the same account is sampled the same way in any population."""
    return zlib.crc32(account_id.encode())


@dataclass
class AccountRows:
    events: pd.DataFrame
    prompts: PromptTable
    account_ids: np.ndarray = field(init=False)  # (n_acc,) sorted
    codes: np.ndarray = field(init=False)  # (n,) account code of each row
    order: np.ndarray = field(init=False)  # rows sorted by (account, time)
    bounds: np.ndarray = field(init=False)  # (n_acc + 1,)
    t: np.ndarray = field(init=False)  # (n,) seconds since the epoch

    def __post_init__(self) -> None:
        if len(self.events) != len(self.prompts.text_ids):
            raise ValueError(f"events has {len(self.events)} rows but the prompt table {len(self.prompts.text_ids)}")
        if len(self.events) == 0:
            raise ValueError("no events to build features from")
        self.account_ids, self.codes = np.unique(self.events["account_id"].to_numpy(dtype=object).astype(str),
                                                 return_inverse=True)
        self.t = self.events["ts"].to_numpy(dtype="datetime64[us]").astype(np.int64) / 1e6
        self.order = np.lexsort((self.t, self.codes))
        self.bounds = np.searchsorted(self.codes[self.order], np.arange(len(self.account_ids) + 1))

    @property
    def n_accounts(self) -> int:
        return len(self.account_ids)

    @cached_property
    def volume(self) -> np.ndarray:
        return np.diff(self.bounds)

    def column(self, name: str) -> np.ndarray | None:
        """A contract column as an object array (None when the column is absent)."""
        return self.events[name].to_numpy(dtype=object) if name in self.events else None

    @cached_property
    def texts(self) -> np.ndarray:
        return self.events["prompt"].to_numpy(dtype=object)

    @cached_property
    def skeleton_keys(self) -> np.ndarray:
        """(n, 2) int64 opening and closing skeleton keys of each row (-1: too short to have one)."""
        codes, distinct = pd.factorize(self.texts, use_na_sentinel=False)
        per_text = np.array([[-1 if k is None else k for k in TP.skeleton_keys(p)] for p in distinct],
                            dtype=np.int64).reshape(-1, 2)
        return per_text[codes]

    @cached_property
    def payload_ids(self) -> np.ndarray:
        """(n,) id of each row's *payload*: its tokens between the opening and closing skeleton runs,
        digits masked; -1 when fewer than `TP.MIN_PAYLOAD_TOKENS` remain. One problem template with
        other numbers is one payload; a question with a different closing remark is one payload too:
        only texts that differ in their middle are different payloads around a wrapper."""
        codes, distinct = pd.factorize(self.texts, use_na_sentinel=False)
        middles = pd.Series([TP.payload(p) for p in distinct], dtype=object)
        ids, _ = pd.factorize(middles, use_na_sentinel=True)
        return ids[codes].astype(np.int64)

    @cached_property
    def text_accounts(self) -> np.ndarray:
        """(n,) number of distinct accounts in this population that sent each row's exact (normalised) text."""
        pairs = pd.DataFrame({"t": self.prompts.text_ids, "a": self.codes}).drop_duplicates()
        per_text = pairs.groupby("t").size()
        return per_text.reindex(self.prompts.text_ids).to_numpy()

    def harvest_p(self) -> np.ndarray:
        if self.prompts.harvest_p is None:
            raise ValueError("these features need per-prompt harvest probabilities: the feature state has no "
                             "fitted prompt intent model")
        return self.prompts.harvest_p

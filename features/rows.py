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
from distillguard.features.text_normalization import prompt_key


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
    def text_hashes(self) -> np.ndarray:
        """(n,) int64 of each row's normalised text (the first 8 bytes of its cache key): the same
        text has the same hash in any batch, process or population."""
        codes, distinct = pd.factorize(self.texts, use_na_sentinel=False)
        hashes = np.array([int.from_bytes(prompt_key(p)[:8], "little", signed=True) for p in distinct], dtype=np.int64)
        return hashes[codes]

    @cached_property
    def payload_hashes(self) -> np.ndarray:
        """(n,) crc32 of each row's payload (`TP.payload`), -1 for a prompt too short to carry one."""
        codes, distinct = pd.factorize(self.texts, use_na_sentinel=False)
        per_text = np.array([-1 if (m := TP.payload(p)) is None else zlib.crc32(m.encode()) for p in distinct],
                            dtype=np.int64)
        return per_text[codes]

    def harvest_p(self) -> np.ndarray:
        if self.prompts.harvest_p is None:
            raise ValueError("these features need per-prompt harvest probabilities: the feature state has no "
                             "fitted prompt intent model")
        return self.prompts.harvest_p

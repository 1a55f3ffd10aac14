"""The analyst verdict log (a real SQLite file), its in-memory mirror, the overlay on the model's
answer and the analyst-key settings. The server-level behaviour is in test_serving.py."""

from __future__ import annotations

import pytest

from distillguard.serving.config import ServeSettings
from distillguard.serving.schemas import Verdict
from distillguard.serving.verdict_export import labels_from_verdicts
from distillguard.serving.verdicts import REASON, VerdictEntry, VerdictStore, apply_verdict, current_verdicts


def _entry(i: int, account: str, action: str = "set", verdict: str = "harvesting") -> VerdictEntry:
    return VerdictEntry(i, account, action, verdict, "c1" if verdict == "harvesting" else "organic", None, "alice",
                        1_800_000_000.0 + i, "api")


def test_the_last_entry_of_an_account_decides_and_an_undo_withdraws_it():
    log = [_entry(1, "a"), _entry(2, "b", verdict="organic"), _entry(3, "a", "undo"), _entry(4, "b"),
           _entry(5, "c"), _entry(6, "c", "undo"), _entry(7, "c", verdict="organic")]
    active = current_verdicts(log)
    assert {a: e.verdict for a, e in active.items()} == {"b": "harvesting", "c": "organic"}
    labels = labels_from_verdicts(log)
    assert labels.to_dict("records") == [{"account_id": "b", "label": 1, "campaign": "c1"},
                                         {"account_id": "c", "label": 0, "campaign": "organic"}]
    assert str(labels["label"].dtype) == "int8"


def test_a_verdict_overrides_the_decision_and_keeps_the_models_score_beside_it():
    model = Verdict(account_id="a", decision="allow", score=0.12, model_version="3", reasons=["x"], scored_at=None)
    assert apply_verdict(model, None) is model
    v = apply_verdict(model, _entry(1, "a"))
    assert (v.decision, v.model_decision, v.score, v.model_version) == ("block", "allow", 0.12, "3")
    assert v.reasons == [REASON, "x"] and v.analyst_verdict.by == "alice" and v.analyst_verdict.campaign == "c1"
    cleared = apply_verdict(model.model_copy(update={"decision": "block"}), _entry(2, "a", verdict="organic"))
    assert cleared.decision == "allow" and cleared.model_decision == "block"


def test_the_store_is_durable_and_keeps_its_history(tmp_path):
    store = VerdictStore(tmp_path)
    store.set_many(["a", "b", "a"], "harvesting", "wrapper-7", "seen twice", by="alice", via="ui")
    store.set_many(["c"], "organic", None, None, by="bob", via="api")
    assert [e.account_id for e in store.undo_many(["b", "zz"], None, by="bob", via="api")] == ["b"]
    with pytest.raises(ValueError, match="campaign"):
        store.set_many(["d"], "harvesting", "", None, by="alice", via="api")
    reopened = VerdictStore(tmp_path)  # what a restarted server reads
    assert {a: (e.verdict, e.campaign, e.by) for a, e in ((e.account_id, e) for e in reopened.all_active())} == {
        "a": ("harvesting", "wrapper-7", "alice"), "c": ("organic", "organic", "bob")}
    assert reopened.active("b") is None
    assert [(e.account_id, e.action) for e in reopened.history()] == [("a", "set"), ("b", "set"), ("c", "set"),
                                                                      ("b", "undo")]
    assert [e.action for e in reopened.history("b", limit=1)] == ["undo"]


def test_analyst_keys_are_named_api_keys():
    gateway, alice, bob, anon_key = (f"{n}-key-0123456789abcdef" for n in ("gateway", "alice", "bob", "anon"))
    s = ServeSettings(api_keys=gateway, analyst_keys={"alice": alice})
    assert set(s.api_keys) == {gateway, alice} and s.analyst_keys == {"alice": alice} and alice not in repr(s)
    s = ServeSettings(api_keys=gateway, analyst_keys=f"bob:{bob}, {anon_key}")
    assert s.analyst_keys["bob"] == bob
    (anon,) = [n for n in s.analyst_keys if n != "bob"]
    assert anon.startswith("key-") and anon_key not in anon

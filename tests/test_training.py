"""train / score / models / promote / rollback as an ML engineer runs them: real processes, a real
MLflow sqlite registry, the real embedder, simulated campaigns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from distillguard.training.registry import Registry

CLI = [sys.executable, "-m", "distillguard.cli"]
WEAK = json.dumps({"num_boost_round": 1, "num_leaves": 2, "min_data_in_leaf": 100000})


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=900, cwd=cwd)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    assert run("simulate", "--out", str(root / "sim"), "--accounts", "260", "--seed", "4").returncode == 0
    assert run("simulate", "--out", str(root / "fresh"), "--accounts", "60", "--seed", "77").returncode == 0
    return root


def train(work: Path, mlruns: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("train", "--events", str(work / "sim/events.parquet"), "--labels", str(work / "sim/labels.csv"),
               "--mlruns", str(work / mlruns), "--store", str(work / "store"), *extra)


@pytest.fixture(scope="module")
def first(work) -> subprocess.CompletedProcess[str]:
    res = train(work, "mlruns-a")
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def holdout_tags(mlruns: Path, version: str) -> dict[str, float]:
    return Registry(mlruns).version_metrics(version)


def test_first_model_is_registered_promoted_and_evaluated(work, first):
    assert "promoted to champion" in first.stdout
    reg = Registry(work / "mlruns-a")
    assert reg.aliases() == {"champion": "1", "challenger": "1"}
    metrics = holdout_tags(work / "mlruns-a", "1")
    for key in ("oot.roc_auc", "oot.pr_auc", "oot.recall_at_1pct_fpr", "oot.recall_at_0.1pct_fpr",
                "oot.organic_flagged", "oot.organic_blocked", "adaptive.recall_at_1pct_fpr",
                "cold_start.organic_allowed", "in_period.recall_at_1pct_fpr", "ttd_median_prompts"):
        assert f"holdout.{key}" in metrics
    assert metrics["holdout.oot.roc_auc"] > 0.8
    # the hold-out is the later period scored as a whole population, and the report says so
    assert "out of time: the 14 days from" in first.stdout
    for text in ("adaptive copy", "cold start", "in-period random split", "by archetype", "prompts <= 30",
                 "Leave one campaign style out", "reasoning-keyword", "IsolationForest", "time to detection"):
        assert text in first.stdout, text
    # the evaluation tables and pictures are saved beside the run
    artifacts = {p.name for p in (work / "mlruns-a").rglob("*.png")}
    assert {"pr_curve.png", "score_histograms.png", "feature_importance.png", "holdout_summary.png"} <= artifacts
    report = json.loads(next((work / "mlruns-a").rglob("holdout_report.json")).read_text())
    assert report["holdout"]["kind"] == "out_of_time"
    assert set(report["out_of_time"]["by_volume"]) == {"le5", "le30", "le100", "gt100"}


def test_training_twice_with_the_same_seed_gives_the_same_metrics(work, first):
    again = train(work, "mlruns-b")
    assert again.returncode == 0, again.stderr[-3000:]
    assert holdout_tags(work / "mlruns-a", "1") == holdout_tags(work / "mlruns-b", "1")


def test_a_weaker_candidate_is_registered_but_not_promoted_then_promote_and_rollback(work, first):
    weak = train(work, "mlruns-a", "--lgb-params", WEAK, "--no-time-to-detection")
    assert weak.returncode == 3, weak.stderr[-3000:]  # registered, not promoted
    assert "NOT promoted" in weak.stdout
    reg = Registry(work / "mlruns-a")
    assert reg.aliases() == {"champion": "1", "challenger": "2"}

    assert run("promote", "2", "--mlruns", str(work / "mlruns-a")).returncode == 0
    assert Registry(work / "mlruns-a").alias_version("champion") == "2"
    back = run("rollback", "--mlruns", str(work / "mlruns-a"))
    assert back.returncode == 0 and "v2 -> v1" in back.stdout
    assert Registry(work / "mlruns-a").alias_version("champion") == "1"
    listing = run("models", "--mlruns", str(work / "mlruns-a"))
    assert listing.returncode == 0 and "champion" in listing.stdout and "challenger" in listing.stdout


def test_score_accounts_never_seen_in_training(work, first):
    out = work / "scores.csv"
    res = run("score", "--events", str(work / "fresh/events.parquet"), "--out", str(out),
              "--mlruns", str(work / "mlruns-a"), "--store", str(work / "store"))
    assert res.returncode == 0, res.stderr[-3000:]
    scores = pd.read_csv(out)
    labels = pd.read_csv(work / "fresh/labels.csv")
    assert list(scores.columns) == ["account_id", "score", "decision", "review_threshold", "block_threshold",
                                    "reasons"]
    # every decision is shown with the thresholds it was taken at
    assert (scores["review_threshold"] < scores["block_threshold"]).all()
    blocked = scores["decision"] == "block"  # (both columns rounded to 6 decimals)
    assert (scores.loc[blocked, "score"] >= scores.loc[blocked, "block_threshold"]).all()
    assert (scores.loc[~blocked, "score"] <= scores.loc[~blocked, "block_threshold"]).all()
    assert set(scores["account_id"]) == set(labels["account_id"])
    assert set(scores["decision"]) <= {"allow", "review", "block"}
    merged = scores.merge(labels, on="account_id")
    assert merged.loc[merged["label"] == 1, "score"].median() > merged.loc[merged["label"] == 0, "score"].median()
    flagged = merged[merged["decision"] != "allow"]
    # reasons read as sentences about the evidence, each with its contribution in log-odds
    assert flagged["reasons"].str.contains(r"\[\+\d", regex=True).all()
    assert not flagged["reasons"].str.contains("nan").any()


def test_bad_inputs_give_clear_errors(work, first, tmp_path):
    events = pd.read_parquet(work / "sim/events.parquet")
    labels = pd.read_csv(work / "sim/labels.csv")

    extra = pd.concat([labels, pd.DataFrame({"account_id": ["ghost"], "label": [1], "campaign": ["x"]})])
    extra.to_csv(tmp_path / "ghost.csv", index=False)
    res = run("train", "--events", str(work / "sim/events.parquet"), "--labels", str(tmp_path / "ghost.csv"),
              "--mlruns", str(tmp_path / "m"), "--store", str(work / "store"))
    assert res.returncode == 1 and "ghost" in res.stderr and "no events" in res.stderr

    labels.assign(label=0).to_csv(tmp_path / "one.csv", index=False)
    res = run("train", "--events", str(work / "sim/events.parquet"), "--labels", str(tmp_path / "one.csv"),
              "--mlruns", str(tmp_path / "m"), "--store", str(work / "store"))
    assert res.returncode == 1 and "both classes" in res.stderr

    events.drop(columns=["ts"]).to_parquet(tmp_path / "no_ts.parquet")
    res = run("score", "--events", str(tmp_path / "no_ts.parquet"), "--out", str(tmp_path / "s.csv"),
              "--mlruns", str(work / "mlruns-a"))
    assert res.returncode == 1 and "'ts'" in res.stderr and "missing" in res.stderr

    res = run("score", "--events", str(work / "fresh/events.parquet"), "--out", str(tmp_path / "s.csv"),
              "--mlruns", str(work / "mlruns-a"), "--model-uri", "models:/distillguard@nonexistent")
    assert res.returncode == 1 and "nonexistent" in res.stderr
    for r in (res,):
        assert "Traceback" not in r.stderr


def test_single_period_data_is_said_loudly_not_hidden(work, tmp_path):
    cfg = tmp_path / "short.json"
    cfg.write_text(json.dumps({"days": 9, "release_day": 4}))
    assert run("simulate", "--out", str(tmp_path / "short"), "--accounts", "160", "--seed", "6",
               "--config", str(cfg)).returncode == 0
    res = run("train", "--events", str(tmp_path / "short/events.parquet"), "--labels",
              str(tmp_path / "short/labels.csv"), "--mlruns", str(tmp_path / "m"), "--store", str(work / "store"),
              "--no-time-to-detection")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "SINGLE PERIOD" in res.stdout and "WARNING" in res.stdout
    assert "cannot see drift" in res.stdout
    report = json.loads(next((tmp_path / "m").rglob("holdout_report.json")).read_text())
    assert report["holdout"]["kind"] == "single_period"


def _score_peak_rss(events: Path, out: Path, work: Path) -> float:
    """Peak RSS (MiB) of one `distillguard score` run: measured in a child of a fresh child, so that
    `ru_maxrss` of its children is this run's alone."""
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(r.stderr[-3000:]); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", probe, *CLI, "score", "--events", str(events), "--out", str(out),
                        "--mlruns", str(work / "mlruns-a"), "--store", str(work / "store")],
                       capture_output=True, text=True, timeout=900, check=False)
    rc, rss_kib = r.stdout.split()
    assert rc == "0", r.stderr
    return int(rss_kib) / 1024


def test_two_events_dated_far_apart_change_neither_what_score_finds_nor_its_memory(work, first, tmp_path):
    """A campaign account's events dated 2000-01-02 and now (both inside the contract's bounds): the
    window end stays where the accounts are (before, it moved to now and left that account alone in
    the population), and memory follows the window, not the span (before, a feature allocated per
    hour between the oldest and newest event: 6 GB)."""
    events = pd.read_parquet(work / "fresh/events.parquet")
    labels = pd.read_csv(work / "fresh/labels.csv", dtype={"account_id": str})
    harvesters = events[events["account_id"].isin(labels.loc[labels["label"] == 1, "account_id"])]
    target = harvesters.groupby("account_id").size().idxmax()
    last = events[events["account_id"] == target].tail(1)
    dates = pd.to_datetime([pd.Timestamp("2000-01-02", tz="UTC"), pd.Timestamp.now(tz="UTC").floor("s")])
    outliers = pd.concat([last, last], ignore_index=True).assign(ts=dates.as_unit(str(events["ts"].dt.unit)),
                                                                 prompt=["What time is it?", "And now?"])
    plain, hostile = tmp_path / "plain.parquet", tmp_path / "hostile.parquet"
    events.to_parquet(plain, index=False)
    pd.concat([events, outliers], ignore_index=True).to_parquet(hostile, index=False)

    _score_peak_rss(plain, tmp_path / "warm.csv", work)  # embeds what the two measured runs then find stored
    rss_plain = _score_peak_rss(plain, tmp_path / "plain.csv", work)
    rss_hostile = _score_peak_rss(hostile, tmp_path / "hostile.csv", work)
    assert rss_hostile <= 1.2 * rss_plain, (rss_hostile, rss_plain)
    a = pd.read_csv(tmp_path / "plain.csv", dtype={"account_id": str}).set_index("account_id")
    b = pd.read_csv(tmp_path / "hostile.csv", dtype={"account_id": str}).set_index("account_id")
    assert set(b.index) == set(a.index)  # before: the one account dated now
    # the two extra prompts join the population's state (an account's score follows its neighbours), so a
    # neighbour on a threshold may move; nothing more
    others = a.index.drop(target)
    assert (a.loc[others, "decision"] == b.loc[others, "decision"]).mean() >= 0.95
    assert b.loc[target, "decision"] != "allow" or a.loc[target, "decision"] == "allow"

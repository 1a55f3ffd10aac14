"""Retraining when a new campaign is labelled, as an ML engineer runs it: a champion trained on the first
data, then `train` again with the verdict export added (a campaign the first data never named). Real
processes, a real MLflow registry, the real embedder, simulated campaigns. Then the package side: the
registry folder copied and the original deleted still scores; the Python API; the pyfunc's signature."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

CLI = [sys.executable, "-m", "distillguard.cli"]
NEW = "spring-wave"  # the name analysts gave the campaign they confirmed
# the first data has every campaign style but one; the new campaign is of that style
FIRST_STYLES = ["reasoning", "agentic_coding", "rubric_grading", "capability_sweep"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=900, cwd=cwd, check=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("retrain")
    (root / "first.json").write_text(json.dumps({"campaign_styles": FIRST_STYLES}))
    assert run("simulate", "--out", str(root / "sim"), "--accounts", "260", "--seed", "4",
               "--config", str(root / "first.json")).returncode == 0
    # two weeks of gateway traffic after the first data, with one new campaign in it
    (root / "later.json").write_text(json.dumps({
        "campaign_styles": ["safe_rewrite"], "campaigns_per_style": 1, "harvest_fraction": 0.3, "days": 14,
        "release_day": 3, "start": "2026-04-13T00:00:00Z"}))
    assert run("simulate", "--out", str(root / "later"), "--accounts", "120", "--seed", "9",
               "--config", str(root / "later.json")).returncode == 0
    # what `labels export` writes: the accounts analysts confirmed, under the campaign name they gave
    later = pd.read_csv(root / "later/labels.csv")
    later[later["label"] == 1].assign(campaign=NEW).to_csv(root / "verdicts.csv", index=False)
    return root


def train(work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("train", "--mlruns", str(work / "a/mlruns"), "--store", str(work / "store"),
               "--no-time-to-detection", *extra)


@pytest.fixture(scope="module")
def champion(work) -> dict:
    res = train(work, "--events", str(work / "sim/events.parquet"), "--labels", str(work / "sim/labels.csv"),
                "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def retrained(work, champion) -> subprocess.CompletedProcess[str]:
    # the verdict export's events and labels beside the first data: files and folders both work
    (work / "export").mkdir()
    shutil.copy(work / "later/events.parquet", work / "export/events.parquet")
    return train(work, "--events", str(work / "sim/events.parquet"), "--events", str(work / "export"),
                 "--labels", str(work / "sim/labels.csv"), "--labels", str(work / "verdicts.csv"))


def holdout_report(mlruns: Path, run_id: str) -> dict:
    return json.loads(next(p for p in mlruns.rglob("holdout_report.json") if run_id in str(p)).read_text())


def test_train_json_prints_the_result_and_exit_0_means_promoted(champion):
    assert champion["promoted"] is True and champion["exit_code"] == 0
    assert champion["model_version"] == "1" and champion["champion_before"] is None
    assert re.fullmatch(r"[0-9a-f]{32}", champion["run_id"])
    figures = champion["gate"]["figures"]
    assert set(figures) >= {"oot.recall_at_1pct_fpr", "oot.pr_auc", "oot.organic_blocked",
                            "adaptive.recall_at_1pct_fpr"}
    assert 0 <= figures["oot.recall_at_1pct_fpr"]["candidate"] <= 1
    assert figures["oot.recall_at_1pct_fpr"]["champion"] is None  # there was none
    assert champion["holdout"]["kind"] == "out_of_time" and champion["new_campaigns"] == {}


def test_a_newly_labelled_campaign_joins_the_hold_out_and_the_report_shows_it_before_and_after(
        work, champion, retrained):
    assert retrained.returncode in (0, 3), retrained.stderr[-3000:]
    out = " ".join(retrained.stdout.split())  # the report's lines as rich wrapped them, joined
    # exit code and verdict agree
    assert ("promoted to champion" in out) == (retrained.returncode == 0)
    assert ("NOT promoted" in out) == (retrained.returncode == 3)
    # 30% of the campaign's accounts (chosen by a hash of the account id) join the frozen hold-out
    verdicts = pd.read_csv(work / "verdicts.csv")
    held = round(0.3 * len(verdicts))
    assert f"newly labelled campaign {NEW}: {held} of its {len(verdicts)} accounts join the hold-out" in out
    assert "Newly labelled campaigns in the hold-out" in out and NEW in out
    run_id = re.search(r"\(run ([0-9a-f]{32}),", out).group(1)
    report = holdout_report(work / "a/mlruns", run_id)
    row = report["new_campaigns"][NEW]
    assert row["held_out"] == held and row["added_this_run"] is True and row["champion_version"] == "1"
    # recall on the new campaign before (the champion) and after (the new model), on the same accounts
    before, after = row["champion_recall_at_1pct_fpr"], row["recall_at_1pct_fpr"]
    assert 0 <= before <= 1 and 0 <= after <= 1
    assert report["out_of_time"]["by_campaign"][NEW]["accounts"] == held
    print(f"\n{NEW}: {held} held-out accounts, recall at 1% FPR before {before:.3f} after {after:.3f}; "
          f"exit {retrained.returncode}")
    # the frozen core stays and the campaign is kept in the hold-out for every later candidate
    ext = json.loads((work / "a/mlruns/holdout/extension/extension.json").read_text())
    assert [c["campaign"] for c in ext["campaigns"]] == [NEW]
    core = pd.read_csv(work / "a/mlruns/holdout/labels.csv")
    assert NEW not in set(core["campaign"])
    held_ids = set(pd.read_csv(work / "a/mlruns/holdout/extension/labels.csv")["account_id"])
    assert len(held_ids) == held and held_ids <= set(verdicts["account_id"])


def test_exit_3_when_registered_but_not_promoted(work, retrained):
    weak = json.dumps({"num_boost_round": 1, "num_leaves": 2, "min_data_in_leaf": 100000})
    res = train(work, "--events", str(work / "sim/events.parquet"), "--events", str(work / "export"),
                "--labels", str(work / "sim/labels.csv"), "--labels", str(work / "verdicts.csv"),
                "--lgb-params", weak, "--json")
    assert res.returncode == 3, res.stderr[-3000:]
    result = json.loads(res.stdout)  # stdout is the JSON document alone; progress went to stderr
    assert result["promoted"] is False and result["exit_code"] == 3 and result["model_version"] == "3"
    assert "NOT promoted" in result["verdict"]
    gate = result["gate"]["figures"]
    assert gate[f"new_campaigns.{NEW}.recall_at_1pct_fpr"]["champion"] is not None
    assert result["new_campaigns"][NEW]["added_this_run"] is False  # kept from the run that added it
    assert "- scoring the out-of-time hold-out" in res.stderr


def test_a_copied_registry_scores_with_the_original_deleted(work, retrained, tmp_path):
    shutil.copytree(work / "a", tmp_path / "b")
    shutil.copytree(work / "a", work / "a.keep")  # the other tests of this module still read it
    shutil.rmtree(work / "a")
    try:
        res = run("score", "--events", str(work / "later/events.parquet"), "--out", str(tmp_path / "s.csv"),
                  "--mlruns", str(tmp_path / "b/mlruns"), "--store", str(work / "store"), "--json")
        assert res.returncode == 0, res.stderr[-3000:]
        assert not (work / "a").exists()  # nothing was written back to the old place
        summary = json.loads(res.stdout)
        scores = pd.read_csv(tmp_path / "s.csv")
        assert len(scores) == summary["accounts"] == pd.read_csv(work / "later/labels.csv").shape[0]
        assert list(scores.columns) == ["account_id", "score", "decision", "review_threshold", "block_threshold",
                                        "reasons"]
        th = summary["thresholds"]
        assert th["review"] < th["block"]
        assert set(scores["review_threshold"]) <= {round(th["review"], 6), round(th["cold_review"], 6)}
        assert set(scores["block_threshold"]) <= {round(th["block"], 6), round(th["cold_block"], 6)}
        # nothing a terminal would draw lands in captured output
        for stream in (res.stdout, res.stderr):
            assert "\r" not in stream and "\x1b[" not in stream
        # the copy is re-rooted: its recorded locations (where new runs write too) are under it
        listing = run("models", "--mlruns", str(tmp_path / "b/mlruns"), "--json")
        assert listing.returncode == 0, listing.stderr[-2000:]
        models = json.loads(listing.stdout)["models"]
        assert {"1", "2"} <= {m["version"] for m in models}
        assert all(m["thresholds"]["review"] <= m["thresholds"]["block"] for m in models)
        import sqlite3

        with sqlite3.connect(tmp_path / "b/mlruns/mlflow.db") as db:
            locations = [r[0] for r in db.execute("SELECT storage_location FROM model_versions")]
        assert all(str(tmp_path / "b/mlruns") in loc for loc in locations), locations
    finally:
        shutil.move(work / "a.keep", work / "a")


def test_the_logged_model_has_a_signature_and_loads_without_warnings(work, retrained):
    import mlflow.pyfunc

    from distillguard.training.registry import Registry

    reg = Registry(work / "a/mlruns")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = mlflow.pyfunc.load_model(str(reg.model_path("1")))
    assert not [w for w in caught if "type hint" in str(w.message)], [str(w.message) for w in caught]
    sig = model.metadata.signature
    assert sig is not None
    assert sig.inputs.input_names()[:3] == ["account_id", "ts", "prompt"]
    assert "decision" in sig.outputs.input_names() and "block_threshold" in sig.outputs.input_names()


def readme_python_example() -> str:
    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_python_api_example_runs(work, retrained, tmp_path, monkeypatch):
    # the README's folders: mlruns/ and runs/embeddings beside a fresh events file
    shutil.copytree(work / "a/mlruns", tmp_path / "mlruns")
    (tmp_path / "runs").mkdir()
    shutil.copytree(work / "store", tmp_path / "runs/embeddings")
    (tmp_path / "runs/fresh").mkdir()
    shutil.copy(work / "later/events.parquet", tmp_path / "runs/fresh/events.parquet")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_python_example(), "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    scores = namespace["scores"]
    assert list(scores.columns) == ["account_id", "score", "decision", "review_threshold", "block_threshold",
                                    "reasons"]
    assert len(scores) == pd.read_parquet(tmp_path / "runs/fresh/events.parquet")["account_id"].nunique()
    assert set(scores["decision"]) <= {"allow", "review", "block"}


def test_score_events_refuses_a_frame_outside_the_contract_naming_row_and_field(work, retrained):
    from distillguard import load_detector, score_events
    from distillguard.data.errors import ContractError

    detector = load_detector(mlruns=work / "a/mlruns", store=work / "store")
    events = pd.read_parquet(work / "later/events.parquet").head(50)
    with pytest.raises(ContractError, match="field 'prompt'"):
        score_events(events.drop(columns=["prompt"]), detector)
    bad = events.astype({"ts": str}).copy()
    bad.loc[bad.index[1], "ts"] = "yesterday"
    with pytest.raises(ContractError, match=r"events DataFrame row 2, field 'ts'"):
        score_events(bad, detector)
    scored = score_events(events, detector)
    assert set(scored["account_id"]) == set(events["account_id"])
    with pytest.raises(ValueError, match="no registry"):
        load_detector(mlruns=work / "nowhere")

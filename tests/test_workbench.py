"""The analyst workbench in the terminal: `workbench build`, `inspect`, `neighbours`, `campaigns`,
run as real commands against a small model trained on simulated traffic and the hold-out accounts
it never saw."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from distillguard.data.simulator import plan_accounts
from distillguard.data.simulator_config import SimulatorConfig
from distillguard.features.account_features import FeatureConfig
from distillguard.features.templating import tokens
from distillguard.features.window import account_windows

ACCOUNTS, SEED = 260, 5  # the training world
FRESH_ACCOUNTS, FRESH_SEED = 240, 1005  # a fresh week of traffic, none of it seen in training


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distillguard.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _ok(*args: str) -> subprocess.CompletedProcess:
    r = _run(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("workbench")
    _ok("simulate", "--out", str(root / "sim"), "--accounts", str(ACCOUNTS), "--seed", str(SEED))
    _ok("train", "--events", str(root / "sim" / "events.parquet"), "--labels", str(root / "sim" / "labels.csv"),
        "--mlruns", str(root / "mlruns"), "--store", str(root / "store"), "--no-time-to-detection")
    _ok("simulate", "--out", str(root / "fresh"), "--accounts", str(FRESH_ACCOUNTS), "--seed", str(FRESH_SEED))
    events_path = root / "fresh" / "events.parquet"
    labels = pd.read_csv(root / "fresh" / "labels.csv", dtype={"account_id": str})
    common = ("--mlruns", str(root / "mlruns"), "--store", str(root / "store"))
    build = _ok("workbench", "build", "--events", str(events_path), "--out", str(root / "wb"), *common)
    events = pd.read_parquet(events_path)
    sizes = events.groupby("account_id").size()
    campaign_sizes = labels[labels["label"] == 1].groupby("campaign").size()
    harvesters = labels[(labels["label"] == 1) & labels["campaign"].map(campaign_sizes).ge(3)]
    harvester = max(harvesters["account_id"], key=lambda a: sizes[a])
    return {"root": root, "events_path": events_path, "events": events, "labels": labels.set_index("account_id"),
            "harvester": harvester, "wb": ("--workbench", str(root / "wb"), *common), "common": common,
            "build_log": build.stderr}


def _inspect(world, account: str, *extra: str) -> dict:
    return json.loads(_ok("inspect", account, *world["wb"], "--json", *extra).stdout)


def _wrapper_runs(campaign_name: str) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    """The opening and closing token runs of the campaign's elicitation wrappers, from the simulator."""
    _, campaigns = plan_accounts(SimulatorConfig(accounts=FRESH_ACCOUNTS, seed=FRESH_SEED))
    camp = next(c for c in campaigns if c.name == campaign_name)
    heads = {tuple(tokens(w.prefix)[:5]) for w in camp.wrappers if w.prefix}
    tails = {tuple(tokens(w.suffix)[-5:]) for w in camp.wrappers if w.suffix}
    return heads, tails


def test_build_reports_what_it_did(world):
    assert "snapshot of" in world["build_log"] and "campaign components" in world["build_log"]
    meta = json.loads((world["root"] / "wb" / "meta.json").read_text())
    assert meta["accounts"] == world["events"]["account_id"].nunique()
    # the snapshot reads every account through the model's scoring window (its newest prompts)
    cfg = FeatureConfig()
    assert meta["prompts"] == len(account_windows(world["events"], cfg.window_events, cfg.window_days))


def test_inspect_harvester_shows_its_wrapper_and_campaign_neighbours(world):
    acct, labels = world["harvester"], world["labels"]
    view = _inspect(world, acct)
    assert view["account"]["account_id"] == acct
    assert view["account"]["decision"] in ("review", "block")
    assert view["account"]["reasons"]
    assert sum(c["size"] for c in view["clusters"]) == view["account"]["prompts"]

    # its clusters carry the campaign's elicitation wrapper as their skeleton
    heads, tails = _wrapper_runs(labels.loc[acct, "campaign"])
    skeletons = [c["skeleton"] for c in view["clusters"] if c["skeleton"]]
    found = [s for s in skeletons
             if tuple(tokens(s.split(" … ")[0])) in heads or tuple(tokens(s.split(" … ")[1])) in tails]
    assert found, (skeletons, heads, tails)

    # the nearest prompts of other accounts, in its largest clusters, come mostly from its campaign
    top = view["clusters"][:2]
    others = [n["account_id"] for c in top for n in c["account_neighbours"]]
    assert others and acct not in others
    same = [a for a in others if labels.loc[a, "campaign"] == labels.loc[acct, "campaign"]]
    assert len(same) / len(others) >= 0.4, (len(same), len(others))
    # and each neighbour row names that account's real score
    n = top[0]["account_neighbours"][0]
    assert _inspect(world, n["account_id"])["account"]["score"] == pytest.approx(n["score"])

    # organic neighbours are real organic prompts, with distances in [0, 2]
    org = [o for c in top for o in c["organic_neighbours"]]
    assert org and all(0.0 <= o["distance"] <= 2.0 and o["text"]["text"] for o in org)


def test_inspect_in_tables(world):
    out = _ok("inspect", world["harvester"], *world["wb"]).stdout
    assert world["harvester"] in out and "clusters of its prompts" in out and "nearest organic" in out
    # the decision is shown with the thresholds it was taken at
    assert re.search(r"review above \d\.\d{3}, block above \d\.\d{3}", " ".join(re.sub("[│╭╮╰╯─]", " ", out).split())), out[:2000]


def test_inspect_with_events_builds_once_then_reuses(world, tmp_path):
    args = ("inspect", world["harvester"], "--events", str(world["events_path"]), "--workbench", str(tmp_path / "wb"),
            *world["common"], "--json")
    first = _ok(*args)
    assert "building a workbench snapshot" in first.stderr
    second = _ok(*args)
    assert "building" not in second.stderr
    assert json.loads(second.stdout)["account"] == json.loads(first.stdout)["account"]


def test_redacted_inspect_shows_no_prompt_text(world):
    acct = world["harvester"]
    raw = _ok("inspect", acct, *world["wb"], "--json", "--redact").stdout
    view = json.loads(raw)
    prompts = world["events"].loc[world["events"]["account_id"] == acct, "prompt"]
    long_enough = [p for p in prompts if len(p) >= 20]
    assert long_enough and not any(p in raw or json.dumps(p)[1:-1] in raw for p in long_enough)
    ex = view["clusters"][0]["examples"][0]
    assert ex["redacted"] and ex["text"].startswith("[redacted ")
    # wrapper skeletons are cut from prompts: redacted too
    skeletons = [c["skeleton"] for c in view["clusters"] if c["skeleton"]]
    assert skeletons and all(sk.startswith("[redacted skeleton ") for sk in skeletons)


def test_unknown_account_is_a_clear_error(world):
    r = _run("inspect", "acct_nobody", *world["wb"])
    assert r.returncode == 1 and "acct_nobody" in r.stderr and "Traceback" not in r.stderr


def test_missing_snapshot_is_a_clear_error(world, tmp_path):
    r = _run("inspect", world["harvester"], "--workbench", str(tmp_path / "none"), *world["common"])
    assert r.returncode == 1 and "no workbench snapshot" in r.stderr and "Traceback" not in r.stderr


def test_neighbours_finds_the_accounts_that_sent_a_prompt(world):
    ev = world["events"]
    prompt = max(ev.loc[ev["account_id"] == world["harvester"], "prompt"], key=len)
    senders = set(ev.loc[ev["prompt"] == prompt, "account_id"])
    hits = json.loads(_ok("neighbours", prompt, *world["wb"], "--json").stdout)
    best = hits[0]
    assert best["source"] == "account" and best["distance"] < 0.01
    assert {a["account_id"] for a in best["accounts"]} == senders
    assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    assert any(h["source"] == "organic" for h in hits)


def test_campaigns_group_campaign_members(world):
    labels = world["labels"]
    found = json.loads(_ok("campaigns", *world["wb"], "--json", "--limit", "500").stdout)
    acct = world["harvester"]
    component = _inspect(world, acct)["account"]["component"]
    mine = next(c for c in found if c["component"] == component)
    assert mine["skeleton"] and mine["skeleton_accounts"] >= 2
    # the harvester's component holds other members of its campaign, with their scores
    others = [m for m in mine["members"] if m["account_id"] != acct]
    assert any(labels.loc[m["account_id"], "campaign"] == labels.loc[acct, "campaign"] for m in others)
    assert len(mine["members"]) == mine["size"]
    # harvesters are linked to other accounts far more often than organic accounts are
    linked = {m["account_id"] for c in found for m in c["members"]}
    in_component = labels.index.isin(list(linked))
    harvest_rate = in_component[labels["label"].to_numpy() == 1].mean()
    organic_rate = in_component[labels["label"].to_numpy() == 0].mean()
    assert harvest_rate >= 0.7 and harvest_rate >= 2 * organic_rate, (harvest_rate, organic_rate)


def test_campaigns_in_tables(world):
    top = json.loads(_ok("campaigns", *world["wb"], "--json").stdout)[0]
    out = _ok("campaigns", *world["wb"]).stdout
    assert "campaigns: accounts linked" in out
    assert top["members"][0]["account_id"] in out

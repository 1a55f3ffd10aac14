"""The `distillguard` command as a user runs it: a real process, real files, exit codes and messages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

CLI = [sys.executable, "-m", "distillguard.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    res = run("simulate", "--out", str(out), "--accounts", "150", "--seed", "2")
    assert res.returncode == 0, res.stderr
    return out


COMMANDS = ("simulate", "validate", "baseline", "features", "train", "score", "models", "promote", "rollback", "serve",
            "demo")


def test_every_subcommand_has_help():
    res = run("--help")
    assert res.returncode == 0
    assert [c for c in COMMANDS if c in res.stdout] == list(COMMANDS)
    for c in (*COMMANDS, "baseline fit"):
        sub = run(*c.split(), "--help")
        assert sub.returncode == 0 and "Usage" in sub.stdout, c


def test_simulate_writes_files_in_the_contract_that_validate(simulated):
    events = pd.read_parquet(simulated / "events.parquet")
    labels = pd.read_csv(simulated / "labels.csv")
    assert set(events["account_id"]) == set(labels["account_id"])
    assert list(labels.columns) == ["account_id", "label", "campaign"]
    res = run("validate", str(simulated / "events.parquet"), "--labels", str(simulated / "labels.csv"))
    assert res.returncode == 0, res.stderr
    assert "150 accounts" in res.stdout and "0 rejected" in res.stdout


def test_simulate_is_reproducible_from_the_command_line(simulated, tmp_path):
    res = run("simulate", "--out", str(tmp_path), "--accounts", "150", "--seed", "2")
    assert res.returncode == 0
    a = pd.read_parquet(simulated / "events.parquet")
    b = pd.read_parquet(tmp_path / "events.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_simulate_rejects_a_bad_config_with_the_field_name(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"hydra_mix": [0.7, 0.1]}))
    res = run("simulate", "--out", str(tmp_path / "o"), "--config", str(cfg))
    assert res.returncode == 1
    assert "hydra_mix" in res.stderr and "Traceback" not in res.stderr


def test_validate_bad_row_names_file_row_and_field_without_a_traceback(tmp_path):
    bad = tmp_path / "events.csv"
    bad.write_text("account_id,ts,prompt,asn\n"
                   "a1,2026-03-01T10:00:00Z,hello,123\n"
                   "a2,2026-03-01T10:01:00Z,hi there,AS13335\n")
    res = run("validate", str(bad))
    assert res.returncode == 1
    assert "events.csv" in res.stderr and "row 2" in res.stderr and "asn" in res.stderr
    assert "Traceback" not in res.stderr


def test_validate_skip_mode_counts_rejects_and_writes_the_side_file(tmp_path):
    bad = tmp_path / "events.jsonl"
    bad.write_text('{"account_id": "a1", "ts": "2026-03-01T10:00:00Z", "prompt": "hello"}\n'
                   '{"account_id": "", "ts": "2026-03-01T10:00:00Z", "prompt": "who am i"}\n'
                   '{"account_id": "a3", "ts": "yesterday", "prompt": "when"}\n')
    side = tmp_path / "rejected.jsonl"
    res = run("validate", str(bad), "--on-bad-rows", "skip", "--rejects", str(side))
    assert res.returncode == 0, res.stderr
    assert "2 rejected" in res.stdout
    rejected = [json.loads(line) for line in side.read_text().splitlines()]
    assert {(r["row"], r["field"]) for r in rejected} == {(2, "account_id"), (3, "ts")}


def test_out_of_range_timestamps_are_bad_rows_naming_ts_and_the_row(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("account_id,ts,prompt\n"
                      "a1,2026-03-01T10:00:00Z,hello\n"
                      "a2,9999-12-31T00:00:00Z,a harvester's clock\n"
                      "a3,1970-01-01T00:00:00Z,backfilled\n")
    res = run("validate", str(events))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "events.csv row 2, field 'ts'" in res.stderr and "9999-12-31" in res.stderr, res.stderr
    side = tmp_path / "rejected.jsonl"
    res = run("validate", str(events), "--on-bad-rows", "skip", "--rejects", str(side))
    assert res.returncode == 0 and "1 rows ok, 2 rejected" in res.stdout, res.stdout
    rejected = [json.loads(line) for line in side.read_text().splitlines()]
    assert [(r["row"], r["field"]) for r in rejected] == [(2, "ts"), (3, "ts")]
    assert "before 2000-01-01" in rejected[1]["reason"] and "now + 1 day" in rejected[0]["reason"]
    for command in ("score", "features"):  # the events are read, and refused, before any model is looked for
        res = run(command, "--events", str(events), "--out", str(tmp_path / "out.csv"), "--mlruns", str(tmp_path / "m"))
        assert res.returncode == 1 and "row 2, field 'ts'" in res.stderr and "Traceback" not in res.stderr, res.stderr
    # the bounds are the command's to set
    res = run("validate", str(events), "--ts-not-before", "1969-12-31", "--ts-max-ahead-hours", "100000000")
    assert res.returncode == 0 and "3 rows ok" in res.stdout, res.stderr


def test_validate_refuses_an_unknown_policy(tmp_path):
    res = run("validate", str(tmp_path / "x.csv"), "--on-bad-rows", "ignore")
    assert res.returncode == 1 and "--on-bad-rows" in res.stderr


def test_serve_refuses_to_start_without_api_keys(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "DISTILLGUARD_API_KEYS"}
    res = subprocess.run([*CLI, "serve", "--state", str(tmp_path / "s"), "--port", "0"], capture_output=True,
                         text=True, timeout=120, env=env)
    assert res.returncode == 1 and "DISTILLGUARD_API_KEYS" in res.stderr and "Traceback" not in res.stderr


def test_a_registry_written_by_another_mlflow_version_is_a_one_line_error(tmp_path):
    import sqlite3

    ok = run("models", "--mlruns", str(tmp_path / "mlruns"))
    assert ok.returncode == 0, ok.stderr
    db = sqlite3.connect(tmp_path / "mlruns" / "mlflow.db")
    # a revision no MLflow release has: what any other release's schema looks like to this one
    db.execute("UPDATE alembic_version SET version_num = '000000000bad'")
    db.commit()
    db.close()
    res = run("models", "--mlruns", str(tmp_path / "mlruns"))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "cannot open the registry" in res.stderr and "mlflow db upgrade" in res.stderr


def test_wrong_paths_profiles_and_empty_inputs_are_one_line_errors(simulated, tmp_path):
    events = simulated / "events.parquet"
    empty = tmp_path / "empty.parquet"
    pd.read_parquet(events).iloc[:0].to_parquet(empty)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = {
        "holds no events": ("score", "--events", str(empty), "--out", str(tmp_path / "s.csv"),
                            "--mlruns", str(tmp_path / "mlruns")),
        "is a folder; give a file path": ("score", "--events", str(events), "--out", str(tmp_path)),
        "is a file; give a folder": ("score", "--events", str(events), "--out", str(tmp_path / "s.csv"),
                                     "--store", str(a_file)),
        "unknown embedder profile 'nope'": ("baseline", "fit", "--events", str(events), "--organic-events",
                                            str(events), "--out", str(tmp_path / "b"), "--profile", "nope"),
    }
    for said, args in cases.items():
        res = run(*args)
        assert res.returncode != 0, args
        assert "Traceback" not in res.stderr, res.stderr[-2000:]
        plain = " ".join(re.sub("[│╭╮╰╯─]", " ", res.stderr).split())  # rich's error box, unwrapped
        assert said in plain, (said, res.stderr[-2000:])


def test_version_flag_prints_the_installed_version():
    from importlib.metadata import version

    res = run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"distillguard {version('distillguard')}"


def test_validate_json_is_one_document_on_stdout(simulated, tmp_path):
    res = run("validate", str(simulated / "events.parquet"), "--labels", str(simulated / "labels.csv"), "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] is True and report["accounts"] == 150 and report["labels_ok"] == 150
    assert report["rows_ok"] == len(pd.read_parquet(simulated / "events.parquet"))
    bad = tmp_path / "events.csv"
    bad.write_text("account_id,ts,prompt\na1,2026-03-01T10:00:00Z,hello\na2,yesterday,hi\n")
    res = run("validate", str(bad), "--json")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert json.loads(res.stdout) == {"ok": False, "error": {"file": str(bad), "row": 2, "field": "ts",
                                                             "reason": "unparseable timestamp 'yesterday'"}}


def test_no_progress_frames_or_colour_codes_off_a_terminal(tmp_path):
    # captured output is not a terminal: bars (carriage-return frames) and ANSI colour stay out of it
    for args in (("simulate", "--out", str(tmp_path / "sim"), "--accounts", "40", "--seed", "3"),
                 ("validate", str(tmp_path / "sim/events.parquet"), "--labels", str(tmp_path / "sim/labels.csv")),
                 ("baseline", "fit", "--events", str(tmp_path / "sim/events.parquet"), "--labels",
                  str(tmp_path / "sim/labels.csv"), "--out", str(tmp_path / "b"), "--store", str(tmp_path / "st"))):
        res = run(*args)
        assert res.returncode == 0, res.stderr[-2000:]
        for stream in (res.stdout, res.stderr):
            assert "\r" not in stream and "\x1b[" not in stream, (args[0], stream[-500:])
        assert res.stdout.strip() and not res.stdout.startswith("\n")

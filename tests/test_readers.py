"""Streaming readers of the traffic contract: formats, timestamps, bad rows and the rejects side file."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillguard.data.contract import EVENT_COLUMNS, EVENTS_SCHEMA, LABELS_SCHEMA
from distillguard.data.errors import ContractError
from distillguard.data.readers import (
    ReadStats,
    default_rejects_path,
    iter_event_batches,
    read_events,
    read_labels,
)

FORMATS = (".csv", ".jsonl", ".parquet")


def event(account: str | None = "acct-1", ts: str | None = "2026-03-01T12:00:00Z",
          prompt: str | None = "write a haiku", **optional: object) -> dict:
    return {"account_id": account, "ts": ts, "prompt": prompt, **optional}


def good_events(n: int = 3) -> list[dict]:
    return [event(f"acct-{i % 2}", f"2026-03-01T12:00:{i:02d}Z", f"prompt number {i}", asn=64500 + i,
                  model="m-large", ip=f"10.0.0.{i}") for i in range(n)]


def raises_contract(path: Path, row: int | None, field: str | None, *fragments: str):
    """Read `path` in fail mode and check the error names the file, the row and the field."""
    with pytest.raises(ContractError) as info:
        read_events(path)
    err = info.value
    assert (err.file, err.row, err.field) == (str(path), row, field)
    where = f"{path} row {row}" if row is not None else str(path)
    assert str(err).startswith(where + (f", field '{field}'" if field else "") + ": "), str(err)
    for fragment in fragments:
        assert fragment in err.reason
    return err


# --- formats and timestamps -----------------------------------------------------------------


def full_event(**values: object) -> dict:
    """An event row with every contract column, the optional ones null unless given."""
    return {col: values.get(col) for col in EVENT_COLUMNS}


def as_utc(text: str) -> datetime:
    stamp = datetime.fromisoformat(text)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def test_three_formats_give_equal_frames(tmp_path: Path, write_rows) -> None:
    rows = [
        full_event(account_id="a1", ts="2026-03-01T12:00:00+05:30", prompt="hello", conversation_id="c1",
                   asn=64512, ip="10.1.1.1"),
        full_event(account_id="a2", ts="2026-03-01 08:15:30", prompt="second\nline, with comma", model="m-small",
                   user_agent='x "q"'),
        full_event(account_id="a1", ts="2026-03-01T23:59:59.250-01:00", prompt="third", payment_fingerprint="pf-9"),
    ]
    frames = [read_events(write_rows(tmp_path / f"events{s}", rows)) for s in (".csv", ".jsonl")]
    typed = pa.Table.from_pylist([{**r, "ts": as_utc(r["ts"])} for r in rows], schema=EVENTS_SCHEMA)
    frames.append(read_events(write_rows(tmp_path / "events.parquet", typed)))

    expected_ts = [pd.Timestamp(t) for t in ("2026-03-01T06:30:00Z", "2026-03-01T08:15:30Z",
                                             "2026-03-02T00:59:59.250Z")]
    for frame in frames:
        assert list(frame.columns) == list(EVENT_COLUMNS)
        assert str(frame["ts"].dtype) == "datetime64[us, UTC]"
        assert str(frame["asn"].dtype) == "Int64"
        assert list(frame["ts"]) == list(expected_ts)
        assert frame["prompt"].tolist() == ["hello", "second\nline, with comma", "third"]
        assert frame["asn"].tolist()[:1] == [64512] and frame["asn"].isna().tolist() == [False, True, True]
        assert frame["user_agent"].tolist()[1] == 'x "q"'
        pd.testing.assert_frame_equal(frame, frames[0])


@pytest.mark.parametrize("suffix", (".csv", ".jsonl"))
def test_timestamps_with_offsets_are_converted_to_utc(tmp_path: Path, write_rows, suffix: str) -> None:
    stamps = ["2026-03-01T12:00:00+02:00", "2026-03-01T12:00:00-0700", "2026-03-01T12:00:00Z",
              "2026-03-01T12:00:00", "2026-03-01T12:00:00.123456+00:00"]
    path = write_rows(tmp_path / f"e{suffix}", [event(ts=s) for s in stamps])
    got = [t.isoformat() for t in read_events(path)["ts"]]
    assert got == ["2026-03-01T10:00:00+00:00", "2026-03-01T19:00:00+00:00", "2026-03-01T12:00:00+00:00",
                   "2026-03-01T12:00:00+00:00", "2026-03-01T12:00:00.123456+00:00"]


def test_parquet_timestamp_columns_naive_is_utc_and_zoned_is_converted(tmp_path: Path) -> None:
    base = datetime(2026, 3, 1, 12, 0, 0)
    for tz, expected_hour in ((None, 12), ("Asia/Kolkata", 12), ("America/New_York", 12)):
        ts = pa.array([base], pa.timestamp("ns", tz=tz))  # instant 12:00 UTC stored either way
        table = pa.table({"account_id": ["a"], "ts": ts, "prompt": ["p"]})
        path = tmp_path / f"e-{tz or 'naive'}.parquet".replace("/", "_")
        pq.write_table(table, path)
        got = read_events(path)["ts"].iloc[0]
        assert got == pd.Timestamp("2026-03-01T12:00:00Z"), tz
    zoned = pa.array([datetime(2026, 3, 1, 12, tzinfo=timezone(timedelta(hours=3)))], pa.timestamp("us", "+03:00"))
    pq.write_table(pa.table({"account_id": ["a"], "ts": zoned, "prompt": ["p"]}), tmp_path / "z.parquet")
    assert read_events(tmp_path / "z.parquet")["ts"].iloc[0] == pd.Timestamp("2026-03-01T09:00:00Z")


@pytest.mark.parametrize("suffix", FORMATS)
def test_absent_optional_columns_are_null_and_extras_are_warned(tmp_path: Path, write_rows, suffix: str) -> None:
    rows = [{"account_id": "a", "ts": "2026-01-01T00:00:00Z", "prompt": "p", "shoe_size": 42, "asn": 7}]
    if suffix == ".parquet":
        rows = [{**rows[0], "ts": datetime(2026, 1, 1, tzinfo=timezone.utc)}]
    stats = ReadStats()
    frame = read_events(write_rows(tmp_path / f"e{suffix}", rows), stats=stats)
    assert frame.loc[0, "asn"] == 7
    for col in ("conversation_id", "model", "ip", "payment_fingerprint", "user_agent"):
        assert frame[col].isna().all(), col
    assert stats.warnings == [f"{tmp_path / f'e{suffix}'}: ignoring unknown columns: shoe_size"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_iter_event_batches_streams_in_several_batches(tmp_path: Path, write_rows, suffix: str) -> None:
    rows = good_events(23)
    if suffix == ".parquet":
        rows = [{**r, "ts": datetime.fromisoformat(r["ts"])} for r in rows]
    path = write_rows(tmp_path / f"big{suffix}", rows)
    batches = list(iter_event_batches(path, batch_rows=5))
    assert [b.num_rows for b in batches] == [5, 5, 5, 5, 3]
    assert all(b.schema == EVENTS_SCHEMA for b in batches)
    prompts = [p for b in batches for p in b.column("prompt").to_pylist()]
    assert prompts == [f"prompt number {i}" for i in range(23)]


def test_iter_event_batches_checks_extension_and_policy_on_call(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"events\.json: unsupported file extension '\.json'"):
        iter_event_batches(tmp_path / "events.json")
    with pytest.raises(ValueError, match="on_bad_rows"):
        iter_event_batches(tmp_path / "events.csv", on_bad_rows="drop")  # type: ignore[arg-type]


# --- bad rows, fail mode ----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", FORMATS)
def test_missing_required_column_is_file_level_in_both_modes(tmp_path: Path, write_rows, suffix: str) -> None:
    rows = [{"account_id": "a", "prompt": "p"}, {"account_id": "b", "prompt": "q"}]
    path = write_rows(tmp_path / f"e{suffix}", rows)
    err = raises_contract(path, None, "ts", "missing required column")
    assert str(err).startswith(f"{path}, field 'ts': missing required column")
    with pytest.raises(ContractError) as info:
        read_events(path, on_bad_rows="skip")
    assert (info.value.row, info.value.field) == (None, "ts")
    assert not default_rejects_path(path).exists()


@pytest.mark.parametrize("suffix", (".csv", ".jsonl"))
def test_unparseable_timestamp(tmp_path: Path, write_rows, suffix: str) -> None:
    rows = good_events(3) + [event(ts="2026-13-45T99")]
    path = write_rows(tmp_path / f"events{suffix}", rows)
    err = raises_contract(path, 4, "ts", "unparseable timestamp '2026-13-45T99'")
    assert str(err) == f"{path} row 4, field 'ts': unparseable timestamp '2026-13-45T99'"


@pytest.mark.parametrize(("suffix", "ts", "reason"), [(".csv", "", "ts is empty"), (".jsonl", None, "ts is null"),
                                                     (".jsonl", "  ", "ts is empty")])
def test_missing_timestamp_value(tmp_path: Path, write_rows, suffix: str, ts: str | None, reason: str) -> None:
    path = write_rows(tmp_path / f"e{suffix}", [event(), event(ts=ts)])
    err = raises_contract(path, 2, "ts")
    assert err.reason == reason


@pytest.mark.parametrize("bad_ts", ["now", "today", "yesterday 5pm", "1700000000", "01/03/2026"])
def test_non_iso_timestamps_are_rejected(tmp_path: Path, write_rows, bad_ts: str) -> None:
    path = write_rows(tmp_path / "e.csv", [event(), event(ts=bad_ts)])
    raises_contract(path, 2, "ts", f"unparseable timestamp '{bad_ts}'")


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("account", [None, "", "   "])
def test_null_or_empty_account_id(tmp_path: Path, write_rows, suffix: str, account: str | None) -> None:
    rows = good_events(2) + [event(account=account)]
    path = write_rows(tmp_path / f"e{suffix}", rows)
    raises_contract(path, 3, "account_id", "account_id is")


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("asn", ["AS123", "1.5", "abc", "12 34"])
def test_non_integer_asn(tmp_path: Path, write_rows, suffix: str, asn: str) -> None:
    rows = good_events(2) + [event(asn=str(asn))]
    rows = [{**r, "asn": str(r["asn"])} for r in rows]  # one column type in every format
    path = write_rows(tmp_path / f"e{suffix}", rows)
    raises_contract(path, 3, "asn", f"non-integer asn '{asn}'")


def test_float_asn_column_in_parquet(tmp_path: Path) -> None:
    table = pa.table({"account_id": ["a", "b", "c"], "ts": ["2026-01-01T00:00:00Z"] * 3, "prompt": ["p"] * 3,
                      "asn": pa.array([64512.0, float("nan"), 1.5])})  # NaN: a float column's null
    pq.write_table(table, tmp_path / "e.parquet")
    raises_contract(tmp_path / "e.parquet", 3, "asn", "non-integer asn '1.5'")
    frame = read_events(tmp_path / "e.parquet", on_bad_rows="skip")
    assert frame["asn"].tolist()[0] == 64512 and frame["asn"].isna().tolist() == [False, True]


@pytest.mark.parametrize("suffix", (".jsonl", ".parquet"))
def test_null_prompt(tmp_path: Path, write_rows, suffix: str) -> None:
    rows = good_events(1) + [event(prompt=None)]
    if suffix == ".parquet":
        rows = [{**r, "ts": datetime.fromisoformat(r["ts"])} for r in rows]
    path = write_rows(tmp_path / f"e{suffix}", rows)
    raises_contract(path, 2, "prompt", "prompt is null")


@pytest.mark.parametrize("suffix", FORMATS)
def test_empty_prompt(tmp_path: Path, write_rows, suffix: str) -> None:
    path = write_rows(tmp_path / f"e{suffix}", good_events(1) + [event(prompt=" \t ")])
    raises_contract(path, 2, "prompt", "prompt is empty")


def test_fail_mode_names_the_earliest_bad_row_of_a_batch(tmp_path: Path, write_rows) -> None:
    rows = good_events(2) + [event(prompt=None), event(ts="later?"), event(account="")]
    rows[0]["ts"] = "garbage"
    path = write_rows(tmp_path / "e.jsonl", rows)
    raises_contract(path, 1, "ts", "unparseable timestamp 'garbage'")


def test_parquet_row_numbers_count_across_batches(tmp_path: Path) -> None:
    n = 11
    table = pa.table({"account_id": [f"a{i}" for i in range(n)],
                      "ts": pa.array([datetime(2026, 1, 1)] * n, pa.timestamp("us")),
                      "prompt": ["p" if i != 7 else None for i in range(n)]})
    pq.write_table(table, tmp_path / "e.parquet", row_group_size=4)
    with pytest.raises(ContractError) as info:
        list(iter_event_batches(tmp_path / "e.parquet", batch_rows=3))
    assert (info.value.row, info.value.field) == (8, "prompt")


def test_csv_rows_count_records_not_lines_and_survive_malformed_rows(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(
        "account_id,ts,prompt\n"
        'a,2026-01-01T00:00:00Z,"a prompt\nover two lines"\n'  # row 1
        "b,2026-01-01T00:00:00Z,p,EXTRA\n"  # row 2: malformed
        "c,2026-01-01T00:00:00Z,p\n"  # row 3
        "d,not-a-time,p\n",  # row 4
        encoding="utf-8",
    )
    raises_contract(path, 2, None, "malformed CSV row: expected 3 fields, got 4")
    stats = ReadStats()
    frame = read_events(path, on_bad_rows="skip", stats=stats)
    assert frame["account_id"].tolist() == ["a", "c"]
    rejects = [json.loads(line) for line in default_rejects_path(path).read_text().splitlines()]
    assert [(r["row"], r["field"]) for r in rejects] == [(2, None), (4, "ts")]
    assert rejects[0]["record"] == {"_raw": "b,2026-01-01T00:00:00Z,p,EXTRA"}


def test_invalid_jsonl_lines_name_their_line_number(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    good = json.dumps(event())
    path.write_text(f"{good}\n\n{good}\n{{not json\n[1, 2]\n", encoding="utf-8")
    raises_contract(path, 4, None, "invalid JSON")
    read_events(path, on_bad_rows="skip")
    rejects = [json.loads(line) for line in default_rejects_path(path).read_text().splitlines()]
    assert [(r["row"], r["reason"]) for r in rejects] == [
        (4, "invalid JSON: Expecting property name enclosed in double quotes at column 2"),
        (5, "expected a JSON object, got list"),
    ]


def test_corrupt_missing_and_unsupported_files_name_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "events.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet at all")
    raises_contract(corrupt, None, None, "corrupt or unreadable Parquet file")
    raises_contract(tmp_path / "absent.csv", None, None, "file not found")
    binary = tmp_path / "events.csv"
    binary.write_bytes(b"account_id,ts,prompt\n\xff\xfe,2026-01-01T00:00:00Z,p\n")
    raises_contract(binary, None, None, "corrupt or unreadable")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    raises_contract(empty, None, None, "no header")
    with pytest.raises(ContractError, match=r"events\.txt: unsupported file extension '\.txt'; expected one of"):
        read_events(tmp_path / "events.txt")


# --- skip mode --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", FORMATS)
def test_skip_mode_writes_rejects_and_keeps_good_rows(tmp_path: Path, write_rows, suffix: str) -> None:
    rows = [event("good-1", asn="1"), event("bad-asn", asn="AS99"), event("", asn="2"),
            event("bad-ts", ts="yesterday", asn="3"), event("good-2", asn=None)]
    path = write_rows(tmp_path / f"events{suffix}", rows)
    stats = ReadStats()
    frame = read_events(path, on_bad_rows="skip", stats=stats)

    assert frame["account_id"].tolist() == ["good-1", "good-2"]
    assert frame["asn"].tolist()[0] == 1 and pd.isna(frame["asn"].iloc[1])
    assert (stats.rows_ok, stats.rows_rejected) == (2, 3)
    assert stats.rejects_path == default_rejects_path(path) == tmp_path / f"events{suffix}.rejected.jsonl"
    rejects = [json.loads(line) for line in stats.rejects_path.read_text().splitlines()]
    assert [(r["file"], r["row"], r["field"]) for r in rejects] == [
        (str(path), 2, "asn"), (str(path), 3, "account_id"), (str(path), 4, "ts")]
    assert rejects[0]["reason"] == "non-integer asn 'AS99'"
    assert rejects[1]["reason"] == "account_id is empty"
    assert rejects[2]["reason"] == "unparseable timestamp 'yesterday'"
    assert rejects[0]["record"]["account_id"] == "bad-asn" and rejects[0]["record"]["asn"] == "AS99"
    assert rejects[2]["record"]["ts"] == "yesterday"


def test_skip_mode_custom_rejects_path_and_no_stale_side_file(tmp_path: Path, write_rows) -> None:
    path = write_rows(tmp_path / "e.csv", [event(), event(prompt="")])
    side = tmp_path / "side.jsonl"
    read_events(path, on_bad_rows="skip", rejects_path=side)
    assert json.loads(side.read_text())["reason"] == "prompt is empty"

    write_rows(tmp_path / "e.csv", [event()])  # fixed file: the old side file must not linger
    stats = ReadStats()
    read_events(path, on_bad_rows="skip", rejects_path=side, stats=stats)
    assert not side.exists() and stats.rejects_path is None and stats.rows_rejected == 0


# --- labels -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", FORMATS)
def test_read_labels(tmp_path: Path, write_rows, suffix: str) -> None:
    rows = [{"account_id": "a", "label": 1, "campaign": "hydra"}, {"account_id": "b", "label": 0, "campaign": "student"}]
    frame = read_labels(write_rows(tmp_path / f"labels{suffix}", rows))
    assert str(frame["label"].dtype) == "int8"
    assert frame.to_dict("records") == rows
    assert pa.Schema.from_pandas(frame, preserve_index=False).names == LABELS_SCHEMA.names


def test_duplicate_labels_name_both_rows(tmp_path: Path, write_rows) -> None:
    rows = [{"account_id": a, "label": 1, "campaign": "c"} for a in ("a", "b", "c", "b")]
    path = write_rows(tmp_path / "labels.csv", rows)
    with pytest.raises(ContractError) as info:
        read_labels(path)
    assert str(info.value) == f"{path} row 4, field 'account_id': duplicate label for account_id 'b' (first at row 2)"


@pytest.mark.parametrize(("label", "reason"), [("2", "got '2'"), ("yes", "got 'yes'"), ("-1", "got '-1'"),
                                               ("", "label is empty")])
def test_label_must_be_zero_or_one(tmp_path: Path, write_rows, label: str, reason: str) -> None:
    rows = [{"account_id": "a", "label": "1", "campaign": "c"}, {"account_id": "b", "label": label, "campaign": "c"}]
    path = write_rows(tmp_path / "labels.csv", rows)
    with pytest.raises(ContractError) as info:
        read_labels(path)
    assert (info.value.file, info.value.row, info.value.field) == (str(path), 2, "label")
    assert reason in str(info.value)


def test_labels_need_campaign_column_and_value(tmp_path: Path, write_rows) -> None:
    path = write_rows(tmp_path / "labels.jsonl", [{"account_id": "a", "label": 1, "campaign": None}])
    with pytest.raises(ContractError, match=r"labels\.jsonl row 1, field 'campaign': campaign is null"):
        read_labels(path)
    path = write_rows(tmp_path / "labels.csv", [{"account_id": "a", "label": 1}])
    with pytest.raises(ContractError, match=r"labels\.csv, field 'campaign': missing required column"):
        read_labels(path)


def test_read_events_empty_file_has_schema_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("account_id,ts,prompt\n")
    frame = read_events(path)
    assert frame.empty and list(frame.columns) == list(EVENT_COLUMNS)
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]" and str(frame["asn"].dtype) == "Int64"

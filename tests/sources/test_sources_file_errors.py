"""Sources-file errors a new user meets (issue 19): `columns` may be left out of a JSON-lines file whose `fields`
name them; a `pseudonymise` entry is checked against the columns and the schema; a misspelt or unknown key gets a
"did you mean" (or the keys the entry takes). Entries are the shipped ones, changed where the test says."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from shopflow.ingest.readers import read_landing
from shopflow.sources import DEFAULT_SOURCES_FILE, SourcesFileError, load_sources
from shopflow.sources.spec import LandingFileSpec, parse_sources

SHIPPED = yaml.safe_load(DEFAULT_SOURCES_FILE.read_text())


def _entry(source: str) -> dict:
    return copy.deepcopy(SHIPPED[source])


def _error(raw: dict) -> str:
    with pytest.raises(SourcesFileError) as error:
        parse_sources(raw, "sources file test.yaml")
    return str(error.value)


def _sessions_source(file: dict) -> dict:
    """A declared events source read from a nested JSON-lines session file."""
    return {"sessions": {
        "description": "app sessions", "owner": "apps@shop.example", "files": [file],
        "pseudonymise": {"user": "user_key"},
        "schema": [{"name": "user_key", "from": "user", "required": True},
                   {"name": "event_type", "type": "category", "values": ["view", "cart", "buy"], "from": "kind"},
                   {"name": "event_ts_utc", "type": "timestamp", "from": "ts"}],
        "key": ["user_key", "event_type", "event_ts_utc"],
        "role": {"name": "events", "fields": {"user": "user_key", "event_type": "event_type",
                                              "timestamp": "event_ts_utc"}},
    }}


# ---- columns from fields -------------------------------------------------------------------------------------------
def test_a_jsonl_file_takes_its_columns_from_fields():
    file = {"name": "sessions.jsonl", "records": "events",
            "fields": {"user": "user_id", "kind": "events[].type", "ts": "events[].ts"}}
    spec = parse_sources(_sessions_source(file), "test")["sessions"]
    assert spec.files[0].columns == ["user", "kind", "ts"]
    assert spec.files[0].field_path("kind") == "events[].type"


def test_columns_from_fields_read_a_real_nested_file(tmp_path):
    path = tmp_path / "sessions.jsonl"
    sessions = [{"user_id": "u1", "events": [{"type": "view", "ts": "2024-01-01T10:00:00Z"},
                                             {"type": "cart", "ts": "2024-01-01T10:01:00Z"}]},
                {"user_id": "u2", "events": [{"type": "buy", "ts": "2024-01-01T11:00:00Z"}]}]
    path.write_text("".join(json.dumps(s) + "\n" for s in sessions))
    file = LandingFileSpec(name="sessions.jsonl", records="events",
                           fields={"user": "user_id", "kind": "events[].type", "ts": "events[].ts"})
    _facts, frame = read_landing(path, file)
    assert frame[["user", "kind"]].values.tolist() == [["u1", "view"], ["u1", "cart"], ["u2", "buy"]]
    assert frame["_source_line"].tolist() == [1, 1, 2]


def test_columns_are_still_required_without_fields():
    entry = _entry("orders")
    entry["files"] = [{"name": "orders.csv"}]
    message = _error({"orders": entry})
    assert "orders.files.0: columns: required" in message and "fields instead" in message, message


def test_fields_without_columns_on_a_csv_file_is_refused():
    entry = _entry("orders")
    entry["files"] = [{"name": "orders.csv", "fields": {"a": "b"}}]
    assert "records/fields apply to jsonl files only" in _error({"orders": entry})


# ---- pseudonymise checked against the columns and the schema -------------------------------------------------------
def test_a_pseudonymise_source_column_no_file_declares_gets_a_did_you_mean():
    entry = _entry("behavior")
    entry["pseudonymise"] = {"userid": "user_key"}
    message = _error({"behavior": entry})
    assert "pseudonymise names columns no file declares: 'userid' (did you mean 'user_id'?)" in message, message


def test_a_pseudonymised_column_no_schema_column_reads_is_refused():
    entry = _entry("behavior")
    entry["pseudonymise"] = {"user_id": "user_key", "item_id": "item_token"}  # item_id's token is never read
    entry["schema"] = [c for c in entry["schema"] if c["name"] != "item_id"]
    entry["key"] = [k for k in entry["key"] if k != "item_id"]
    entry["expectations"] = [e for e in entry["expectations"] if e.get("column") != "item_id"]
    entry["role"] = {"name": "events", "fields": {k: v for k, v in entry["role"]["fields"].items() if k != "item"}}
    message = _error({"behavior": entry})
    assert "behavior: pseudonymise: item_id -> item_token is read by no schema column" in message, message
    assert "{name: item_token, from: item_id}" in message


def test_a_schema_column_may_read_the_token_column_by_its_own_name():
    entry = _entry("behavior")
    entry["schema"][0] = {"name": "user_key", "from": "user_key", "required": True,
                          "missing_reason": "missing_user_id"}
    assert parse_sources({"behavior": entry}, "test")["behavior"].pseudonymise == {"user_id": "user_key"}


def test_a_token_column_that_is_another_raw_column_is_refused():
    entry = _entry("behavior")
    entry["pseudonymise"] = {"user_id": "item_id"}
    assert "pseudonymise: the token columns ['item_id'] are already raw columns" in _error({"behavior": entry})


# ---- unknown keys: did you mean ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "expected"), [
    (lambda e: e["schema"][3].update(normalize=e["schema"][3].pop("normalise")),
     "behavior.schema.3.normalize: Extra inputs are not permitted: unknown key 'normalize'; did you mean 'normalise'?"),
    (lambda e: e.update(timezon=e.pop("timezone")),
     "behavior.timezon: Extra inputs are not permitted: unknown key 'timezon'; did you mean 'timezone'?"),
    (lambda e: e.update(shema=e.pop("schema")), "unknown key 'shema'; did you mean 'schema'?"),
    (lambda e: e["files"][0].update(colums=e["files"][0]["columns"]),
     "behavior.files.0.colums: Extra inputs are not permitted: unknown key 'colums'; did you mean 'columns'?"),
    (lambda e: e["schema"][0].update(form="user_id"), "unknown key 'form'; did you mean 'format' or 'from'?"),
    (lambda e: e["rules"][0].update(colum="event_ts_utc"), "unknown key 'colum'; did you mean 'column'?"),
    (lambda e: e["role"].update(feilds={}), "behavior.role.feilds: Extra inputs are not permitted: unknown key "
                                            "'feilds'; did you mean 'fields'?"),
])
def test_a_misspelt_key_gets_a_did_you_mean(change, expected):
    entry = _entry("behavior")
    change(entry)
    message = _error({"behavior": entry})
    assert expected in message, message


def test_an_unknown_key_unlike_any_lists_the_keys_it_could_be():
    entry = _entry("orders")
    entry["colour"] = "blue"
    message = _error({"orders": entry})
    assert "orders.colour: Extra inputs are not permitted: unknown key 'colour'; the keys here are: " in message
    keys = message.split("the keys here are: ")[1].split("\n")[0].split(", ")
    assert {"description", "files", "schema", "pseudonymise"} <= set(keys) and "name" not in keys


def test_the_shipped_file_stays_valid():
    sources = load_sources(DEFAULT_SOURCES_FILE)
    assert {"orders", "behavior", "catalog", "search"} <= set(sources)

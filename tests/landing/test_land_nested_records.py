"""`land --by` on a field inside a JSON-lines source's declared `records`: every record lands on its own day (a
session that spans midnight is split into one line per day, its other fields unchanged), the records per day add up
to the export's, re-landing changes nothing, and each day then ingests and cleans with no `outside_partition`
quarantine. A path into any other list is refused before anything is landed.

The sessions are the real Taobao behaviour rows (China time), one line per visit of a user (a new visit after an
hour without events), so some visits run past midnight."""

from __future__ import annotations

import copy
import csv
import gzip
import json
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from shopflow.config.settings import Settings
from shopflow.landing.export import ExportError, land_export
from shopflow.sources import DEFAULT_SOURCES_FILE
from shopflow.sources.spec import parse_sources

BEHAVIOR = "events/taobao_user_behavior_sample.csv.gz"
CHINA = ZoneInfo("Asia/Shanghai")
KEY = "test-pseudonym-key-not-a-secret-32bytes+"
SESSIONS_FILE = {"name": "sessions.jsonl", "columns": ["user_id", "item_id", "category_id", "behavior_type", "timestamp"],
                 "records": "events",
                 "fields": {"user_id": "user_id", "item_id": "events[].item", "category_id": "events[].category_id",
                            "behavior_type": "events[].type", "timestamp": "events[].ts"}}
VISIT_GAP_SECONDS = 3600


def _china_day(epoch_seconds) -> date:
    return datetime.fromtimestamp(int(epoch_seconds), tz=timezone.utc).astimezone(CHINA).date()


def _visits(source_data: Path) -> list[dict]:
    """The real behaviour rows as one JSON object per visit of a user: the events in time order."""
    with gzip.open(source_data / BEHAVIOR, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    rows.sort(key=lambda row: (row[0], int(row[4])))
    visits: list[dict] = []
    for user, item, category, kind, ts in rows:
        last = visits[-1] if visits else None
        if last is None or last["user_id"] != user or int(ts) - last["events"][-1]["ts"] > VISIT_GAP_SECONDS:
            last = {"session_id": f"{user}-{len(visits)}", "user_id": user, "events": []}
            visits.append(last)
        last["events"].append({"item": item, "category_id": category, "type": kind, "ts": int(ts)})
    return visits


def _behavior_sessions_sources(path: Path) -> Path:
    """The shipped sources file, with `behavior` landed as nested sessions."""
    sources = yaml.safe_load(DEFAULT_SOURCES_FILE.read_text())
    sources["behavior"]["files"] = [copy.deepcopy(SESSIONS_FILE)]
    path.write_text(yaml.safe_dump(sources))
    return path


def _landed_lines(settings: Settings, source: str) -> dict[date, list[bytes]]:
    root = settings.landing_dir / source
    return {date.fromisoformat(folder.name.removeprefix("ds=")): (folder / "sessions.jsonl").read_bytes().splitlines(True)
            for folder in sorted(root.iterdir())}


def _event_key(session: dict, event: dict) -> tuple:
    return session["session_id"], session["user_id"], event["item"], event["category_id"], event["type"], event["ts"]


def test_sessions_spanning_midnight_land_every_event_on_its_own_day(tmp_path, source_data, monkeypatch, caplog):
    from shopflow.steps import partition as pipeline
    from shopflow.store import migrate
    from shopflow.store.repository import MetadataStore

    visits = _visits(source_data)
    spanning = [visit for visit in visits if len({_china_day(e["ts"]) for e in visit["events"]}) > 1]
    assert len(spanning) >= 3, "the real rows hold visits that run past midnight"
    export = tmp_path / "sessions-export.jsonl"
    export_lines = [json.dumps(visit).encode() + b"\n" for visit in visits]
    export.write_bytes(b"".join(export_lines))

    sources_file = _behavior_sessions_sources(tmp_path / "sources.yaml")
    monkeypatch.setenv("SHOPFLOW_SOURCES", str(sources_file))
    monkeypatch.setenv("SHOPFLOW_PSEUDONYM_KEY", KEY)
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path / "home"), "SHOPFLOW_PSEUDONYM_KEY": KEY,
                                  "SHOPFLOW_SOURCES": str(sources_file)})
    spec = parse_sources(yaml.safe_load(sources_file.read_text()), str(sources_file))["behavior"]
    with caplog.at_level("INFO", logger="shopflow.landing.export"):
        counts = land_export(settings, spec, export, by="timestamp")

    all_events = Counter(_event_key(visit, event) for visit in visits for event in visit["events"])
    expected = Counter(_china_day(key[-1]) for key in all_events.elements())
    assert counts == dict(sorted(expected.items()))
    assert sum(counts.values()) == sum(len(visit["events"]) for visit in visits) == 4321

    landed = _landed_lines(settings, "behavior")
    assert sorted(landed) == sorted(expected)
    order = {visit["session_id"]: position for position, visit in enumerate(visits)}
    by_id = {visit["session_id"]: visit for visit in visits}
    landed_events: Counter = Counter()
    for day, lines in landed.items():
        sessions = [json.loads(line) for line in lines]
        positions = [order[session["session_id"]] for session in sessions]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)  # export order, once a day
        for line, session in zip(lines, sessions):
            original = by_id[session["session_id"]]
            assert all(_china_day(event["ts"]) == day for event in session["events"])
            assert {k: v for k, v in session.items() if k != "events"} == {
                k: v for k, v in original.items() if k != "events"}
            assert session["events"] == [e for e in original["events"] if _china_day(e["ts"]) == day]  # in order
            if original not in spanning:
                assert line == export_lines[order[session["session_id"]]]  # copied byte for byte
            landed_events.update(_event_key(session, event) for event in session["events"])
    assert landed_events == all_events  # nothing lost, nothing repeated

    split_days = {_china_day(e["ts"]) for visit in spanning for e in visit["events"]}
    first_split_line = order[spanning[0]["session_id"]] + 1
    assert any(f"export lines {first_split_line}" in message for message in caplog.messages), caplog.messages
    assert sum("part of an export line split by day" in m for m in caplog.messages) == len(split_days)

    files = sorted((settings.landing_dir / "behavior").rglob("sessions.jsonl"))
    before = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in files}
    assert land_export(settings, spec, export, by="timestamp") == counts
    assert {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in files} == before  # idempotent

    settings.home.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.store_url)
    for day in sorted(counts):
        pipeline.ingest(settings, "behavior", day)
        pipeline.clean(settings, "behavior", day)
    partitions = {p.ds: p for p in MetadataStore(settings.store_url).partitions("behavior")}
    assert sorted(partitions) == sorted(counts)
    assert {day: partitions[day].rows_in for day in counts} == counts
    assert [day for day, p in partitions.items() if "outside_partition" in (p.quarantined_by_reason or {})] == []


def _sessions_spec(files_entry: dict | None = None):
    entry = files_entry or {"name": "sessions.jsonl", "columns": ["session_id", "ts"], "records": "events",
                            "fields": {"session_id": "session_id"}}
    return parse_sources({"sessions": {
        "description": "d", "owner": "o", "cleaner": "shopflow.sources.orders", "timezone": "Asia/Shanghai",
        "files": [entry]}}, "t")["sessions"]


def _real_events(source_data: Path, count: int) -> list[dict]:
    with gzip.open(source_data / BEHAVIOR, "rt", encoding="utf-8", newline="") as handle:
        return [{"item": row[1], "type": row[3], "ts": int(row[4])} for _, row in zip(range(count), csv.reader(handle))]


def test_a_split_line_keeps_its_other_fields_as_written(tmp_path, source_data):
    """Numbers keep their literal text (1.10 stays 1.10), nested fields and key order are the line's."""
    events = sorted(_real_events(source_data, 400), key=lambda event: event["ts"])
    days = sorted({_china_day(event["ts"]) for event in events})
    assert len(days) >= 2
    first, second = ([e for e in events if _china_day(e["ts"]) == day][:2] for day in days[:2])
    line = ('{"session_id": "s1", "score": 1.10, "views": 1e5, "device": {"os": "Android", "ver": 7.0}, '
            f'"events": {json.dumps([first[0], second[0], first[1], second[1]])}, "note": "caf\\u00e9"}}\n')
    export = tmp_path / "sessions.jsonl"
    export.write_text(line)
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path / "home")})
    assert land_export(settings, _sessions_spec(), export, by="ts") == {days[0]: 2, days[1]: 2}
    for day, own in zip(days, (first, second)):
        written = (settings.landing_dir / "sessions" / f"ds={day}" / "sessions.jsonl").read_text(encoding="utf-8")
        assert written == ('{"session_id":"s1","score":1.10,"views":1e5,"device":{"os":"Android","ver":7.0},'
                           f'"events":{json.dumps(own, separators=(",", ":"))},"note":"café"}}\n')


def test_a_record_without_a_day_is_named_by_the_export_line_and_its_position(tmp_path, source_data):
    events = _real_events(source_data, 3)
    events[1]["ts"] = "yesterday"
    export = tmp_path / "sessions.jsonl"
    export.write_text(json.dumps({"session_id": "a", "events": events[:1]}) + "\n\n"
                      + json.dumps({"session_id": "b", "events": events}) + "\n")
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path / "home")})
    with pytest.raises(ExportError, match=r"sessions.jsonl, line 3, record 1: ts='yesterday' is not a date"):
        land_export(settings, _sessions_spec(), export, by="ts")
    assert not settings.landing_dir.exists()
    undated = date(2017, 1, 1)
    counts = land_export(settings, _sessions_spec(), export, by="ts", undated_day=undated)
    assert counts[undated] == 1 and sum(counts.values()) == 4


@pytest.mark.parametrize(("by", "message"), [
    ("events[].tags[].ts", r"goes into the list 'events\[\].tags\[\]' inside each record of the records list 'events'"),
    ("visits[].ts", r"goes into the list 'visits\[\]', which is not the records list of sessions's sessions.jsonl "
                    r"\(its records list is 'events'\)"),
])
def test_a_path_into_a_list_other_than_the_records_is_refused_before_anything_lands(tmp_path, source_data, by,
                                                                                     message):
    events = _real_events(source_data, 2)
    line = {"session_id": "a", "visits": [{"ts": events[0]["ts"]}],
            "events": [{**event, "tags": [{"ts": event["ts"]}]} for event in events]}
    export = tmp_path / "sessions.jsonl"
    export.write_text(json.dumps(line) + "\n")
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path / "home")})
    with pytest.raises(ExportError, match=message) as refused:
        land_export(settings, _sessions_spec(), export, by=by)
    assert str(refused.value).startswith(f"{export}: --by {by}") and "nothing was landed" in str(refused.value)
    assert not settings.landing_dir.exists()


def test_a_path_crossing_an_undeclared_list_is_refused_naming_the_line(tmp_path, source_data):
    events = _real_events(source_data, 2)
    export = tmp_path / "sessions.jsonl"
    export.write_text(json.dumps({"session_id": "a", "visit": {"ts": events[0]["ts"]}, "events": events}) + "\n"
                      + json.dumps({"session_id": "b", "visit": [{"ts": events[1]["ts"]}], "events": events}) + "\n")
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path / "home")})
    with pytest.raises(ExportError, match=r"line 2: --by visit.ts crosses 'visit', which is an array, not an object: "
                                          r"only the declared records list is split"):
        land_export(settings, _sessions_spec(), export, by="visit.ts")
    assert not settings.landing_dir.exists()


def test_the_land_command_refuses_a_list_that_is_not_the_records_in_one_line(tmp_path, source_data, monkeypatch,
                                                                            capsys):
    from shopflow.cli import main

    sources_file = _behavior_sessions_sources(tmp_path / "sources.yaml")
    monkeypatch.setenv("SHOPFLOW_SOURCES", str(sources_file))
    monkeypatch.setenv("SHOPFLOW_HOME", str(tmp_path / "home"))
    export = tmp_path / "sessions.jsonl"
    export.write_text(json.dumps({"user_id": "1", "events": _real_events(source_data, 2)}) + "\n")
    assert main(["land", "--source", "behavior", "--from", str(export), "--by", "events[].ts[]"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"{export}: --by events[].ts[]") and "nothing was landed" in err
    assert not (tmp_path / "home" / "landing").exists()


def test_records_under_a_nested_path_split_and_read_back_as_declared(tmp_path, source_data):
    """`records: visit.events`: the split lines keep `visit`'s other fields; each day's file reads back (as ingest
    reads it) into exactly that day's rows."""
    from shopflow.ingest.readers import read_landing

    events = sorted(_real_events(source_data, 400), key=lambda event: event["ts"])
    entry = {"name": "visits.jsonl", "columns": ["user", "visit_id", "item", "ts"], "records": "visit.events",
             "fields": {"user": "user", "visit_id": "visit.id"}}
    spec = _sessions_spec(entry)
    export = tmp_path / "visits.jsonl"
    export.write_text(json.dumps({"user": "u1", "visit": {"id": 7, "events": events, "agent": "app"}}) + "\n")
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path / "home")})
    counts = land_export(settings, spec, export, by="ts")
    assert sum(counts.values()) == len(events) and len(counts) >= 2
    for day, count in counts.items():
        landed = settings.landing_dir / "sessions" / f"ds={day}" / "visits.jsonl"
        [line] = [json.loads(text) for text in landed.read_text().splitlines()]
        assert line["user"] == "u1" and {k: v for k, v in line["visit"].items() if k != "events"} == {
            "id": 7, "agent": "app"}
        _, rows = read_landing(landed, spec.files[0])
        assert len(rows) == count and set(rows["visit_id"]) == {"7"} and rows["_source_line"].eq(1).all()
        assert {_china_day(ts) for ts in rows["ts"]} == {day}

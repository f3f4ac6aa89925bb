"""Cleaning `behavior` (Taobao sample, no header, Unix seconds, China time) on real rows and on the whole file."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sample_rows import (
    BEHAVIOR_FILE,
    TEST_KEY,
    ingest_like_pipeline,
    landing_folder,
    records,
    records_where,
    source_data,
    write_landing,
)
from shopflow.common.landing_file import SOURCE_LINE
from shopflow.config.settings import Settings
from shopflow.ingest.pseudonym import pseudonymise
from shopflow.landing import sample_data as landing
from shopflow.sources import get_source
from shopflow.sources.cleaning import FIELD, REASON, clean_partition

SPEC = get_source("behavior")
CHINA = ZoneInfo("Asia/Shanghai")
FIRST_DAY, LAST_DAY = date(2017, 11, 25), date(2017, 12, 3)


def china_day(record) -> date:
    return datetime.fromtimestamp(int(record.fields[4]), tz=CHINA).date()


def china_time(record) -> datetime:
    return datetime.fromtimestamp(int(record.fields[4]), tz=CHINA)


def with_timestamp(record, moment: datetime) -> str:
    fields = list(record.fields)
    fields[4] = str(int(moment.timestamp()))
    return ",".join(fields) + "\n"


def with_type(record, behavior_type: str) -> str:
    fields = list(record.fields)
    fields[3] = behavior_type
    return ",".join(fields) + "\n"


def land_and_clean(tmp_path, texts: list[str], ds: date):
    folder = landing_folder(tmp_path, "behavior", ds)
    write_landing(folder, "behavior.csv", texts)
    raw = ingest_like_pipeline("behavior", folder)
    return raw, clean_partition(SPEC, raw, ds)


def only_row(frame: pd.DataFrame, column: str, line: int) -> pd.Series:
    hit = frame[frame[column] == line]
    assert len(hit) == 1, f"line {line} not found"
    return hit.iloc[0]


# --- the real file's quirks ----------------------------------------------------------------------------------------


def test_real_file_has_no_header_and_the_documented_shape():
    rows = records(BEHAVIOR_FILE)
    assert len(rows) == 4321
    assert rows[0].fields[0].isdigit() and rows[0].line == 1  # line 1 is data
    types = pd.Series([r.fields[3] for r in rows]).value_counts().to_dict()
    assert types == {"pv": 3926, "fav": 128, "cart": 190, "buy": 77}  # SOURCES.md
    assert len({r.fields[0] for r in rows}) == 43


def test_time_span_of_the_real_file():
    """SOURCES.md says '2017-11-24 to 2017-12-03 (China time)'; in China time the rows start on 11-25.

    The 2017-11-24 rows are 2017-11-24 in UTC (16:00-23:59 UTC = the first hours of 11-25 in China), which is
    inside the documented window; only the stray 2017-09-11 row is outside it.
    """
    days = pd.Series([china_day(r) for r in records(BEHAVIOR_FILE)]).value_counts()
    assert date(2017, 9, 11) in days and days[date(2017, 9, 11)] == 1
    assert date(2017, 11, 24) not in days
    assert min(d for d in days.index if d.year == 2017 and d.month >= 11) == FIRST_DAY
    assert max(days.index) == LAST_DAY
    utc_days = pd.Series([datetime.fromtimestamp(int(r.fields[4]), tz=timezone.utc).date() for r in records(BEHAVIOR_FILE)])
    assert (utc_days == date(2017, 11, 24)).sum() == 52


# --- small real samples --------------------------------------------------------------------------------------------


def test_event_types_are_mapped(tmp_path):
    chosen = []
    for kind in ("pv", "fav", "cart", "buy"):
        chosen += records_where(BEHAVIOR_FILE, lambda r, k=kind: r.fields[3] == k and china_day(r) == FIRST_DAY,
                                limit=1, header=False)
    raw, result = land_and_clean(tmp_path, [r.text for r in chosen], FIRST_DAY)
    assert result.ledger.rows_clean == 4
    assert result.clean["event_type"].tolist() == ["view", "favourite", "cart", "buy"]
    assert result.clean["source_line"].tolist() == [1, 2, 3, 4]
    record = chosen[0]
    first = result.clean.iloc[0]
    assert first["user_key"] == pseudonymise(record.fields[0], TEST_KEY)
    assert (first["item_id"], first["category_id"]) == (int(record.fields[1]), int(record.fields[2]))
    assert first["event_ts_utc"] == pd.Timestamp(int(record.fields[4]), unit="s", tz="UTC")
    assert "user_id" not in raw.columns and "user_key" in raw.columns


def test_event_type_spelling_is_tolerated_but_unknown_types_are_quarantined(tmp_path):
    record = records_where(BEHAVIOR_FILE, lambda r: china_day(r) == FIRST_DAY, limit=1, header=False)[0]
    texts = [with_type(record, " PV "), with_type(record, "click"), with_type(record, "")]
    _, result = land_and_clean(tmp_path, texts, FIRST_DAY)
    assert result.clean["event_type"].tolist() == ["view"]
    for line in (2, 3):
        row = only_row(result.quarantine, SOURCE_LINE, line)
        assert (row[REASON], row[FIELD]) == ("unknown_event_type", "behavior_type")
    assert only_row(result.quarantine, SOURCE_LINE, 2)["behavior_type"] == "click"


def test_stray_2017_09_11_row_is_out_of_window(tmp_path):
    stray = records_where(BEHAVIOR_FILE, lambda r: china_day(r) == date(2017, 9, 11), header=False)
    assert len(stray) == 1 and stray[0].line == 4171
    normal = records_where(BEHAVIOR_FILE, lambda r: china_day(r) == FIRST_DAY, limit=2, header=False)
    _, result = land_and_clean(tmp_path, [normal[0].text, stray[0].text, normal[1].text], FIRST_DAY)
    row = only_row(result.quarantine, SOURCE_LINE, 2)
    assert (row[REASON], row[FIELD]) == ("timestamp_out_of_window", "timestamp")
    assert row["timestamp"] == stray[0].fields[4]
    assert result.ledger.rows_clean == 2


def test_china_day_boundaries_decide_the_partition(tmp_path):
    # A real view at 23:38 China time on 11-25 (15:38 UTC) stays on ds 2017-11-25; a real view at 05:22 China time
    # on 11-26 is still 11-25 in UTC, yet belongs to ds 2017-11-26.
    late = records_where(BEHAVIOR_FILE, lambda r: china_day(r) == FIRST_DAY and china_time(r).hour == 23,
                         limit=1, header=False)[0]
    early_next = records_where(BEHAVIOR_FILE, lambda r: china_day(r) == date(2017, 11, 26) and china_time(r).hour < 8,
                               limit=1, header=False)[0]
    assert datetime.fromtimestamp(int(early_next.fields[4]), tz=timezone.utc).date() == FIRST_DAY
    _, result = land_and_clean(tmp_path, [late.text, early_next.text], FIRST_DAY)
    kept = only_row(result.clean, "source_line", 1)
    assert kept["event_ts_utc"] == pd.Timestamp(china_time(late)).tz_convert("UTC")
    assert kept["event_ts_utc"].hour == china_time(late).hour - 8
    assert only_row(result.quarantine, SOURCE_LINE, 2)[REASON] == "outside_partition"
    _, next_day = land_and_clean(tmp_path / "next", [early_next.text], date(2017, 11, 26))
    assert next_day.ledger.rows_clean == 1


@pytest.mark.parametrize(
    ("local", "ds", "reason"),
    [
        (datetime(2017, 11, 24, 23, 59, 59), date(2017, 11, 24), "timestamp_out_of_window"),
        (datetime(2017, 11, 25, 0, 0, 0), FIRST_DAY, None),
        (datetime(2017, 11, 25, 23, 30, 0), FIRST_DAY, None),  # 15:30 UTC
        (datetime(2017, 12, 3, 23, 59, 59), LAST_DAY, None),
        (datetime(2017, 12, 4, 0, 0, 0), date(2017, 12, 4), "timestamp_out_of_window"),
        (datetime(2017, 11, 24, 23, 59, 59), FIRST_DAY, "timestamp_out_of_window"),  # window wins over partition
    ],
)
def test_window_edges_in_china_time(tmp_path, local, ds, reason):
    record = records(BEHAVIOR_FILE)[0]
    moment = local.replace(tzinfo=CHINA)
    _, result = land_and_clean(tmp_path, [with_timestamp(record, moment)], ds)
    if reason is None:
        assert result.ledger.rows_clean == 1
        assert result.clean["event_ts_utc"].iloc[0] == pd.Timestamp(moment).tz_convert("UTC")
    else:
        assert result.quarantine[REASON].tolist() == [reason]


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [("item_id", "abc", "invalid_item_id"), ("item_id", "-5", "invalid_item_id"),
     ("item_id", "1e20", "invalid_item_id"),  # would wrap around to a negative Int64
     ("category_id", "", "invalid_category_id"), ("timestamp", "", "invalid_timestamp"),
     ("timestamp", "1511624303.5", "invalid_timestamp"), ("timestamp", "99999999999", "invalid_timestamp"),
     ("user_id", "", "missing_user_id")],
)
def test_damaged_real_row_is_quarantined(tmp_path, column, value, reason):
    record = records_where(BEHAVIOR_FILE, lambda r: china_day(r) == FIRST_DAY, limit=1, header=False)[0]
    fields = list(record.fields)
    fields[SPEC.files[0].columns.index(column)] = value
    _, result = land_and_clean(tmp_path, [",".join(fields) + "\n"], FIRST_DAY)
    assert result.quarantine[REASON].tolist() == [reason]
    assert result.clean.empty


def test_exact_repeat_of_a_real_event_is_a_duplicate(tmp_path):
    record = records_where(BEHAVIOR_FILE, lambda r: china_day(r) == FIRST_DAY, limit=1, header=False)[0]
    _, result = land_and_clean(tmp_path, [record.text, record.text], FIRST_DAY)
    assert (result.ledger.rows_clean, result.ledger.rows_duplicate) == (1, 1)
    assert result.clean["source_line"].tolist() == [1]


# --- the whole file, landed the way shopflow.landing.sample_data lands it ------------------------------------------------------


@pytest.fixture(scope="module")
def landed_days(tmp_path_factory):
    home = tmp_path_factory.mktemp("shopflow_home")
    settings = Settings.from_env({"SHOPFLOW_HOME": str(home), "SHOPFLOW_SOURCE_DATA": str(source_data())})
    counts = landing.land_behavior(settings)
    results = {}
    for ds in counts:
        raw = ingest_like_pipeline("behavior", landing_folder(settings.landing_dir, "behavior", ds))
        results[ds] = clean_partition(SPEC, raw, ds)
    return counts, results


def test_whole_file_lands_on_the_window_days(landed_days):
    counts, _ = landed_days
    assert sorted(counts) == [date(2017, 11, d) for d in range(25, 31)] + [date(2017, 12, d) for d in (1, 2, 3)]
    assert sum(counts.values()) == 4321


def test_whole_file_ledgers_add_up(landed_days):
    counts, results = landed_days
    for ds, result in results.items():
        ledger = result.ledger
        assert ledger.rows_in == counts[ds]
        assert ledger.rows_clean + ledger.rows_quarantined + ledger.rows_duplicate == ledger.rows_in
        assert len(result.quarantine) == ledger.rows_quarantined
        local_days = result.clean["event_ts_utc"].dt.tz_convert("Asia/Shanghai").dt.date
        assert (local_days == ds).all()
    quarantined = pd.concat([r.quarantine for r in results.values()])
    # Only the stray row is dirty; it rides with the first window day's export.
    assert quarantined[REASON].tolist() == ["timestamp_out_of_window"]
    assert len(results[FIRST_DAY].quarantine) == 1
    clean = pd.concat([r.clean for r in results.values()])
    assert clean["event_type"].value_counts().to_dict() == {"view": 3925, "cart": 190, "favourite": 128, "buy": 77}
    assert clean["user_key"].nunique() == 43
    assert sum(r.ledger.rows_duplicate for r in results.values()) == 0

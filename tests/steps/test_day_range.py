"""`python -m shopflow run FIRST --to LAST`: a range of days in one process records what running each day alone
records, goes on past a failing day (naming its file and line), records the days with nothing landed, and is
bounded by SHOPFLOW_RUN_MAX_DAYS."""

from __future__ import annotations

import csv
import gzip
import itertools
from datetime import date, timedelta

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st
from orders_days import KEY, ORDERS_FILE
from shopflow import cli
from shopflow.config.settings import Settings
from shopflow.lake import zones as lake
from shopflow.steps.day_range import DayRangeError, days_between
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

FIRST = date(2010, 12, 1)
LAST = date(2010, 12, 6)  # the UCI shop traded on none of 2010-12-04 (a Saturday)


def real_days(source_data, rows_per_day: int = 80) -> dict[date, list[str]]:
    """The header and the first real invoice lines of each trading day FIRST .. LAST, newlines kept."""
    found: dict[date, list[str]] = {}
    with gzip.open(source_data / ORDERS_FILE, "rt", encoding="utf-8", newline="") as handle:
        header = next(handle)
        for line in handle:
            day = date.fromisoformat(next(csv.reader([line]))[4][:10])
            if day > LAST:
                break
            found.setdefault(day, [header])
            if len(found[day]) <= rows_per_day:
                found[day].append(line)
    return found


def home(tmp_path, source_data, name: str, days: dict[date, list[str]]) -> Settings:
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path / name), "SHOPFLOW_SOURCE_DATA": str(source_data),
                                  "SHOPFLOW_PSEUDONYM_KEY": KEY})
    settings.home.mkdir(parents=True)
    migrate.upgrade(settings.store_url)
    for day, lines in days.items():
        path = lake.landing_dir(settings, "orders", day) / "orders.csv"
        path.parent.mkdir(parents=True)
        path.write_text("".join(lines), encoding="utf-8")
    return settings


def run(monkeypatch, settings: Settings, *args: str) -> int:
    monkeypatch.setenv("SHOPFLOW_HOME", str(settings.home))
    monkeypatch.setenv("SHOPFLOW_PSEUDONYM_KEY", KEY)
    return cli.main(["run", *args, "--source", "orders"])


def ledgers(settings: Settings) -> dict[date, tuple]:
    return {p.ds: (p.status, p.rows_in, p.rows_clean, p.rows_quarantined, p.rows_duplicate, p.error)
            for p in MetadataStore(settings.store_url).partitions("orders")}


def test_a_range_records_what_each_day_alone_records_and_goes_on_past_a_failing_day(
        tmp_path, source_data, monkeypatch, capsys):
    days = real_days(source_data)
    assert len(days) == 5 and date(2010, 12, 4) not in days
    broken = date(2010, 12, 2)
    days[broken][7] = days[broken][7].split(",", 2)[2]  # line 8 loses two fields: the file cannot be read
    one_by_one, in_range = home(tmp_path, source_data, "one-by-one", days), home(tmp_path, source_data, "range", days)

    codes = [run(monkeypatch, one_by_one, day.isoformat()) for day in sorted(days)]
    assert codes == [1 if day == broken else 0 for day in sorted(days)]
    capsys.readouterr()
    assert run(monkeypatch, in_range, FIRST.isoformat(), "--to", LAST.isoformat()) == 1
    out, err = capsys.readouterr()
    assert f"orders {broken}: " in err and "line 8" in err and str(lake.landing_dir(in_range, "orders", broken)) in err
    assert out.strip().startswith(f"{FIRST} .. {LAST} (6 days): 4 partitions validated (")
    assert "1 with nothing landed, 1 failed in" in out

    expected = ledgers(one_by_one)
    got = ledgers(in_range)
    missing = date(2010, 12, 4)
    assert got.pop(missing)[0] == "missing"  # each day alone ran only the trading days
    assert {day: ledger[:5] for day, ledger in got.items()} == {day: ledger[:5] for day, ledger in expected.items()}
    assert got[broken][0] == "failed" and "line 8" in got[broken][5]
    assert sum(ledger[1] for day, ledger in got.items() if day != broken) == sum(
        len(lines) - 1 for day, lines in days.items() if day != broken)
    for day in set(days) - {broken}:  # the same clean rows, byte for byte
        for zone in ("clean", "quarantine"):
            assert (lake.lake_file(in_range, zone, "orders", day).read_bytes()
                    == lake.lake_file(one_by_one, zone, "orders", day).read_bytes())


def test_a_range_past_the_limit_backwards_or_of_an_unknown_source_is_refused_before_anything_runs(
        tmp_path, source_data, monkeypatch, capsys):
    settings = home(tmp_path, source_data, "home", dict(itertools.islice(real_days(source_data).items(), 1)))
    monkeypatch.setenv("SHOPFLOW_RUN_MAX_DAYS", "3")
    assert run(monkeypatch, settings, FIRST.isoformat(), "--to", LAST.isoformat()) == 2
    err = capsys.readouterr().err
    assert "6 days, more than the 3 one run may take (SHOPFLOW_RUN_MAX_DAYS=3)" in err and "--max-days 6" in err
    assert run(monkeypatch, settings, LAST.isoformat(), "--to", FIRST.isoformat()) == 2
    assert f"the range ends ({FIRST}) before it starts ({LAST})" in capsys.readouterr().err
    monkeypatch.setenv("SHOPFLOW_HOME", str(settings.home))
    assert cli.main(["run", FIRST.isoformat(), "--to", LAST.isoformat(), "--max-days", "6", "--source", "oders"]) == 2
    assert "unknown source 'oders'" in capsys.readouterr().err
    assert ledgers(settings) == {}
    assert run(monkeypatch, settings, FIRST.isoformat(), "--to", LAST.isoformat(), "--max-days", "6") == 0
    assert ledgers(settings)[FIRST][0] == "validated"


@hypothesis_settings(max_examples=60, deadline=None)
@given(first=st.dates(min_value=date(1, 1, 1), max_value=date(9999, 1, 1)), span=st.integers(0, 400),
       limit=st.integers(1, 400))
def test_days_between_is_every_day_once_or_a_refusal(first, span, limit):
    last = first + timedelta(days=span)
    if span + 1 > limit:
        with pytest.raises(DayRangeError, match="--max-days"):
            days_between(first, last, limit)
        return
    days = days_between(first, last, limit)
    assert days[0] == first and days[-1] == last and len(days) == span + 1
    assert all(later - earlier == timedelta(days=1) for earlier, later in itertools.pairwise(days))
    assert days_between(first, None, limit) == [first]

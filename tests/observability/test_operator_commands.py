"""The operator's everyday commands on real orders days (UCI Online Retail, 2010-12-01): `quarantine DAY --source X`
lists the day's quarantined rows with reason, field, file and line (table or CSV, bounded); a failed partition's
`status` line says the command that re-runs it; `models` labels a repair's masked precision and coverage apart."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from orders_days import KEY, land_orders_day, real_orders_lines
from shopflow import cli
from shopflow.common.landing_file import LandingFileError
from shopflow.config.settings import Settings
from shopflow.observability.status import masked_result, render_models, render_status
from shopflow.steps import partition as pipeline
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

DAY = date(2010, 12, 1)
ZERO_PRICE_LINES = (3, 7)  # physical lines of the landing file (the header is line 1) whose price is set to 0


@pytest.fixture()
def settings(tmp_path, source_data, monkeypatch) -> Settings:
    env = {"SHOPFLOW_HOME": str(tmp_path / "home"), "SHOPFLOW_SOURCE_DATA": str(source_data),
           "SHOPFLOW_PSEUDONYM_KEY": KEY}
    for name, value in env.items():  # the CLI reads its settings from the environment
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(env)
    settings.home.mkdir(parents=True)
    migrate.upgrade(settings.store_url)
    return settings


def _zero_price(line: str) -> str:
    fields = line.split(",")
    fields[5] = "0"  # UnitPrice
    return ",".join(fields)


@pytest.fixture()
def cleaned_day(settings, source_data):
    lines = real_orders_lines(source_data, 40)
    for number in ZERO_PRICE_LINES:
        lines[number - 1] = _zero_price(lines[number - 1])
    land_orders_day(settings, DAY, lines)
    pipeline.ingest(settings, "orders", DAY)
    summary = pipeline.clean(settings, "orders", DAY)
    assert summary["quarantined_by_reason"] == {"non_positive_price": 2}
    return summary


def test_quarantine_lists_the_rows_with_reason_field_file_and_line(settings, cleaned_day, capsys):
    assert cli.main(["quarantine", DAY.isoformat(), "--source", "orders"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("orders 2010-12-01: 2 quarantined rows of 40 rows in (non_positive_price=2); ")
    assert out[0].endswith("part-0.parquet")
    assert out[1].split() == ["file", "line", "reason", "field", "value"]
    rows = [line.split() for line in out[2:]]
    assert [r[:3] for r in rows] == [["orders.csv", str(n), "non_positive_price"] for n in ZERO_PRICE_LINES]
    assert all(r[3] == "UnitPrice" and r[4] == "0" for r in rows), rows
    # aligned: the columns start at the same offset on every line
    assert len({line.index("non_positive_price") for line in out[2:]}) == 1
    assert out[1].index("reason") == out[2].index("non_positive_price")


def test_quarantine_as_csv_with_the_rows_columns(settings, cleaned_day, capsys):
    assert cli.main(["quarantine", DAY.isoformat(), "--source", "orders", "--csv"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert [(r["file"], r["line"], r["reason"], r["field"], r["value"]) for r in rows] == [
        ("orders.csv", str(n), "non_positive_price", "UnitPrice", "0") for n in ZERO_PRICE_LINES]
    assert rows[0]["StockCode"] == "71053" and rows[0]["Description"] == "WHITE METAL LANTERN"
    assert "CustomerID" not in rows[0] and rows[0]["customer_key"] != "17850.0"  # pseudonymised as stored
    assert captured.err == ""


def test_quarantine_output_is_bounded_and_says_how_many_more(settings, cleaned_day, capsys):
    assert cli.main(["quarantine", DAY.isoformat(), "--source", "orders", "--limit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and " 3 " in f" {out[2]} "
    assert out[-1].startswith("... 1 more quarantined rows not shown (--limit 2 shows all")
    assert cli.main(["quarantine", DAY.isoformat(), "--source", "orders", "--limit", "1", "--csv"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2  # header and one row: the note goes to stderr
    assert "1 more quarantined rows" in captured.err


def test_quarantine_unknown_source_or_day_is_one_clear_line(settings, cleaned_day, capsys):
    assert cli.main(["quarantine", DAY.isoformat(), "--source", "order"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown source 'order' (did you mean 'orders'?)" in err
    assert cli.main(["quarantine", "2010-12-09", "--source", "orders"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("quarantine: orders has no partition for 2010-12-09 (python -m shopflow status --dataset orders "
                   "lists its days)")
    with pytest.raises(SystemExit):  # not a day at all: argparse's own one-line usage error
        cli.main(["quarantine", "2010-13-01", "--source", "orders"])
    capsys.readouterr()


def test_failed_partition_status_says_how_to_rerun_it(settings, source_data, capsys):
    lines = real_orders_lines(source_data, 10)
    lines[4] = lines[4].rsplit(",", 1)[0] + "\n"  # a field missing: the landing file cannot be read, ingest fails
    day = date(2010, 12, 2)
    land_orders_day(settings, day, lines)
    with pytest.raises(LandingFileError):
        pipeline.ingest(settings, "orders", day)
    [partition] = MetadataStore(settings.store_url).partitions("orders", day)
    assert partition.status == "failed"
    text = render_status(settings)
    lines_out = text.splitlines()
    at = next(i for i, line in enumerate(lines_out) if line.startswith("orders") and "2010-12-02" in line)
    rerun = next(line for line in lines_out[at:] if line.startswith("    ^ re-run:"))
    assert "python -m shopflow run 2010-12-02 --source orders" in rerun
    assert "airflow tasks clear shopflow_daily -s 2010-12-02 -e 2010-12-02 --only-failed" in rerun
    assert "airflow dags test shopflow_daily 2010-12-02" in rerun
    # the quarantine of a partition that never got cleaned says so, with the same hint
    assert cli.main(["quarantine", "2010-12-02", "--source", "orders"]) == 1
    err = capsys.readouterr().err
    assert "orders 2010-12-02 was not cleaned (status failed: ingest" in err
    assert "python -m shopflow run 2010-12-02 --source orders" in err


def test_a_good_partition_has_no_rerun_hint(settings, cleaned_day):
    assert "re-run" not in render_status(settings)


def test_models_labels_masked_precision_and_coverage_apart(settings):
    run = {"model_version": 1, "threshold": 0.81, "rows_in": 2000, "rows_filled": 120, "rows_flagged": 3,
           "rows_review": 40, "rows_unchanged": 1837, "masked_n": 1532, "masked_filled": 1379,
           "masked_precision": 1.0, "output_path": "lake/repaired/catalog/ds=2010-12-01/part-0.parquet"}
    MetadataStore(settings.store_url).record_repair(DAY, run=run, audit=[], run_id=None)
    text = render_models(settings)
    assert "precision 1.000 (1,379/1,379), coverage 0.900 (1,379/1,532)" in text
    assert "1.000 (1379/1532)" not in text
    assert masked_result(0.5, 10, 40) == "precision 0.500 (5/10), coverage 0.250 (10/40)"
    assert masked_result(None, 0, 40) == "precision - (nothing filled), coverage 0.000 (0/40)"
    assert masked_result(None, None, None) == "-"

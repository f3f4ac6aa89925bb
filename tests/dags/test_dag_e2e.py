"""End to end: `airflow dags test shopflow_daily` on real sample days, on SQLite and on PostgreSQL 15."""

from __future__ import annotations

import csv
import gzip
import hashlib
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from conftest import DAYS, make_postgres_sandbox, run_days
from shopflow.common.parquet import read_parquet
from shopflow.store.repository import MetadataStore
from store_snapshot import lake_digests, store_rows

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

EXPECTED = {("orders", "2010-12-01"), ("catalog", "2015-12-03"), ("search", "2015-12-03"), ("behavior", "2017-11-25")}


def _raw_customer_ids(landing_file: Path) -> set[str]:
    with open(landing_file, newline="") as handle:
        ids = {row["CustomerID"].strip() for row in csv.DictReader(handle)} - {""}
    return ids | {i.removesuffix(".0") for i in ids}


def catalogue_rows(sandbox) -> tuple[int, int]:
    """(products, blank rows) in the sandbox's Flipkart files: the whole real catalogue or a slice of it."""
    data = Path(sandbox.env["SHOPFLOW_SOURCE_DATA"])

    def rows(name: str) -> list[list[str]]:
        with gzip.open(data / "catalog" / name, "rt", encoding="utf-8", newline="") as handle:
            return list(csv.reader(handle))

    full_columns = rows("flipkart_full_columns_first999.csv.gz")
    return len(rows("flipkart_name_category_tree.csv.gz")), sum(not any(v.strip() for v in r) for r in full_columns)


def assert_day_outputs(sandbox) -> None:
    store = MetadataStore(sandbox.store_url)
    by_key = {(p.dataset.name, p.ds.isoformat()): p for p in store.partitions()}
    for dataset, day in EXPECTED:
        partition = by_key[(dataset, day)]
        assert partition.status == "validated", (dataset, day, partition.error)
        reasons = partition.quarantined_by_reason or {}
        assert partition.rows_in == partition.rows_clean + sum(reasons.values()) + partition.rows_duplicate
        assert partition.rows_quarantined == sum(reasons.values())
        assert partition.files and all(len(f.sha256) == 64 and f.size_bytes > 0 for f in partition.files)
        clean = read_parquet(Path(partition.clean_path))
        quarantine = read_parquet(Path(partition.quarantine_path))
        assert len(clean) == partition.rows_clean and len(quarantine) == partition.rows_quarantined
        assert partition.validation_success is True and partition.critical_failures == 0
        validations = store.validations(dataset, date.fromisoformat(day))
        assert len(validations) >= 5 and all(v.result for v in validations)
        assert {v.severity for v in validations} == {"critical", "warning"}
        assert {e.task for e in store.lineage(dataset, date.fromisoformat(day))} >= {"ingest", "clean", "validate"}
    # Days without a landing partition are recorded as missing, not crashed.
    assert by_key[("orders", "2015-12-03")].status == "missing"
    assert by_key[("behavior", "2010-12-01")].status == "missing"

    orders = by_key[("orders", "2010-12-01")]
    assert orders.rows_in == 3108 and orders.rows_duplicate > 0
    assert orders.quarantined_by_reason.get("non_positive_price", 0) > 0
    clean_orders = read_parquet(Path(orders.clean_path))
    assert clean_orders["is_cancellation"].any(), "cancellations are kept and flagged"
    assert clean_orders["customer_key"].dropna().str.fullmatch(r"[0-9a-f]{24}").all()
    catalog = by_key[("catalog", "2015-12-03")]
    products, blank_rows = catalogue_rows(sandbox)  # 16,028 and 3,995 in the whole real catalogue
    assert catalog.load_kind == "snapshot" and catalog.rows_clean == products
    assert catalog.quarantined_by_reason == {"blank_row": blank_rows}

    raw_ids = _raw_customer_ids(sandbox.shopflow_home / "landing/orders/ds=2010-12-01/orders.csv")
    assert len(raw_ids) > 50
    lake = sandbox.shopflow_home / "lake"
    for parquet in lake.rglob("*.parquet"):
        columns = set(pd.read_parquet(parquet).columns)
        assert not columns & {"CustomerID", "user_id"}, f"raw id column in {parquet}"
    for parquet in lake.rglob("*/orders/*/*.parquet"):
        frame = pd.read_parquet(parquet)
        # Every text column except the product and invoice codes (5-digit stock codes can equal a customer id).
        text = frame.select_dtypes(include=["object", "string"]).drop(
            columns=["StockCode", "stock_code", "InvoiceNo", "invoice_no"], errors="ignore")
        for column in text.columns:
            leaked = set(text[column].dropna().astype(str)) & raw_ids
            assert not leaked, f"raw CustomerID {sorted(leaked)[:3]} in {parquet} column {column}"


def test_daily_dag_on_sqlite(sqlite_sandbox):
    assert_day_outputs(sqlite_sandbox)


def test_model_branch_trains_blesses_repairs_and_attributes_queries(sqlite_sandbox):
    from shopflow.model.registry import champion, models

    store = MetadataStore(sqlite_sandbox.store_url)
    [model] = models(store)  # trained once: on the catalogue day, not on the orders or behaviour days
    assert model.trained_on_ds == date(2015, 12, 3) and model.status == "champion" == champion(store).status
    assert model.training["device"] == "cpu" and model.training["steps"] == 30
    assert model.data_lineage["catalog_partitions"][0]["ds"] == "2015-12-03"
    assert model.baseline_metrics["top"]["macro_f1"] > 0.8, "the TF-IDF baseline is strong on real titles"
    assert (Path(model.artifact_path) / "champion.json").is_file() and model.metrics["selected"]
    assert set(model.metrics["candidates"]) >= {"tfidf", "embeddings", "tfidf_embeddings", "finetune"}

    products, _ = catalogue_rows(sqlite_sandbox)
    [catalog] = store.partitions("catalog", date(2015, 12, 3))
    clean = read_parquet(Path(catalog.clean_path))
    unlabelled = int(clean["category_status"].isin(["name_only", "missing"]).sum())
    run = store.repair_run(date(2015, 12, 3))
    assert run.model_version == model.version and run.rows_in == products
    assert run.rows_in == run.rows_filled + run.rows_review + run.rows_flagged + run.rows_unchanged
    assert run.rows_filled + run.rows_review == unlabelled > 0, "every name-only product is filled or listed for review"
    assert run.masked_n > 50 and (run.masked_precision is None or 0 <= run.masked_precision <= 1)
    audit = store.repair_audit(date(2015, 12, 3))
    category = [a for a in audit if a.field == "category_top"]
    assert len(category) == run.rows_filled + run.rows_review + run.rows_flagged
    assert {a.field for a in audit} <= {"category_top", "category_l2", "brand", "retail_price_inr"}
    duplicates = store.duplicate_run("catalog", date(2015, 12, 3))  # the duplicates task of the same run
    assert duplicates.products_in == products == duplicates.products_in_clusters + duplicates.singletons
    assert duplicates.clusters > 10 and duplicates.validation_success
    intents = store.search_intents(date(2015, 12, 3))
    assert intents and all(0 < i.confidence <= 1 for i in intents)
    assert "train" in {e.task for e in store.lineage("catalog", date(2015, 12, 3))}


def test_status_cli_matches_store(sqlite_sandbox):
    output = sqlite_sandbox.shopflow("status").stdout
    assert "orders" in output and "2010-12-01" in output and "non_positive_price" in output
    assert "search (generated)" in output
    assert "3,108" in output and f"{catalogue_rows(sqlite_sandbox)[0]:,}" in output


def test_rerun_is_idempotent(sqlite_sandbox):
    lake = sqlite_sandbox.shopflow_home / "lake"
    before_files, before_rows = lake_digests(lake), store_rows(sqlite_sandbox.store_url)
    run_days(sqlite_sandbox, ["2010-12-01"])
    assert lake_digests(lake) == before_files
    assert store_rows(sqlite_sandbox.store_url) == before_rows


def test_corrupted_landing_file_fails_naming_file_and_line(sqlite_sandbox):
    landing = sqlite_sandbox.shopflow_home / "landing/orders/ds=2010-12-02/orders.csv"
    lines = landing.read_text().splitlines(keepends=True)
    lines[56] = lines[56].rstrip("\n") + ",EXTRA,FIELDS\n"  # physical line 57
    landing.write_text("".join(lines))
    digest = hashlib.sha256(landing.read_bytes()).hexdigest()

    result = sqlite_sandbox.dags_test("2010-12-02")
    output = result.stdout + result.stderr
    assert f"{landing}, line 57: expected 8 fields, found 10" in output

    store = MetadataStore(sqlite_sandbox.store_url)
    [partition] = store.partitions("orders", date(2010, 12, 2))
    assert partition.status == "failed" and "line 57" in partition.error
    assert not list((sqlite_sandbox.shopflow_home / "lake").glob("*/orders/ds=2010-12-02/*"))
    assert hashlib.sha256(landing.read_bytes()).hexdigest() == digest, "landing files are never modified"
    # The run fails (fail_if_any_task_failed), and the day still gets its report, which says so.
    assert result.returncode != 0
    report = store.report(date(2010, 12, 2))
    assert report is not None and report.status == "failed" and report.datasets["orders"] == "failed"
    assert Path(report.html_path).is_file()


@pytest.mark.postgres
def test_daily_dag_on_postgres(tmp_path, source_data, postgres_server):
    sandbox = make_postgres_sandbox(tmp_path, source_data, postgres_server, "e2e")
    assert sandbox.store_url.startswith("postgresql")
    sandbox.env["SHOPFLOW_TRAIN_ENABLED"] = "false"  # the model branch is covered on SQLite; keep this one short
    run_days(sandbox, DAYS)
    assert_day_outputs(sandbox)
    before = lake_digests(sandbox.shopflow_home / "lake"), store_rows(sandbox.store_url)
    run_days(sandbox, ["2017-11-25"])
    assert (lake_digests(sandbox.shopflow_home / "lake"), store_rows(sandbox.store_url)) == before


def test_absent_sources_are_skipped_without_starting_a_task(sqlite_sandbox):
    """plan_day branches to the sources with landing files; the others' groups never start a worker process."""
    import json

    from local_airflow import airflow

    listed = airflow(sqlite_sandbox.env, "dags", "list-runs", "shopflow_daily", "-o", "json").stdout
    runs = json.loads(next(line for line in reversed(listed.splitlines()) if line.startswith("[")))
    run_id = next(r["run_id"] for r in runs if r["logical_date"].startswith("2010-12-01"))
    states = airflow(sqlite_sandbox.env, "tasks", "states-for-dag-run", "shopflow_daily", run_id, "-o", "json").stdout
    instances = {t["task_id"]: t for t in json.loads(next(line for line in reversed(states.splitlines())
                                                           if line.startswith("[")))}
    assert instances["plan_day"]["state"] == "success"
    assert instances["orders.ingest"]["state"] == "success"
    for source in ("behavior", "catalog", "search", "olist_catalog"):
        for step in ("ingest", "clean", "validate"):
            instance = instances[f"{source}.{step}"]
            assert instance["state"] == "skipped", (source, step, instance)
            # marked skipped by the branch (or by trigger rule), never run: it started and ended in the same instant
            assert instance.get("start_date") == instance.get("end_date"), (source, step, instance)


def test_a_day_with_nothing_landed_still_gets_its_report(tmp_path, source_data):
    """plan_day follows no branch on 2010-12-04 (a Saturday: no orders, no other source): every partition is
    recorded as missing and the report is written anyway, saying no_data."""
    from conftest import make_sandbox

    sandbox = make_sandbox(tmp_path, source_data)
    result = sandbox.dags_test("2010-12-04")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    store = MetadataStore(sandbox.store_url)
    assert {p.status for p in store.partitions(None, date(2010, 12, 4))} == {"missing"}
    report = store.report(date(2010, 12, 4))
    assert report is not None and report.status == "no_data"

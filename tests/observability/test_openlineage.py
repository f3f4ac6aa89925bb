"""OpenLineage: the real DAG run by `airflow dags test` with the provider's file transport, then the events read back;
and, without Airflow, the naming of object-store datasets and a lineage error that must not fail the task.

The DAG run: one day, the catalogue snapshot day 2015-12-03, on a deterministic slice of the real Flipkart files (as the model
fixture uses) plus the real Olist files and the generated search log: catalog (a cleaner module), search and
olist_catalog (declared), the whole model branch (a first model is trained) and the report.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest
from conftest import TEST_KEY, Sandbox
from local_airflow import airflow, airflow_env, free_port
from model_fixtures import slice_source_data


def e2e(test):
    """The tests on the real DAG run (one `airflow dags test`, shared by the module)."""
    return pytest.mark.airflow(pytest.mark.slow(test))

DAY = "2015-12-03"
SOURCES = ("catalog", "search", "olist_catalog")
NAMESPACE = "shopflow-openlineage-test"
# A first model trains on the slice (a short CPU budget), is blessed, then repairs and attributes queries.
MODEL_ENV = {"SHOPFLOW_TRAIN_CPU_MAX_STEPS": "12", "SHOPFLOW_TRAIN_CPU_TIME_BUDGET_S": "0",
             "SHOPFLOW_TRAIN_CPU_BATCH_SIZE": "16", "SHOPFLOW_TRAIN_DEVICE": "cpu",
             "SHOPFLOW_TRAIN_MIN_CHANGED": "50", "SHOPFLOW_BLESS_MACRO_F1_FLOOR": "0.0",
             "SHOPFLOW_REPAIR_THRESHOLD": "0.3"}


@pytest.fixture(scope="module")
def lineage_run(tmp_path_factory, source_data):
    from shopflow.landing.sample_data import OLIST_PRODUCTS, OLIST_TRANSLATION, land_catalog, land_olist, land_search

    root = tmp_path_factory.mktemp("openlineage")
    data = slice_source_data(source_data, root / "data")
    for name in (OLIST_PRODUCTS, OLIST_TRANSLATION):
        shutil.copy(source_data / name, data / name)
    events_file = root / "openlineage" / "events.jsonl"
    events_file.parent.mkdir()
    env = airflow_env(root / "airflow", root / "shopflow", port=free_port(), parallelism=2)
    env.update(MODEL_ENV, SHOPFLOW_SOURCE_DATA=str(data), SHOPFLOW_PSEUDONYM_KEY=TEST_KEY,
               AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps({"type": "file", "log_file_path": str(events_file),
                                                           "append": True}),
               AIRFLOW__OPENLINEAGE__NAMESPACE=NAMESPACE)
    sandbox = Sandbox(root=root, env=env)
    sandbox.shopflow("db", "upgrade")
    settings = sandbox.settings()
    day = date.fromisoformat(DAY)
    land_catalog(settings)
    land_search(settings, day, day)
    land_olist(settings)
    airflow(env, "db", "migrate", timeout=600)
    result = sandbox.dags_test(DAY)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    return sandbox, events


def _by_task(events) -> dict[str, dict[str, dict]]:
    """task id -> event type -> the (last) event."""
    tasks: dict[str, dict[str, dict]] = defaultdict(dict)
    for event in events:
        name = event["job"]["name"]
        if name.startswith("shopflow_daily."):
            tasks[name.removeprefix("shopflow_daily.")][event["eventType"]] = event
    return tasks


def _local(dataset) -> Path:
    assert dataset["namespace"] == "file", dataset
    path = Path(dataset["name"])
    assert path.is_absolute() and path.exists(), dataset["name"]
    return path


def _one(datasets, path) -> dict:
    found = [d for d in datasets if d["name"] == str(path)]
    assert len(found) == 1, (str(path), [d["name"] for d in datasets])
    return found[0]


@e2e
def test_every_task_emits_start_and_complete(lineage_run):
    _sandbox, events = lineage_run
    tasks = _by_task(events)
    expected = [f"{s}.{step}" for s in SOURCES for step in ("ingest", "clean", "validate")] + [
        f"model.{t}" for t in ("training_gate", "train", "bless", "repair", "search_intent")] + ["report"]
    for task in expected:
        assert {"START", "COMPLETE"} <= set(tasks[task]), (task, sorted(tasks[task]))
        assert tasks[task]["COMPLETE"]["job"]["namespace"] == NAMESPACE
    # The shopflow:// Assets have no OpenLineage converter: the datasets are the real files, never shopflow://.
    assert not [d for e in events for d in e.get("inputs", []) + e.get("outputs", [])
                if d["namespace"].startswith("shopflow")]


@e2e
def test_partition_steps_name_the_real_files_with_schema_and_statistics(lineage_run):
    from shopflow.sources import get_source
    from shopflow.store.repository import MetadataStore

    sandbox, events = lineage_run
    tasks = _by_task(events)
    store = MetadataStore(sandbox.store_url)
    day = date.fromisoformat(DAY)
    for source in SOURCES:
        partition = store.partitions(source, day)[0]
        assert partition.status == "validated"
        # ingest: landing files -> raw Parquet
        ingest = tasks[f"{source}.ingest"]["COMPLETE"]
        landing = {p.name: p for p in map(_local, ingest["inputs"])}
        assert set(landing) == {f.name for f in partition.files}
        for dataset, record in zip(sorted(ingest["inputs"], key=lambda d: Path(d["name"]).name),
                                   sorted(partition.files, key=lambda f: f.name)):
            stats = dataset["inputFacets"]["inputStatistics"]
            assert (stats["rowCount"], stats["size"]) == (record.rows, record.size_bytes)
            assert dataset["facets"]["version"]["datasetVersion"] == record.sha256
        raw = _one(ingest["outputs"], partition.raw_path)
        assert _local(raw) == Path(partition.raw_path)
        assert raw["outputFacets"]["outputStatistics"]["rowCount"] == partition.rows_in
        assert raw["outputFacets"]["outputStatistics"]["size"] == Path(partition.raw_path).stat().st_size
        # the START event already names the files the step is about to touch
        assert [d["name"] for d in tasks[f"{source}.ingest"]["START"]["outputs"]] == [partition.raw_path]

        # clean: raw -> clean + quarantine, with the row ledger and the clean schema
        clean = tasks[f"{source}.clean"]["COMPLETE"]
        assert [d["name"] for d in clean["inputs"]] == [partition.raw_path]
        clean_out = _one(clean["outputs"], partition.clean_path)
        quarantine = _one(clean["outputs"], partition.quarantine_path)
        for dataset, rows in ((clean_out, partition.rows_clean), (quarantine, partition.rows_quarantined)):
            stats = dataset["outputFacets"]["outputStatistics"]
            assert stats["rowCount"] == rows and stats["size"] == _local(dataset).stat().st_size
        spec = get_source(source)
        fields = clean_out["facets"]["schema"]["fields"]
        assert [(f["name"], f["type"]) for f in fields] == list(spec.clean_schema.items())
        assert clean_out["facets"]["symlinks"]["identifiers"] == [
            {"namespace": "shopflow", "name": f"clean.{source}", "type": "TABLE"}]
        assert "_reason" in [f["name"] for f in quarantine["facets"]["schema"]["fields"]]


@e2e
def test_column_lineage_of_a_declared_source(lineage_run):
    sandbox, events = lineage_run
    tasks = _by_task(events)
    from shopflow.store.repository import MetadataStore

    partition = MetadataStore(sandbox.store_url).partitions("search", date.fromisoformat(DAY))[0]
    clean = _one(tasks["search.clean"]["COMPLETE"]["outputs"], partition.clean_path)
    lineage = clean["facets"]["columnLineage"]["fields"]

    def sources(column):
        return [(i["name"], i["field"]) for i in lineage[column]["inputFields"]]

    # search.yaml: event_ts_utc from event_time, query (normalised), user_key: the pseudonym token of user_id.
    assert sources("event_ts_utc") == [(partition.raw_path, "event_time")]
    assert sources("query") == [(partition.raw_path, "query")]
    assert sources("user_key") == [(partition.raw_path, "user_key")]
    assert lineage["user_key"]["transformationType"] == "IDENTITY"
    # a derived column (has_click: clicked_product_id.notna()) comes from the raw columns its expression names
    assert sources("has_click") == [(partition.raw_path, "clicked_product_id")]
    assert lineage["has_click"]["transformationDescription"] == "derived: clicked_product_id.notna()"
    # ingest: the raw token column comes from the landing user_id, masked
    raw = _one(tasks["search.ingest"]["COMPLETE"]["outputs"], partition.raw_path)
    token = raw["facets"]["columnLineage"]["fields"]["user_key"]
    assert [i["field"] for i in token["inputFields"]] == ["user_id"]
    assert token["transformationType"] == "MASKED"
    assert token["inputFields"][0]["transformations"][0]["masking"] is True
    # the catalogue's cleaner module declares its COLUMN_LINEAGE
    catalog = MetadataStore(sandbox.store_url).partitions("catalog", date.fromisoformat(DAY))[0]
    catalog_clean = _one(tasks["catalog.clean"]["COMPLETE"]["outputs"], catalog.clean_path)
    assert [i["field"] for i in catalog_clean["facets"]["columnLineage"]["fields"]["retail_price_inr"]["inputFields"]] \
        == ["retail_price"]


@e2e
def test_validate_carries_the_expectation_results(lineage_run):
    from shopflow.store.repository import MetadataStore

    sandbox, events = lineage_run
    tasks = _by_task(events)
    store = MetadataStore(sandbox.store_url)
    day = date.fromisoformat(DAY)
    for source in SOURCES:
        partition = store.partitions(source, day)[0]
        event = tasks[f"{source}.validate"]["COMPLETE"]
        clean = _one(event["inputs"], partition.clean_path)
        assert clean["facets"]["schema"]["fields"]
        assertions = clean["inputFacets"]["dataQualityAssertions"]["assertions"]
        stored = store.validations(source, day)
        assert len(assertions) == len(stored) >= 5
        assert [(a["assertion"], a.get("column"), a["success"], a["severity"]) for a in assertions] == [
            (v.expectation, v.column_name, v.success, {"critical": "error", "warning": "warn"}[v.severity])
            for v in stored]
        assert clean["inputFacets"]["dataQualityMetrics"]["rowCount"] == partition.rows_clean
    # olist_catalog has failing warnings (products without a category): they are in the event as failures
    olist = tasks["olist_catalog.validate"]["COMPLETE"]["inputs"][0]["inputFacets"]["dataQualityAssertions"]
    assert any(not a["success"] and a["severity"] == "warn" for a in olist["assertions"])


@e2e
def test_model_branch_and_report_outputs(lineage_run):
    from shopflow.model.registry import models
    from shopflow.store.repository import MetadataStore

    sandbox, events = lineage_run
    tasks = _by_task(events)
    store = MetadataStore(sandbox.store_url)
    day = date.fromisoformat(DAY)
    (model,) = models(store)
    train = tasks["model.train"]["COMPLETE"]
    output = _one(train["outputs"], model.artifact_path)
    assert _local(output).is_dir()
    facet = output["facets"]["shopflow_model"]
    assert (facet["version"], facet["trainedOnDs"]) == (model.version, DAY)
    assert facet["metrics"]["macro_f1"] == pytest.approx(model.macro_f1)
    assert output["outputFacets"]["outputStatistics"]["fileCount"] > 0
    catalog = store.partitions("catalog", day)[0]
    assert [d["name"] for d in train["inputs"]] == [catalog.clean_path]

    repair = tasks["model.repair"]["COMPLETE"]
    run = store.repair_run(day)
    assert [d["name"] for d in repair["inputs"]] == [catalog.clean_path]
    repaired = _one(repair["outputs"], run.output_path)
    assert _local(repaired) and repaired["outputFacets"]["outputStatistics"]["rowCount"] == run.rows_in
    assert "category_top_repaired" in repaired["facets"]["columnLineage"]["fields"]

    report = store.report(day)
    outputs = tasks["report"]["COMPLETE"]["outputs"]
    for path, sha in ((report.html_path, report.html_sha256), (report.json_path, report.json_sha256)):
        dataset = _one(outputs, path)
        assert _local(dataset) and dataset["facets"]["version"]["datasetVersion"] == sha


def test_dataset_names():
    from shopflow.observability.lineage import dataset_id

    assert dataset_id("lake/../lake/x.parquet") == {"namespace": "file", "name": str(Path("lake/x.parquet").resolve())}
    assert dataset_id("file:///srv/lake/x.parquet") == {"namespace": "file", "name": "/srv/lake/x.parquet"}
    assert dataset_id("s3://shop-bucket/shopflow/lake/clean/orders/ds=2010-12-01/part-0.parquet") == {
        "namespace": "s3://shop-bucket", "name": "shopflow/lake/clean/orders/ds=2010-12-01/part-0.parquet"}


def test_object_store_partitions_are_named_by_bucket_and_key(tmp_path, source_data):
    """With SHOPFLOW_STORAGE_URL (here fsspec's in-memory store) a dataset is `<scheme>://<bucket>` + the key, with
    the same statistics as on local disk; another run's records are not this run's lineage."""
    import uuid

    from shopflow.config.settings import Settings
    from shopflow.landing.sample_data import land_search
    from shopflow.observability import lineage as lineage_facts
    from shopflow.steps import partition as pipeline
    from shopflow.store import migrate

    bucket = f"ol-{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path), "SHOPFLOW_STORAGE_URL": f"memory://{bucket}/shopflow",
                                  "SHOPFLOW_SOURCE_DATA": str(source_data), "SHOPFLOW_PSEUDONYM_KEY": TEST_KEY})
    migrate.upgrade(settings.store_url)
    day = date.fromisoformat(DAY)
    land_search(settings, day, day)
    results = {step.__name__: step(settings, "search", day, "run-1")
               for step in (pipeline.ingest, pipeline.clean, pipeline.validate)}
    store = lineage_facts.open_store(settings.store_url)
    ingest = lineage_facts.recorded("ingest", settings, store, day, "run-1", "search")
    assert [(d["namespace"], d["name"]) for d in ingest["inputs"]] == [
        (f"memory://{bucket}", "shopflow/landing/search/ds=2015-12-03/search_log.csv")]
    (raw,) = ingest["outputs"]
    assert (raw["namespace"], raw["name"]) == (f"memory://{bucket}", "shopflow/lake/raw/search/ds=2015-12-03/part-0.parquet")
    assert raw["stats"]["rowCount"] == results["ingest"]["rows_in"] and raw["stats"]["size"] > 0
    clean = lineage_facts.recorded("clean", settings, store, day, "run-1", "search")
    assert [d["stats"]["rowCount"] for d in clean["outputs"]] == [results["clean"]["rows_clean"],
                                                                 results["clean"]["rows_quarantined"]]
    validate = lineage_facts.recorded("validate", settings, store, day, "run-1", "search")
    assert len(validate["inputs"][0]["assertions"]) == results["validate"]["expectations"]
    # A run that did not record the step gets the planned datasets only (no statistics of someone else's run).
    other = lineage_facts.recorded("clean", settings, store, day, "run-2", "search")
    assert other == lineage_facts.planned("clean", settings, day, "search")
    assert not [d for d in other["outputs"] if "stats" in d]


def test_a_lineage_error_never_fails_the_task(monkeypatch):
    from shopflow_airflow import shopflow_openlineage
    from shopflow_airflow.operators import CleanPartitionOperator

    warnings = []
    monkeypatch.setattr(shopflow_openlineage.log, "warning", lambda message, *args, **kwargs: warnings.append(message % args))
    operator = CleanPartitionOperator(task_id="clean", dataset="search", partition_ds="not-a-day")
    assert operator.get_openlineage_facets_on_start() is None
    assert operator.get_openlineage_facets_on_failure(task_instance=None) is None
    assert warnings and all("could not build the lineage of clean" in w for w in warnings)

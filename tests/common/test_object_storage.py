"""SHOPFLOW_STORAGE_URL: the landing zone, lake, models and reports on an object store, through shopflow.common.storage.

The fast tests use `file://` URLs (fsspec's local filesystem: the same code path as S3, no server). The slow ones
run a real S3 API: `moto_server` (moto[server]) on a free loopback port, with fake credentials in the standard
AWS_* variables, and the orders day 2010-12-01 of the real sample data through the library and the report plugin.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
import urllib.request
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from local_airflow import free_port
from shopflow.common import storage
from shopflow.common.parquet import read_parquet, write_parquet_atomic
from shopflow.config.settings import ConfigurationError, Settings
from shopflow.lake import zones as lake
from shopflow.store import migrate
from shopflow.store.repository import MetadataStore

DAY = date(2010, 12, 1)
KEY = "object-storage-test-key-not-a-secret-32b"


# ---- file:// (fast) ---------------------------------------------------------------------------------------------
def test_unset_url_keeps_local_paths(tmp_path):
    env = {"SHOPFLOW_HOME": str(tmp_path), "SHOPFLOW_LAKE_DIR": str(tmp_path / "elsewhere")}
    settings = Settings.from_env(env)
    assert settings.storage_url is None
    assert settings.landing_dir == tmp_path / "landing" and type(settings.landing_dir) is type(tmp_path)
    assert settings.lake_dir == tmp_path / "elsewhere" and settings.reports_dir == tmp_path / "reports"
    assert settings.model_cache_dir == tmp_path / "cache" / "models"


def test_url_roots_and_bad_urls(tmp_path):
    env = {"SHOPFLOW_HOME": str(tmp_path), "SHOPFLOW_LAKE_DIR": str(tmp_path / "ignored"),
           "SHOPFLOW_STORAGE_URL": f"file://{tmp_path}/store/"}
    settings = Settings.from_env(env)
    assert [str(settings.landing_dir), str(settings.lake_dir), str(settings.models_dir), str(settings.reports_dir)] == \
        [f"file://{tmp_path}/store/{name}" for name in ("landing", "lake", "models", "reports")]
    assert storage.is_remote(settings.lake_dir) and settings.home == tmp_path
    for bad in ("relative/path", "nosuchprotocol://bucket"):
        with pytest.raises(ConfigurationError, match="SHOPFLOW_STORAGE_URL"):
            Settings.from_env({**env, "SHOPFLOW_STORAGE_URL": bad})


@pytest.fixture
def file_settings(tmp_path) -> Settings:
    return Settings.from_env({"SHOPFLOW_HOME": str(tmp_path / "home"),
                              "SHOPFLOW_STORAGE_URL": (tmp_path / "store").as_uri()})


def test_files_parquet_listing_and_drop_through_file_urls(file_settings, tmp_path):
    frame = pd.DataFrame({"a": ["x", None, "z"], "_source_line": [2, 3, 4]})
    path = lake.lake_file(file_settings, "clean", "orders", DAY)
    written = write_parquet_atomic(frame, path)
    assert str(written).startswith("file://") and (tmp_path / "store/lake/clean/orders/ds=2010-12-01").is_dir()
    local = write_parquet_atomic(frame, tmp_path / "local.parquet")
    assert storage.read_bytes(written) == local.read_bytes(), "the same bytes as a local write"
    back = read_parquet(str(written))  # as the store records it
    assert back["a"].tolist()[0] == "x" and back["a"].isna().tolist() == [False, True, False]
    assert read_parquet(written, text_as_dictionary=True, columns=["a"]).shape == (3, 1)
    storage.write_bytes(lake.lake_file(file_settings, "quarantine", "orders", DAY), b"q")
    assert [p.name for p in storage.list_files(file_settings.lake_dir)] == ["part-0.parquet", "part-0.parquet"]
    lake.drop_outputs(file_settings, "orders", DAY)
    assert storage.list_files(file_settings.lake_dir) == []
    assert not list((tmp_path / "store").rglob("*.tmp*"))


def test_containment_of_report_urls(file_settings, tmp_path):
    root = file_settings.reports_dir
    inside = storage.contained(root, f"{root}/ds=2010-12-01/report.html")
    assert str(inside) == f"{root}/ds=2010-12-01/report.html"
    assert str(storage.contained(root, "ds=2010-12-01/report.json")) == f"{root}/ds=2010-12-01/report.json"
    for outside in (f"{root}/../lake/x.parquet", f"{root}x/report.html", str(tmp_path / "store/lake/r.html"),
                    "s3://bucket/reports/r.html", "../lake/x", "/etc/passwd"):
        assert storage.contained(root, outside) is None, outside
    local_root = tmp_path / "reports"
    assert storage.contained(local_root, "../x") is None and storage.contained(local_root, "ds=1/r.html")


def test_landing_links_are_refused_through_file_urls(file_settings, tmp_path):
    from shopflow.ingest.folder import LandingFolderError, partition_files
    from shopflow.sources import load_sources

    folder = lake.landing_dir(file_settings, "orders", DAY)
    storage.write_bytes(folder / "README.txt", b"x")  # creates the folder
    local = tmp_path / "store" / "landing" / "orders" / "ds=2010-12-01"
    (local / "README.txt").unlink()
    (local / "orders.csv").symlink_to("/etc/passwd")
    with pytest.raises(LandingFolderError, match=r"not regular files .*'orders\.csv'"):
        partition_files(folder, load_sources()["orders"])
    (local / "orders.csv").unlink()
    (tmp_path / "outside.csv").write_text("InvoiceNo\n")
    (local / "orders.csv").symlink_to(tmp_path / "outside.csv")  # a link out of the landing zone
    with pytest.raises(LandingFolderError, match="not regular files"):
        partition_files(folder, load_sources()["orders"])


def test_model_directory_is_staged_uploaded_and_cached_once(file_settings, tmp_path):
    target = file_settings.models_dir / "category_classifier" / "trained_2015-12-03_abc"
    with storage.staged_dir(target) as local:
        assert isinstance(local, Path) and not str(local).startswith(str(tmp_path / "store"))
        (local / "config.json").write_text("{}")
        (local / "sub").mkdir()
        (local / "sub" / "weights.bin").write_bytes(b"\0" * 10)
    assert not local.exists(), "the staging folder is removed"
    assert [str(p)[len(str(target)):] for p in storage.list_files(target)] == ["/config.json", "/sub/weights.bin"]
    cache = storage.local_copy(str(target), file_settings.model_cache_dir)
    assert cache == file_settings.model_cache_dir / "category_classifier" / "trained_2015-12-03_abc"
    assert (cache / "sub" / "weights.bin").read_bytes() == b"\0" * 10
    storage.remove_tree(target)
    assert storage.local_copy(str(target), file_settings.model_cache_dir) == cache, "downloaded once, then cached"
    with pytest.raises(FileNotFoundError):
        storage.local_copy(str(target) + "_missing", file_settings.model_cache_dir)
    plain = tmp_path / "plain-model"
    assert storage.local_copy(str(plain), file_settings.model_cache_dir) == plain
    with storage.staged_dir(plain) as local:
        assert local == plain and plain.is_dir()


# ---- a real S3 API (moto_server) ----------------------------------------------------------------------------------
BUCKET = "shopflow-test"


@pytest.fixture(scope="module")
def s3_env():
    """moto_server on a free port with a bucket; the AWS_* variables point every S3 client at it."""
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
                break
            except OSError as exc:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto_server did not start") from exc
                time.sleep(0.2)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            import s3fs

            s3fs.S3FileSystem.clear_instance_cache()
            fs = s3fs.S3FileSystem()
            fs.mkdir(BUCKET)
            yield fs, env
            s3fs.S3FileSystem.clear_instance_cache()
    finally:
        server.kill()
        server.wait()


def _objects(fs, prefix: str) -> dict[str, str]:
    """sha256 of every object under the prefix."""
    fs.invalidate_cache()
    return {name: hashlib.sha256(fs.cat_file(name)).hexdigest() for name in fs.find(f"{BUCKET}/{prefix}")}


@pytest.fixture(scope="module")
def s3_day(s3_env, tmp_path_factory, source_data):
    """The orders day 2010-12-01 landed, ingested, cleaned, validated and reported with the data on S3."""
    from shopflow.landing.sample_data import land_orders
    from shopflow.report.build import build_report
    from shopflow.steps import partition as pipeline

    fs, _ = s3_env
    home = tmp_path_factory.mktemp("s3-home")
    env = {"SHOPFLOW_HOME": str(home), "SHOPFLOW_SOURCE_DATA": str(source_data), "SHOPFLOW_PSEUDONYM_KEY": KEY,
           "SHOPFLOW_STORAGE_URL": f"s3://{BUCKET}/shopflow"}
    settings = Settings.from_env(env)
    migrate.upgrade(settings.store_url)
    started = time.perf_counter()
    landed = land_orders(settings)
    land_seconds = time.perf_counter() - started
    steps = [step(settings, "orders", DAY) for step in (pipeline.ingest, pipeline.clean, pipeline.validate)]
    generated_at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    report = build_report(settings, DAY, generated_at=generated_at)
    return {"settings": settings, "env": env, "home": home, "landed": landed, "steps": steps, "report": report,
            "generated_at": generated_at, "land_seconds": land_seconds}


@pytest.mark.slow
def test_a_day_runs_on_s3_and_nothing_lands_locally(s3_env, s3_day):
    fs, _ = s3_env
    settings, home = s3_day["settings"], s3_day["home"]
    assert s3_day["landed"][DAY] == 3108
    landing = f"{BUCKET}/shopflow/landing/orders/ds=2010-12-01/orders.csv"
    assert fs.exists(landing) and len(fs.ls(f"{BUCKET}/shopflow/landing/orders")) == len(s3_day["landed"])
    for zone in ("raw", "clean", "quarantine"):
        assert fs.exists(f"{BUCKET}/shopflow/lake/{zone}/orders/ds=2010-12-01/part-0.parquet"), zone
    [partition] = MetadataStore(settings.store_url).partitions("orders", DAY)
    assert partition.status == "validated"
    for path in (partition.raw_path, partition.clean_path, partition.quarantine_path):
        assert path.startswith(f"s3://{BUCKET}/shopflow/lake/"), path
    assert partition.rows_in == 3108 and partition.rows_clean == 3054
    assert partition.rows_in == partition.rows_clean + partition.rows_quarantined + partition.rows_duplicate
    assert partition.rows_quarantined == sum(partition.quarantined_by_reason.values())
    assert len(read_parquet(partition.clean_path)) == partition.rows_clean
    assert len(read_parquet(partition.quarantine_path)) == partition.rows_quarantined
    lineage = MetadataStore(settings.store_url).lineage("orders", DAY)
    paths = [p for edge in lineage for p in edge.inputs + edge.outputs if not p.startswith("validations:")]
    assert paths and all(p.startswith(f"s3://{BUCKET}/shopflow/") for p in paths), paths
    assert {p.name for p in home.iterdir()} <= {"shopflow.db", "shopflow.db-wal", "shopflow.db-shm"}, \
        "nothing but the SQLite store is local"


@pytest.mark.slow
def test_the_report_is_on_s3_and_served_by_the_plugin(s3_env, s3_day, mint, client, monkeypatch):  # noqa: F811
    fs, _ = s3_env
    report = s3_day["report"]
    assert report["html"] == f"s3://{BUCKET}/shopflow/reports/ds=2010-12-01/report.html"
    record = MetadataStore(s3_day["settings"].store_url).report(DAY)
    html = fs.cat_file(report["html"])
    assert hashlib.sha256(html).hexdigest() == record.html_sha256
    assert hashlib.sha256(fs.cat_file(report["json"])).hexdigest() == record.json_sha256
    assert "shopflow daily report · 2010-12-01" in html.decode()

    for name, value in s3_day["env"].items():
        monkeypatch.setenv(name, value)
    client.headers["Authorization"] = f"Bearer {mint('viewer')}"
    page = client.get("/reports/2010-12-01")
    assert page.status_code == 200 and page.content == html
    assert client.get("/reports/2010-12-01.json").json()["ds"] == "2010-12-01"
    # a recorded URL outside the reports prefix is refused, an inside one that is gone is "missing"
    store = MetadataStore(s3_day["settings"].store_url)
    for day, path, message in ((date(2010, 12, 2), record.html_path.replace("/reports/", "/lake/"), "outside"),
                               (date(2010, 12, 3), record.html_path.replace("2010-12-01", "2010-12-03"), "missing")):
        store.record_report(day, status="ok", datasets={}, summary={}, html_path=path, json_path=path,
                            html_sha256="0", json_sha256="0", run_id=None, generated_at=s3_day["generated_at"])
        response = client.get(f"/reports/{day}")
        assert response.status_code == 404 and message in response.json()["detail"], response.text


@pytest.mark.slow
def test_landing_keys_that_resolve_elsewhere_are_refused_on_s3(s3_env, tmp_path):
    from shopflow.ingest.folder import LandingFolderError, partition_files
    from shopflow.sources import load_sources

    fs, _ = s3_env
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path), "SHOPFLOW_STORAGE_URL": f"s3://{BUCKET}/escape"})
    folder = lake.landing_dir(settings, "orders", DAY)
    for key in ("../orders.csv", "../../secrets/orders.csv", "sub/orders.csv"):
        fs.pipe_file(f"{folder.path}/{key}", b"InvoiceNo\n")
        fs.invalidate_cache()
        with pytest.raises(LandingFolderError, match="not regular files") as error:
            partition_files(folder, load_sources()["orders"])
        assert key.split("/")[0] in str(error.value)
        fs.rm(f"{folder.path}/{key}")
    fs.pipe_file(f"{folder.path}/orders.csv", b"InvoiceNo\n")
    fs.invalidate_cache()
    assert [f.path.name for f in partition_files(folder, load_sources()["orders"])] == ["orders.csv"]


def test_rerun_is_idempotent_and_drop_removes_the_objects(s3_env, s3_day):
    from shopflow.landing.sample_data import land_orders
    from shopflow.report.build import build_report
    from shopflow.steps import partition as pipeline

    fs, _ = s3_env
    settings = s3_day["settings"]
    before = _objects(fs, "shopflow")
    landing = f"{BUCKET}/shopflow/landing/orders/ds=2010-12-01/orders.csv"
    landed_at = fs.info(landing)["LastModified"]
    land_orders(settings)
    fs.invalidate_cache()
    assert fs.info(landing)["LastModified"] == landed_at, "an unchanged landing file is not put again"
    for step in (pipeline.ingest, pipeline.clean, pipeline.validate):
        step(settings, "orders", DAY)
    after = _objects(fs, "shopflow")
    assert after == before, "landing and lake: the same objects, the same bytes"
    build_report(settings, DAY, generated_at=s3_day["generated_at"])
    reports = _objects(fs, "shopflow/reports")
    assert reports.keys() == {k for k in before if "/reports/" in k}  # rewritten in place (its lineage times differ)
    record = MetadataStore(settings.store_url).report(DAY)
    assert reports[record.html_path.removeprefix("s3://")] == record.html_sha256

    lake.drop_outputs(settings, "orders", DAY)
    after = _objects(fs, "shopflow/lake")
    assert after == {}, after
    assert fs.exists(f"{BUCKET}/shopflow/landing/orders/ds=2010-12-01/orders.csv"), "landing is input: kept"


@pytest.mark.slow
def test_a_model_trains_into_s3_and_is_loaded_from_the_local_cache(s3_env, trained_model, tmp_path):
    import json

    from shopflow.model.inference import Predictor
    from shopflow.model.training.config import TrainingConfig
    from shopflow.model.training.data import labelled_examples
    from shopflow.model.training.runner import run_training

    fs, _ = s3_env
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path / "home"),
                                  "SHOPFLOW_STORAGE_URL": f"s3://{BUCKET}/models-test"})
    target = settings.models_dir / "category_classifier" / "trained_2015-12-03_test"
    # Storage is under test, not the candidates: the TF-IDF baseline and two fine-tune steps, no CPU time budget.
    config = TrainingConfig(cpu_max_steps=2, cpu_batch_size=16, log_every=1, device="cpu", cpu_time_budget_s=0,
                            linear_candidates=False)
    result = run_training(labelled_examples(trained_model.catalog, 40), target, config, log=lambda line: None)
    url = f"s3://{BUCKET}/models-test/models/category_classifier/trained_2015-12-03_test"
    assert result["artifact_path"] == url
    fs.invalidate_cache()
    names = {name.rsplit("/", 1)[-1] for name in fs.find(url)}
    assert {"champion.json", "label_map.json", "config.json", "heads.pt", "result.json", "examples.parquet"} <= names, names
    assert json.loads(fs.cat_file(f"{url}/result.json"))["artifact_path"] == url
    assert not (tmp_path / "home").exists() or not list((tmp_path / "home").rglob("*.json")), "staged, then removed"

    texts = trained_model.catalog["product_name"].dropna().head(16).tolist()
    first = Predictor(url, device="cpu", cache_root=settings.model_cache_dir)
    cached = settings.model_cache_dir / "category_classifier" / "trained_2015-12-03_test"
    assert first.model_dir == cached and (cached / "champion.json").is_file()
    assert (cached / "finetune" / "label_map.json").is_file()
    fs.rm(url, recursive=True)  # the cache is used from now on: no second download
    again = Predictor(url, device="cpu", cache_root=settings.model_cache_dir)
    assert again.predict(texts).equals(first.predict(texts))


@pytest.mark.slow
@pytest.mark.airflow
def test_the_dag_runs_unchanged_on_s3(s3_env, tmp_path_factory, source_data, monkeypatch):
    """`airflow dags test shopflow_daily 2010-12-01` (model branch off) with only the environment pointing at S3."""
    from conftest import make_sandbox

    fs, _ = s3_env
    monkeypatch.setenv("SHOPFLOW_STORAGE_URL", f"s3://{BUCKET}/dag")
    sandbox = make_sandbox(tmp_path_factory.mktemp("s3-dag"), source_data)  # lands every source into the bucket
    sandbox.env["SHOPFLOW_TRAIN_ENABLED"] = "false"
    result = sandbox.dags_test("2010-12-01")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    store = MetadataStore(sandbox.store_url)
    [orders] = store.partitions("orders", DAY)
    assert orders.status == "validated" and orders.clean_path.startswith(f"s3://{BUCKET}/dag/lake/clean/orders/")
    record = store.report(DAY)
    assert record is not None and record.html_path == f"s3://{BUCKET}/dag/reports/ds=2010-12-01/report.html"
    fs.invalidate_cache()
    assert hashlib.sha256(fs.cat_file(record.html_path)).hexdigest() == record.html_sha256
    assert not (sandbox.shopflow_home / "lake").exists() and not (sandbox.shopflow_home / "landing").exists()

"""Near-duplicate detection (`shopflow.governance.duplicates`, the `find_duplicates` model step) on real catalogue rows.

The fixture lands a slice of the real Flipkart files chosen by a hash of each product's NORMALISED TITLE (so every
listing of a chosen title comes along, with its duplicates), plus a few titles named below, through the production
path (land_catalog, ingest, clean, validate of the 2015-12-03 snapshot) into a store in tmp; the title embeddings
are cached in that tmp home for the module.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from model_fixtures import FULL, NAMES, PRICES, SNAPSHOT_DAY, _read, _write, catalogue_home

REPO = Path(__file__).resolve().parents[2]
KEY = "duplicates-fixture-pseudonym-key-32bytes"
TITLE_PERCENT = 5
# The only pair of the real data that shares a pid (Flipkart's product group): also a same-title pair.
PID_PAIR = ("2867c80d88e3693c883463e6358e6cc5", "f4e20863651ea54537388f1cd77a8776")
# Same title, brand field "PURPLE" against "Clovia": a different-brand pair the brand check must reject.
CLOVIA, PURPLE = "0235e4d5cae03381ba56c189f8ab5cc9", "4931aac7a49429b3509d62e4e8c431af"
TITLES = {
    "timberlake slim fit fit women s blue jeans", "clovia women s full coverage bra",
    # an embedding pair: the brand written with and without a space
    "goodwill impex women s solid casual shirt", "goodwillimpex women s solid casual shirt",
    # siblings the embedding puts side by side but the model numbers tell apart
    "allure auto cm 759 car mat hyundai sonata", "allure auto cm 1471 car mat hyundai sonata fluidic",
}


def _chosen(title: str) -> bool:
    from shopflow.model.training.data import normalised_title

    key = normalised_title(title)
    return key in TITLES or int(hashlib.sha256(f"dup:{key}".encode()).hexdigest()[:8], 16) % 100 < TITLE_PERCENT


def slice_by_title(source: Path, target: Path) -> Path:
    names = _read(source / NAMES)
    prices_header, *prices = _read(source / PRICES)
    full_header, *full = _read(source / FULL)
    crawl = full_header.index("crawl_timestamp")
    chosen = {uniq_id for uniq_id, title, _tree in names if _chosen(title)}
    chosen |= {r[0] for r in full if len(r) > crawl and r[crawl].startswith(SNAPSHOT_DAY.isoformat())}
    _write(target / NAMES, [r for r in names if r[0] in chosen])
    _write(target / PRICES, [prices_header] + [r for r in prices if r[0] in chosen])
    _write(target / FULL, [full_header] + [r for r in full if r and r[0] in chosen])
    (target / "SOURCES.md").write_text((source / "SOURCES.md").read_text())
    return target


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, source_data):
    from shopflow.store.repository import MetadataStore

    root = tmp_path_factory.mktemp("duplicates")
    settings = catalogue_home(root, slice_by_title(source_data, root / "data"), KEY)
    return settings, MetadataStore(settings.store_url)


@pytest.fixture(scope="module")
def published(catalogue):
    """The step run twice on the snapshot day; the bytes of its two files after each run."""
    from shopflow.governance.duplicates import pairs_file
    from shopflow.lake import zones as lake
    from shopflow.steps import model_branch as model_pipeline

    settings, store = catalogue
    members = lake.lake_file(settings, "duplicates", "catalog", SNAPSHOT_DAY)
    runs = []
    for _ in range(2):
        summary = model_pipeline.find_duplicates(settings, SNAPSHOT_DAY, run_id="test-run")
        runs.append((summary, members.read_bytes(), pairs_file(members).read_bytes()))
    return runs


@pytest.fixture(scope="module")
def searched(catalogue, published):
    """cluster_duplicates (the library) on the fixture's catalogue, with the step's cached embeddings."""
    from shopflow.governance.duplicates import catalogue_products, cluster_duplicates, embedding_texts
    from shopflow.lake.catalog_view import catalog_as_of
    from shopflow.model.embeddings import Embedder
    from shopflow.sources import get_source

    settings, store = catalogue
    products = catalogue_products(catalog_as_of(store, SNAPSHOT_DAY, "catalog"), get_source("catalog"))
    embedder = Embedder(cache_dir=settings.embedding_cache_dir, device="cpu", log_line=lambda line: None)
    vectors = embedder.embed(embedding_texts(products))
    assert embedder.stats["embedded"] == 0  # the step cached every title
    return products, vectors, cluster_duplicates(products, vectors)


def _cluster_of(result, uniq_id: str) -> str | None:
    found = result.members.loc[result.members["uniq_id"] == uniq_id, "cluster_id"]
    return found.iloc[0] if len(found) else None


def test_known_same_title_pid_and_embedding_pairs_are_found(searched):
    products, _, result = searched
    assert 500 < len(products) < 3000
    # the data's own ground truth: the one pair sharing a pid
    assert _cluster_of(result, PID_PAIR[0]) is not None
    assert _cluster_of(result, PID_PAIR[0]) == _cluster_of(result, PID_PAIR[1])
    pid_pair = result.pairs[(result.pairs["uniq_id_a"] == min(PID_PAIR)) & (result.pairs["uniq_id_b"] == max(PID_PAIR))]
    assert pid_pair["rule"].tolist() == ["same_title"]
    # an embedding pair between two titles that differ by a space in the brand
    titles = products.set_index("uniq_id")["title"]
    embedding = result.pairs[result.pairs["rule"] == "embedding"]
    spelled = {frozenset((titles[a].lower(), titles[b].lower())) for a, b in zip(embedding["uniq_id_a"],
                                                                                  embedding["uniq_id_b"])}
    assert frozenset(("goodwill impex women's solid casual shirt", "goodwillimpex women's solid casual shirt")) in spelled
    assert embedding["reason"].str.startswith("embedding>=0.85 ").all()
    assert (embedding["similarity"] >= 0.85).all()
    # cluster ids are the smallest member id, members sorted
    smallest = result.members.groupby("cluster_id")["uniq_id"].min()
    assert (smallest.index == smallest.to_numpy()).all()


def test_agreement_checks_reject_a_different_brand_and_a_different_model(searched):
    products, _, result = searched
    candidates = result.candidates
    pair = candidates[(candidates["uniq_id_a"] == min(CLOVIA, PURPLE)) & (candidates["uniq_id_b"] == max(CLOVIA, PURPLE))]
    assert pair["rule"].tolist() == ["same_title"]
    assert not pair["accepted"].iloc[0] and pair["rejected_by"].iloc[0] == "brand"
    # Sibling car mats (model numbers cm 759 / cm 1471) are embedding neighbours, rejected on their identifiers.
    titles = products.set_index("uniq_id")["title"].str.lower()
    sonata = set(titles[titles.str.startswith("allure auto cm ") & titles.str.contains("sonata")].index)
    siblings = candidates[candidates["uniq_id_a"].isin(sonata) & candidates["uniq_id_b"].isin(sonata)]
    assert len(siblings) and not siblings["accepted"].any()
    assert set(siblings["rejected_by"]) <= {"identifiers", "words", "price"}
    assert "identifiers" in set(siblings["rejected_by"])


def test_the_checks_themselves():
    from shopflow.governance.duplicates import AGREE, DISAGREE, MISSING, brand_check, identifiers, prices_within_band, words_agree

    brands = brand_check(np.array(["clovia", "", "goodwill impex", "clovia"], object),
                         np.array(["clovia", "purple", "goodwillimpex", "purple"], object))
    assert brands.tolist() == [AGREE, MISSING, AGREE, DISAGREE]
    prices = prices_within_band(np.array([100.0, 100.0, np.nan, 0.0]), np.array([149.0, 151.0, 10.0, 10.0]), 1.5)
    assert prices.tolist() == [AGREE, DISAGREE, MISSING, MISSING]
    assert identifiers("allure auto cm 759 car mat") != identifiers("allure auto cm 1471 car mat")
    assert words_agree("voylla artificial alloy necklace", "voylla artifictial alloy necklace", 0.8)
    assert words_agree("glus perfectbody women s bra", "glus perfect body women s bra", 0.8)
    assert not words_agree("ladyland daisy purple women s bra", "ladyland daisy pink women s bra", 0.8)
    assert not words_agree("allen solly casual short sleeve top", "allen solly casual sleeveless top", 0.8)


def test_exact_knn_is_exact():
    from shopflow.governance.duplicates import exact_knn

    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(700, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.sort(sims, axis=1)[:, ::-1][:, :5]
    rows, cols, found = exact_knn(vectors, 5, -1.0, block_bytes=4 * 700 * 64)  # 64 rows per block
    assert np.array_equal(np.bincount(rows, minlength=700), np.full(700, 5)) and not (rows == cols).any()
    by_row = np.sort(found.reshape(700, 5), axis=1)[:, ::-1]
    assert np.allclose(by_row, expected, atol=1e-6)
    # with a threshold: exactly the top-5 similarities that reach it
    rows, _, found = exact_knn(vectors, 5, 0.5)
    assert len(found) == int((expected >= 0.5).sum()) and (found >= 0.5).all()


def test_the_ledger_adds_up_and_a_broken_one_fails(catalogue, published):
    from shopflow.common.parquet import read_parquet
    from shopflow.governance.duplicates import DuplicateLedgerMismatch, check_ledger
    from shopflow.sources.ledger import LedgerMismatch

    settings, store = catalogue
    run = store.duplicate_run("catalog", SNAPSHOT_DAY)
    clean = store.partitions("catalog", SNAPSHOT_DAY)[0]
    assert run.products_in == clean.rows_clean == run.products_in_clusters + run.singletons
    members = read_parquet(run.output_path)
    assert len(members) == run.products_in_clusters and members["cluster_id"].nunique() == run.clusters
    assert run.clusters > 20 and run.singletons > 0 and run.accepted_pairs == len(read_parquet(run.pairs_path))
    counts = {"products_in": run.products_in, "products_in_clusters": run.products_in_clusters,
              "singletons": run.singletons}
    check_ledger(counts, members)
    with pytest.raises(DuplicateLedgerMismatch, match="member rows"):
        check_ledger(counts, members.iloc[1:])
    with pytest.raises(LedgerMismatch, match="singletons"):
        check_ledger({**counts, "singletons": run.singletons + 1}, members)
    summary = published[-1][0]
    assert summary["embedding"]["texts"] == run.products_in and summary["embedding"]["cache_hits"] > 0


def test_the_step_is_idempotent(catalogue, published):
    (_, members_1, pairs_1), (summary, members_2, pairs_2) = published
    assert members_1 == members_2 and pairs_1 == pairs_2
    assert summary["embedding"]["embedded"] == 0  # the second run embedded nothing: every title was cached
    settings, store = catalogue
    with store.session() as session:
        from shopflow.store.models import DuplicateRun
        from sqlalchemy import func, select

        assert session.scalar(select(func.count()).select_from(DuplicateRun)) == 1


def test_the_gx_suite_passes_and_catches_a_broken_file(catalogue, published):
    from shopflow.common.parquet import read_parquet
    from shopflow.governance.duplicates import DATASET, SUITE
    from shopflow.validation.runner import validate_frame
    from shopflow.validation.suites import expectation_specs

    settings, store = catalogue
    run = store.duplicate_run("catalog", SNAPSHOT_DAY)
    assert run.validation_success and run.critical_failures == 0
    assert len(run.validation) >= 6 and all(r["success"] for r in run.validation)
    broken = read_parquet(run.output_path)
    broken.loc[0, "similarity"] = 1.5
    broken.loc[1, "cluster_size"] = 1
    broken.loc[2, "uniq_id"] = broken.loc[3, "uniq_id"]
    failed = {(r["expectation"], r["column_name"])
              for r in validate_frame(DATASET, broken, expectation_specs(SUITE)) if not r["success"]}
    assert failed == {("expect_column_values_to_be_between", "similarity"),
                      ("expect_column_values_to_be_between", "cluster_size"), ("expect_column_values_to_be_unique", "uniq_id")}


def test_lineage_and_a_day_without_a_validated_partition(catalogue, published):
    from shopflow.steps import model_branch as model_pipeline

    settings, store = catalogue
    edge = next(e for e in store.lineage("catalog", SNAPSHOT_DAY) if e.task == "duplicates")
    assert edge.inputs == [store.partitions("catalog", SNAPSHOT_DAY)[0].clean_path]
    assert edge.outputs[0].endswith("duplicates/catalog/ds=2015-12-03/part-0.parquet")
    assert edge.airflow_run_id == "test-run"
    with pytest.raises(model_pipeline.NothingToDo, match="no validated catalog partition"):
        model_pipeline.find_duplicates(settings, date(2015, 12, 2))


def test_the_report_says_it_in_one_line(catalogue, published):
    from types import SimpleNamespace

    from shopflow.report.products import _duplicates_note
    from shopflow.sources import get_source

    settings, store = catalogue
    run = store.duplicate_run("catalog", SNAPSHOT_DAY)
    note = _duplicates_note(SimpleNamespace(store=store, ds=date(2016, 1, 1)), get_source("catalog"))
    assert f"{run.clusters:,} clusters holding {run.products_in_clusters:,} of {run.products_in:,}" in note["text"]
    assert _duplicates_note(SimpleNamespace(store=store, ds=date(2015, 12, 2)), get_source("catalog")) is None


def test_the_checked_sample_is_committed():
    checked = pd.read_csv(REPO / "tests" / "data" / "duplicate_pairs_checked.csv", dtype=str)
    assert list(checked.columns) == ["uniq_id_a", "uniq_id_b", "title_a", "title_b", "similarity", "reason",
                                     "verdict", "why"]
    assert len(checked) >= 200 and set(checked["verdict"]) <= {"duplicate", "variant", "different"}
    assert checked["why"].str.len().min() > 10 and not checked.duplicated(["uniq_id_a", "uniq_id_b"]).any()


def test_the_dag_has_the_task():
    from airflow.dag_processing.dagbag import DagBag
    from shopflow.governance.duplicates import DATASET

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["shopflow_daily"]
    task = dag.get_task("model.duplicates")
    assert task.step == "find_duplicates" and task.trigger_rule == "none_failed"
    assert task.upstream_task_ids == {"catalog.validate", "plan_day"}  # the plan skips it on days without a catalogue
    assert [asset.name for asset in task.outlets] == [DATASET]
    assert task.task_id in dag.get_task("report").upstream_task_ids


def test_lineage_facts_of_the_step(catalogue, published):
    from shopflow.observability import lineage as lineage_facts

    settings, store = catalogue
    facts = lineage_facts.recorded("find_duplicates", settings, store, SNAPSHOT_DAY, "test-run")
    [clean] = facts["inputs"]
    members, pairs = facts["outputs"]
    assert clean["name"].endswith("clean/catalog/ds=2015-12-03/part-0.parquet")
    assert members["logical"]["name"] == "duplicates.catalog" and members["assertions"]
    assert all(a["success"] for a in members["assertions"])
    assert {"cluster_id", "uniq_id", "similarity"} <= {f["name"] for f in members["schema"]}
    assert pairs["name"].endswith("pairs.parquet") and pairs["stats"]["rowCount"] > 0
    planned = lineage_facts.planned("find_duplicates", settings, SNAPSHOT_DAY)
    assert [d["name"] for d in planned["outputs"]] == [members["name"], pairs["name"]]

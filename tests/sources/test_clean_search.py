"""Cleaning `search`: real WANDS queries through the search cleaner, and the GENERATED search log."""

from __future__ import annotations

import shutil
import unicodedata
from datetime import date, timedelta

import pandas as pd
import pytest
from sample_rows import (
    TEST_KEY,
    WANDS_QUERIES,
    data_path,
    ingest_like_pipeline,
    landing_folder,
    records,
    source_data,
    write_csv_landing,
)
from shopflow.common.landing_file import SOURCE_LINE
from shopflow.common.text import normalise_query
from shopflow.config.settings import Settings
from shopflow.ingest.pseudonym import pseudonymise
from shopflow.ingest.readers import read_delimited
from shopflow.landing import sample_data as landing
from shopflow.landing.search_log import HEADER, generate_search_log, load_catalogue_titles
from shopflow.sources import get_source
from shopflow.sources.cleaning import FIELD, REASON, clean_partition

SPEC = get_source("search")
DS = date(2015, 12, 3)
PRODUCT = "c2d766ca982eca8304150849735ffef9"  # a real Flipkart uniq_id


def wands() -> list[tuple[str, str, str]]:
    return [r.fields for r in records(WANDS_QUERIES, "\t")[1:]]


def land_and_clean(tmp_path, rows: list[list[str]], ds: date = DS):
    folder = landing_folder(tmp_path, "search", ds)
    write_csv_landing(folder, "search_log.csv", HEADER, rows)
    raw = ingest_like_pipeline("search", folder)
    return raw, clean_partition(SPEC, raw, ds)


def event(query: str, *, second: int = 0, user: str = "u00001", click: str = "", ds: date = DS) -> list[str]:
    moment = f"{ds.isoformat()}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
    return [moment, "5f0c3e1a9b2d4c6e", user, query, click]


# --- the real WANDS queries ----------------------------------------------------------------------------------------


def test_wands_file_reads_as_tsv_with_read_delimited(tmp_path):
    landed = tmp_path / "wands_query.tsv.gz"
    shutil.copyfile(data_path(WANDS_QUERIES), landed)
    frame = read_delimited(landed, ["query_id", "query", "query_class"], has_header=True, delimiter="\t")
    assert len(frame) == 384
    assert frame["query"].tolist() == [q for _, q, _ in wands()]
    assert (frame["query_class"] == "").sum() == sum(1 for *_, c in wands() if not c)


def test_wands_queries_normalise_safely():
    texts = [t for row in wands() for t in row[1:]]
    assert any("Décor" in t for t in texts) and any("&" in t for t in texts) and any("  " in t for t in texts)
    for text in texts:
        q = normalise_query(text)
        if q is None:
            assert text.strip() == ""
            continue
        assert normalise_query(q) == q  # idempotent
        assert q == q.lower() == q.casefold()
        assert q == q.strip() and "  " not in q
        assert unicodedata.is_normalized("NFKC", q)


def test_accents_survive_and_decomposed_forms_match():
    classes = {c for *_, c in wands() if "Décor" in c}
    assert "Wall Décor" in classes
    assert normalise_query("Wall Décor") == "wall décor"
    assert normalise_query(unicodedata.normalize("NFD", "Wall Décor")) == "wall décor"


def test_html_entities_are_unescaped_on_real_queries():
    # The generated log escapes '&' like a web form would; a real query class with '&' must come back intact.
    real = next(c for *_, c in wands() if "&" in c)
    assert normalise_query(real.replace("&", "&amp;")) == real.lower()
    assert normalise_query(real.replace("&", "&amp;amp;")) == real.lower()


def test_real_queries_through_the_search_cleaner(tmp_path):
    queries = [q for _, q, _ in wands()]
    rows = [event(q, second=i * 7, user=f"u{i % 50:05d}") for i, q in enumerate(queries)]
    raw, result = land_and_clean(tmp_path, rows)
    assert result.ledger.rows_in == 384
    assert result.ledger.rows_clean + result.ledger.rows_duplicate == 384
    assert result.clean["query"].tolist() == [normalise_query(q) for q in queries]
    assert "gurney slade 56" in set(result.clean["query"])
    assert result.clean["user_key"].iloc[0] == pseudonymise("u00000", TEST_KEY)
    assert "user_id" not in raw.columns
    assert not result.clean["has_click"].any()


@pytest.mark.parametrize("query", ["", "   ", "?!", "&nbsp;", "'.'"])
def test_empty_query_is_quarantined(tmp_path, query):
    rows = [event("smart coffee table"), event(query, second=5)]
    _, result = land_and_clean(tmp_path, rows)
    row = result.quarantine.iloc[0]
    assert (row[REASON], row[FIELD], row[SOURCE_LINE]) == ("empty_query", "query", 3)
    assert result.ledger.rows_clean == 1


@pytest.mark.parametrize(
    ("row", "reason", "field"),
    [
        (event("dinosaur", ds=DS - timedelta(days=1)), "outside_partition", "event_time"),
        (["yesterday-ish", "s", "u1", "dinosaur", ""], "invalid_timestamp", "event_time"),
        (["-0", "s", "u1", "dinosaur", ""], "invalid_timestamp", "event_time"),  # ISO 8601 year 0
        (["2015-12-03T10:00:00Z", " ", "u1", "dinosaur", ""], "missing_session_id", "session_id"),
        (event("dinosaur", click="not-a-product"), "invalid_clicked_product_id", "clicked_product_id"),
    ],
)
def test_bad_events_are_quarantined(tmp_path, row, reason, field):
    _, result = land_and_clean(tmp_path, [row])
    assert result.quarantine[[REASON, FIELD]].values.tolist() == [[reason, field]]


def test_click_is_lower_cased_and_flagged(tmp_path):
    _, result = land_and_clean(tmp_path, [event("Alisha Shorts", click=PRODUCT.upper())])
    row = result.clean.iloc[0]
    assert (row["clicked_product_id"], bool(row["has_click"]), row["query"]) == (PRODUCT, True, "alisha shorts")


def test_repeated_event_is_a_duplicate(tmp_path):
    rows = [event("Dinosaur"), event("dinosaur"), event("dinosaur", second=1)]
    _, result = land_and_clean(tmp_path, rows)
    # the first two are the same event once the query is normalised
    assert (result.ledger.rows_clean, result.ledger.rows_duplicate) == (2, 1)


# --- the generated log ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def products():
    return load_catalogue_titles(source_data())


def test_generated_log_is_deterministic(products):
    first = generate_search_log(products, DS)
    again = generate_search_log(list(products), DS)
    assert first == again
    assert generate_search_log(products, DS + timedelta(days=1)) != first
    header, rows = first
    assert header == HEADER and 400 <= len(rows) <= 700
    assert rows == sorted(rows, key=lambda r: r[0])


def test_generated_log_comes_from_real_titles(products):
    ids = {p.uniq_id for p in products}
    _, rows = generate_search_log(products, DS)
    clicks = {r[4] for r in rows if r[4]}
    assert clicks and clicks <= ids
    assert all(len(p.levels) >= 1 for p in products)  # name-only trees carry no category


def test_generated_log_is_labelled_generated(tmp_path):
    assert SPEC.generated is True
    assert "generated" in SPEC.tags
    assert "GENERATED" in SPEC.description
    assert all(not s.generated for name, s in {n: get_source(n) for n in ("orders", "behavior", "catalog")}.items())
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path), "SHOPFLOW_SOURCE_DATA": str(source_data())})
    counts = landing.land_search(settings, DS, DS + timedelta(days=1))
    assert sorted(counts) == [DS, DS + timedelta(days=1)]
    folder = landing_folder(settings.landing_dir, "search", DS)
    assert "GENERATED" in (folder / "GENERATED.txt").read_text()
    before = (folder / "search_log.csv").read_bytes()
    landing.land_search(settings, DS, DS)  # landing again gives the same bytes
    assert (folder / "search_log.csv").read_bytes() == before


def test_generated_day_cleans_with_its_noise(tmp_path, products):
    _, rows = generate_search_log(products, DS)
    raw, result = land_and_clean(tmp_path, rows)
    ledger = result.ledger
    assert ledger.rows_in == len(rows)
    assert ledger.rows_clean + ledger.rows_quarantined + ledger.rows_duplicate == ledger.rows_in
    # The generator's noise: empty queries, late events from yesterday, events sent twice.
    assert ledger.quarantined_by_reason["empty_query"] == sum(1 for r in rows if not r[3])
    late = sum(1 for r in rows if not r[0].startswith(DS.isoformat()))
    assert ledger.quarantined_by_reason.get("outside_partition", 0) == late > 0
    assert ledger.rows_duplicate >= 1
    assert set(ledger.quarantined_by_reason) <= {"empty_query", "outside_partition"}
    clean = result.clean
    assert clean["query"].notna().all()
    assert (clean["query"] == clean["query"].map(normalise_query)).all()
    assert not clean["query"].str.contains("&amp;", regex=False).any()
    assert (clean["event_ts_utc"].dt.date == DS).all()
    assert clean["user_key"].str.fullmatch(r"[0-9a-f]{24}").all()
    again = clean_partition(SPEC, raw, DS)
    pd.testing.assert_frame_equal(again.clean, clean)

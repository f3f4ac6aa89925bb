"""Exact deduplication across chunks: a partition cleaned chunk by chunk (SeenKeys, key_hashes) keeps and counts
exactly the rows one pass over the whole partition does, wherever the chunks are cut."""

from __future__ import annotations

import gzip
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shopflow.common.parquet import read_parquet
from shopflow.config.settings import Settings
from shopflow.lake import zones as lake
from shopflow.sources import get_source
from shopflow.sources.cleaning import SeenKeys, clean_partition, key_hashes
from shopflow.steps import partition as pipeline
from shopflow.store import migrate

DAY = date(2010, 12, 1)
ORDERS_FILE = "events/online_retail_2010-12-01_to_2011-09-30.csv.gz"


@pytest.fixture(scope="module")
def raw_orders(tmp_path_factory, source_data) -> pd.DataFrame:
    """The raw (ingested, pseudonymised) rows of a real day, with 300 of its lines repeated at its end."""
    home = tmp_path_factory.mktemp("home")
    settings = Settings.from_env({"SHOPFLOW_HOME": str(home), "SHOPFLOW_SOURCE_DATA": str(source_data),
                                  "SHOPFLOW_PSEUDONYM_KEY": "dedup-test-key-not-a-secret-32bytes"})
    migrate.upgrade(settings.store_url)
    with gzip.open(source_data / ORDERS_FILE, "rt", encoding="utf-8", newline="") as handle:
        header = handle.readline()
        lines = [line for line in handle if f",{DAY.isoformat()} " in line]
    landed = settings.landing_dir / "orders" / f"ds={DAY.isoformat()}" / "orders.csv"
    landed.parent.mkdir(parents=True)
    landed.write_text(header + "".join(lines + lines[::10][:300]), encoding="utf-8")
    pipeline.ingest(settings, "orders", DAY)
    return read_parquet(lake.lake_file(settings, "raw", "orders", DAY), text_as_dictionary=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=3_400), max_size=6, unique=True))
def test_chunks_anywhere_keep_and_count_what_one_pass_does(raw_orders, cuts):
    spec = get_source("orders")
    whole = clean_partition(spec, raw_orders, DAY)
    bounds = [0, *sorted(c for c in cuts if c < len(raw_orders)), len(raw_orders)]
    seen, parts, ledger = SeenKeys(), [], None
    for start, end in zip(bounds, bounds[1:]):
        part = clean_partition(spec, raw_orders.iloc[start:end].reset_index(drop=True), DAY, seen=seen)
        parts.append(part.clean)
        ledger = part.ledger if ledger is None else ledger + part.ledger
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole.clean)
    assert ledger.as_dict() == whole.ledger.as_dict() and whole.ledger.rows_duplicate >= 300


def test_key_fingerprints_are_equal_exactly_for_equal_keys_whatever_the_encoding():
    plain = pd.DataFrame({"code": pd.array(["A1", "B2", None, "A1", "C3"], dtype="string"),
                          "qty": pd.array([1, 2, 3, 1, None], dtype="Int64")})
    codes = pa.array(plain["code"].array).dictionary_encode()
    encoded = plain.assign(code=pd.Series(pd.arrays.ArrowExtensionArray(codes)))
    rows = np.arange(5)
    a, b = key_hashes(plain, ["code", "qty"], rows), key_hashes(encoded.iloc[::-1].reset_index(drop=True),
                                                                ["code", "qty"], rows[::-1])
    assert (a == b).all()  # the same rows in another chunk, another order, another text encoding
    assert (a[0] == a[3]).all() and len({tuple(h) for h in a}) == 4
    # A null is a value of its own, equal only to a null.
    nulls = pd.DataFrame({"code": pd.array([None, None, ""], dtype="string")})
    h = key_hashes(nulls, ["code"], np.arange(3))
    assert (h[0] == h[1]).all() and not (h[0] == h[2]).all()


@settings(max_examples=40, deadline=None)
@given(chunks=st.lists(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3)), max_size=60), max_size=8))
def test_seen_keys_is_a_set_of_fingerprints(chunks):
    """Against a Python set, on fingerprints whose first halves collide often (tiny value range)."""
    seen, reference = SeenKeys(), set()
    for chunk in chunks:
        distinct = list(dict.fromkeys(chunk))
        hashes = np.array(distinct, dtype=np.uint64).reshape(-1, 2)
        new = seen.first_seen(hashes)
        assert new.tolist() == [pair not in reference for pair in distinct]
        reference.update(distinct)
        assert len(seen) == len(reference)

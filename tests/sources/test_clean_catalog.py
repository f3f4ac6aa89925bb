"""Cleaning `catalog` (Flipkart, three files joined on uniq_id) on real rows and on the whole real files."""

from __future__ import annotations

import csv
import io
import shutil
from datetime import date, datetime, timezone

import pandas as pd
import pytest
from sample_rows import (
    CATALOG_FULL,
    CATALOG_NAMES,
    CATALOG_PRICES,
    data_path,
    ingest_like_pipeline,
    landing_folder,
    records,
    source_data,
    write_landing,
)
from shopflow.common.landing_file import SOURCE_FILE, SOURCE_LINE
from shopflow.config.settings import Settings
from shopflow.ingest.readers import read_delimited
from shopflow.landing import sample_data as landing
from shopflow.sources import get_source
from shopflow.sources.catalog import combine, parse_category_tree
from shopflow.sources.cleaning import FIELD, REASON, clean_partition

SPEC = get_source("catalog")
DS = date(2015, 12, 3)
NAMES, PRICES, FULL = "flipkart_name_category_tree.csv", "flipkart_prices_brand.csv", "flipkart_full_columns.csv"


def names_record(predicate):
    hits = [r for r in records(CATALOG_NAMES) if predicate(r)]
    assert hits, "no real names record matches"
    return hits[0]


def by_id(relative: str) -> dict:
    rows = records(relative)
    body = rows if relative == CATALOG_NAMES else rows[1:]
    return {r.fields[0]: r for r in body if r.fields[0]}


def depth(tree_text: str) -> int:
    return len(tree_text.strip().strip("[]").strip('"').split(">>"))


# --- parse_category_tree on real trees -----------------------------------------------------------------------------


def test_normal_tree():
    record = records(CATALOG_NAMES)[0]  # Alisha Solid Women's Cycling Shorts
    levels, status = parse_category_tree(record.fields[2], record.fields[1])
    assert status == "ok"
    assert levels == ["Clothing", "Women's Clothing", "Lingerie, Sleep & Swimwear", "Shorts", "Alisha Shorts",
                      "Alisha Solid Women's Cycling Shorts"]


def test_truncated_leaf_is_dropped():
    record = names_record(lambda r: "FabHomeDecor Fabric Double Sofa Bed (Finish Colo..." in r.fields[2])
    levels, status = parse_category_tree(record.fields[2], record.fields[1])
    assert (levels, status) == (["Furniture", "Living Room Furniture", "Sofa Beds & Futons"], "truncated_leaf")


@pytest.mark.parametrize(
    "name",
    [
        "Vishudh Printed Women's Straight Kurta",  # the tree is the name
        "Eternal Gandhi Super Series Crystal Paper Weights  with Silver Finish",  # a cut-off name
        "Sumo Baby Walker",  # the name plus a variant: 'Sumo Baby Walker (Red)'
        "Kalpaveda Copper Bowl",  # 'Kalpaveda Copper Bowl (Gold, Pack of 1)'
    ],
)
def test_name_only_trees(name):
    record = names_record(lambda r: r.fields[1] == name)
    assert depth(record.fields[2]) == 1
    assert parse_category_tree(record.fields[2], record.fields[1]) == ([], "name_only")


def test_depth_one_real_category_is_kept():
    record = names_record(lambda r: r.fields[2] == '["Sunglasses"]')
    assert parse_category_tree(record.fields[2], record.fields[1]) == (["Sunglasses"], "ok")


@pytest.mark.parametrize(("tree", "expected"), [("", ([], "missing")), (None, ([], "missing")), ("[]", ([], "missing")),
                                                ('["Home >> Kitchen"', (["Home", "Kitchen"], "ok")),
                                                ("Home &amp; Kitchen >> Mugs", (["Home & Kitchen", "Mugs"], "ok"))])
def test_odd_tree_texts(tree, expected):
    assert parse_category_tree(tree, "Some Mug") == expected


def test_category_statuses_over_the_whole_names_file():
    rows = records(CATALOG_NAMES)
    assert len(rows) == 16028
    parsed = [parse_category_tree(r.fields[2], r.fields[1]) for r in rows]
    statuses = pd.Series([p[1] for p in parsed]).value_counts().to_dict()
    depth_one = [(r, p) for r, p in zip(rows, parsed) if depth(r.fields[2]) == 1]
    assert len(depth_one) == 260  # SOURCES.md: 260 depth-1 trees
    # Of them, all but the five real 'Sunglasses' category trees are the product name (possibly cut off or with a
    # variant in parentheses).
    kept = [(r.fields[2], p) for r, p in depth_one if p[1] != "name_only"]
    assert kept == [('["Sunglasses"]', (["Sunglasses"], "ok"))] * 5
    assert statuses["name_only"] == 255
    truncated = sum(1 for r in rows if r.fields[2].rstrip('"]').endswith("...") and depth(r.fields[2]) > 1)
    assert statuses["truncated_leaf"] == truncated > 0
    assert "missing" not in statuses
    assert all(1 <= len(p[0]) <= 8 for p in parsed if p[1] != "name_only")  # SOURCES.md: depth 1-8


# --- three real files joined, with the real blank rows and a repeated record --------------------------------------


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    """A snapshot partition from real records: 3 files, 5 real blank rows, one record repeated in the names file."""
    names, prices, full = by_id(CATALOG_NAMES), by_id(CATALOG_PRICES), by_id(CATALOG_FULL)
    in_full = [r.fields[0] for r in records(CATALOG_FULL)[1:5]]
    multiline = next(r.fields[0] for r in records(CATALOG_FULL)[1:] if r.end_line > r.line)
    rated = next(r.fields[0] for r in records(CATALOG_PRICES)[1:]
                 if r.fields[6] != "No rating available" and r.fields[0] not in full)
    special = [names_record(lambda r, n=n: r.fields[1] == n).fields[0]
               for n in ("Eternal Gandhi Super Series Crystal Paper Weights  with Silver Finish", "Sumo Baby Walker")]
    sunglasses = names_record(lambda r: r.fields[2] == '["Sunglasses"]').fields[0]
    ids = in_full + [multiline, rated, sunglasses] + special
    ids = sorted(set(ids), key=lambda i: names[i].line)  # the real files' order
    repeated = special[0]
    blanks = [r for r in records(CATALOG_FULL)[1:] if not any(f.strip() for f in r.fields)][:5]

    folder = landing_folder(tmp_path_factory.mktemp("catalog"), "catalog", DS)
    names_texts = [names[i].text for i in ids] + [names[repeated].text]
    write_landing(folder, NAMES, names_texts)
    write_landing(folder, PRICES, [prices[i].text for i in ids], header=records(CATALOG_PRICES)[0].text)
    full_ids = [i for i in ids if i in full]
    write_landing(folder, FULL, [full[i].text for i in full_ids] + [b.text for b in blanks],
                  header=records(CATALOG_FULL)[0].text)
    full_lines, line = {}, 2
    for i in full_ids:
        full_lines[i] = line
        line += full[i].text.count("\n")
    blank_lines = list(range(line, line + len(blanks)))
    raw = ingest_like_pipeline("catalog", folder)
    result = clean_partition(SPEC, raw, DS)
    clean = result.clean.set_index("uniq_id", drop=False)
    return {"ids": ids, "repeated": repeated, "full_ids": full_ids, "rated": rated, "special": special,
            "sunglasses": sunglasses, "blank_lines": blank_lines, "full_lines": full_lines,
            "names_line": {i: n + 1 for n, i in enumerate(ids)}, "raw": raw, "result": result, "clean": clean,
            "prices": prices, "full": full, "names": names}


def test_joined_ledger_adds_up(joined):
    ledger = joined["result"].ledger
    assert ledger.rows_in == len(joined["ids"]) + 1 + len(joined["blank_lines"])
    assert ledger.rows_clean == len(joined["ids"])
    assert ledger.rows_duplicate == 1
    assert ledger.quarantined_by_reason == {"blank_row": len(joined["blank_lines"])}
    assert ledger.rows_clean + ledger.rows_quarantined + ledger.rows_duplicate == ledger.rows_in


def test_blank_rows_are_quarantined_with_their_lines(joined):
    quarantine = joined["result"].quarantine
    blank = quarantine[quarantine[REASON] == "blank_row"]
    assert blank[SOURCE_LINE].tolist() == joined["blank_lines"]
    assert set(blank[SOURCE_FILE]) == {FULL}
    assert set(blank[FIELD]) == {"*"}


def test_repeated_uniq_id_is_a_duplicate_not_merged(joined):
    raw = joined["raw"]
    assert (raw["uniq_id"] == joined["repeated"]).sum() == 2  # both occurrences reach cleaning
    clean = joined["result"].clean
    assert (clean["uniq_id"] == joined["repeated"]).sum() == 1
    kept_line = clean.loc[clean["uniq_id"] == joined["repeated"], "source_line"].item()
    assert kept_line == joined["names_line"][joined["repeated"]]  # the first occurrence is kept


def test_join_takes_fields_from_all_three_files(joined):
    clean, full, prices = joined["clean"], joined["full"], joined["prices"]
    for uniq_id in joined["full_ids"]:
        row = clean.loc[uniq_id]
        record = full[uniq_id].fields
        assert row["product_url"] == record[2]
        assert row["crawl_ts_utc"] == pd.Timestamp(datetime.strptime(record[1], "%Y-%m-%d %H:%M:%S %z"))
        assert row["description"] and "  " not in row["description"] and "\n" not in row["description"]
        assert row["pid"] == record[5]
        # Each row keeps the file and line of the first landed file that holds it.
        assert (row["source_file"], row["source_line"]) == (NAMES, joined["names_line"][uniq_id])
    only_two = [i for i in joined["ids"] if i not in joined["full_ids"]]
    assert only_two
    for uniq_id in only_two:
        row = clean.loc[uniq_id]
        assert pd.isna(row["description"]) and pd.isna(row["crawl_ts_utc"]) and pd.isna(row["product_url"])
        assert row["pid"] == prices[uniq_id].fields[2]
        assert row["brand"] == (prices[uniq_id].fields[8].strip() or None) or pd.isna(row["brand"])


def test_multiline_description_is_joined_and_normalised(joined):
    multiline = [i for i in joined["full_ids"] if joined["full"][i].end_line > joined["full"][i].line]
    assert multiline
    for uniq_id in multiline:
        assert "\n" in joined["full"][uniq_id].fields[10]
        assert "\n" not in joined["clean"].loc[uniq_id, "description"]


def test_prices_in_inr_are_numeric(joined):
    clean, prices = joined["clean"], joined["prices"]
    assert clean["retail_price_inr"].dtype == "float64"
    first = clean.loc[joined["ids"][0]]
    record = prices[joined["ids"][0]].fields
    assert (first["retail_price_inr"], first["discounted_price_inr"]) == (float(record[3]), float(record[4]))
    assert (first["retail_price_inr"], first["discounted_price_inr"]) == (999.0, 379.0)  # Alisha shorts


def test_no_rating_available_becomes_null(joined):
    clean, prices = joined["clean"], joined["prices"]
    first = clean.loc[joined["ids"][0]]
    assert prices[joined["ids"][0]].fields[6] == "No rating available"
    assert pd.isna(first["product_rating"]) and pd.isna(first["overall_rating"])
    rated = clean.loc[joined["rated"]]
    assert rated["product_rating"] == float(prices[joined["rated"]].fields[6])
    assert 0 <= rated["product_rating"] <= 5


def test_category_columns(joined):
    clean = joined["clean"]
    alisha = clean.loc[joined["ids"][0]]
    assert (alisha["category_status"], alisha["category_top"], alisha["category_l2"], alisha["category_depth"]) == (
        "ok", "Clothing", "Women's Clothing", 6)
    assert alisha["category_path"].startswith("Clothing > Women's Clothing > Lingerie, Sleep & Swimwear")
    for uniq_id in joined["special"]:
        row = clean.loc[uniq_id]
        assert row["category_status"] == "name_only"
        assert pd.isna(row["category_path"]) and pd.isna(row["category_top"]) and row["category_depth"] == 0
    sunglasses = clean.loc[joined["sunglasses"]]
    assert (sunglasses["category_top"], sunglasses["category_depth"]) == ("Sunglasses", 1)


def test_delta_partition_with_only_the_full_columns_file(tmp_path):
    chosen = records(CATALOG_FULL)[1:4]
    folder = landing_folder(tmp_path, "catalog", date(2016, 3, 25))
    write_landing(folder, FULL, [r.text for r in chosen], header=records(CATALOG_FULL)[0].text)
    result = clean_partition(SPEC, ingest_like_pipeline("catalog", folder), date(2016, 3, 25))
    assert result.ledger.rows_clean == 3
    assert result.clean["uniq_id"].tolist() == [r.fields[0] for r in chosen]
    assert result.clean["product_name"].tolist() == [r.fields[3] for r in chosen]
    assert set(result.clean["source_file"]) == {FULL}


@pytest.mark.parametrize(
    ("column", "value", "reason", "field"),
    [("uniq_id", "not-a-hex-id", "invalid_key", "uniq_id"), ("product_name", "  ", "missing_product_name", "product_name"),
     ("retail_price", "abc", "invalid_price", "retail_price"), ("retail_price", "inf", "invalid_price", "retail_price"),
     ("discounted_price", "0", "non_positive_price", "discounted_price"),
     ("crawl_timestamp", "25/03/2016", "invalid_timestamp", "crawl_timestamp")],
)
def test_damaged_real_record_is_quarantined(tmp_path, column, value, reason, field):
    record = records(CATALOG_FULL)[1]
    fields = list(record.fields)
    fields[get_source("catalog").files[2].columns.index(column)] = value
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(fields)
    folder = landing_folder(tmp_path, "catalog", DS)
    write_landing(folder, FULL, [buffer.getvalue()], header=records(CATALOG_FULL)[0].text)
    result = clean_partition(SPEC, ingest_like_pipeline("catalog", folder), DS)
    row = result.quarantine.iloc[0]
    assert (row[REASON], row[FIELD]) == (reason, field)
    assert result.ledger.rows_quarantined == 1


# --- the whole real files -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whole_snapshot(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whole")
    frames = {}
    for file_spec, relative in zip(SPEC.files, (CATALOG_NAMES, CATALOG_PRICES, CATALOG_FULL)):
        landed = folder / f"{file_spec.name}.gz"
        shutil.copyfile(data_path(relative), landed)
        frames[file_spec.name] = read_delimited(landed, file_spec.columns, has_header=file_spec.header)
    return clean_partition(SPEC, combine(frames), DS)


def test_whole_files_join_and_clean(whole_snapshot):
    ledger, clean = whole_snapshot.ledger, whole_snapshot.clean
    assert ledger.rows_in == 16028 + 3995
    assert ledger.quarantined_by_reason == {"blank_row": 3995}  # SOURCES.md: 3,995 blank rows
    assert ledger.rows_clean == 16028 and ledger.rows_duplicate == 0
    assert clean["uniq_id"].is_unique
    assert clean["retail_price_inr"].isna().sum() == 67  # SOURCES.md
    assert clean["brand"].isna().sum() == 4683  # SOURCES.md
    no_rating = sum(1 for r in records(CATALOG_PRICES)[1:] if r.fields[6] == "No rating available")
    assert clean["product_rating"].isna().sum() == no_rating
    assert clean["category_status"].value_counts()["name_only"] == 255
    assert clean["description"].notna().sum() == 809  # the full-columns file's real records
    assert (clean["retail_price_inr"].dropna() > 0).all()
    both = clean[["retail_price_inr", "discounted_price_inr"]].dropna()
    assert len(both) and (both["discounted_price_inr"] <= both["retail_price_inr"]).all()


def test_landed_catalog_days_all_add_up(tmp_path):
    settings = Settings.from_env({"SHOPFLOW_HOME": str(tmp_path), "SHOPFLOW_SOURCE_DATA": str(source_data())})
    counts = landing.land_catalog(settings)
    snapshot_day = min(counts)
    blank_total = clean_total = 0
    for ds in counts:
        raw = ingest_like_pipeline("catalog", landing_folder(settings.landing_dir, "catalog", ds))
        result = clean_partition(SPEC, raw, ds)
        ledger = result.ledger
        assert ledger.rows_clean + ledger.rows_quarantined + ledger.rows_duplicate == ledger.rows_in
        blanks = ledger.quarantined_by_reason.get("blank_row", 0)
        assert blanks == (3995 if ds == snapshot_day else 0)
        assert set(ledger.quarantined_by_reason) <= {"blank_row"}
        blank_total += blanks
        clean_total += ledger.rows_clean
    assert blank_total == 3995
    assert clean_total == 16028 + sum(1 for r in records(CATALOG_FULL)[1:] if r.fields[0]) - sum(
        1 for r in records(CATALOG_FULL)[1:] if r.fields[0] and _crawl_day(r) == snapshot_day)


def _crawl_day(record) -> date:
    return datetime.strptime(record.fields[1], "%Y-%m-%d %H:%M:%S %z").astimezone(timezone.utc).date()

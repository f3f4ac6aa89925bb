"""Cleaning `orders` (UCI Online Retail) on real rows: every quirk SOURCES.md lists, then the whole file day by day."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pytest
from sample_rows import (
    ORDERS_FILE,
    TEST_KEY,
    data_path,
    first_order,
    ingest_like_pipeline,
    landing_folder,
    orders_frame,
    orders_header,
    orders_lines,
    pseudonymise_like_ingest,
    write_landing,
)
from shopflow.common.landing_file import SOURCE_LINE
from shopflow.ingest.pseudonym import canonical_id, pseudonymise
from shopflow.ingest.readers import read_delimited
from shopflow.sources import get_source
from shopflow.sources.cleaning import FIELD, REASON, CleanResult, clean_partition

SPEC = get_source("orders")
DAY = date(2010, 12, 1)


def land_and_clean(tmp_path, line_numbers, ds: date, *, edit=None) -> tuple[pd.DataFrame, CleanResult, dict[int, int]]:
    """Land the real orders lines as one day's file, ingest and clean it.

    Returns the raw frame, the result, and {source file line: landing line}. `edit(lines)` may alter the lines.
    """
    line_numbers = list(line_numbers)
    lines = orders_lines(line_numbers)
    if edit:
        lines = edit(lines)
    folder = landing_folder(tmp_path, "orders", ds)
    write_landing(folder, "orders.csv", lines, header=orders_header())
    raw = ingest_like_pipeline("orders", folder)
    return raw, clean_partition(SPEC, raw, ds), {src: i + 2 for i, src in enumerate(line_numbers)}


def clean_row(result: CleanResult, landing_line: int) -> pd.Series:
    hit = result.clean[result.clean["source_line"] == landing_line]
    assert len(hit) == 1, f"landing line {landing_line} is not in the clean output"
    return hit.iloc[0]


def quarantined(result: CleanResult, landing_line: int) -> pd.Series:
    hit = result.quarantine[result.quarantine[SOURCE_LINE] == landing_line]
    assert len(hit) == 1, f"landing line {landing_line} is not in quarantine"
    return hit.iloc[0]


@pytest.fixture(scope="module")
def day_sample():
    """A real sample of 2010-12-01: plain lines, cancellations, a zero price, a duplicate pair, blank customers."""
    orders = orders_frame()
    day = orders[orders["day"] == DAY.isoformat()]
    price = pd.to_numeric(day["UnitPrice"])
    duplicated = day[day.duplicated(subset=list(orders.columns[:8]), keep=False) & (price > 0)]
    first_dup = duplicated.iloc[0]
    pair = duplicated[(duplicated[list(orders.columns[:8])] == first_dup[list(orders.columns[:8])]).all(axis=1)]
    picks = {
        "plain": day.iloc[0],
        "cancellation": day[day["InvoiceNo"].str.startswith("C")].iloc[1],
        "zero_price": day[(price <= 0) & (day["Description"] == "")].iloc[0],
        "no_customer": day[(day["CustomerID"] == "") & (price > 0)].iloc[0],
        "dup_first": pair.iloc[0],
        "dup_second": pair.iloc[1],
        "postage": day[day["StockCode"] == "POST"].iloc[0],
        "manual": day[day["StockCode"] == "M"].iloc[0],
        "discount": day[day["StockCode"] == "D"].iloc[0],
    }
    return {name: row for name, row in picks.items()}


@pytest.fixture(scope="module")
def day_result(day_sample, tmp_path_factory):
    lines = sorted({int(row["line"]) for row in day_sample.values()})
    raw, result, where = land_and_clean(tmp_path_factory.mktemp("orders"), lines, DAY)
    return day_sample, raw, result, where


def _at(day_result, name) -> int:
    sample, _, _, where = day_result
    return where[int(sample[name]["line"])]


def test_ledger_of_the_sample_adds_up(day_result):
    sample, raw, result, _ = day_result
    ledger = result.ledger
    assert ledger.rows_in == len(raw) == len({int(r["line"]) for r in sample.values()})
    assert ledger.rows_clean + ledger.rows_quarantined + ledger.rows_duplicate == ledger.rows_in
    assert len(result.quarantine) == ledger.rows_quarantined
    assert ledger.quarantined_by_reason == {"non_positive_price": 1}
    assert ledger.rows_duplicate == 1


def test_clean_output_has_the_declared_schema(day_result):
    _, _, result, _ = day_result
    expected = {column: str(pd.Series(dtype=dtype).dtype) for column, dtype in SPEC.clean_schema.items()}
    assert dict(result.clean.dtypes.astype(str)) == expected


def test_cancellation_is_kept_and_flagged(day_result):
    sample, _, result, _ = day_result
    row = clean_row(result, _at(day_result, "cancellation"))
    assert row["invoice_no"] == sample["cancellation"]["InvoiceNo"] and row["invoice_no"].startswith("C")
    assert bool(row["is_cancellation"]) is True
    assert row["quantity"] < 0
    assert row["line_amount_gbp"] == pytest.approx(row["quantity"] * row["unit_price_gbp"])
    assert not result.clean.loc[result.clean["source_line"] == _at(day_result, "plain"), "is_cancellation"].iloc[0]


def test_zero_price_is_quarantined_with_field_and_line(day_result):
    sample, _, result, _ = day_result
    row = quarantined(result, _at(day_result, "zero_price"))
    assert row[REASON] == "non_positive_price"
    assert row[FIELD] == "UnitPrice"
    assert row["UnitPrice"] == sample["zero_price"]["UnitPrice"] == "0.0"  # raw value kept for inspection
    assert row["_source_file"] == "orders.csv"


def test_real_exact_duplicate_is_counted_once(day_result):
    sample, _, result, _ = day_result
    first, second = _at(day_result, "dup_first"), _at(day_result, "dup_second")
    assert first != second
    assert sample["dup_first"]["InvoiceNo"] == sample["dup_second"]["InvoiceNo"]
    assert (result.clean["source_line"] == first).sum() == 1
    assert (result.clean["source_line"] == second).sum() == 0
    assert (result.quarantine[SOURCE_LINE] == second).sum() == 0


def test_missing_customer_is_kept_with_null_key(day_result):
    _, _, result, _ = day_result
    row = clean_row(result, _at(day_result, "no_customer"))
    assert pd.isna(row["customer_key"])


def test_customer_key_is_the_token_of_the_canonical_id(day_result):
    sample, _, result, _ = day_result
    row = clean_row(result, _at(day_result, "plain"))
    assert sample["plain"]["CustomerID"] == "17850.0"
    assert row["customer_key"] == pseudonymise("17850", TEST_KEY)


def test_float_printed_and_integer_customer_id_give_the_same_key(tmp_path):
    row = first_order(orders_frame()["CustomerID"] == "17850.0")
    line = int(row["line"])
    # The same real row twice: once as Spark printed it, once in the UCI xlsx spelling of the id.
    reprint = lambda texts: [texts[0], texts[1].replace(",17850.0,", ",17850,")]  # noqa: E731
    raw, result, _ = land_and_clean(tmp_path, [line, line], DAY, edit=reprint)
    assert raw["customer_key"].nunique() == 1
    assert raw["customer_key"].iloc[0] == pseudonymise("17850", TEST_KEY)
    # Once the id is canonical the two rows are the same invoice line: one clean, one duplicate.
    assert (result.ledger.rows_clean, result.ledger.rows_duplicate) == (1, 1)
    assert result.clean["customer_key"].tolist() == [pseudonymise("17850", TEST_KEY)]


def test_non_product_stock_codes_get_their_line_type(day_result):
    _, _, result, _ = day_result
    assert clean_row(result, _at(day_result, "postage"))["line_type"] == "postage"
    assert clean_row(result, _at(day_result, "manual"))["line_type"] == "manual_adjustment"
    assert clean_row(result, _at(day_result, "discount"))["line_type"] == "discount"
    assert clean_row(result, _at(day_result, "plain"))["line_type"] == "product"


@pytest.mark.parametrize(
    ("code", "line_type"),
    [("BANK CHARGES", "fee"), ("AMAZONFEE", "fee"), ("POST", "postage"), ("DOT", "postage"), ("C2", "carriage"),
     ("CRUK", "commission"), ("S", "samples"), ("gift_0001_40", "gift_voucher"), ("85123A", "product")],
)
def test_line_type_on_the_first_real_row_of_each_code(tmp_path, code, line_type):
    orders = orders_frame()
    row = first_order((orders["StockCode"] == code) & (pd.to_numeric(orders["UnitPrice"]) > 0))
    _, result, where = land_and_clean(tmp_path, [int(row["line"])], date.fromisoformat(row["day"]))
    clean = clean_row(result, where[int(row["line"])])
    assert clean["line_type"] == line_type
    assert clean["stock_code"] == code.upper()


def test_empty_description_becomes_null(tmp_path):
    orders = orders_frame()
    empty = orders[orders["Description"] == ""]
    assert len(empty) == 1260  # SOURCES.md
    # In this data every line without a description is also priced 0, so it is quarantined for the price ...
    assert (pd.to_numeric(empty["UnitPrice"]) == 0).all()
    row = empty.iloc[0]
    _, result, where = land_and_clean(tmp_path, [int(row["line"])], date.fromisoformat(row["day"]))
    assert quarantined(result, 2)["Description"] == ""
    # ... so give the real row a price to see what cleaning makes of the empty description itself.
    def priced(texts):  # the row twice, priced; the second with a whitespace-only description
        return [texts[0].replace(",0.0,", ",1.25,"), texts[1].replace(",,", ", \t ,", 1).replace(",0.0,", ",1.25,")]

    ds = date.fromisoformat(row["day"])
    _, result, _ = land_and_clean(tmp_path / "priced", [int(row["line"])] * 2, ds, edit=priced)
    assert result.ledger.rows_clean + result.ledger.rows_duplicate == 2
    assert result.clean["description"].isna().all()


@pytest.mark.parametrize(
    ("day", "offset_hours"),
    [
        ("2010-12-01", 0),  # winter: GMT
        ("2011-03-25", 0),  # the last Friday before the clocks went forward
        ("2011-03-27", 1),  # the day the clocks went forward (a real Sunday with trading): BST from 01:00
        ("2011-07-01", 1),  # summer: BST
    ],
)
def test_invoice_date_uk_local_time_is_converted_to_utc(tmp_path, day, offset_hours):
    orders = orders_frame()
    row = first_order((orders["day"] == day) & (pd.to_numeric(orders["UnitPrice"]) > 0))
    _, result, where = land_and_clean(tmp_path, [int(row["line"])], date.fromisoformat(day))
    local = datetime.strptime(row["InvoiceDate"], "%Y-%m-%d %H:%M:%S")
    expected = (local - timedelta(hours=offset_hours)).replace(tzinfo=timezone.utc)
    assert clean_row(result, where[int(row["line"])])["invoice_ts_utc"] == pd.Timestamp(expected)


def test_row_of_another_day_is_outside_partition(tmp_path):
    orders = orders_frame()
    today = first_order(orders["day"] == "2010-12-01")
    tomorrow = first_order(orders["day"] == "2010-12-02")
    _, result, where = land_and_clean(tmp_path, [int(today["line"]), int(tomorrow["line"])], DAY)
    row = quarantined(result, where[int(tomorrow["line"])])
    assert (row[REASON], row[FIELD]) == ("outside_partition", "InvoiceDate")
    assert result.ledger.rows_clean == 1


def test_ambiguous_local_time_is_quarantined_not_guessed(tmp_path):
    # 2011-10-30 01:30 happened twice in London; the real row is moved there to probe the rule.
    row = first_order(orders_frame()["day"] == "2010-12-01")
    moved = lambda texts: [texts[0].replace(row["InvoiceDate"], "2011-10-30 01:30:00")]  # noqa: E731
    _, result, where = land_and_clean(tmp_path, [int(row["line"])], date(2011, 10, 30), edit=moved)
    assert quarantined(result, 2)[REASON] == "invalid_timestamp"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("Quantity", "0", "zero_quantity"),
        ("Quantity", "1.5", "invalid_quantity"),
        ("Quantity", "1e20", "invalid_quantity"),  # would wrap around in Int64
        ("Quantity", "inf", "invalid_quantity"),
        ("UnitPrice", "abc", "invalid_price"),
        ("UnitPrice", "inf", "invalid_price"),
        ("UnitPrice", "-2.55", "non_positive_price"),
        ("InvoiceNo", "", "missing_invoice_no"),
        ("InvoiceNo", "X-1", "invalid_invoice_no"),
        ("StockCode", " ", "missing_stock_code"),
        ("InvoiceDate", "01/12/2010 08:26", "invalid_timestamp"),
        ("InvoiceDate", "0000-01-01 00:00:00", "invalid_timestamp"),  # parses, but year 0 has no calendar date
    ],
)
def test_damaged_real_row_is_quarantined_with_reason_and_field(tmp_path, field, value, reason):
    row = first_order(orders_frame()["day"] == "2010-12-01")
    columns = SPEC.files[0].columns

    def damage(texts):
        fields = texts[0].rstrip("\n").split(",")
        fields[columns.index(field)] = value
        return [",".join(fields) + "\n"]

    _, result, _ = land_and_clean(tmp_path, [int(row["line"])], DAY, edit=damage)
    got = quarantined(result, 2)
    assert (got[REASON], got[FIELD]) == (reason, field)
    assert got[field] == value


def test_cancellation_with_positive_quantity_is_quarantined(tmp_path):
    orders = orders_frame()
    row = first_order(orders["InvoiceNo"].str.startswith("C") & (orders["day"] == "2010-12-01"))
    flip = lambda texts: [texts[0].replace(f",{row['Quantity']},", f",{row['Quantity'].lstrip('-')},")]  # noqa: E731
    _, result, _ = land_and_clean(tmp_path, [int(row["line"])], DAY, edit=flip)
    assert quarantined(result, 2)[REASON] == "cancellation_with_positive_quantity"


# --- the whole real file, one partition per InvoiceDate day ----------------------------------------------------------


@pytest.fixture(scope="module")
def whole_file():
    raw = read_delimited(data_path(ORDERS_FILE), SPEC.files[0].columns, has_header=True)
    raw_ids = raw[["_source_line", "CustomerID"]].copy()
    raw = pseudonymise_like_ingest(raw, SPEC)
    results = {}
    for day, part in raw.groupby(raw["InvoiceDate"].str[:10], sort=True):
        results[date.fromisoformat(day)] = clean_partition(SPEC, part, date.fromisoformat(day))
    return raw_ids, results


def test_whole_file_ledgers_add_up_day_by_day(whole_file):
    _, results = whole_file
    assert len(results) == 245  # SOURCES.md: 245 distinct days
    totals = {"in": 0, "clean": 0, "dup": 0, "quarantined": 0}
    reasons: dict[str, int] = {}
    for ds, result in results.items():
        ledger = result.ledger
        assert ledger.rows_clean + ledger.rows_quarantined + ledger.rows_duplicate == ledger.rows_in, ds
        assert len(result.clean) == ledger.rows_clean and len(result.quarantine) == ledger.rows_quarantined, ds
        totals["in"] += ledger.rows_in
        totals["clean"] += ledger.rows_clean
        totals["dup"] += ledger.rows_duplicate
        totals["quarantined"] += ledger.rows_quarantined
        for reason, n in ledger.quarantined_by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + n
        assert (result.clean["invoice_ts_utc"].dt.tz_convert("Europe/London").dt.date == ds).all()
    assert totals["in"] == 370931
    assert totals["clean"] + totals["dup"] + totals["quarantined"] == 370931
    assert reasons == {"non_positive_price": 1959}  # SOURCES.md: 1,959 rows with UnitPrice <= 0


def test_whole_file_counts_match_an_independent_reading(whole_file):
    _, results = whole_file
    clean = pd.concat([r.clean for r in results.values()], ignore_index=True)
    orders = orders_frame()
    accepted = orders[pd.to_numeric(orders["UnitPrice"]) > 0]
    kept = accepted[~accepted.duplicated(subset=list(orders.columns[:8]))]
    assert sum(r.ledger.rows_duplicate for r in results.values()) == len(accepted) - len(kept)
    assert len(accepted) - len(kept) <= 2848  # SOURCES.md: 2,848 exact duplicates in the whole file
    assert len(clean) == len(kept)
    assert int(clean["is_cancellation"].sum()) == kept["InvoiceNo"].str.startswith("C").sum()
    assert int(clean["customer_key"].isna().sum()) == (kept["CustomerID"] == "").sum()
    assert int((clean["description"].isna()).sum()) == (kept["Description"].str.strip() == "").sum()
    assert (clean["quantity"] < 0).sum() == (pd.to_numeric(kept["Quantity"]) < 0).sum()
    assert set(clean.loc[clean["line_type"] != "product", "stock_code"]) <= {
        "POST", "DOT", "C2", "M", "D", "S", "B", "CRUK", "PADS", "BANK CHARGES", "AMAZONFEE"
    } | set(clean.loc[clean["stock_code"].str.startswith("GIFT_"), "stock_code"])
    assert clean["country"].nunique() == 37  # SOURCES.md: 37 countries


def test_whole_file_has_no_raw_customer_id_in_any_output(whole_file):
    raw_ids, results = whole_file
    assert (raw_ids["_source_line"].to_numpy() == range(2, len(raw_ids) + 2)).all()
    id_by_line = raw_ids["CustomerID"].to_numpy(dtype=object)
    clean = pd.concat([r.clean for r in results.values()], ignore_index=True)
    quarantine = pd.concat([r.quarantine for r in results.values()], ignore_index=True)
    for frame, line_column in ((clean, "source_line"), (quarantine, SOURCE_LINE)):
        assert "CustomerID" not in frame.columns
        # Row by row: no cell holds that row's own raw id, in either spelling (other rows' ids can collide with
        # unrelated codes: stock code 17003 is not customer 17003).
        own_id = id_by_line[frame[line_column].to_numpy() - 2]
        has_id = own_id != ""
        assert has_id.any()
        canonical = pd.Series(own_id).map(canonical_id).fillna("").to_numpy(dtype=object)
        numeric = pd.to_numeric(pd.Series(own_id), errors="coerce").to_numpy()
        for column in frame.columns:
            values = frame[column]
            if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_bool_dtype(values):
                continue  # cannot hold an id
            if pd.api.types.is_numeric_dtype(values):
                leaked = has_id & (values.astype("float64").to_numpy() == numeric)
            else:
                text = values.astype("string").fillna("").to_numpy(dtype=object)
                leaked = has_id & ((text == own_id) | (text == canonical))
            assert not leaked.any(), f"raw CustomerID in column {column}"
    keys = set(clean["customer_key"].dropna()) | set(quarantine["customer_key"].dropna())
    assert all(len(k) == 24 and set(k) <= set("0123456789abcdef") for k in keys)
    raw_spellings = set(raw_ids["CustomerID"]) | {canonical_id(i) for i in raw_ids["CustomerID"]}
    assert not keys & raw_spellings
    assert keys == {pseudonymise(canonical_id(i), TEST_KEY) for i in raw_ids["CustomerID"] if canonical_id(i)}

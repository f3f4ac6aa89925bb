"""Cleaning rules for `orders`: UCI Online Retail invoice lines, local UK time, GBP.

Quirks handled (see SOURCES.md): cancellations (InvoiceNo 'C…') are kept and flagged; prices <= 0 are
quarantined; CustomerID was printed as a float by Spark and is pseudonymised at ingest; non-product stock codes
(POST, M, BANK CHARGES, AMAZONFEE, …) are kept and typed by `line_type`; blank descriptions become null.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from shopflow.common.text import normalise_text
from shopflow.sources import SourceSpec
from shopflow.sources.cleaning import KEY_ID, Distinct, combine_codes
from shopflow.sources.ledger import RowVerdicts

CLEAN_SCHEMA = {
    "invoice_no": "string",
    "stock_code": "string",
    "description": "string",
    "quantity": "Int64",
    "unit_price_gbp": "float64",
    "line_amount_gbp": "float64",
    "invoice_ts_utc": "datetime64[us, UTC]",
    "customer_key": "string",
    "country": "string",
    "is_cancellation": "boolean",
    "line_type": "string",
    "source_line": "int64",
}
# The file has no line id, so an exact duplicate is the same values in every source column.
DEDUP_KEY = [c for c in CLEAN_SCHEMA if c != "source_line"]
# Clean column -> the raw-zone columns it is computed from (column lineage: shopflow.observability.lineage).
COLUMN_LINEAGE = {
    "invoice_no": ["InvoiceNo"], "stock_code": ["StockCode"], "description": ["Description"],
    "quantity": ["Quantity"], "unit_price_gbp": ["UnitPrice"], "line_amount_gbp": ["Quantity", "UnitPrice"],
    "invoice_ts_utc": ["InvoiceDate"], "customer_key": ["customer_key"], "country": ["Country"],
    "is_cancellation": ["InvoiceNo"], "line_type": ["StockCode"], "source_line": ["_source_line"],
}

NON_PRODUCT_CODES = {
    "POST": "postage",
    "DOT": "postage",
    "C2": "carriage",
    "M": "manual_adjustment",
    "D": "discount",
    "S": "samples",
    "B": "bad_debt_adjustment",
    "CRUK": "commission",
    "PADS": "fee",
    "BANK CHARGES": "fee",
    "AMAZONFEE": "fee",
}
INVOICE_PATTERN = r"[A-Z]?\d{5,7}"
# Beyond 2**53 a float-parsed number is no longer exact and Int64 casts wrap around: such values are invalid.
MAX_EXACT_NUMBER = 2**53
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
EARLIEST, LATEST = pd.Timestamp("1970-01-01"), pd.Timestamp("2100-01-01")
# `clean` takes its raw text columns plain or dictionary-encoded (the cheaper read of the raw zone, see
# shopflow.common.parquet.read_parquet): the pipeline reads this source's raw partition dictionary-encoded.
RAW_TEXT_AS_DICTIONARY = True
# Every rule looks at one row at a time (duplicates aside), so a day too big for one chunk is cleaned chunk by chunk.
ROW_LOCAL = True


def line_types(stock_code: pd.Series) -> pd.Series:
    kinds = stock_code.map(NON_PRODUCT_CODES).astype("string")
    kinds = kinds.mask(stock_code.str.startswith("GIFT_", na=False), "gift_voucher")
    return kinds.fillna("product")


def clean(raw: pd.DataFrame, ds: date, spec: SourceSpec) -> tuple[pd.DataFrame, RowVerdicts]:
    # Every rule below looks at one value at a time, so each column is factorised once and its rule runs on the
    # distinct values only (a partition repeats its invoice numbers, stock codes, quantities, prices, timestamps and
    # texts many times over); the results are spread back to the rows by code. Text columns come back
    # dictionary-encoded (see Distinct.strings): the clean schema's cast makes them plain strings.
    verdicts = RowVerdicts(raw.index)
    timezone = spec.timezone
    invoice_d = Distinct(raw["InvoiceNo"])
    invoice = invoice_d.values.str.strip().str.upper()
    stock_d = Distinct(raw["StockCode"])
    stock = stock_d.values.str.strip().str.upper()
    quantity_d = Distinct(raw["Quantity"])
    quantity = pd.to_numeric(quantity_d.values.str.strip(), errors="coerce")
    quantity = quantity.where(quantity.abs() <= MAX_EXACT_NUMBER)  # '1e20', 'inf' are not quantities
    price_d = Distinct(raw["UnitPrice"])
    price = pd.to_numeric(price_d.values.str.strip(), errors="coerce")
    price = price.where(price.abs() <= MAX_EXACT_NUMBER)  # nor is 'inf' a price
    date_d = Distinct(raw["InvoiceDate"])
    local = pd.to_datetime(date_d.values.str.strip(), format=TIMESTAMP_FORMAT, errors="coerce")
    local = local.where((local >= EARLIEST) & (local < LATEST))  # '0000-01-01 …' parses, but year 0 has no date
    local = local.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    is_cancellation = invoice.str.startswith("C")

    verdicts.reject(invoice_d.mask(invoice == ""), "missing_invoice_no", "InvoiceNo")
    verdicts.reject(invoice_d.mask(~invoice.str.fullmatch(INVOICE_PATTERN)), "invalid_invoice_no", "InvoiceNo")
    verdicts.reject(stock_d.mask(stock == ""), "missing_stock_code", "StockCode")
    verdicts.reject(quantity_d.mask(quantity.isna() | (quantity != quantity.round())), "invalid_quantity", "Quantity")
    verdicts.reject(quantity_d.mask(quantity == 0), "zero_quantity", "Quantity")
    verdicts.reject(price_d.mask(price.isna()), "invalid_price", "UnitPrice")
    verdicts.reject(price_d.mask(price <= 0), "non_positive_price", "UnitPrice")
    verdicts.reject(date_d.mask(local.isna()), "invalid_timestamp", "InvoiceDate")
    verdicts.reject(date_d.mask(local.dt.date != ds), "outside_partition", "InvoiceDate")
    verdicts.reject(invoice_d.mask(is_cancellation) & quantity_d.mask(quantity > 0),
                    "cancellation_with_positive_quantity", "Quantity")

    # Both factors are at most 2**53 where they are values; pandas also multiplies what sits under their NA masks (a
    # refused price of 1e305 is still there), whose overflow warning would be noise: those results stay NA.
    with np.errstate(over="ignore", invalid="ignore"):
        line_amount = (quantity_d.rows(quantity) * price_d.rows(price)).round(2)
    description_d = Distinct(raw["Description"])
    country_d = Distinct(raw["Country"])
    customer_d = Distinct(raw["customer_key"])
    # Each typed column as (Distinct of its raw column, its value per distinct raw value); line_amount_gbp (two
    # columns' product) and source_line are the only ones computed row by row.
    per_value = {
        "invoice_no": (invoice_d, invoice),
        "stock_code": (stock_d, stock),
        "description": (description_d, _normalised(description_d.values)),
        "quantity": (quantity_d, _to_int(quantity)),
        "unit_price_gbp": (price_d, price.astype("float64")),
        "invoice_ts_utc": (date_d, local.dt.tz_convert("UTC")),
        "customer_key": (customer_d, customer_d.values),
        "country": (country_d, _normalised(country_d.values)),
        "is_cancellation": (invoice_d, is_cancellation.astype("boolean")),
        "line_type": (stock_d, line_types(stock)),
    }
    columns = {}
    for name in CLEAN_SCHEMA:
        if name == "line_amount_gbp":
            columns[name] = line_amount
        elif name == "source_line":
            columns[name] = raw["_source_line"]
        else:
            distinct, values = per_value[name]
            is_text = CLEAN_SCHEMA[name] == "string"
            columns[name] = distinct.strings(values) if is_text else distinct.rows(values)
    # The dedup key's id per row from codes already at hand (see cleaning.KEY_ID), rather than by factorising the
    # million-row typed columns again.
    columns[KEY_ID] = combine_codes(
        pd.factorize(line_amount, use_na_sentinel=True) if name == "line_amount_gbp"
        else per_value[name][0].key_codes(per_value[name][1])
        for name in DEDUP_KEY
    )
    return pd.DataFrame(columns, index=raw.index), verdicts


def _normalised(values: pd.Series) -> pd.Series:
    """`normalise_text` of each (distinct) value, as a string Series (missing stays missing)."""
    cleaned = [None if v is pd.NA or v is None else normalise_text(v) for v in values]
    return pd.Series(pd.array(cleaned, dtype="string"), index=values.index)


def _to_int(values: pd.Series) -> pd.Series:
    whole = values.where(values.notna() & (values == values.round()))
    return whole.astype("Int64")

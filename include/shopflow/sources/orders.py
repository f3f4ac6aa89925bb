"""Cleaning rules for `orders`: UCI Online Retail invoice lines, local UK time, GBP.

Quirks handled (see SOURCES.md): cancellations (InvoiceNo 'C…') are kept and flagged; prices <= 0 are
quarantined; CustomerID was printed as a float by Spark and is pseudonymised at ingest; non-product stock codes
(POST, M, BANK CHARGES, AMAZONFEE, …) are kept and typed by `line_type`; blank descriptions become null.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from shopflow.ledger import RowVerdicts
from shopflow.sources import SourceSpec
from shopflow.text import normalise_text_series

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


def line_types(stock_code: pd.Series) -> pd.Series:
    kinds = stock_code.map(NON_PRODUCT_CODES).astype("string")
    kinds = kinds.mask(stock_code.str.startswith("GIFT_", na=False), "gift_voucher")
    return kinds.fillna("product")


def clean(raw: pd.DataFrame, ds: date, spec: SourceSpec) -> tuple[pd.DataFrame, RowVerdicts]:
    verdicts = RowVerdicts(raw.index)
    timezone = spec.timezone
    invoice = raw["InvoiceNo"].str.strip().str.upper()
    stock = raw["StockCode"].str.strip().str.upper()
    quantity_text = raw["Quantity"].str.strip()
    quantity = pd.to_numeric(quantity_text, errors="coerce")
    quantity = quantity.where(quantity.abs() <= MAX_EXACT_NUMBER)  # '1e20', 'inf' are not quantities
    price = pd.to_numeric(raw["UnitPrice"].str.strip(), errors="coerce")
    price = price.where(price.abs() <= MAX_EXACT_NUMBER)  # nor is 'inf' a price
    local = pd.to_datetime(raw["InvoiceDate"].str.strip(), format=TIMESTAMP_FORMAT, errors="coerce")
    local = local.where((local >= EARLIEST) & (local < LATEST))  # '0000-01-01 …' parses, but year 0 has no date
    local = local.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")

    verdicts.reject(invoice == "", "missing_invoice_no", "InvoiceNo")
    verdicts.reject(~invoice.str.fullmatch(INVOICE_PATTERN), "invalid_invoice_no", "InvoiceNo")
    verdicts.reject(stock == "", "missing_stock_code", "StockCode")
    verdicts.reject(quantity.isna() | (quantity != quantity.round()), "invalid_quantity", "Quantity")
    verdicts.reject(quantity == 0, "zero_quantity", "Quantity")
    verdicts.reject(price.isna(), "invalid_price", "UnitPrice")
    verdicts.reject(price <= 0, "non_positive_price", "UnitPrice")
    verdicts.reject(local.isna(), "invalid_timestamp", "InvoiceDate")
    verdicts.reject(local.dt.date != ds, "outside_partition", "InvoiceDate")
    is_cancellation = invoice.str.startswith("C")
    verdicts.reject(is_cancellation & (quantity > 0), "cancellation_with_positive_quantity", "Quantity")

    typed = pd.DataFrame(
        {
            "invoice_no": invoice,
            "stock_code": stock,
            "description": normalise_text_series(raw["Description"]),
            "quantity": _to_int(quantity),
            "unit_price_gbp": price.astype("float64"),
            "line_amount_gbp": (quantity * price).round(2),
            "invoice_ts_utc": local.dt.tz_convert("UTC"),
            "customer_key": raw["customer_key"],
            "country": normalise_text_series(raw["Country"]),
            "is_cancellation": is_cancellation.astype("boolean"),
            "line_type": line_types(stock),
            "source_line": raw["_source_line"],
        },
        index=raw.index,
    )
    return typed, verdicts


def _to_int(values: pd.Series) -> pd.Series:
    whole = values.where(values.notna() & (values == values.round()))
    return whole.astype("Int64")

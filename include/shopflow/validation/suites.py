"""The expectation suites, as data: (severity, GX expectation class name, kwargs) per dataset.

Critical expectations guard what downstream tasks rely on (keys, types, the pseudonymisation contract, business
rules the cleaner enforces); warnings watch for quality drift that should be seen but must not stop the day.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CRITICAL = "critical"
WARNING = "warning"
TOKEN = r"^[0-9a-f]{24}$"


@dataclass(frozen=True)
class ExpectationSpec:
    severity: str
    expectation: str
    kwargs: dict = field(default_factory=dict)


def _c(expectation: str, **kwargs) -> ExpectationSpec:
    return ExpectationSpec(CRITICAL, expectation, kwargs)


def _w(expectation: str, **kwargs) -> ExpectationSpec:
    return ExpectationSpec(WARNING, expectation, kwargs)


SUITES: dict[str, list[ExpectationSpec]] = {
    "orders": [
        _c("ExpectTableRowCountToBeBetween", min_value=1),
        _c("ExpectColumnValuesToNotBeNull", column="invoice_no"),
        _c("ExpectColumnValuesToNotBeNull", column="stock_code"),
        _c("ExpectColumnValuesToNotBeNull", column="quantity"),
        _c("ExpectColumnValuesToNotBeNull", column="invoice_ts_utc"),
        _c("ExpectColumnValuesToBeBetween", column="unit_price_gbp", min_value=0, strict_min=True),
        _c("ExpectColumnValuesToMatchRegex", column="customer_key", regex=TOKEN),
        _c("ExpectColumnValuesToMatchRegex", column="invoice_no", regex=r"^[A-Z]?\d{5,7}$"),
        _w("ExpectColumnValuesToNotBeNull", column="customer_key", mostly=0.6),
        _w("ExpectColumnValuesToNotBeNull", column="description", mostly=0.99),
        _w("ExpectColumnValuesToBeBetween", column="quantity", min_value=-10000, max_value=10000),
        _w("ExpectColumnValuesToBeBetween", column="unit_price_gbp", max_value=1000, mostly=0.999),
        _w("ExpectColumnValuesToBeInSet", column="line_type", value_set=[
            "product", "postage", "carriage", "manual_adjustment", "discount", "samples", "bad_debt_adjustment",
            "commission", "fee", "gift_voucher"], mostly=0.98),
        _w("ExpectColumnMeanToBeBetween", column="is_cancellation", max_value=0.1),
    ],
    "behavior": [
        _c("ExpectTableRowCountToBeBetween", min_value=1),
        _c("ExpectColumnValuesToNotBeNull", column="user_key"),
        _c("ExpectColumnValuesToMatchRegex", column="user_key", regex=TOKEN),
        _c("ExpectColumnValuesToBeInSet", column="event_type", value_set=["view", "favourite", "cart", "buy"]),
        _c("ExpectColumnValuesToNotBeNull", column="event_ts_utc"),
        _c("ExpectColumnValuesToNotBeNull", column="item_id"),
        _w("ExpectColumnProportionOfUniqueValuesToBeBetween", column="user_key", max_value=0.5),
        _w("ExpectColumnDistinctValuesToContainSet", column="event_type", value_set=["view", "cart"]),
    ],
    "catalog": [
        _c("ExpectTableRowCountToBeBetween", min_value=1),
        _c("ExpectColumnValuesToNotBeNull", column="uniq_id"),
        _c("ExpectColumnValuesToBeUnique", column="uniq_id"),
        _c("ExpectColumnValuesToMatchRegex", column="uniq_id", regex=r"^[0-9a-f]{32}$"),
        _c("ExpectColumnValuesToNotBeNull", column="product_name"),
        _c("ExpectColumnValuesToBeBetween", column="retail_price_inr", min_value=0, strict_min=True),
        _c("ExpectColumnValuesToBeInSet", column="category_status", value_set=["ok", "truncated_leaf", "name_only", "missing"]),
        _w("ExpectColumnValuesToNotBeNull", column="retail_price_inr", mostly=0.99),
        _w("ExpectColumnValuesToNotBeNull", column="brand", mostly=0.6),
        _w("ExpectColumnValuesToNotBeNull", column="category_top", mostly=0.95),
        _w("ExpectColumnPairValuesAToBeGreaterThanB", column_A="retail_price_inr", column_B="discounted_price_inr",
           or_equal=True, ignore_row_if="either_value_is_missing", mostly=0.99),
        _w("ExpectColumnValuesToBeBetween", column="product_rating", min_value=0, max_value=5),
    ],
    "search": [
        _c("ExpectTableRowCountToBeBetween", min_value=1),
        _c("ExpectColumnValuesToNotBeNull", column="query"),
        _c("ExpectColumnValuesToNotBeNull", column="event_ts_utc"),
        _c("ExpectColumnValuesToMatchRegex", column="user_key", regex=TOKEN),
        _c("ExpectColumnValuesToMatchRegex", column="clicked_product_id", regex=r"^[0-9a-f]{32}$"),
        _w("ExpectColumnValueLengthsToBeBetween", column="query", min_value=2, max_value=80, mostly=0.99),
        _w("ExpectColumnMeanToBeBetween", column="has_click", min_value=0.2, max_value=0.95),
    ],
}

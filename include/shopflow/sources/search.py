"""Cleaning rules for `search`: a site search log (the demo's log is generated; see shopflow.search_log).

Queries are normalised for counting (NFKC, HTML entities, case-folded, whitespace); empty queries and
timestamps outside the partition day are quarantined; a click must name a 32-hex product id.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from shopflow.ledger import RowVerdicts
from shopflow.sources import SourceSpec
from shopflow.text import normalise_query

CLEAN_SCHEMA = {
    "event_ts_utc": "datetime64[us, UTC]",
    "session_id": "string",
    "user_key": "string",
    "query": "string",
    "clicked_product_id": "string",
    "has_click": "boolean",
    "source_line": "int64",
}
DEDUP_KEY = ["event_ts_utc", "session_id", "user_key", "query", "clicked_product_id"]
PRODUCT_ID_PATTERN = r"[0-9a-f]{32}"
EARLIEST, LATEST = pd.Timestamp("1970-01-01", tz="UTC"), pd.Timestamp("2100-01-01", tz="UTC")


def clean(raw: pd.DataFrame, ds: date, spec: SourceSpec) -> tuple[pd.DataFrame, RowVerdicts]:
    verdicts = RowVerdicts(raw.index)
    timezone = spec.timezone
    event_ts = pd.to_datetime(raw["event_time"].str.strip(), utc=True, errors="coerce", format="ISO8601")
    # ISO 8601 also parses '-0' or '0000-01-01' (year 0), which has no calendar date: keep to a sane range.
    event_ts = event_ts.where((event_ts >= EARLIEST) & (event_ts < LATEST))
    session = raw["session_id"].str.strip()
    distinct = raw["query"].unique()
    normalised = dict(zip(distinct, (normalise_query(q) for q in distinct)))
    query = raw["query"].map(normalised).astype("string")
    clicked = raw["clicked_product_id"].str.strip().str.lower()
    clicked = clicked.mask(clicked == "")

    verdicts.reject(event_ts.isna(), "invalid_timestamp", "event_time")
    verdicts.reject(event_ts.dt.tz_convert(timezone).dt.date != ds, "outside_partition", "event_time")
    verdicts.reject(session == "", "missing_session_id", "session_id")
    verdicts.reject(query.isna(), "empty_query", "query")
    verdicts.reject(clicked.notna() & ~clicked.str.fullmatch(PRODUCT_ID_PATTERN), "invalid_clicked_product_id", "clicked_product_id")

    typed = pd.DataFrame(
        {
            "event_ts_utc": event_ts,
            "session_id": session,
            "user_key": raw["user_key"],
            "query": query,
            "clicked_product_id": clicked.astype("string"),
            "has_click": clicked.notna().astype("boolean"),
            "source_line": raw["_source_line"],
        },
        index=raw.index,
    )
    return typed, verdicts

"""Cleaning rules for `behavior`: Taobao behaviour events (no header, Unix seconds, China time).

Quirks handled: unknown event types and timestamps outside the dataset's documented window are quarantined;
the stray 2017-09-11 row lands with the first window day's export and is quarantined there.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from shopflow.ledger import RowVerdicts
from shopflow.sources import SourceSpec

CLEAN_SCHEMA = {
    "user_key": "string",
    "item_id": "Int64",
    "category_id": "Int64",
    "event_type": "string",
    "event_ts_utc": "datetime64[us, UTC]",
    "source_line": "int64",
}
DEDUP_KEY = ["user_key", "item_id", "category_id", "event_type", "event_ts_utc"]
EVENT_TYPES = {"pv": "view", "fav": "favourite", "cart": "cart", "buy": "buy"}


def _positive_ints(text: pd.Series) -> pd.Series:
    values = pd.to_numeric(text.str.strip(), errors="coerce")
    # Above 2**53 a float-parsed id is no longer exact and the Int64 cast would wrap around to a negative id.
    return values.where((values > 0) & (values <= 2**53) & (values == values.round())).astype("Int64")


def clean(raw: pd.DataFrame, ds: date, spec: SourceSpec) -> tuple[pd.DataFrame, RowVerdicts]:
    verdicts = RowVerdicts(raw.index)
    timezone = spec.timezone
    item = _positive_ints(raw["item_id"])
    category = _positive_ints(raw["category_id"])
    event = raw["behavior_type"].str.strip().str.lower().map(EVENT_TYPES).astype("string")
    seconds = pd.to_numeric(raw["timestamp"].str.strip(), errors="coerce")
    seconds = seconds.where((seconds > 0) & (seconds < 4102444800) & (seconds == seconds.round()))
    event_ts = pd.to_datetime(seconds, unit="s", utc=True)
    local_day = event_ts.dt.tz_convert(timezone).dt.date
    if local_day.dtype != object:  # no valid timestamp at all: pandas gives an all-NaT datetime column, not dates
        local_day = pd.Series(None, index=raw.index, dtype=object)

    verdicts.reject(raw["user_key"].isna(), "missing_user_id", "user_id")
    verdicts.reject(item.isna(), "invalid_item_id", "item_id")
    verdicts.reject(category.isna(), "invalid_category_id", "category_id")
    verdicts.reject(event.isna(), "unknown_event_type", "behavior_type")
    verdicts.reject(event_ts.isna(), "invalid_timestamp", "timestamp")
    if spec.window:
        outside = (local_day < spec.window["start"]) | (local_day > spec.window["end"])
        verdicts.reject(outside, "timestamp_out_of_window", "timestamp")
    verdicts.reject(local_day != ds, "outside_partition", "timestamp")

    typed = pd.DataFrame(
        {
            "user_key": raw["user_key"],
            "item_id": item,
            "category_id": category,
            "event_type": event,
            "event_ts_utc": event_ts,
            "source_line": raw["_source_line"],
        },
        index=raw.index,
    )
    return typed, verdicts

"""Price anomalies: prices far from their category's, on robust statistics of the log price (pure pandas).

A price is checked against its group, the product's top-level category: the median and the MAD (median absolute
deviation) of the log prices of the group's products in a reference catalogue (default: the checked products
themselves). A group with fewer than `min_group` reference prices, and a product without a category, is checked
against the whole reference catalogue instead. Prices are FLAGGED, never changed:

- `floor`: the price is at or below `floor` currency units (a placeholder such as 1 rupee or 1 pound);
- `high` / `low`: the price is more than a factor `min_factor` away from the group's median AND its log more
  than `max_z` robust standard deviations (1.4826 x MAD) away; or, whatever the spread, more than `max_factor`
  away. The factor keeps a tight group (cables at 199 give or take a little) from flagging the dearer products
  that every shop has; `max_z` keeps a wide group (jewellery from 300 to 300,000) from flagging its own range;
  `max_factor` makes sure a typical price typed 100 times too high or too low is flagged in any group.

Missing prices are not checked (no flag). Reference prices at or below the floor do not enter the statistics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FLOOR = 1.0
MIN_GROUP = 30
MAX_Z = 5.0
MIN_FACTOR = 20.0
MAX_FACTOR = 50.0
MAD_TO_SD = 1.4826  # the MAD of a normal distribution is 0.6745 of its standard deviation
FLOOR_REASON, HIGH, LOW = "floor", "high", "low"
WHOLE_CATALOGUE = "(whole catalogue)"
DECIMALS = 4


def _group_stats(log_prices: pd.Series, groups: pd.Series, min_group: int) -> tuple[pd.DataFrame, tuple[float, float]]:
    frame = pd.DataFrame({"log_price": log_prices.to_numpy(), "group": groups.astype("object").to_numpy()})
    median = frame.groupby("group")["log_price"].median()
    frame["deviation"] = (frame["log_price"] - frame["group"].map(median)).abs()
    stats = frame.groupby("group").agg(n=("log_price", "size"), median=("log_price", "median"),
                                       mad=("deviation", "median"))
    overall_median = float(log_prices.median()) if len(log_prices) else float("nan")
    overall_mad = float((log_prices - overall_median).abs().median()) if len(log_prices) else float("nan")
    return stats[stats["n"] >= min_group], (overall_median, overall_mad)


def check_prices(prices: pd.Series, groups: pd.Series | None = None, *, reference_prices: pd.Series | None = None,
                 reference_groups: pd.Series | None = None, floor: float = FLOOR, min_group: int = MIN_GROUP,
                 max_z: float = MAX_Z, min_factor: float = MIN_FACTOR, max_factor: float = MAX_FACTOR) -> pd.DataFrame:
    """price_anomaly (bool), price_anomaly_reason (floor | high | low, NA when not flagged), group (the one the
    price was compared with), group_median (in currency units) and robust_z per price; the index of `prices`."""
    prices = pd.to_numeric(prices, errors="coerce").astype("float64")
    groups = pd.Series(pd.NA, index=prices.index, dtype="object") if groups is None else groups
    if reference_prices is None:
        reference_prices, reference_groups = prices, groups
    reference_prices = pd.to_numeric(reference_prices, errors="coerce").astype("float64")
    reference_groups = (pd.Series(pd.NA, index=reference_prices.index, dtype="object") if reference_groups is None
                        else reference_groups)
    usable = (reference_prices > floor).to_numpy()
    reference_log = np.log(reference_prices[usable].reset_index(drop=True))
    reference_keys = reference_groups[usable].astype("object").reset_index(drop=True)
    known = reference_keys.notna()
    stats, (overall_median, overall_mad) = _group_stats(reference_log[known], reference_keys[known], min_group)

    keys = groups.astype("object").where(groups.notna(), None)
    own = keys.isin(stats.index).to_numpy(dtype=bool)
    median = np.where(own, keys.map(stats["median"]).to_numpy(dtype="float64", na_value=np.nan), overall_median)
    mad = np.where(own, keys.map(stats["mad"]).to_numpy(dtype="float64", na_value=np.nan), overall_mad)
    group = np.where(own, keys.astype(str).to_numpy(dtype=object), WHOLE_CATALOGUE)

    value = prices.to_numpy(dtype="float64")
    checked = ~np.isnan(value)
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.log(np.where(value > 0, value, np.nan)) - median
        scale = MAD_TO_SD * mad
        robust_z = np.where(scale > 0, distance / scale, np.where(distance == 0, 0.0, np.sign(distance) * np.inf))
    far = ((np.abs(distance) > np.log(min_factor)) & (np.abs(robust_z) > max_z)) | (np.abs(distance) > np.log(max_factor))
    at_floor = checked & (value <= floor)
    high = checked & ~at_floor & far & (distance > 0)
    low = checked & ~at_floor & far & (distance < 0)
    reason = np.full(len(value), None, dtype=object)
    reason[low], reason[high], reason[at_floor] = LOW, HIGH, FLOOR_REASON
    flagged = at_floor | high | low
    return pd.DataFrame({
        "price_anomaly": flagged,
        "price_anomaly_reason": pd.array(reason, dtype="string"),
        "group": pd.array(group, dtype="string"),
        "group_median": np.round(np.exp(median), 2),
        "robust_z": np.round(np.where(checked, robust_z, np.nan), DECIMALS),
    }, index=prices.index)


def describe(price: float, reason: str, group: str, group_median: float, robust_z: float, floor: float = FLOOR) -> str:
    """One line for the audit trail: why a price was flagged."""
    if reason == FLOOR_REASON:
        return f"{FLOOR_REASON}: {price:g} is at or below the floor of {floor:g}"
    factor = price / group_median if group_median else float("inf")
    ratio = f"{factor:.1f}x" if factor >= 1 else f"1/{1 / factor:.1f}"
    return f"{reason}: {ratio} the median {group_median:g} of {group} (robust z {robust_z:+.1f})"

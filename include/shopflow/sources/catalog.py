"""Cleaning rules for `catalog`: Flipkart products joined from three files on `uniq_id`, INR prices.

Quirks handled (see SOURCES.md): the name/category file has no header; the full-columns file is mostly blank
rows (quarantined as `blank_row` by `shopflow.sources.cleaning`, as for every source); category trees are JSON-ish
strings with `>>` separators, some leaves are truncated with '...', and 255 of the 260 depth-1 "trees" are only the product name,
maybe cut off or with a variant such as '(Red)' (kept, with `category_status` saying so: a later repair step fills
them; the other 5 are the real category 'Sunglasses'); "No rating available" becomes null.
"""

from __future__ import annotations

import json
from datetime import date

import pandas as pd

from shopflow.common.landing_file import SOURCE_FILE, SOURCE_LINE
from shopflow.common.text import normalise_text, normalise_text_series
from shopflow.sources import SourceSpec
from shopflow.sources.ledger import RowVerdicts
from shopflow.sources.role_frames import LEVEL_SEPARATOR

CLEAN_SCHEMA = {
    "uniq_id": "string",
    "pid": "string",
    "product_name": "string",
    "brand": "string",
    "category_path": "string",
    "category_top": "string",
    "category_l2": "string",
    "category_depth": "Int64",
    "category_status": "string",
    "retail_price_inr": "float64",
    "discounted_price_inr": "float64",
    "product_rating": "float64",
    "overall_rating": "float64",
    "is_fk_advantage": "boolean",
    "description": "string",
    "product_url": "string",
    "crawl_ts_utc": "datetime64[us, UTC]",
    "source_file": "string",
    "source_line": "int64",
}
DEDUP_KEY = ["uniq_id"]
# Clean column -> the raw-zone columns it is computed from (column lineage: shopflow.observability.lineage). The raw zone
# already holds the three files merged on uniq_id, so a column's source is the merged field.
COLUMN_LINEAGE = {
    "uniq_id": ["uniq_id"], "pid": ["pid"], "product_name": ["product_name"], "brand": ["brand"],
    **{c: ["product_category_tree", "product_name"] for c in ("category_path", "category_top", "category_l2",
                                                               "category_depth", "category_status")},
    "retail_price_inr": ["retail_price"], "discounted_price_inr": ["discounted_price"],
    "product_rating": ["product_rating"], "overall_rating": ["overall_rating"],
    "is_fk_advantage": ["is_FK_Advantage_product"], "description": ["description"], "product_url": ["product_url"],
    "crawl_ts_utc": ["crawl_timestamp"], "source_file": ["_source_file"], "source_line": ["_source_line"],
}
# The join takes each field from the first file (in this order) that has a non-empty value for it.
FILE_PRIORITY = ["flipkart_full_columns.csv", "flipkart_prices_brand.csv", "flipkart_name_category_tree.csv"]
ALL_FIELDS = [
    "uniq_id", "crawl_timestamp", "product_url", "product_name", "product_category_tree", "pid", "retail_price",
    "discounted_price", "image", "is_FK_Advantage_product", "description", "product_rating", "overall_rating",
    "brand", "product_specifications",
]
CATEGORY_STATUSES = ["ok", "truncated_leaf", "name_only", "missing"]
UNIQ_ID_PATTERN = r"[0-9a-f]{32}"
NO_RATING = "no rating available"


def combine(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Join the landed Flipkart files into one raw record per product (and one per keyless row).

    A record repeated inside one file stays a separate raw row (matched by occurrence number), so the cleaner
    counts it as a duplicate instead of the join hiding it. Each row keeps the file and line of the
    first file in landing order that holds it.
    """
    ordered = [name for name in frames]
    parts = []
    for rank, name in enumerate(ordered):
        frame = frames[name].reindex(columns=ALL_FIELDS + [SOURCE_FILE, SOURCE_LINE])
        frame["uniq_id"] = frame["uniq_id"].str.strip()
        keyed = frame["uniq_id"].fillna("") != ""
        frame["_occurrence"] = frame.groupby("uniq_id").cumcount().where(keyed, -1 - frame.index.to_series())
        frame["_order"] = rank
        frame["_priority"] = FILE_PRIORITY.index(name) if name in FILE_PRIORITY else len(FILE_PRIORITY)
        frame.loc[~keyed, "uniq_id"] = (frame.loc[~keyed, "uniq_id"].fillna("") + "#" + name + ":"
                                        + frame.loc[~keyed, SOURCE_LINE].astype(str))
        parts.append(frame)
    if not parts:
        return pd.DataFrame(columns=ALL_FIELDS + [SOURCE_FILE, SOURCE_LINE])
    stacked = pd.concat(parts, ignore_index=True)
    keys = ["uniq_id", "_occurrence"]
    location = stacked.sort_values(["_order", SOURCE_LINE]).groupby(keys, sort=False)[[SOURCE_FILE, SOURCE_LINE]].first()
    values = stacked[ALL_FIELDS].mask(stacked[ALL_FIELDS].fillna("").eq(""))
    values[keys + ["_priority"]] = stacked[keys + ["_priority"]]
    merged = values.sort_values("_priority", kind="stable").groupby(keys, sort=False)[ALL_FIELDS[1:]].first()
    joined = location.join(merged).reset_index()
    joined["uniq_id"] = joined["uniq_id"].where(~joined["uniq_id"].str.contains("#", regex=False), "")
    joined = joined.sort_values([SOURCE_FILE, SOURCE_LINE], key=_file_rank(ordered)).reset_index(drop=True)
    for column in ALL_FIELDS:
        joined[column] = joined[column].astype("string").fillna("")
    return joined[[SOURCE_FILE, *ALL_FIELDS, SOURCE_LINE]]


def _file_rank(ordered: list[str]):
    def key(column: pd.Series) -> pd.Series:
        return column.map({n: i for i, n in enumerate(ordered)}) if column.name == SOURCE_FILE else column

    return key


def parse_category_tree(tree: str | None, product_name: str | None) -> tuple[list[str], str]:
    """Levels of a Flipkart category tree and its status: ok, truncated_leaf, name_only or missing.

    `'["Clothing >> Women\\'s Clothing >> … >> leaf"]'` -> (['Clothing', "Women's Clothing", …], 'ok').
    A truncated leaf ('Sofa Bed (Finish Colo...') is dropped from the levels; a depth-1 tree that is only the
    product name carries no category at all.
    """
    text = (tree or "").strip()
    if text.startswith("["):
        try:
            decoded = json.loads(text)
            text = decoded[0] if isinstance(decoded, list) and decoded else ""
        except (json.JSONDecodeError, TypeError):
            text = text.strip("[]").strip().strip('"')
    levels = [lvl for lvl in (normalise_text(part) for part in str(text).split(">>")) if lvl]
    if not levels:
        return [], "missing"
    status = "ok"
    if levels[-1].endswith("..."):
        levels = levels[:-1]
        status = "truncated_leaf"
    name = (normalise_text(product_name) or "").casefold()
    if len(levels) <= 1:
        only = levels[0].casefold().rstrip(".") if levels else ""
        # The tree is the name itself, a cut-off name, or the name plus a variant: 'Sumo Baby Walker (Red)'.
        if not levels or (only and name.startswith(only)) or only == name or (name and only.startswith(name + " (")):
            return [], "name_only"
    return levels, status


def _prices(text: pd.Series) -> pd.Series:
    values = pd.to_numeric(text.str.replace(",", "", regex=False).str.strip(), errors="coerce")
    return values.where(values.abs() < float("inf"))  # 'inf' / '1e400' parse, but are not prices


def _ratings(text: pd.Series) -> pd.Series:
    cleaned = text.str.strip().mask(text.str.strip().str.lower() == NO_RATING)
    values = pd.to_numeric(cleaned, errors="coerce")
    return values.where((values >= 0) & (values <= 5))


def clean(raw: pd.DataFrame, ds: date, spec: SourceSpec) -> tuple[pd.DataFrame, RowVerdicts]:
    verdicts = RowVerdicts(raw.index)
    uniq_id = raw["uniq_id"].str.strip().str.lower()
    name = normalise_text_series(raw["product_name"])
    retail_text = raw["retail_price"].str.strip()
    discounted_text = raw["discounted_price"].str.strip()
    retail, discounted = _prices(raw["retail_price"]), _prices(raw["discounted_price"])
    crawl = pd.to_datetime(raw["crawl_timestamp"].str.strip().mask(raw["crawl_timestamp"].str.strip() == ""),
                           utc=True, errors="coerce", format="%Y-%m-%d %H:%M:%S %z")

    verdicts.reject(uniq_id == "", "missing_key", "uniq_id")
    verdicts.reject(~uniq_id.str.fullmatch(UNIQ_ID_PATTERN), "invalid_key", "uniq_id")
    verdicts.reject(name.isna(), "missing_product_name", "product_name")
    verdicts.reject((retail_text != "") & retail.isna(), "invalid_price", "retail_price")
    verdicts.reject(retail <= 0, "non_positive_price", "retail_price")
    verdicts.reject((discounted_text != "") & discounted.isna(), "invalid_price", "discounted_price")
    verdicts.reject(discounted <= 0, "non_positive_price", "discounted_price")
    verdicts.reject((raw["crawl_timestamp"].str.strip() != "") & crawl.isna(), "invalid_timestamp", "crawl_timestamp")

    parsed = [parse_category_tree(t, n) for t, n in zip(raw["product_category_tree"], raw["product_name"])]
    levels = [p[0] for p in parsed]
    advantage = raw["is_FK_Advantage_product"].str.strip().str.upper().map({"TRUE": True, "FALSE": False})
    typed = pd.DataFrame(
        {
            "uniq_id": uniq_id,
            "pid": raw["pid"].str.strip().str.upper().mask(raw["pid"].str.strip() == ""),
            "product_name": name,
            "brand": normalise_text_series(raw["brand"]),
            "category_path": pd.Series([LEVEL_SEPARATOR.join(lv) if lv else None for lv in levels], index=raw.index,
                                       dtype="string"),
            "category_top": pd.Series([lv[0] if lv else None for lv in levels], index=raw.index, dtype="string"),
            "category_l2": pd.Series([lv[1] if len(lv) > 1 else None for lv in levels], index=raw.index, dtype="string"),
            "category_depth": pd.Series([len(lv) for lv in levels], index=raw.index, dtype="Int64"),
            "category_status": pd.Series([p[1] for p in parsed], index=raw.index, dtype="string"),
            "retail_price_inr": retail.astype("float64"),
            "discounted_price_inr": discounted.astype("float64"),
            "product_rating": _ratings(raw["product_rating"]),
            "overall_rating": _ratings(raw["overall_rating"]),
            "is_fk_advantage": advantage.astype("boolean"),
            "description": normalise_text_series(raw["description"]),
            "product_url": raw["product_url"].str.strip().mask(raw["product_url"].str.strip() == ""),
            "crawl_ts_utc": crawl,
            "source_file": raw[SOURCE_FILE],
            "source_line": raw[SOURCE_LINE],
        },
        index=raw.index,
    )
    return typed, verdicts

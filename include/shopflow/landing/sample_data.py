"""Lands the real sample data of SHOPFLOW_SOURCE_DATA as daily landing files, the way the shop's exports arrive.

- orders:   one file per InvoiceDate day (UK local time), header kept, records unchanged: the generic export
            landing (`land --source orders --from FILE --by InvoiceDate`, shopflow.landing.export).
- behavior: one file per China-local day (no header, as in the source). Rows outside the documented window
            (the stray 2017-09-11 row) ride in the first window day's export, where cleaning
            quarantines them.
- catalog:  a snapshot source. The first crawl day (2015-12-03) lands the full snapshot: the product/category
            file and the price/brand file whole, plus the full-columns rows crawled that day and the file's blank
            rows (which carry no date). Every later crawl day lands only the rows crawled that day (changed rows).
            The catalogue as of day D = that snapshot with the later deltas up to D applied (shopflow.lake.catalog_view).
- search:   GENERATED (see shopflow.landing.search_log): no real timestamped search log exists in the sample data.
- olist_catalog: the Olist product table and its category translation file have no dates: both land whole, unchanged,
            as one snapshot on the Flipkart catalogue's first day (`python -m shopflow land --source olist_catalog
            --from FILE --file NAME --day DAY`, shopflow.landing.export), so the demo's catalogue window covers it.

Source files are never modified; landing rewrites records only to split them, and is idempotent.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from shopflow.common import storage
from shopflow.common.storage import StoragePath
from shopflow.config.settings import Settings
from shopflow.lake import zones as lake
from shopflow.sources import get_source

log = logging.getLogger("shopflow.landing.sample_data")

ORDERS_FILE = "events/online_retail_2010-12-01_to_2011-09-30.csv.gz"
BEHAVIOR_FILE = "events/taobao_user_behavior_sample.csv.gz"
CATALOG_NAMES = "catalog/flipkart_name_category_tree.csv.gz"
CATALOG_PRICES = "catalog/flipkart_prices_brand.csv.gz"
CATALOG_FULL = "catalog/flipkart_full_columns_first999.csv.gz"
OLIST_PRODUCTS = "catalog/olist_products_dataset.csv.gz"
OLIST_TRANSLATION = "catalog/product_category_name_translation.csv.gz"
OLIST_DAY = date(2015, 12, 3)
SEARCH_DAYS_DEFAULT = (date(2015, 12, 3), date(2015, 12, 16))


def _records(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def _write_csv(path: StoragePath, header: list[str] | None, rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    _write_text(path, buffer.getvalue())


def _write_text(path: StoragePath, text: str) -> None:
    data = text.encode("utf-8")
    if storage.is_file(path) and storage.read_bytes(path) == data:
        return
    storage.write_bytes(path, data)


def _require(settings: Settings, relative: str) -> Path:
    path = settings.source_data / relative
    if not path.is_file():
        raise FileNotFoundError(f"sample data file {path} not found: set SHOPFLOW_SOURCE_DATA to the data folder")
    return path


def land_orders(settings: Settings) -> dict[date, int]:
    """`python -m shopflow land --source orders --from <the UCI file> --by InvoiceDate` (shopflow.landing.export)."""
    from shopflow.landing.export import land_export

    return land_export(settings, get_source("orders"), _require(settings, ORDERS_FILE), by="InvoiceDate")


def land_behavior(settings: Settings) -> dict[date, int]:
    spec = get_source("behavior")
    zone = ZoneInfo(spec.timezone)
    first, last = spec.window["start"], spec.window["end"]
    rows = _records(_require(settings, BEHAVIOR_FILE))
    by_day: dict[date, list[list[str]]] = defaultdict(list)
    for row in rows:
        try:
            day = datetime.fromtimestamp(int(row[4]), tz=zone).date()
        except (ValueError, IndexError, OverflowError):
            day = first
        by_day[min(max(day, first), last)].append(row)
    for day, day_rows in by_day.items():
        _write_csv(lake.landing_dir(settings, "behavior", day) / "behavior.csv", None, day_rows)
    return {d: len(r) for d, r in sorted(by_day.items())}


def land_catalog(settings: Settings) -> dict[date, int]:
    names_rows = _records(_require(settings, CATALOG_NAMES))
    prices_header, *prices_rows = _records(_require(settings, CATALOG_PRICES))
    full_header, *full_rows = _records(_require(settings, CATALOG_FULL))
    crawl_column = full_header.index("crawl_timestamp")
    by_day: dict[date, list[list[str]]] = defaultdict(list)
    undated = []
    for row in full_rows:
        stamp = row[crawl_column].strip() if len(row) > crawl_column else ""
        if stamp:
            by_day[datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S %z").astimezone(timezone.utc).date()].append(row)
        else:
            undated.append(row)
    snapshot_day = min(by_day)
    snapshot = lake.landing_dir(settings, "catalog", snapshot_day)
    _write_csv(snapshot / "flipkart_name_category_tree.csv", None, names_rows)
    _write_csv(snapshot / "flipkart_prices_brand.csv", prices_header, prices_rows)
    counts = {}
    for day, day_rows in sorted(by_day.items()):
        rows = day_rows + undated if day == snapshot_day else day_rows
        _write_csv(lake.landing_dir(settings, "catalog", day) / "flipkart_full_columns.csv", full_header, rows)
        counts[day] = len(rows) + (len(names_rows) + len(prices_rows) if day == snapshot_day else 0)
    return counts


def land_search(settings: Settings, first: date, last: date) -> dict[date, int]:
    from shopflow.landing.search_log import generate_search_log, load_catalogue_titles

    products = load_catalogue_titles(settings.source_data)
    counts = {}
    day = first
    while day <= last:
        header, rows = generate_search_log(products, day)
        folder = lake.landing_dir(settings, "search", day)
        _write_csv(folder / "search_log.csv", header, rows)
        _write_text(folder / "GENERATED.txt", "This search log is GENERATED by shopflow.landing.search_log from real catalogue "
                    "titles and category paths; it is not a real log.\n")
        counts[day] = len(rows)
        day += timedelta(days=1)
    return counts


def land_olist(settings: Settings, day: date = OLIST_DAY) -> dict[date, int]:
    """The Olist snapshot through the generic export landing, as a shop would land its own files."""
    from shopflow.ingest.readers import read_landing
    from shopflow.landing.export import land_export

    spec = get_source("olist_catalog")
    products = _require(settings, OLIST_PRODUCTS)
    land_export(settings, spec, products, by=None, file_name="olist_products_dataset.csv", day=day)
    land_export(settings, spec, _require(settings, OLIST_TRANSLATION), by=None,
                file_name="product_category_name_translation.csv", day=day)
    return {day: len(read_landing(products, spec.files[0])[1])}


def land_all(settings: Settings, search_days: tuple[date, date] = SEARCH_DAYS_DEFAULT) -> dict[str, dict[date, int]]:
    landed = {
        "orders": land_orders(settings),
        "behavior": land_behavior(settings),
        "catalog": land_catalog(settings),
        "search": land_search(settings, *search_days),
    }
    from shopflow.sources import load_sources

    if "olist_catalog" in load_sources():  # a custom SHOPFLOW_SOURCES may leave it out
        landed["olist_catalog"] = land_olist(settings)
    for source, days in landed.items():
        log.info("landed %s: %s days, %s rows (%s .. %s)", source, len(days), f"{sum(days.values()):,}",
                 min(days), max(days))
    return landed

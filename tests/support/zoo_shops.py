"""The zoo: small, realistic shops of other shapes, generated from real rows of the sample data, each declared in
its own sources file the way a new user would write it. Together the members cover every catalog role shape the
sources file accepts (integer keys, several category levels without a status field, one level with a status, a
category path, no price and no brand, non-ASCII titles and column names, a real class named `other`), plus events in
nested JSON lines whose sessions span days and orders as Parquet.

A member is data, not code under test: its rows are read here with `csv`/`gzip`/`pandas`, never with shopflow, and its
landing files are written straight into the landing zone (`landing/<source>/ds=DAY/<file>`), except the nested
events, which a test lands with `python -m shopflow land --by` as a user would. A new role shape is a new member.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path

import pandas as pd
from sample_rows import BEHAVIOR_FILE, CATALOG_NAMES, CATALOG_PRICES, ORDERS_FILE, data_path

DAY = date(2024, 3, 11)  # every zoo catalogue is a snapshot of this day
PRODUCT_PERCENT = 5  # of the real Flipkart products, chosen by a hash of their id (about 800 of 16,028)
HIDDEN_PERCENT = 8  # of the products with a category: shipped without it, for the repair to fill or send to review
# The environment of a zoo run: the model branch on a tiny CPU budget (a step count, never a time budget), a floor
# any model meets, no human who answers the review request. The serving refit and the baseline's grouped
# cross-validation (the label issues' out-of-fold probabilities) run as by default.
ZOO_ENV = {"SHOPFLOW_TRAIN_CPU_MAX_STEPS": "8", "SHOPFLOW_TRAIN_CPU_TIME_BUDGET_S": "0",
           "SHOPFLOW_TRAIN_LINEAR_CANDIDATES": "false",
           "SHOPFLOW_TRAIN_BOOTSTRAP_ROUNDS": "200", "SHOPFLOW_TRAIN_RARE_CLASS_MIN": "15",
           "SHOPFLOW_BLESS_MACRO_F1_FLOOR": "0.0", "SHOPFLOW_REPAIR_THRESHOLD": "0.3",
           "SHOPFLOW_TRAIN_MAX_AGE_DAYS": "100000", "SHOPFLOW_REVIEW_TIMEOUT_MINUTES": "0"}


@dataclass(frozen=True)
class Product:
    """One real Flipkart product: id, title, brand, price and its category tree's levels (top first)."""

    uniq_id: str
    title: str
    brand: str
    price: str
    levels: tuple[str, ...]

    @property
    def bucket(self) -> int:
        return int(hashlib.sha256(self.uniq_id.encode()).hexdigest()[:8], 16) % 100

    @property
    def hidden(self) -> bool:
        return int(hashlib.sha256(f"hide:{self.uniq_id}".encode()).hexdigest()[:8], 16) % 100 < HIDDEN_PERCENT


def _rows(relative: str) -> list[list[str]]:
    with gzip.open(data_path(relative), "rt", encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


@cache
def real_products() -> tuple[Product, ...]:
    """PRODUCT_PERCENT of the real catalogue with a title, joined with its prices file, in file order. A tree is
    `["A >> B >> ... >> title"]`; its levels are the parts before the product's own name (a tree of one part is no
    category)."""
    prices = {row[0]: row for row in _rows(CATALOG_PRICES)[1:] if row}
    products = []
    for row in _rows(CATALOG_NAMES):
        if len(row) < 3 or not row[1].strip():
            continue
        parts = [p.strip() for p in row[2].strip().removeprefix('["').removesuffix('"]').split(">>")]
        product = Product(row[0], row[1].strip(), (prices.get(row[0]) or [""] * 9)[8].strip(),
                          (prices.get(row[0]) or [""] * 9)[3].strip(), tuple(p for p in parts[:-1] if p))
        if product.bucket < PRODUCT_PERCENT:
            products.append(product)
    return tuple(products)


@dataclass
class ZooShop:
    """A member: its sources file, what it lands where, and what the tests expect of it."""

    name: str
    shapes: str  # the role shapes it proves, in words
    sources_yaml: str
    landing: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (source, file name) -> content, on DAY
    catalog: str = "zoo_catalog"
    product_count: int = 0
    key_type: type = str
    real_other_class: bool = False
    # Exports a user lands with `python -m shopflow land --source S --from FILE --by FIELD`: S -> (file, bytes, FIELD)
    exports: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)
    expected_records: dict[str, Counter] = field(default_factory=dict)  # S -> records per day the export holds

    def write(self, home: Path, root: Path) -> Path:
        """Land the member's files into `home`'s landing zone and write its sources file; returns that file."""
        for (source, name), content in self.landing.items():
            folder = home / "landing" / source / f"ds={DAY.isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        for _source, (name, content, _by) in self.exports.items():
            (root / name).write_bytes(content)
        sources = root / f"{self.name}.sources.yaml"
        sources.write_text(self.sources_yaml, encoding="utf-8")
        return sources


def _csv_bytes(header: list[str], rows: list[list], delimiter: str = ",") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows([header, *rows])
    return buffer.getvalue().encode("utf-8")


def _category(product: Product, depth: int) -> list[str | None]:
    levels = [] if product.hidden else list(product.levels)
    return [levels[i] if i < len(levels) else None for i in range(depth)]


# ---- members ---------------------------------------------------------------------------------------------------
def numbered_two_levels() -> ZooShop:
    """Integer product numbers, two category levels and no category_status field, brand and price; orders of the
    same shop in Parquet."""
    products = real_products()
    rows = []
    for number, product in enumerate(products, start=1001):
        top, second = _category(product, 2)
        rows.append([number, product.title, top or "", second or "", product.brand, product.price])
    catalog = _csv_bytes(["product_no", "name", "department", "aisle", "brand", "list_price"], rows)
    sources = textwrap.dedent("""\
        zoo_catalog:
          description: A numbered catalogue, two category levels, no status column.
          owner: zoo@shop.example
          timezone: UTC
          load_kind: snapshot
          cadence: on_change
          files:
            - {name: products.csv, header: true, columns: [product_no, name, department, aisle, brand, list_price]}
          schema:
            - {name: product_no, type: int, min: 1, required: true}
            - {name: name, normalise: [strip, collapse_spaces]}
            - {name: department}
            - {name: aisle}
            - {name: brand}
            - {name: list_price, type: float, min: 0}
          key: [product_no]
          expectations:
            - {expect: ExpectTableRowCountToBeBetween, min_value: 1}
            - {expect: ExpectColumnValuesToBeUnique, column: product_no}
          role:
            name: catalog
            fields: {id: product_no, title: name, category_levels: [department, aisle], brand: brand,
                     price: list_price}
        zoo_orders:
          description: Order lines as Parquet (real UCI invoice lines of one day).
          owner: zoo@shop.example
          timezone: Europe/London
          load_kind: append
          files:
            - {name: orders.parquet, columns: [invoice, sku, quantity, ordered_at, unit_price, customer, country]}
          pseudonymise: {customer: customer_key}
          schema:
            - {name: invoice, required: true}
            - {name: sku, required: true}
            - {name: quantity, type: int, required: true}
            - {name: ordered_at, type: timestamp, required: true}
            - {name: unit_price, type: float, min: 0}
            - {name: customer_key}
            - {name: country}
          rules:
            - {rule: in_partition, column: ordered_at, reason: outside_partition}
          key: [invoice, sku, quantity, ordered_at, unit_price, customer_key]
          role:
            name: orders
            fields: {order_id: invoice, product: sku, quantity: quantity, timestamp: ordered_at,
                     unit_price: unit_price, customer: customer_key, country: country}
        """)
    return ZooShop("numbered_two_levels", "integer keys; two category_levels without category_status; orders as "
                   "Parquet", sources, {("zoo_catalog", "products.csv"): catalog,
                                        ("zoo_orders", "orders.parquet"): orders_parquet()},
                   product_count=len(rows), key_type=int)


def path_without_price_or_brand() -> ZooShop:
    """String SKUs, a category path, no price and no brand; one real top-level class renamed `other` (a real class
    with that name, as a grocery's "other" department is); tab-separated."""
    products = real_products()
    tops = Counter(p.levels[0] for p in products if p.levels and not p.hidden)
    renamed = tops.most_common(3)[2][0]  # a mid-sized real class becomes the real class "other"
    rows = []
    for index, product in enumerate(products):
        levels = [] if product.hidden else ["other" if i == 0 and level == renamed else level
                                            for i, level in enumerate(product.levels)]
        rows.append([f"SKU-{index:05d}", product.title, " > ".join(levels)])
    catalog = _csv_bytes(["sku", "title", "category"], rows, delimiter="\t")
    sessions, per_day = nested_sessions()
    sources = NESTED_EVENTS_SOURCE + textwrap.dedent("""\
        zoo_catalog:
          description: SKUs with a category path, no price, no brand.
          owner: zoo@shop.example
          timezone: UTC
          load_kind: snapshot
          cadence: on_change
          files:
            - {name: catalogue.tsv, header: true, delimiter: "\\t", columns: [sku, title, category]}
          schema:
            - {name: sku, required: true}
            - {name: title}
            - {name: category}
          key: [sku]
          rules:
            - {rule: regex, column: sku, pattern: "SKU-[0-9]{5}", reason: invalid_sku}
          role:
            name: catalog
            fields: {id: sku, title: title, category_path: category}
        """)
    return ZooShop("path_without_price_or_brand", "a category_path; no price and no brand; a real class named "
                   "'other'; nested JSON-lines events whose sessions span days", sources,
                   {("zoo_catalog", "catalogue.tsv"): catalog}, product_count=len(rows), real_other_class=True,
                   exports={"zoo_events": ("sessions-export.jsonl", sessions, "events[].ts")},
                   expected_records={"zoo_events": per_day})


_ACCENTED = str.maketrans({"a": "á", "e": "é", "o": "ö", "n": "ñ", "u": "ü", "c": "ç"})


def one_level_non_ascii() -> ZooShop:
    """One category level with a status column, non-ASCII titles (real titles with accented letters) and
    non-ASCII raw column names, as a Spanish-speaking shop's export might be."""
    products = real_products()
    rows = []
    for index, product in enumerate(products):
        [top] = _category(product, 1)
        status = "ok" if top else "missing"
        rows.append([f"p{index:04d}", product.title.translate(_ACCENTED) + " – edición", top or "", status])
    catalog = _csv_bytes(["código", "título", "categoría", "estado"], rows)
    sources = textwrap.dedent("""\
        zoo_catalog:
          description: Un catálogo con una sola categoría y su estado.
          owner: zoo@shop.example
          timezone: America/Bogota
          load_kind: snapshot
          cadence: on_change
          files:
            - {name: catálogo.csv, header: true, columns: [código, título, categoría, estado]}
          schema:
            - {name: product_code, from: código, required: true}
            - {name: title, from: título, normalise: [nfkc, strip]}
            - {name: category, from: categoría}
            - {name: category_status, from: estado, type: category, values: [ok, missing]}
          key: [product_code]
          role:
            name: catalog
            fields: {id: product_code, title: title, category_levels: [category], category_status: category_status}
        """)
    return ZooShop("one_level_non_ascii", "one category level with category_status; non-ASCII titles and column "
                   "names", sources, {("zoo_catalog", "catálogo.csv"): catalog}, product_count=len(rows))


ZOO = (numbered_two_levels, path_without_price_or_brand, one_level_non_ascii)


# ---- other sources' rows ---------------------------------------------------------------------------------------
ORDERS_DAY = "2010-12-01"  # the real invoice day whose lines the Parquet orders carry, re-dated to DAY


def orders_parquet() -> bytes:
    """The real UCI lines of one day as Parquet with the shop's own column names, moved to DAY (same times)."""
    frame = pd.read_csv(data_path(ORDERS_FILE), dtype=str, keep_default_na=False, encoding="utf-8")
    frame = frame[frame["InvoiceDate"].str.startswith(ORDERS_DAY + " ")].head(400)
    moved = frame["InvoiceDate"].str.replace(ORDERS_DAY, DAY.isoformat(), regex=False)
    shop = pd.DataFrame({"invoice": frame["InvoiceNo"], "sku": frame["StockCode"], "quantity": frame["Quantity"],
                         "ordered_at": moved, "unit_price": frame["UnitPrice"], "customer": frame["CustomerID"],
                         "country": frame["Country"]})
    buffer = io.BytesIO()
    shop.to_parquet(buffer, index=False)
    return buffer.getvalue()


def nested_sessions(days: int = 3, sessions: int = 60) -> tuple[bytes, Counter]:
    """Real Taobao events regrouped into sessions (JSON lines, one line per user and hour window), some spanning
    midnight, over `days` days from DAY; returns the file and the events per local day (Asia/Shanghai)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Asia/Shanghai")
    with gzip.open(data_path(BEHAVIOR_FILE), "rt", encoding="utf-8", newline="") as handle:
        events = [row for _, row in zip(range(20_000), csv.reader(handle))]
    by_user: dict[str, list[list[str]]] = {}
    for row in events:
        by_user.setdefault(row[0], []).append(row)
    start = datetime(DAY.year, DAY.month, DAY.day, 22, 30, tzinfo=zone)  # late evening: sessions cross midnight
    lines, per_day = [], Counter()
    for n, (user, rows) in enumerate(sorted(by_user.items())[:sessions]):
        rows = rows[:8]
        session_start = start.timestamp() + (n % days) * 86_400 + (n * 97) % 7_200
        items = []
        for i, (_, item, category, behaviour, _) in enumerate(rows):
            ts = int(session_start + i * 600)  # ten minutes apart: a session that starts at 23:30 ends after 00:30
            items.append({"item": int(item), "category": int(category), "type": behaviour, "ts": ts})
            per_day[datetime.fromtimestamp(ts, zone).date()] += 1
        lines.append(json.dumps({"session": f"s{n:03d}", "user": user, "device": {"os": "android"},
                                 "events": items}, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode(), per_day


NESTED_EVENTS_SOURCE = textwrap.dedent("""\
    zoo_events:
      description: App sessions, one JSON line per session with its events.
      owner: zoo@shop.example
      timezone: Asia/Shanghai
      load_kind: append
      pseudonymise: {user: user_key}
      files:
        - name: sessions.jsonl
          records: events
          fields: {session_id: session, user: user, os: device.os, item_id: "events[].item",
                   behaviour: "events[].type", ts: "events[].ts"}
      schema:
        - {name: session_id, required: true}
        - {name: user_key, from: user, required: true}
        - {name: item_id, type: int, min: 1, required: true}
        - {name: event_type, from: behaviour, type: category, values: {pv: view, fav: favourite, cart: cart, buy: buy}}
        - {name: event_ts_utc, from: ts, type: timestamp, unit: s, required: true}
      key: [session_id, item_id, event_type, event_ts_utc]
      rules:
        - {rule: in_partition, column: event_ts_utc, reason: outside_partition}
      role:
        name: events
        fields: {user: user_key, item: item_id, event_type: event_type, timestamp: event_ts_utc}
    """)

"""A GENERATED search log, built deterministically from real Flipkart titles, brands and category paths.

No real timestamped search log with clicks exists in the sample data (see SOURCES.md), so the demo makes one:
queries are brand + category words, title prefixes or category names of real products, with realistic noise
(case, spacing, HTML entities, empty queries, late events, repeated events). Each day has a popular set that
drifts, so rising queries exist. Same day -> same rows, byte for byte. Everything built on it says "generated".
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from shopflow.sources.catalog import parse_category_tree

HEADER = ["event_time", "session_id", "user_id", "query", "clicked_product_id"]
USERS = 900


@dataclass(frozen=True)
class Product:
    uniq_id: str
    title: str
    brand: str
    levels: tuple[str, ...]


def load_catalogue_titles(source_data: Path) -> list[Product]:
    brands = {}
    with gzip.open(source_data / "catalog/flipkart_prices_brand.csv.gz", "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            brands[row["uniq_id"]] = row["brand"].strip()
    products = []
    with gzip.open(source_data / "catalog/flipkart_name_category_tree.csv.gz", "rt", encoding="utf-8", newline="") as handle:
        for uniq_id, title, tree in csv.reader(handle):
            levels, status = parse_category_tree(tree, title)
            if levels and title.strip():
                products.append(Product(uniq_id, title.strip(), brands.get(uniq_id, ""), tuple(levels)))
    return products


def _query_for(product: Product, rng: random.Random) -> str:
    words = product.title.split()
    leaf_words = product.levels[-1].split() if product.levels else []
    style = rng.random()
    if style < 0.35 and product.brand and leaf_words:
        query = f"{product.brand} {leaf_words[-1]}"
    elif style < 0.75:
        query = " ".join(words[: rng.randint(2, min(4, max(2, len(words))))])
    else:
        query = product.levels[min(len(product.levels) - 1, rng.randint(1, 2))]
    noise = rng.random()
    if noise < 0.55:
        query = query.lower()
    elif noise < 0.62:
        query = query.upper()
    elif noise < 0.67:
        query = query.replace(" ", "  ", 1) + " "
    elif noise < 0.70:
        query = query.replace("&", "&amp;") + "?"
    return query


def generate_search_log(products: list[Product], day: date) -> tuple[list[str], list[list[str]]]:
    """The generated log of one UTC day: (header, rows) in time order."""
    catalogue_rng = random.Random("shopflow-search-catalogue")
    popular = catalogue_rng.sample(products, k=min(400, len(products)))
    rng = random.Random(f"shopflow-search-{day.isoformat()}")
    # Each day a handful of products trend; they rotate, which gives the report rising queries.
    trending = random.Random(f"shopflow-trending-{day.isocalendar().week}-{day.weekday() // 3}").sample(popular, k=12)
    weights = [1.0 / (rank + 1) for rank in range(len(popular))]
    start = datetime.combine(day, time(), tzinfo=timezone.utc)
    rows = []
    for _ in range(rng.randint(450, 650)):
        product = rng.choice(trending) if rng.random() < 0.25 else rng.choices(popular, weights=weights)[0]
        user = f"u{int(rng.paretovariate(1.2) * 37) % USERS:05d}"
        moment = start + timedelta(seconds=rng.randrange(86400))
        session = hashlib.sha1(f"{user}-{day}-{moment.hour // 3}".encode()).hexdigest()[:16]
        query = "" if rng.random() < 0.01 else _query_for(product, rng)
        clicked = product.uniq_id if query and rng.random() < 0.55 else ""
        if rng.random() < 0.004:
            moment -= timedelta(days=1)  # a late event from yesterday, delivered with today's log
        rows.append([moment.strftime("%Y-%m-%dT%H:%M:%SZ"), session, user, query, clicked])
        if rng.random() < 0.005:
            rows.append(list(rows[-1]))  # the client sent the same event twice
    rows.sort(key=lambda r: r[0])
    return HEADER, rows

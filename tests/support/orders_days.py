"""Real orders days for the hardening and chaos tests: the first invoice lines of 2010-12-01 (UCI Online Retail),
landed into a partition's landing folder, and the pseudonymisation key both suites run under."""

from __future__ import annotations

import gzip
import secrets
from datetime import date
from pathlib import Path

from shopflow.config.settings import Settings
from shopflow.lake import zones as lake

KEY = secrets.token_hex(32)
ORDERS_FILE = "events/online_retail_2010-12-01_to_2011-09-30.csv.gz"


def real_orders_lines(source_data: Path, rows: int = 60) -> list[str]:
    """The header and the first `rows` real invoice lines of 2010-12-01 (UCI Online Retail), newlines kept."""
    with gzip.open(source_data / ORDERS_FILE, "rt", encoding="utf-8", newline="") as handle:
        lines = [next(handle) for _ in range(rows + 1)]
    assert all(",2010-12-01 " in line for line in lines[1:])
    return lines


def land_orders_day(settings: Settings, day: date, lines: list[str]) -> Path:
    path = lake.landing_dir(settings, "orders", day) / "orders.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(lines).encode("utf-8"))
    return path

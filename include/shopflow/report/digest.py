"""The weekly digest: a small downstream consumer of shopflow's validated clean partitions.

A consumer is told which partitions changed (one `(dataset, ds)` per Asset event of `shopflow_clean_<dataset>`;
the day is the event's `extra["ds"]`, else its partition key) and reads only those partitions' **validated** clean
data, never "today". For each partition it writes a day entry, then rebuilds the ISO week's digest from every day
entry written so far for that week:

    $SHOPFLOW_REPORTS_DIR/digests/week=2010-W48/ds=2010-12-01/orders.json   one dataset's day
    $SHOPFLOW_REPORTS_DIR/digests/week=2010-W48/digest.json                 the week: every day entry + totals

A day entry has the clean rows of the partition and what its role says about them: for an orders-role source the
order lines, orders, customers, revenue (sale lines) and net revenue (sales minus cancellations) in the source's
currency; for an events-role source the users and the events per type. A partition the store no longer records as
validated (re-run and failed since the event) is reported as skipped and not read. Writes go through
`shopflow.common.storage` (local paths or an object store), so re-running a digest replaces the same files.

No Airflow here: `dags/shopflow_weekly_digest.py` turns the triggering Asset events into plain dicts.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import date
from typing import Iterable, Mapping

from shopflow.common import storage
from shopflow.common.storage import StoragePath
from shopflow.config.settings import Settings
from shopflow.sources import SourceSpec, load_sources

log = logging.getLogger("shopflow.report.digest")

DIGESTS_FOLDER = "digests"
_DAY_FILE = re.compile(r"ds=(\d{4}-\d{2}-\d{2})/([^/]+)\.json$")


def week_of(ds: date) -> str:
    """The ISO week of a day, e.g. 2010-12-01 -> '2010-W48' (weeks start on Monday)."""
    year, week, _ = ds.isocalendar()
    return f"{year}-W{week:02d}"


def digests_dir(settings: Settings) -> StoragePath:
    return settings.reports_dir / DIGESTS_FOLDER


def day_path(settings: Settings, dataset: str, ds: date) -> StoragePath:
    return digests_dir(settings) / f"week={week_of(ds)}" / f"ds={ds.isoformat()}" / f"{dataset}.json"


def week_path(settings: Settings, week: str) -> StoragePath:
    return digests_dir(settings) / f"week={week}" / "digest.json"


# ---- which partitions the triggering events name ------------------------------------------------------------------
def _day(value) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def triggered_partitions(events: Iterable[Mapping]) -> tuple[list[dict], list[str]]:
    """The `(dataset, ds)` partitions named by Asset events, and why any event was ignored.

    Each event is a plain dict: `dataset` (the dataset whose clean Asset it is), `extra` (the event's extra: `ds`,
    `row_count`), `partition_key` and `source_run_id`. The day is `extra["ds"]`, else the partition key when it is
    a date. Several events of one partition (a re-run) give one entry: the latest event's. Sorted by day, dataset.
    """
    found: dict[tuple[str, str], dict] = {}
    ignored = []
    for event in events:
        extra = event.get("extra") or {}
        day = _day(extra.get("ds")) or _day(event.get("partition_key"))
        if not event.get("dataset") or day is None:
            ignored.append(f"event of {event.get('dataset') or event.get('asset')!r} from run "
                           f"{event.get('source_run_id')!r} names no day (extra {dict(extra)!r}, partition key "
                           f"{event.get('partition_key')!r})")
            continue
        found[(event["dataset"], day.isoformat())] = {
            "dataset": event["dataset"], "ds": day.isoformat(), "event_row_count": extra.get("row_count"),
            "source_run_id": event.get("source_run_id")}
    return [found[key] for key in sorted(found, key=lambda k: (k[1], k[0]))], ignored


# ---- what one validated partition says ---------------------------------------------------------------------------
def _number(value) -> float | int | None:
    if value is None:
        return None
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value


def _orders_measures(frame, spec: SourceSpec) -> dict:
    from shopflow.sources.role_frames import order_lines

    lines = order_lines(frame, spec)
    sales = lines[lines["sale"]]
    measures = {"order_lines": len(lines), "sale_lines": len(sales), "cancellation_lines": len(lines) - len(sales),
                "orders": int(sales["order_id"].nunique()),
                "customers": int(lines["customer"].dropna().nunique()) if "customer" in lines else None,
                "currency": spec.currency}
    if "amount" in lines:
        measures["revenue"] = round(float(sales["amount"].sum()), 2)
        measures["net_revenue"] = round(float(lines["amount"].sum()), 2)
    return measures


def _events_measures(frame, spec: SourceSpec) -> dict:
    from shopflow.sources.role_frames import event_rows

    events = event_rows(frame, spec)
    counts = events["event_type"].astype("string").value_counts().sort_index()
    return {"users": int(events["user"].dropna().nunique()),
            "events_by_type": {str(kind): int(n) for kind, n in counts.items()}}


ROLE_MEASURES = {"orders": _orders_measures, "events": _events_measures}


def day_entry(store, spec: SourceSpec, ds: date, event_row_count: int | None = None) -> dict:
    """The digest of one partition: read from its clean Parquet when the store records it as validated."""
    from shopflow.common.parquet import parquet_columns, read_parquet

    entry = {"dataset": spec.name, "ds": ds.isoformat(), "week": week_of(ds)}
    [partition] = store.partitions(spec.name, ds) or [None]
    if partition is None or partition.status != "validated" or not partition.clean_path:
        state = f"records it as {partition.status}" if partition is not None else "has no record of it"
        return {**entry, "status": "skipped",
                "reason": f"{spec.name} {ds}: the store {state}, not validated; its clean data is not read"}
    path = storage.as_path(partition.clean_path)
    role = spec.role.name if spec.role is not None else None
    measure = ROLE_MEASURES.get(role)
    if measure is not None:
        wanted = {c for name in spec.role.fields for c in spec.role.columns(name)}
        columns = [c for c in parquet_columns(path) if c in wanted]
    else:
        columns = parquet_columns(path)[:1]  # one column is enough to count the rows
    frame = read_parquet(path, columns=columns)
    entry.update(status="validated", role=role, rows=len(frame), clean_path=str(path),
                 airflow_run_id=partition.airflow_run_id)
    if event_row_count is not None and event_row_count != len(frame):
        entry["note"] = (f"the Asset event said {event_row_count} rows; the clean partition now has {len(frame)} "
                         f"(re-run since the event)")
    if measure is not None:
        entry.update({key: _number(value) if not isinstance(value, (dict, str)) else value
                      for key, value in measure(frame, spec).items()})
    return entry


# ---- the week ---------------------------------------------------------------------------------------------------
def week_digest(settings: Settings, week: str) -> dict:
    """The week's digest from every day entry written for it: days -> dataset -> entry, and per-dataset totals."""
    folder = digests_dir(settings) / f"week={week}"
    days: dict[str, dict[str, dict]] = {}
    for path in storage.list_files(folder):
        match = _DAY_FILE.search(str(path).replace("\\", "/"))
        if match:
            days.setdefault(match[1], {})[match[2]] = json.loads(storage.read_bytes(path))
    totals: dict[str, dict] = {}
    for ds in sorted(days):
        for dataset, entry in sorted(days[ds].items()):
            total = totals.setdefault(dataset, {"days_validated": 0, "rows": 0})
            if entry.get("status") != "validated":
                total.setdefault("days_skipped", []).append(ds)
                continue
            total["days_validated"] += 1
            total["rows"] += entry["rows"]
            for key in ("order_lines", "orders", "revenue", "net_revenue"):
                if entry.get(key) is not None:
                    total[key] = round(total.get(key, 0) + entry[key], 2)
            if entry.get("currency"):
                total["currency"] = entry["currency"]
    return {"week": week, "days": {ds: dict(sorted(days[ds].items())) for ds in sorted(days)}, "totals": totals}


def describe(digest: dict) -> str:
    """The week's digest as log lines: one per day and dataset, then the totals."""
    lines = [f"shopflow weekly digest {digest['week']}:"]
    for ds, datasets in digest["days"].items():
        for dataset, entry in datasets.items():
            if entry.get("status") != "validated":
                lines.append(f"  {ds} {dataset}: skipped ({entry.get('reason')})")
                continue
            text = f"  {ds} {dataset}: {entry['rows']:,} clean rows"
            if entry.get("revenue") is not None:
                currency = f" {entry['currency']}" if entry.get("currency") else ""
                text += (f", {entry['orders']:,} orders, revenue {entry['revenue']:,.2f}{currency} "
                         f"(net {entry['net_revenue']:,.2f})")
            if entry.get("events_by_type"):
                text += ", " + ", ".join(f"{kind} {n:,}" for kind, n in entry["events_by_type"].items())
            lines.append(text)
    for dataset, total in digest["totals"].items():
        text = f"  week total {dataset}: {total['days_validated']} day(s), {total['rows']:,} rows"
        if total.get("revenue") is not None:
            text += f", revenue {total['revenue']:,.2f}" + (f" {total['currency']}" if total.get("currency") else "")
        lines.append(text)
    return "\n".join(lines)


def _write_json(path: StoragePath, payload: dict) -> None:
    storage.write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def write_digests(settings: Settings, partitions: Iterable[Mapping], *, run_id: str | None = None) -> dict:
    """Write a day entry per triggered partition (see `triggered_partitions`) and rebuild each week touched.

    Returns a small summary (for XCom): the weeks and their digest paths, and per partition its status and rows.
    """
    from shopflow.store.repository import MetadataStore

    store = MetadataStore(settings.store_url)
    specs = load_sources(settings.sources_file) if settings.sources_file else load_sources()
    written, weeks = [], set()
    for item in partitions:
        ds = date.fromisoformat(item["ds"])
        spec = specs.get(item["dataset"])
        if spec is None:
            log.warning("digest: %s is not a source of the sources file; %s ignored", item["dataset"], ds)
            continue
        entry = {**day_entry(store, spec, ds, item.get("event_row_count")), "digest_run_id": run_id,
                 "source_run_id": item.get("source_run_id")}
        _write_json(day_path(settings, spec.name, ds), entry)
        weeks.add(entry["week"])
        written.append({"dataset": spec.name, "ds": entry["ds"], "status": entry["status"],
                        "rows": entry.get("rows")})
    paths = {}
    for week in sorted(weeks):
        digest = week_digest(settings, week)
        path = week_path(settings, week)
        _write_json(path, digest)
        paths[week] = str(path)
        log.info("%s\n  -> %s", describe(digest), path)
    return {"partitions": written, "weeks": paths}

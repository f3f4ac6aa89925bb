"""What to alert about on a day, decided from the metadata store and the day's report (no Airflow here).

`day_alerts` is what the report task evaluates after writing the report; `run_failure_alerts` is what a failed
run adds (the task ids come from Airflow). Each alert is a small dict:

    {"kind": ..., "day": "YYYY-MM-DD", "dataset": name or None, "what": one line, "details": {...},
     "task": the task id whose log explains it}

Kinds (a day's alerts come in this order):

- `partition_failed`: a partition of the day failed at a step (ingest, clean, validate) with an error that is not
  a failed critical expectation (a malformed landing file, a broken ledger, a required source without files);
- `expectation_failed`: a critical Great Expectations expectation failed on the day's partition (one alert each);
- `drift`: the report's drift section marked DRIFT on a dataset (one alert per dataset, naming every metric);
- `review_backlog`: the day's catalogue repair sent more products to review than the threshold;
- `run_failed`: a task of the day's run failed (from Airflow), with the partition's recorded error if any.

Settings (environment, declared in shopflow.config.options): SHOPFLOW_ALERT_EMAILS (comma-separated recipients;
none: nothing is sent) and SHOPFLOW_ALERT_REVIEW_BACKLOG (the review threshold, default 50).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import date
from typing import Mapping

from shopflow.common import storage
from shopflow.config.options import default, values_of
from shopflow.config.settings import Settings
from shopflow.governance.review import undecided_reviews
from shopflow.store.models import PartitionStatus
from shopflow.store.repository import MetadataStore

DEFAULT_REVIEW_BACKLOG = default("SHOPFLOW_ALERT_REVIEW_BACKLOG")
KINDS = ("partition_failed", "expectation_failed", "drift", "review_backlog", "run_failed")
SHOWN_EXAMPLES = 5  # products named in a review-backlog alert


@dataclass(frozen=True)
class AlertSettings:
    emails: tuple[str, ...] = default("SHOPFLOW_ALERT_EMAILS")
    review_backlog: int = DEFAULT_REVIEW_BACKLOG

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AlertSettings":
        return cls(**values_of("AlertSettings", env))


def _alert(kind: str, day: date | None, dataset: str | None, what: str, details: dict, task: str | None) -> dict:
    return {"kind": kind, "day": day.isoformat() if day else "unknown day", "dataset": dataset, "what": what,
            "details": details, "task": task}


# ---- the day's alerts -------------------------------------------------------------------------------------------
def day_alerts(settings: Settings, ds: date, *, store: MetadataStore | None = None, report: dict | None = None,
               review_backlog: int = DEFAULT_REVIEW_BACKLOG) -> list[dict]:
    """Failed partitions and critical expectations (from the store), DRIFT marks (from the report's drift section;
    `report` is the day's report.json, read from the reports folder when not given) and the repair review backlog
    (from repair_runs / repair_audit) of `ds`."""
    store = store or MetadataStore(settings.store_url)
    if report is None:
        report = load_report(settings, ds)
    return [*failure_alerts(store, ds), *drift_alerts(report, ds), *backlog_alerts(store, ds, review_backlog)]


def load_report(settings: Settings, ds: date) -> dict | None:
    """The day's report.json (the summary `shopflow.report.build` writes), or None when there is none."""
    from shopflow.report.build import report_paths

    path = report_paths(settings, ds)[1]
    if not storage.is_file(path):
        return None
    return json.loads(storage.read_bytes(path))


def failure_alerts(store: MetadataStore, ds: date) -> list[dict]:
    alerts = []
    for partition in store.partitions(ds=ds):
        name = partition.dataset.name
        if partition.status not in (PartitionStatus.FAILED, PartitionStatus.FAILED_VALIDATION):
            continue
        failed = [v for v in store.validations(name, ds) if v.severity == "critical" and not v.success]
        for v in failed:
            observed = v.observed_value if v.observed_value is not None else (
                f"{v.unexpected_percent:.2f}% unexpected" if v.unexpected_percent is not None else None)
            target = f"{v.expectation}({v.column_name})" if v.column_name else v.expectation
            what = f"critical expectation {target} failed" + (f", observed {_short(observed)}"
                                                               if observed is not None else "")
            kwargs = (v.result or {}).get("expectation_config", {}).get("kwargs") or (v.result or {}).get("kwargs")
            alerts.append(_alert("expectation_failed", ds, name, what, {
                "expectation": v.expectation, "column": v.column_name, "observed_value": observed,
                "unexpected_percent": v.unexpected_percent, "kwargs": kwargs, "suite": v.suite,
                "rows_in": partition.rows_in, "rows_clean": partition.rows_clean,
                "rows_quarantined": partition.rows_quarantined,
                "quarantined_by_reason": partition.quarantined_by_reason}, f"{name}.validate"))
        if not failed:
            step, _, error = (partition.error or "unknown: no error recorded").partition(": ")
            alerts.append(_alert("partition_failed", ds, name, f"partition failed at {step}: {_short(error, 300)}",
                                 {"status": str(partition.status), "step": step, "error": partition.error},
                                 f"{name}.{step}" if step in ("ingest", "clean", "validate") else None))
    return alerts


def drift_alerts(report: dict | None, ds: date) -> list[dict]:
    """One alert per dataset whose drift table has DRIFT marks (the report's drift section)."""
    section = next((s for s in (report or {}).get("sections", []) if s.get("id") == "drift"), None)
    if section is None:
        return []
    alerts = []
    for block in section.get("blocks", []):
        if block.get("kind") != "subsection":
            continue
        dataset = block.get("title")
        rows = [row for table in block.get("blocks", []) if table.get("kind") == "table"
                for row in table.get("rows", []) if row.get("marker") == "DRIFT"]
        if not rows:
            continue
        metrics = [{"measure": r["measure"], "column": r.get("column") or None, "today": r.get("today"),
                    "before": r.get("before"), "change": r.get("change"), "threshold": r.get("threshold")}
                   for r in rows]
        compared = (section.get("summary", {}).get(dataset) or {}).get("compared_with", [])
        what = f"DRIFT on {len(metrics)} metric(s): " + "; ".join(_metric(m) for m in metrics)
        alerts.append(_alert("drift", ds, dataset, what, {"metrics": metrics, "compared_with": compared},
                             "report"))
    return alerts


def backlog_alerts(store: MetadataStore, ds: date, threshold: int = DEFAULT_REVIEW_BACKLOG) -> list[dict]:
    """The day's repair sent more products to review than `threshold` (repair_runs, with the audit's rows), not
    counting those a reviewer has decided."""
    run = store.repair_run(ds)
    if run is None:
        return []
    reviews = undecided_reviews(store, ds)
    backlog = len(reviews)
    if backlog <= threshold:
        return []
    from shopflow.sources import roles

    catalogue = roles.model_catalog()
    examples = [{"product": a.uniq_id, "before": a.before, "suggested": a.after, "confidence": round(a.confidence, 3)}
                for a in sorted(reviews, key=lambda a: (-a.confidence, a.uniq_id))[:SHOWN_EXAMPLES]]
    what = (f"repair review backlog {backlog} products (threshold {threshold}): the champion v{run.model_version} "
            f"was below the fill threshold {run.threshold:.2f} on them")
    return [_alert("review_backlog", ds, catalogue.name, what, {
        "backlog": backlog, "threshold": threshold, "model_version": run.model_version,
        "repair_threshold": run.threshold, "rows_in": run.rows_in, "rows_filled": run.rows_filled,
        "rows_flagged": run.rows_flagged, "examples": examples}, "model.repair")]


# ---- a failed run -----------------------------------------------------------------------------------------------
def run_failure_alerts(store: MetadataStore | None, ds: date | None, failed_tasks: list[str], *, run_id: str | None = None,
                       datasets: list[str] | None = None) -> list[dict]:
    """One alert per failed task of the day's run; a task of a source's group names that dataset and the
    partition's recorded error. `datasets`: the source names (default: the sources file's)."""
    if datasets is None:
        from shopflow.sources import load_sources

        datasets = list(load_sources())
    errors = {}
    if store is not None and ds is not None:
        try:
            errors = {p.dataset.name: p.error for p in store.partitions(ds=ds) if p.error}
        except Exception as exc:  # the store may be what failed; the run's failure still has to be told
            errors = {"": f"(the metadata store could not be read: {exc})"}
    alerts = []
    for task in sorted(failed_tasks):
        group = task.split(".", 1)[0]
        dataset = group if group in datasets else None
        error = errors.get(dataset) if dataset else None
        what = f"task {task} failed" + (f": {_short(error, 300)}" if error else "")
        alerts.append(_alert("run_failed", ds, dataset, what, {"task_id": task, "run_id": run_id, "error": error},
                             task))
    if not alerts:
        alerts.append(_alert("run_failed", ds, None, "the run failed (no failed task was found)",
                             {"run_id": run_id, "error": errors.get("")}, None))
    return alerts


# ---- the message ------------------------------------------------------------------------------------------------
def subject(alerts: list[dict], ds: date | str) -> str:
    day = ds if isinstance(ds, str) else ds.isoformat()
    kinds = sorted({a["kind"] for a in alerts}, key=KINDS.index)
    datasets = sorted({a["dataset"] for a in alerts if a["dataset"]})
    if kinds == ["run_failed"]:
        tasks = sorted(a["task"] for a in alerts if a.get("task"))
        head = f"run failed: {', '.join(tasks) or 'no failed task found'}"
    else:
        head = f"{len(alerts)} alert(s): {', '.join(k.replace('_', ' ') for k in kinds)}"
    return f"[shopflow] {day}: {head}" + (f" ({', '.join(datasets)})" if datasets else "")


DAGS_TEST_USER = "dag_test"  # the triggering user `airflow dags test` (Dag.test) gives its run
CONSOLE = "the task's output went to the `airflow dags test` console"


def console_run(run_type: object = None, triggering_user: str | None = None, triggered_by: object = None, *,
                log_exists: bool | None = None) -> bool:
    """Whether the run's task output went to a console instead of task logs: an `airflow dags test` run (run type
    manual, triggered by the user "dag_test", or triggered by `test`), or `log_exists` is False (the caller found
    no log file). Enum values (Airflow's DagRunType, DagRunTriggeredByType) or their strings."""
    def plain(value: object) -> str:
        return str(getattr(value, "value", value) or "").lower()

    if log_exists is False:
        return True
    return (plain(run_type) == "manual" and triggering_user == DAGS_TEST_USER) or plain(triggered_by) == "test"


def log_line(task: str, log: str | None, *, console: bool = False) -> str | None:
    """The line that tells where `task`'s log is: its link, or under `airflow dags test` (no task log is kept)
    that the output went to the console (with the task's page, where there is one)."""
    if console:
        return f"{CONSOLE} ({task}; no task log is kept" + (f", its page: {log})" if log else ")")
    return f"log of {task}: {log}" if log else None


def render(alerts: list[dict], ds: date | str, *, report_url: str | None, log_urls: dict[str, str],
           run_id: str | None = None, console: bool = False) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of one message with every alert of the day: each names the day, the dataset,
    what failed and the log that explains it; the message links the day's report. `console`: the run was an
    `airflow dags test` run (`console_run`), whose task output went to its console: each alert says so instead of
    pointing at a task log that does not exist."""
    day = ds if isinstance(ds, str) else ds.isoformat()
    lines = [f"shopflow alerts for {day}" + (f" (Airflow run {run_id})" if run_id else ""), ""]
    if report_url:
        lines += [f"Report of {day}: {report_url}", ""]
    items = []
    for number, alert in enumerate(alerts, 1):
        task = alert.get("task")
        log = log_urls.get(task) if task else None
        where = log_line(task, log, console=console) if task else None
        lines.append(f"{number}. [{alert['kind']}] day {alert['day']}, dataset {alert['dataset'] or '-'}: "
                     f"{alert['what']}")
        if where:
            lines.append(f"   {where}")
        items.append((alert, log))
    text = "\n".join(lines) + "\n"

    esc = html.escape

    def html_log(alert: dict, log: str | None) -> str:
        task = alert.get("task")
        if task and console:
            page = f", its page: <a href=\"{esc(log)}\">{esc(log)}</a>" if log else ""
            return (f"<br>{esc(CONSOLE).replace('`airflow dags test`', '<code>airflow dags test</code>')} "
                    f"(<code>{esc(task)}</code>; no task log is kept{page})")
        if task and log:
            return f"<br>log of <code>{esc(task)}</code>: <a href=\"{esc(log)}\">{esc(log)}</a>"
        return ""

    rows = "".join(
        f"<li><b>[{esc(a['kind'])}]</b> day <code>{esc(a['day'])}</code>, dataset "
        f"<code>{esc(a['dataset'] or '-')}</code>: {esc(a['what'])}" + html_log(a, log) + "</li>" for a, log in items)
    report_line = (f"<p>Report of {esc(day)}: <a href=\"{esc(report_url)}\">{esc(report_url)}</a></p>"
                   if report_url else "")
    body = (f"<html><body><p>shopflow alerts for <b>{esc(day)}</b>"
            + (f" (Airflow run <code>{esc(run_id)}</code>)" if run_id else "") + f"</p>{report_line}<ol>{rows}</ol>"
            + "<p>Sent by shopflow (SHOPFLOW_ALERT_EMAILS).</p></body></html>")
    return subject(alerts, day), text, body


def _metric(metric: dict) -> str:
    target = f"{metric['measure']} of {metric['column']}" if metric.get("column") else metric["measure"]
    return f"{target} {metric.get('change')} (today {_num(metric.get('today'))}, before {_num(metric.get('before'))}, " \
           f"threshold {metric.get('threshold')})"


def _num(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _short(value, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."

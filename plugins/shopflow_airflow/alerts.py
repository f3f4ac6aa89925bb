"""Alert e-mails through Airflow's notifier interface: what to send is decided by `shopflow.observability.alerts`; delivery is
the SMTP provider's `SmtpNotifier` (connection `smtp_default`, e.g. AIRFLOW_CONN_SMTP_DEFAULT).

- `ShopflowAlertNotifier(alerts)`: sends the given alerts of a day as one message (the report task evaluates the
  day's alerts after writing the report and calls it with its own context);
- `ShopflowRunFailureNotifier()`: the DAG's `on_failure_callback`: when the run has failed, it lists the run's
  failed tasks (with each one's log link and the partition error the store recorded) and sends them.

Recipients come from SHOPFLOW_ALERT_EMAILS (comma-separated); without any, nothing is sent and a log line says
what would have been. SHOPFLOW_ALERT_FROM sets the sender (else the connection's `from_email` extra); the
connection id is SHOPFLOW_ALERT_SMTP_CONN_ID (default `smtp_default`). Links: `[api] base_url` (env
AIRFLOW__API__BASE_URL) + `/shopflow/reports/YYYY-MM-DD` (the report) and + `/dags/<dag>/runs/<run>/tasks/<task>`
(the task's page in the UI, where its log is). Under `airflow dags test` no task log is kept (the output went to
that console): the message says so instead of offering the page as the task's log.

The alert text is data, never a Jinja template: the notifiers have no template fields, and the SMTP notifier is
called with subject and body already rendered.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import date
from urllib.parse import quote

from airflow.sdk import BaseNotifier
from shopflow.config.options import default, value

DEFAULT_SMTP_CONN_ID = default("SHOPFLOW_ALERT_SMTP_CONN_ID")
FAILED_STATES = ("failed",)


def base_url() -> str:
    from airflow.sdk.configuration import conf

    url = conf.get("api", "base_url", fallback=None) or os.environ.get("AIRFLOW__API__BASE_URL") \
        or "http://localhost:8080"
    return url.rstrip("/")


def report_url(ds: str) -> str:
    return f"{base_url()}/shopflow/reports/{ds}"


def task_url(dag_id: str, run_id: str, task_id: str, try_number: int | None = None) -> str:
    """The task instance's page in the Airflow UI (its Logs tab), as `TaskInstance.log_url` builds it."""
    url = f"{base_url()}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    return url + (f"?try_number={try_number}" if try_number else "")


def _connection_sender(conn_id: str) -> str | None:
    """The connection's `from_email` extra (what SmtpNotifier would fall back to, resolved here so that it has
    nothing left to render)."""
    from airflow.sdk import Connection

    try:
        return Connection.get(conn_id).extra_dejson.get("from_email")
    except Exception:  # no such connection: SmtpNotifier says so when it connects
        return None


def _context_ds(context) -> str | None:
    if context.get("ds"):
        return str(context["ds"])
    dag_run = context.get("dag_run")
    logical = getattr(dag_run, "logical_date", None) if dag_run is not None else None
    return logical.date().isoformat() if logical is not None else None


class ShopflowAlertNotifier(BaseNotifier):
    """Send shopflow alerts (dicts of `shopflow.observability.alerts`) of one day as one e-mail via `SmtpNotifier`."""

    template_fields = ()

    def __init__(self, alerts: list[dict] | None = None, *, to: str | Iterable[str] | None = None,
                 from_email: str | None = None, smtp_conn_id: str | None = None):
        super().__init__()
        self.alerts = alerts
        self.to = to
        self.from_email = from_email
        self.smtp_conn_id = smtp_conn_id

    def render_template_fields(self, context, jinja_env=None) -> None:
        """Nothing to render (no template fields). Not building a Jinja environment also matters under `airflow
        dags test`, which hands DAG callbacks a context whose `dag` is a SerializedDAG without one."""

    def collect(self, context) -> list[dict]:
        """The alerts to send (subclasses compute them from the context)."""
        return list(self.alerts or [])

    def recipients(self) -> list[str]:
        from shopflow.observability.alerts import AlertSettings

        if self.to:
            return [self.to] if isinstance(self.to, str) else list(self.to)
        return list(AlertSettings.from_env().emails)

    def notify(self, context) -> None:
        from shopflow.observability.alerts import render

        found = self.collect(context)
        ds = _context_ds(context) or (found[0]["day"] if found else "unknown day")
        if not found:
            self.log.info("shopflow alerts for %s: nothing to alert about", ds)
            return
        run_id = context.get("run_id")
        dag_id = getattr(context.get("dag"), "dag_id", None) or "shopflow_daily"
        ti = context.get("ti")
        log_urls = {}
        for alert in found:
            task = alert.get("task")
            if task and run_id:
                own = ti is not None and getattr(ti, "task_id", None) == task
                log_urls[task] = task_url(dag_id, run_id, task, getattr(ti, "try_number", None) if own else None)
        known_day = ds[:4].isdigit()
        subject, text, html = render(found, ds, report_url=report_url(ds) if known_day else None, log_urls=log_urls,
                                     run_id=run_id, console=is_dags_test(context))
        to = self.recipients()
        if not to:
            self.log.info("shopflow alerts for %s: %d alert(s), not sent: no recipients configured "
                          "(SHOPFLOW_ALERT_EMAILS is not set)\n%s", ds, len(found), text)
            return
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        conn_id = self.smtp_conn_id or value("SHOPFLOW_ALERT_SMTP_CONN_ID")
        sender = self.from_email or value("SHOPFLOW_ALERT_FROM") or _connection_sender(conn_id)
        # notify(), not __call__, and every field given: the subject and body are final text, not templates.
        SmtpNotifier(to=to, from_email=sender, subject=subject, html_content=html, smtp_conn_id=conn_id).notify(context)
        self.log.info("shopflow alerts for %s: %d alert(s) sent to %s via connection %s: %s\n%s", ds, len(found),
                      ", ".join(to), conn_id, subject, text)


class ShopflowRunFailureNotifier(ShopflowAlertNotifier):
    """The DAG's on_failure_callback: one message naming every failed task of the run with its log link.

    It runs once the run is final (Airflow 3: in the dag-processor; under `airflow dags test`, in that process), so
    the day's report has been written and every failed task is known."""

    def collect(self, context) -> list[dict]:
        from shopflow.observability.alerts import run_failure_alerts
        from shopflow.store.repository import MetadataStore

        from shopflow_airflow.connections import task_settings

        run_id = context.get("run_id")
        dag_id = getattr(context.get("dag"), "dag_id", None) or "shopflow_daily"
        failed = failed_tasks(dag_id, run_id, self.log)
        # The watcher task fails on purpose when another task failed; name it only when it is the only failure.
        failed = [t for t in failed if t != "fail_if_any_task_failed"] or failed
        ds = _context_ds(context)
        try:
            store = MetadataStore(task_settings().store_url)
        except Exception:  # the store's settings may be what is broken; the failure is still told
            self.log.exception("metadata store not available for the failure alert")
            store = None
        return run_failure_alerts(store, date.fromisoformat(ds) if ds else None, failed,
                                  run_id=run_id)


def is_dags_test(context) -> bool:
    """Whether the context's run is an `airflow dags test` run (its task output went to that console, no task log
    is kept): run type manual with triggering user "dag_test", or triggered by `test` (`Dag.test`)."""
    from shopflow.observability.alerts import console_run

    dag_run = context.get("dag_run")
    if dag_run is None:
        return False
    return console_run(getattr(dag_run, "run_type", None), getattr(dag_run, "triggering_user_name", None),
                       getattr(dag_run, "triggered_by", None))


def _state(state) -> str:
    return str(getattr(state, "value", state))


def failed_tasks(dag_id: str, run_id: str | None, log) -> list[str]:
    """Task ids of the run in a failed state: through the Task SDK's supervisor channel (a worker, the
    dag-processor's callback process), else through Airflow's database (`airflow dags test` runs the DAG callbacks
    in its own process, which has no supervisor channel)."""
    if not run_id:
        return []
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, run_ids=[run_id])
        return sorted(task for task, state in states.get(run_id, {}).items() if _state(state) in FAILED_STATES)
    except Exception as exc:  # no supervisor channel in this process
        log.info("task states not available through the Task SDK (%s); reading Airflow's database", exc)
    try:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(select(TaskInstance.task_id, TaskInstance.state).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)).all()
        return sorted(task for task, state in rows if _state(state) in FAILED_STATES)
    except Exception:
        log.exception("could not read the failed tasks of run %s", run_id)
        return []

"""`model.review`: announce the day's catalogue review batch in Airflow's Required Actions inbox, wait for it, bounded.

Per-item decisions are made on the shopflow review page (or the CLI): a human-in-the-loop form asks one question per
task, which does not fit hundreds of items (see `shopflow.governance.review`). This task is the batch's announcement and its
close: a HITLOperator with the options **Reviewed** and **Later** and one optional field, `accept_min_confidence`
(Reviewed + a confidence accepts every still-pending suggestion at or above it, recorded with the responder's name).

It never blocks an unattended run:
- `response_timeout` (default 12 hours; SHOPFLOW_REVIEW_TIMEOUT_MINUTES overrides it when the task runs) is enforced
  by the scheduler, which then answers the default, **Later**: the items stay unreviewed, the task succeeds;
- SHOPFLOW_REVIEW_TIMEOUT_MINUTES=0, a backfill run, and a run of `airflow dags test` (no scheduler there applies a
  timeout: it would wait forever) do not wait at all: the task logs the counts and the page's link and succeeds;
- a day with nothing pending (or no repair) is skipped;
- the daily report does not wait for it.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Sequence

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param
from airflow.sdk.exceptions import AirflowSkipException

from shopflow_airflow.connections import task_settings

REVIEWED, LATER = "Reviewed", "Later"
TIMEOUT_VARIABLE = "SHOPFLOW_REVIEW_TIMEOUT_MINUTES"
DAG_TEST_USER = "dag_test"  # the triggering user of the runs `airflow dags test` / dag.test() create


class ReviewGateOperator(HITLOperator):
    """Announce the day's pending catalogue review items (Required Actions) and wait, at most response_timeout."""

    template_fields: Sequence[str] = ("subject", "body", "partition_ds")
    ui_color = "#fdf3e1"

    def __init__(self, *, partition_ds: str = "{{ ds }}", source: str | None = None,
                 response_timeout: timedelta = timedelta(hours=12), **kwargs: Any):
        own_subject = "subject" not in kwargs
        super().__init__(
            subject=kwargs.pop("subject", "Catalogue review"),
            options=[REVIEWED, LATER], defaults=[LATER], multiple=False, response_timeout=response_timeout,
            params={"accept_min_confidence": Param(
                None, type=["null", "number"], minimum=0, maximum=1, title="Accept pending suggestions at confidence >=",
                description="Optional, with Reviewed: accept every still-pending suggestion at or above this confidence")},
            **kwargs)
        self.partition_ds = partition_ds
        self.source = source
        self.own_subject = own_subject  # the default subject names the day and the count when it runs

    def execute(self, context) -> Any:
        from shopflow.governance import review
        from shopflow.store.repository import MetadataStore

        settings = task_settings()
        ds = date.fromisoformat(self.partition_ds)
        counts = review.summary(settings, MetadataStore(settings.store_url), ds, self.source)
        link = self.page_link(ds)
        if not counts["pending"]:
            raise AirflowSkipException(f"{counts['source']} {ds}: nothing pending review ({counts['total']} items, "
                                       f"decided {counts['decided']})")
        timeout = self._timeout()
        reason = self._no_wait_reason(context, timeout)
        self.log.info("%s %s: %d items pending review (%d to review, %d flagged); decide them at %s", counts["source"],
                      ds, counts["pending"], counts["pending_by_action"]["review"], counts["pending_by_action"]["flag"],
                      link)
        if reason:
            self.log.info("not waiting for reviewers: %s; the items stay pending", reason)
            return {**counts, "waited": False, "reason": reason, "page": link}
        self.response_timeout = timeout
        if self.own_subject:
            self.subject = f"Catalogue review of {counts['source']} {ds}: {counts['pending']} items pending"
        self.body = (
            f"**{counts['pending']}** products of the `{counts['source']}` catalogue wait for a decision on {ds}: "
            f"{counts['pending_by_action']['review']} sent to review (no confident fill) and "
            f"{counts['pending_by_action']['flag']} flagged (a confident model disagrees with the given category); "
            f"{counts['by_action']['fill']} model fills may be checked too.\n\n"
            f"Decide them on the [review page]({link}) (or `python -m shopflow review list {ds}`), then answer "
            f"**{REVIEWED}**; with a confidence, every still-pending suggestion at or above it is accepted in your name.\n\n"
            f"Without an answer by the timeout ({timeout}), **{LATER}** is taken: the items stay unreviewed and the run "
            f"goes on.")
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> dict:
        from shopflow.governance import review
        from shopflow.store.repository import MetadataStore

        answer = super().execute_complete(context, event)
        chosen, params = answer["chosen_options"][0], answer.get("params_input") or {}
        user = answer.get("responded_by_user") or None
        settings = task_settings()
        store = MetadataStore(settings.store_url)
        ds = date.fromisoformat(self.partition_ds)
        accepted = None
        minimum = params.get("accept_min_confidence")
        if user is None:
            self.log.info("no answer within the timeout: %s taken; the pending items stay unreviewed", chosen)
        elif chosen == REVIEWED and minimum is not None:
            reviewer = user.get("name") or user.get("id") or "unknown"
            accepted = review.accept_pending(settings, store, ds, float(minimum), reviewer, source=self.source,
                                             via="hitl")
            self.log.info("%s: accepted %d pending suggestions at confidence >= %s", reviewer, accepted["recorded"]
                          + accepted["replaced"], minimum)
        counts = review.summary(settings, store, ds, self.source)
        self.log.info("%s %s after review: %d pending, decided %s", counts["source"], ds, counts["pending"],
                      counts["decided"])
        return {**counts, "waited": True, "answer": chosen, "timed_out": user is None,
                "responded_by": user.get("name") if user else None,
                "accepted": None if accepted is None else accepted["recorded"] + accepted["replaced"]}

    def page_link(self, ds: date) -> str:
        from airflow.providers.common.compat.sdk import conf

        base = (conf.get("api", "base_url", fallback=None) or "").rstrip("/")
        return f"{base}/shopflow/review/{ds.isoformat()}"

    def _timeout(self) -> timedelta:
        """SHOPFLOW_REVIEW_TIMEOUT_MINUTES when set (0: do not wait; not a number, or negative: a
        ConfigurationError naming it), else the operator's response_timeout."""
        from shopflow.config.options import given

        minutes = given(TIMEOUT_VARIABLE)
        return self.response_timeout if minutes is None else timedelta(minutes=minutes)

    @staticmethod
    def _no_wait_reason(context, timeout: timedelta) -> str | None:
        dag_run = context["dag_run"]
        if timeout <= timedelta(0):
            return f"{TIMEOUT_VARIABLE}=0"
        run_type = getattr(dag_run, "run_type", None)
        if getattr(run_type, "value", run_type) == "backfill":
            return "a backfill run (history is reviewed on the page, not waited for)"
        if getattr(dag_run, "triggering_user_name", None) == DAG_TEST_USER:
            return "a run of `airflow dags test`, where no scheduler would end the wait at its timeout"
        return None

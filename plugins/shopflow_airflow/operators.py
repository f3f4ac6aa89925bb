"""Operators, one per step: each names the library function it runs (`shopflow.steps.partition` for a partition's
ingest, clean and validate; `shopflow.steps.model_branch` for the day's model steps; `shopflow.report.build`).
The library is imported inside `run_step`/`execute`, never at DAG parse time.

The partition day is the run's logical date (`ds`). Data errors (a malformed landing file, a failed critical
expectation, a broken ledger) fail at once without retries: re-running cannot fix them. Anything else (a locked
database, a full disk) is retried with the DAG's retry policy. Every failure is recorded in the metadata store.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Sequence

from airflow.sdk import Asset, BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from shopflow_airflow.connections import task_settings
from shopflow_airflow.shopflow_openlineage import OpenLineageMixin, ReportOpenLineageMixin


class PartitionStepOperator(OpenLineageMixin, BaseOperator):
    """Base: run one step of one partition (`run_step`) and return its small summary dict."""

    step: str = ""  # the step's name in the metadata store, the task log and OpenLineage
    template_fields: Sequence[str] = ("partition_ds",)
    ui_color = "#e8f4ea"

    def __init__(self, *, dataset: str, partition_ds: str = "{{ ds }}", **kwargs: Any):
        super().__init__(**kwargs)
        self.dataset = dataset
        self.partition_ds = partition_ds

    def execute(self, context) -> dict:
        from shopflow.common.landing_file import LandingFileError
        from shopflow.common.redaction import redact
        from shopflow.ingest.folder import LandingFolderError
        from shopflow.sources.ledger import LedgerMismatch
        from shopflow.steps.partition import PartitionMissing, RequiredPartitionMissing, ValidationFailed
        from shopflow.store.repository import MetadataStore

        settings = task_settings()
        ds = date.fromisoformat(self.partition_ds)
        run_id = context["run_id"]
        self.log.info("%s of %s for ds=%s (run %s); store %s", self.step, self.dataset, ds, run_id,
                      MetadataStore(settings.store_url).engine.url.render_as_string(hide_password=True))
        try:
            result = self.run_step(settings, ds, run_id)
        except PartitionMissing as exc:
            raise AirflowSkipException(str(exc)) from exc
        except (LandingFileError, LandingFolderError, LedgerMismatch, ValidationFailed,
                RequiredPartitionMissing) as exc:  # recorded by the step itself, like any failure
            raise AirflowFailException(redact(str(exc))) from exc
        self.after_step(context, result)
        return result

    def run_step(self, settings, ds: date, run_id: str) -> dict:
        raise NotImplementedError

    def after_step(self, context, result: dict) -> None:
        """Hook for subclasses (e.g. publishing an Asset event)."""


class ModelStepOperator(OpenLineageMixin, BaseOperator):
    """Base: run one model step of the day (`run_step`, a function of `shopflow.steps.model_branch`). A step with
    nothing to do today is skipped; a deterministic error (the catalogue cannot be used as declared, a bad setting or
    sources file) fails at once without retries; anything else is raised and retried."""

    step: str = ""  # the step's name in the metadata store, the task log and OpenLineage

    template_fields: Sequence[str] = ("partition_ds",)
    ui_color = "#e8eef8"

    # What a step's Asset event carries of its summary (when the step publishes an Asset).
    ASSET_EXTRA = ("ds", "source", "products_in", "products_in_clusters", "singletons", "clusters", "accepted_pairs")

    def __init__(self, *, partition_ds: str = "{{ ds }}", asset: Asset | None = None, **kwargs: Any):
        if asset is not None:
            kwargs["outlets"] = [*kwargs.get("outlets", []), asset]
        super().__init__(**kwargs)
        self.partition_ds = partition_ds
        self.asset = asset

    def execute(self, context) -> dict:
        from shopflow.common.errors import ConfigurationError, ModelInputError
        from shopflow.common.redaction import redact
        from shopflow.sources import SourcesFileError
        from shopflow.steps.model_branch import NothingToDo

        settings = task_settings()
        ds = date.fromisoformat(self.partition_ds)
        self.log.info("%s for ds=%s (run %s)", self.step, ds, context["run_id"])
        try:
            result = self.run_step(settings, ds, context["run_id"])
        except NothingToDo as exc:
            raise AirflowSkipException(str(exc)) from exc
        except (ModelInputError, ConfigurationError, SourcesFileError) as exc:  # re-running cannot fix these
            raise AirflowFailException(redact(str(exc))) from exc
        if self.asset is not None:  # a skipped or failed step updates no Asset
            context["outlet_events"][self.asset].extra = {k: result[k] for k in self.ASSET_EXTRA if k in result}
        return result

    def run_step(self, settings, ds: date, run_id: str) -> dict:
        raise NotImplementedError


class TrainingGateOperator(ModelStepOperator):
    """Decide whether today trains (enough changed labels, or the champion too old); skipped when it does not."""

    step = "training_gate"

    def run_step(self, settings, ds: date, run_id: str) -> dict:
        from shopflow.steps.model_branch import training_gate

        return training_gate(settings, ds, run_id)


class TrainCandidatesOperator(ModelStepOperator):
    """Train every candidate on the grouped split in a fresh interpreter (CUDA where the worker has it)."""

    step = "train"

    def run_step(self, settings, ds: date, run_id: str) -> dict:
        from shopflow.steps.model_branch import train

        return train(settings, ds, run_id)


class BlessCandidateOperator(ModelStepOperator):
    """Bless the proposed candidate as champion when it beats the champion on the held-out evidence."""

    step = "bless_candidate"

    def run_step(self, settings, ds: date, run_id: str) -> dict:
        from shopflow.steps.model_branch import bless_candidate

        return bless_candidate(settings, ds, run_id)


class RepairCatalogOperator(ModelStepOperator):
    """Repair the day's catalogue partition with the champion: fills, review items and flags, audited."""

    step = "repair"

    def run_step(self, settings, ds: date, run_id: str) -> dict:
        from shopflow.steps.model_branch import repair

        return repair(settings, ds, run_id)


class SearchIntentOperator(ModelStepOperator):
    """Attribute the day's search queries to categories with the champion."""

    step = "search_intent"

    def run_step(self, settings, ds: date, run_id: str) -> dict:
        from shopflow.steps.model_branch import search_intent

        return search_intent(settings, ds, run_id)


class FindDuplicatesOperator(ModelStepOperator):
    """Near-duplicate clusters of the model catalogue as of the day; publishes the catalog_duplicates Asset."""

    step = "find_duplicates"

    def run_step(self, settings, ds: date, run_id: str) -> dict:
        from shopflow.steps.model_branch import find_duplicates

        return find_duplicates(settings, ds, run_id)


class IngestPartitionOperator(PartitionStepOperator):
    """Landing files of the day -> raw Parquet (user ids pseudonymised); files, sizes and sha256 recorded."""

    step = "ingest"

    def run_step(self, settings, ds: date, run_id: str) -> dict:
        from shopflow.steps.partition import ingest

        return ingest(settings, self.dataset, ds, run_id)


class CleanPartitionOperator(PartitionStepOperator):
    """Raw Parquet -> clean + quarantine Parquet; the row ledger is checked and recorded."""

    step = "clean"

    def run_step(self, settings, ds: date, run_id: str) -> dict:
        from shopflow.steps.partition import clean

        return clean(settings, self.dataset, ds, run_id)


class ValidatePartitionOperator(PartitionStepOperator):
    """Great Expectations gate on the clean partition; publishes the dataset's Asset when it passes."""

    step = "validate"

    def run_step(self, settings, ds: date, run_id: str) -> dict:
        from shopflow.steps.partition import validate

        return validate(settings, self.dataset, ds, run_id)

    def __init__(self, *, asset: Asset, **kwargs: Any):
        super().__init__(outlets=[asset], **kwargs)
        self.asset = asset

    def after_step(self, context, result: dict) -> None:
        context["outlet_events"][self.asset].extra = {
            "ds": result["ds"],
            "row_count": result["rows"],
            "warning_failures": result["warning_failures"],
        }


class DailyReportOperator(ReportOpenLineageMixin, BaseOperator):
    """Write the day's shop report (HTML + JSON) from the store and the lake and record it; publishes the report
    Asset. Meant to run last with trigger rule all_done, so a day with a failed partition still gets its report."""

    template_fields: Sequence[str] = ("partition_ds",)
    ui_color = "#f8f0e3"

    def __init__(self, *, asset: Asset, partition_ds: str = "{{ ds }}", **kwargs: Any):
        super().__init__(outlets=[asset], **kwargs)
        self.asset = asset
        self.partition_ds = partition_ds

    def execute(self, context) -> dict:
        from shopflow.report.build import ReportIncomplete, build_report
        from shopflow_airflow.alerts import failed_tasks

        ds = date.fromisoformat(self.partition_ds)
        self.log.info("report for ds=%s (run %s)", ds, context["run_id"])
        settings = task_settings()
        # The run's failed tasks so far (the report runs last, all_done): a failed model step is no partition's
        # failure, so only Airflow knows it; the report's status and header name it.
        failed = failed_tasks(context["dag"].dag_id, context["run_id"], self.log)
        try:
            result = build_report(settings, ds, run_id=context["run_id"], failed_tasks=failed)
        except ReportIncomplete as exc:  # written, but a section is broken: a code bug, not a transient error
            try:
                self.send_alerts(context, settings, ds)
            except Exception:  # the broken report is the error to raise
                self.log.exception("the day's alerts could not be evaluated or sent")
            raise AirflowFailException(str(exc)) from exc
        context["outlet_events"][self.asset].extra = {"ds": result["ds"], "status": result["status"],
                                                      "html": result["html"]}
        result["alerts"] = self.send_alerts(context, settings, ds)
        return result

    def send_alerts(self, context, settings, ds: date) -> int:
        """Evaluate the day's alerts (shopflow.observability.alerts) from the store and the report just written, and
        send them (SHOPFLOW_ALERT_EMAILS; none set: logged, not sent). Returns how many there were."""
        from shopflow.observability.alerts import AlertSettings, day_alerts

        from shopflow_airflow.alerts import ShopflowAlertNotifier

        found = day_alerts(settings, ds, review_backlog=AlertSettings.from_env().review_backlog)
        ShopflowAlertNotifier(found).notify(context)
        return len(found)

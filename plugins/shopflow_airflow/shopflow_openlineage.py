"""OpenLineage for the shopflow operators: `shopflow.observability.lineage` (plain dicts) -> `OperatorLineage`.

The apache-airflow-providers-openlineage listener calls `get_openlineage_facets_on_start()` when a task starts and
`get_openlineage_facets_on_complete(task_instance)` / `..._on_failure(task_instance)` when it ends (in a forked
child of the task process, within `[openlineage] execution_timeout`). The provider cannot translate the
`shopflow://` Assets (no converter for the scheme), so the operators name the real files instead. Building the
lineage never fails a task: any error is logged and the event goes out without datasets.

Nothing of OpenLineage is imported at DAG parse time; with OpenLineage off (no transport configured) these methods
are never called. (Not `openlineage.py`: Airflow imports every file of the plugins folder as a top-level module of
its file name, which would shadow the `openlineage` package.)
"""

from __future__ import annotations

import functools
import logging
from datetime import date

log = logging.getLogger("shopflow.openlineage")


@functools.cache
def _facet_classes():
    import attr
    from openlineage.client.facet_v2 import DatasetFacet

    @attr.define
    class ShopflowModelDatasetFacet(DatasetFacet):
        """A model directory of the shopflow registry: name, version, status, base model, training day, metrics."""

        name: str
        version: int
        status: str
        baseModel: str  # noqa: N815 - OpenLineage facets are camelCase
        trainedOnDs: str  # noqa: N815
        metrics: dict = attr.field(factory=dict)

        @staticmethod
        def _get_schema() -> str:
            return "https://shopflow.example/spec/facets/1-0-0/ShopflowModelDatasetFacet.json"

    return ShopflowModelDatasetFacet


def _dataset_facets(facts: dict) -> dict:
    from openlineage.client.facet_v2 import column_lineage_dataset as cl
    from openlineage.client.facet_v2 import dataset_version_dataset, schema_dataset, symlinks_dataset

    facets = {}
    if facts.get("schema"):
        facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=[
            schema_dataset.SchemaDatasetFacetFields(name=f["name"], type=f.get("type"), ordinal_position=i)
            for i, f in enumerate(facts["schema"], start=1)])
    if facts.get("version"):
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=facts["version"])
    if facts.get("logical"):
        facets["symlinks"] = symlinks_dataset.SymlinksDatasetFacet(
            identifiers=[symlinks_dataset.Identifier(**facts["logical"])])
    if facts.get("column_lineage"):
        fields = {}
        for column, entry in facts["column_lineage"].items():
            transformation = cl.Transformation(type="DIRECT", subtype=entry.get("subtype"),
                                               description=entry.get("description"),
                                               masking=bool(entry.get("masking", False)))
            fields[column] = cl.Fields(
                inputFields=[cl.InputField(namespace=i["namespace"], name=i["name"], field=i["field"],
                                           transformations=[transformation]) for i in entry["inputs"]],
                transformationType="MASKED" if entry.get("masking") else
                ("IDENTITY" if entry.get("subtype") == "IDENTITY" else None),
                transformationDescription=entry.get("description"))
        facets["columnLineage"] = cl.ColumnLineageDatasetFacet(fields=fields)
    if facts.get("model"):
        model = facts["model"]
        facets["shopflow_model"] = _facet_classes()(
            name=model["name"], version=model["version"], status=model["status"], baseModel=model["base_model"],
            trainedOnDs=model["trained_on_ds"], metrics=model.get("metrics", {}))
    return facets


def input_dataset(facts: dict):
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import data_quality_assertions_dataset as dq
    from openlineage.client.facet_v2 import data_quality_metrics_input_dataset, input_statistics_input_dataset

    input_facets = {}
    if facts.get("stats"):
        input_facets["inputStatistics"] = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
            **facts["stats"])
    if facts.get("assertions") is not None:
        input_facets["dataQualityAssertions"] = dq.DataQualityAssertionsDatasetFacet(assertions=[
            dq.Assertion(**{k: v for k, v in a.items() if v is not None}) for a in facts["assertions"]])
    if facts.get("row_count") is not None:
        input_facets["dataQualityMetrics"] = data_quality_metrics_input_dataset.DataQualityMetricsInputDatasetFacet(
            columnMetrics={}, rowCount=facts["row_count"])
    return InputDataset(namespace=facts["namespace"], name=facts["name"], facets=_dataset_facets(facts),
                        inputFacets=input_facets)


def output_dataset(facts: dict):
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset as stats

    output_facets = {}
    if facts.get("stats"):
        output_facets["outputStatistics"] = stats.OutputStatisticsOutputDatasetFacet(**facts["stats"])
    return OutputDataset(namespace=facts["namespace"], name=facts["name"], facets=_dataset_facets(facts),
                         outputFacets=output_facets)


def operator_lineage(facts: dict):
    """`{"inputs": [...], "outputs": [...]}` of shopflow.observability.lineage as the provider's OperatorLineage."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=[input_dataset(d) for d in facts.get("inputs", [])],
                           outputs=[output_dataset(d) for d in facts.get("outputs", [])])


class OpenLineageMixin:
    """Gives an operator with `partition_ds` (and `step`, or `lineage_step`; `dataset` for a partition step) the
    provider's OpenLineage methods. The settings are resolved in `pre_execute` (in the task process, where Airflow
    connections can be read), so the forked child that builds the COMPLETE event only reads the store and the lake."""

    lineage_step: str = ""

    def pre_execute(self, context) -> None:
        self._shopflow_lineage_settings = None
        try:
            from airflow.providers.openlineage import conf

            if not conf.is_disabled():
                from shopflow_airflow.connections import task_settings

                self._shopflow_lineage_settings = task_settings()
        except Exception:  # noqa: BLE001 - provider absent, or settings the task itself will report on
            pass
        super().pre_execute(context)

    def get_openlineage_facets_on_start(self):
        return self._shopflow_lineage(None)

    def get_openlineage_facets_on_complete(self, task_instance):
        return self._shopflow_lineage(task_instance)

    def get_openlineage_facets_on_failure(self, task_instance):
        return self._shopflow_lineage(task_instance)

    def _shopflow_lineage(self, task_instance):
        step = self.lineage_step or getattr(self, "step", "")
        try:
            from shopflow.config.settings import Settings
            from shopflow.observability import lineage as lineage_facts

            settings = getattr(self, "_shopflow_lineage_settings", None) or Settings.from_env()
            ds = date.fromisoformat(self.partition_ds)
            dataset = getattr(self, "dataset", None)
            if task_instance is None:
                facts = lineage_facts.planned(step, settings, ds, dataset)
            else:
                store = lineage_facts.open_store(settings.store_url)
                try:
                    facts = lineage_facts.recorded(step, settings, store, ds, task_instance.run_id, dataset)
                finally:
                    store.engine.dispose()
            return operator_lineage(facts)
        except Exception:  # noqa: BLE001 - lineage must never fail (or change) the task
            log.warning("OpenLineage: could not build the lineage of %s (%s); the event goes out without datasets",
                        getattr(self, "task_id", "?"), step, exc_info=True)
            return None


class ReportOpenLineageMixin(OpenLineageMixin):
    lineage_step = "report"

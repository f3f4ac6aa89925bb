"""What each step of a day read and wrote, as plain dicts for a lineage backend (no Airflow, no OpenLineage here).

`recorded(step, ...)` builds the facts of a finished (or failed) step from what that step recorded in the metadata
store under the same Airflow run (its lineage edge, the partition's files and row ledger, the validation results,
the model registry, the repair run, the report row: the numbers the step returned) and from the Parquet footers of
its outputs (schema, never rows). `planned(step, ...)` gives the datasets a step is about to read and write, from
the lake layout alone (for the START event). `plugins/shopflow_airflow/shopflow_openlineage.py` turns both into OpenLineage
datasets and facets.

The facts of one step: `{"inputs": [dataset, ...], "outputs": [dataset, ...]}`. A dataset is a dict with
`namespace` and `name` (OpenLineage naming: a local file is namespace `file`, name its absolute path; an object is
namespace `<scheme>://<bucket>`, name its key) and optionally:

| key            | what                                                                                         |
|----------------|----------------------------------------------------------------------------------------------|
| schema         | [{name, type}] (the clean schema's pandas dtypes for a clean partition, Arrow types otherwise)|
| stats          | {rowCount, size (bytes), fileCount}: rows and bytes read (an input) or written (an output)   |
| version        | the file's sha256 (landing files, reports)                                                   |
| column_lineage | {output column: {inputs: [{namespace, name, field}], subtype, description, masking}}         |
| assertions     | the Great Expectations results: [{assertion, success, column, severity, name, expected, ...}]|
| row_count      | rows the data-quality checks saw (validate's input)                                          |
| logical        | {namespace: "shopflow", name: "<zone>.<dataset>", type}: the dataset a daily partition is of |
| model          | {name, version, status, base_model, trained_on_ds, metrics}: a trained model directory       |

Column lineage: a declared source maps every schema column to its raw column (`from`; a pseudonymised id column is
its token column in the raw zone), a derived column (`expression`) to the raw columns of the clean columns its
expression names; a cleaner module may declare `COLUMN_LINEAGE` (clean column -> raw columns); a column that
neither says is left out rather than guessed.
"""

from __future__ import annotations

import logging
import posixpath
import re
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from shopflow.common import storage
from shopflow.config.settings import Settings
from shopflow.lake import zones as lake
from shopflow.sources import SourceSpec, get_source
from shopflow.sources.cleaner import cleaner_of

log = logging.getLogger("shopflow.lineage")

PARTITION_STEPS = ("ingest", "clean", "validate")
# Great Expectations severities as OpenLineage's DataQualityAssertions words (error blocks, warn does not).
SEVERITY = {"critical": "error", "warning": "warn"}
LOGICAL_NAMESPACE = "shopflow"


# ---- naming -------------------------------------------------------------------------------------------------
def dataset_id(location: str | object) -> dict:
    """OpenLineage namespace and name of a file or object: `file` + absolute path, or `<scheme>://<bucket>` + key."""
    text = str(location)
    if "://" not in text:
        return {"namespace": "file", "name": str(Path(text).resolve())}
    parts = urlsplit(text)
    if parts.scheme in ("file", "local"):
        return {"namespace": "file", "name": parts.path}
    if parts.netloc:
        return {"namespace": f"{parts.scheme}://{parts.netloc}", "name": parts.path.lstrip("/")}
    return {"namespace": f"{parts.scheme}://", "name": parts.path.lstrip("/")}


def _dataset(location, **facts) -> dict:
    return {**dataset_id(location), **{k: v for k, v in facts.items() if v is not None}}


def _logical(zone: str, dataset: str) -> dict:
    return {"namespace": LOGICAL_NAMESPACE, "name": f"{zone}.{dataset}", "type": "TABLE"}


# ---- cheap facts about files ----------------------------------------------------------------------------------
def _size(location) -> int | None:
    try:
        return int(storage.as_path(str(location)).stat().st_size)
    except (OSError, ValueError, AttributeError):
        return None


def _parquet_schema(location) -> list[dict] | None:
    """[{name, type}] from a Parquet footer; None when the file cannot be read."""
    import pyarrow.parquet as pq

    try:
        source, filesystem = storage.arrow_source(str(location))
        schema = pq.read_schema(source, filesystem=filesystem)
    except Exception:  # noqa: BLE001 - lineage is best effort; a missing file just has no schema
        return None
    return [{"name": field.name, "type": str(field.type)} for field in schema]


def _stats(rows: int | None, location=None, files: int = 1) -> dict:
    return {k: v for k, v in {"rowCount": rows, "size": _size(location) if location is not None else None,
                              "fileCount": files}.items() if v is not None}


def _clean_schema(spec: SourceSpec) -> list[dict]:
    return [{"name": name, "type": dtype} for name, dtype in spec.clean_schema.items()]


def _names(schema: list[dict] | None) -> list[str]:
    return [field["name"] for field in schema or []]


def _edge(store, dataset: str, ds: date, task: str, run_id: str | None):
    """The lineage edge this run recorded for (dataset, ds, task); None when there is none (or another run's)."""
    for edge in store.lineage(dataset, ds):
        if edge.task == task and (run_id is None or edge.airflow_run_id == run_id):
            return edge
    return None


def _partition(store, dataset: str, ds: date):
    found = store.partitions(dataset, ds)
    return found[0] if found else None


# ---- column lineage -------------------------------------------------------------------------------------------
def _field(dataset: dict, column: str) -> dict:
    return {"namespace": dataset["namespace"], "name": dataset["name"], "field": column}


def clean_column_sources(spec: SourceSpec) -> dict[str, list[str]]:
    """Clean column -> the raw-zone columns it is computed from (empty for what neither config nor module says)."""
    if spec.schema_ is not None:
        sources: dict[str, list[str]] = {}
        for column in spec.schema_:
            if column.expression is None:
                sources[column.name] = [spec.pseudonymise.get(column.raw, column.raw)]
            else:  # derived from the clean columns before it that the expression names
                named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", column.expression))
                sources[column.name] = sorted({raw for name, raws in sources.items() if name in named for raw in raws})
        sources["source_line"] = ["_source_line"]
        return sources
    declared = getattr(cleaner_of(spec), "COLUMN_LINEAGE", None) or {}
    return {name: list(columns) for name, columns in declared.items()}


def _clean_column_lineage(spec: SourceSpec, raw: dict, raw_columns: list[str]) -> dict:
    tokens = set(spec.pseudonymise.values())
    types = {c.name: c.type for c in spec.schema_ or []}
    lineage = {}
    for name, columns in clean_column_sources(spec).items():
        present = [c for c in columns if c in raw_columns] if raw_columns else columns
        if not present or name not in spec.clean_schema:
            continue
        identity = name in tokens or present == [f"_{name}"]  # a token, or where the row came from
        expression = next((c.expression for c in spec.schema_ or [] if c.name == name and c.expression), None)
        description = ("copied" if identity else f"derived: {expression}" if expression else
                       f"typed as {types[name]} and normalised" if name in types else "typed and normalised")
        lineage[name] = {"inputs": [_field(raw, c) for c in present],
                         "subtype": "IDENTITY" if identity else "TRANSFORMATION", "description": description}
    return lineage


def _identity_lineage(source: dict, columns: list[str], available: list[str]) -> dict:
    return {c: {"inputs": [_field(source, c)], "subtype": "IDENTITY", "description": "copied"}
            for c in columns if c in available}


def _ingest_column_lineage(spec: SourceSpec, inputs: list[dict], raw_columns: list[str]) -> dict:
    """Raw-zone column <- the landing files' column of the same name; a token column <- its raw id (masked)."""
    token_of = dict(spec.pseudonymise)
    raw_of = {token: raw for raw, token in token_of.items()}
    lineage: dict[str, dict] = {}
    for column in raw_columns:
        if column.startswith("_"):  # _source_file, _source_line: where a row came from, not a value of it
            continue
        landing_column = raw_of.get(column, column)
        fields = [_field(landing, landing_column) for landing in inputs if landing_column in _names(landing.get("schema"))]
        if not fields:
            continue
        if column in raw_of:
            lineage[column] = {"inputs": fields, "subtype": "TRANSFORMATION", "masking": True,
                               "description": f"{landing_column} replaced by its HMAC-SHA256 pseudonym"}
        else:
            lineage[column] = {"inputs": fields, "subtype": "IDENTITY", "description": "read as text"}
    return lineage


# ---- planned: the START event ---------------------------------------------------------------------------------
def planned(step: str, settings: Settings, ds: date, dataset: str | None = None) -> dict:
    """The datasets a step is about to read and write, from the lake layout only (no store, no reads of data)."""
    if step == "ingest":
        from shopflow.ingest.folder import partition_files

        spec = get_source(dataset)
        try:
            landed = partition_files(lake.landing_dir(settings, dataset, ds), spec)
        except Exception:  # noqa: BLE001 - a bad folder fails the ingest itself, with its own message
            landed = []
        return {"inputs": [_dataset(landing.path) for landing in landed],
                "outputs": [_dataset(lake.lake_file(settings, "raw", dataset, ds), logical=_logical("raw", dataset))]}
    if step == "clean":
        return {"inputs": [_dataset(lake.lake_file(settings, "raw", dataset, ds))],
                "outputs": [_dataset(lake.lake_file(settings, zone, dataset, ds), logical=_logical(zone, dataset))
                            for zone in ("clean", "quarantine")]}
    if step == "validate":
        return {"inputs": [_dataset(lake.lake_file(settings, "clean", dataset, ds))], "outputs": []}
    if step == "repair":
        from shopflow.sources import roles

        name = roles.model_catalog().name
        if name is None:
            return {"inputs": [], "outputs": []}
        return {"inputs": [_dataset(lake.lake_file(settings, "clean", name, ds))],
                "outputs": [_dataset(lake.lake_file(settings, "repaired", name, ds),
                                     logical=_logical("repaired", name))]}
    if step == "find_duplicates":
        from shopflow.sources import roles

        name = roles.model_catalog().name
        if name is None:
            return {"inputs": [], "outputs": []}
        members = lake.lake_file(settings, "duplicates", name, ds)
        return {"inputs": [_dataset(lake.lake_file(settings, "clean", name, ds))],
                "outputs": [_dataset(members, logical=_logical("duplicates", name)),
                            _dataset(members.parent / "pairs.parquet")]}
    if step == "report":
        from shopflow.report.build import report_paths

        return {"inputs": [], "outputs": [_dataset(path) for path in report_paths(settings, ds)]}
    return {"inputs": [], "outputs": []}


# ---- recorded: the COMPLETE (or FAIL) event -------------------------------------------------------------------
def recorded(step: str, settings: Settings, store, ds: date, run_id: str | None, dataset: str | None = None) -> dict:
    """The datasets a step read and wrote in run `run_id`, with their facets, from what it recorded in the store.
    A step that recorded nothing in this run (it failed early) gets its planned datasets."""
    builder = {"ingest": _ingest, "clean": _clean, "validate": _validate, "train": _train, "repair": _repair,
               "search_intent": _search_intent, "report": _report, "find_duplicates": _duplicates}.get(step)
    if builder is None:
        return {"inputs": [], "outputs": []}
    facts = builder(settings, store, ds, run_id, dataset)
    return facts if facts is not None else planned(step, settings, ds, dataset)


def _ingest(settings: Settings, store, ds: date, run_id, dataset: str) -> dict | None:
    edge = _edge(store, dataset, ds, "ingest", run_id)
    partition = _partition(store, dataset, ds)
    if edge is None or partition is None:
        return None
    spec = get_source(dataset)
    files = {f.name: f for f in partition.files}
    inputs = []
    for path in edge.inputs:
        name = posixpath.basename(str(path))
        record, declared = files.get(name), spec.file_for(name)
        inputs.append(_dataset(
            path,
            schema=[{"name": c, "type": "string"} for c in declared.columns] if declared else None,
            stats={"rowCount": record.rows, "size": record.size_bytes, "fileCount": 1} if record else None,
            version=record.sha256 if record else None,
        ))
    outputs = []
    for path in edge.outputs:
        schema = _parquet_schema(path)
        raw = _dataset(path, schema=schema, stats=_stats(partition.rows_in, path), logical=_logical("raw", dataset))
        raw["column_lineage"] = _ingest_column_lineage(spec, inputs, _names(schema))
        outputs.append(raw)
    return {"inputs": inputs, "outputs": outputs}


def _clean(settings: Settings, store, ds: date, run_id, dataset: str) -> dict | None:
    edge = _edge(store, dataset, ds, "clean", run_id)
    partition = _partition(store, dataset, ds)
    if edge is None or partition is None:
        return None
    spec = get_source(dataset)
    raw_path = edge.inputs[0] if edge.inputs else partition.raw_path
    raw_schema = _parquet_schema(raw_path)
    raw = _dataset(raw_path, schema=raw_schema, stats={"rowCount": partition.rows_in})
    raw_columns = _names(raw_schema)
    outputs = []
    if partition.clean_path:
        outputs.append(_dataset(partition.clean_path, schema=_clean_schema(spec),
                                stats=_stats(partition.rows_clean, partition.clean_path),
                                logical=_logical("clean", dataset),
                                column_lineage=_clean_column_lineage(spec, raw, raw_columns)))
    if partition.quarantine_path:
        schema = _parquet_schema(partition.quarantine_path)
        outputs.append(_dataset(partition.quarantine_path, schema=schema,
                                stats=_stats(partition.rows_quarantined, partition.quarantine_path),
                                logical=_logical("quarantine", dataset),
                                column_lineage=_identity_lineage(raw, _names(schema), raw_columns)))
    return {"inputs": [raw], "outputs": outputs}


def assertion(result) -> dict:
    """One stored expectation result (a `validations` row) as a data-quality assertion."""
    described = result.result or {}
    kwargs = {k: v for k, v in (described.get("kwargs") or {}).items() if k != "batch_id"}
    observed = result.observed_value
    if observed is None and result.unexpected_percent is not None:
        observed = {"unexpected_percent": result.unexpected_percent}
    return {"assertion": result.expectation, "success": bool(result.success), "column": result.column_name,
            "severity": SEVERITY.get(result.severity, result.severity),
            "name": f"{result.expectation}({result.column_name})" if result.column_name else result.expectation,
            "expected": _json(kwargs), "actual": None if observed is None else _json(observed), "params": kwargs}


def _json(value) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _validate(settings: Settings, store, ds: date, run_id, dataset: str) -> dict | None:
    edge = _edge(store, dataset, ds, "validate", run_id)
    partition = _partition(store, dataset, ds)
    if edge is None or partition is None:
        return None
    results = [v for v in store.validations(dataset, ds) if run_id is None or v.airflow_run_id == run_id]
    clean_path = edge.inputs[0] if edge.inputs else partition.clean_path
    clean = _dataset(clean_path, schema=_clean_schema(get_source(dataset)), logical=_logical("clean", dataset),
                     stats=_stats(partition.rows_clean, clean_path), row_count=partition.rows_clean,
                     assertions=[assertion(r) for r in results])
    return {"inputs": [clean], "outputs": []}


def _model_dir_stats(path: str) -> dict:
    try:
        files = storage.list_files(storage.as_path(path))
        return {"fileCount": len(files), "size": sum(_size(f) or 0 for f in files)}
    except Exception:  # noqa: BLE001
        return {}


def _train(settings: Settings, store, ds: date, run_id, dataset) -> dict | None:
    from shopflow.model.registry import models

    trained = [m for m in models(store) if m.trained_on_ds == ds and (run_id is None or m.airflow_run_id == run_id)]
    if not trained:
        return {"inputs": [], "outputs": []}
    model = trained[-1]
    source = (model.data_lineage or {}).get("catalog_source")
    inputs = [_dataset(p["path"], stats={"rowCount": p.get("rows_clean")},
                       logical=_logical("clean", source) if source else None)
              for p in (model.data_lineage or {}).get("catalog_partitions", []) if p.get("path")]
    metrics = {"macro_f1": model.macro_f1,
               "accuracy": (model.metrics or {}).get("top", {}).get("accuracy"),
               "baseline_macro_f1": (model.baseline_metrics or {}).get("top", {}).get("macro_f1"),
               "examples": (model.data_lineage or {}).get("examples"),
               "device": (model.training or {}).get("device")}
    output = _dataset(model.artifact_path, stats=_model_dir_stats(model.artifact_path),
                      logical={"namespace": LOGICAL_NAMESPACE, "name": f"models.{model.name}", "type": "MODEL"},
                      model={"name": model.name, "version": model.version, "status": model.status,
                             "base_model": model.base_model, "trained_on_ds": model.trained_on_ds.isoformat(),
                             "metrics": {k: v for k, v in metrics.items() if v is not None}})
    return {"inputs": inputs, "outputs": [output]}


def _repair(settings: Settings, store, ds: date, run_id, dataset) -> dict | None:
    from shopflow.sources import roles

    name = roles.model_catalog().name
    if name is None:
        return {"inputs": [], "outputs": []}
    edge = _edge(store, name, ds, "repair", run_id)
    run = store.repair_run(ds)
    if edge is None or run is None:
        return None
    spec = get_source(name)
    clean_path = edge.inputs[0]
    partition = _partition(store, name, ds)
    clean = _dataset(clean_path, schema=_clean_schema(spec), logical=_logical("clean", name),
                     stats={"rowCount": partition.rows_clean} if partition else None)
    schema = _parquet_schema(run.output_path)
    lineage = _identity_lineage(clean, _names(schema), list(spec.clean_schema))
    category = (spec.role.columns("category_levels") or [None])[0] if spec.role else None
    if category and "category_top_repaired" in _names(schema):
        status = spec.role_column("category_status")
        lineage["category_top_repaired"] = {
            "inputs": [_field(clean, c) for c in (category, status) if c],
            "subtype": "TRANSFORMATION",
            "description": f"the given category, or model v{run.model_version}'s when missing or name-only and "
                           f"its confidence is at least {run.threshold}"}
    repaired = _dataset(run.output_path, schema=schema, stats=_stats(run.rows_in, run.output_path),
                        logical=_logical("repaired", name), column_lineage=lineage)
    return {"inputs": [clean], "outputs": [repaired]}


def _duplicates(settings: Settings, store, ds: date, run_id, dataset) -> dict | None:
    """The catalogue partitions read (the as-of chain), the members and pairs written, the GX results on members."""
    from types import SimpleNamespace

    from shopflow.sources import roles

    name = roles.model_catalog().name
    if name is None:
        return {"inputs": [], "outputs": []}
    edge = _edge(store, name, ds, "duplicates", run_id)
    run = store.duplicate_run(name, ds)
    if edge is None or run is None:
        return None
    inputs = [_dataset(path, logical=_logical("clean", name)) for path in edge.inputs]
    members = _dataset(run.output_path, schema=_parquet_schema(run.output_path),
                       stats=_stats(run.products_in_clusters, run.output_path), logical=_logical("duplicates", name),
                       row_count=run.products_in_clusters,
                       assertions=[assertion(SimpleNamespace(**r)) for r in run.validation or []])
    pairs = _dataset(run.pairs_path, schema=_parquet_schema(run.pairs_path), stats=_stats(run.accepted_pairs, run.pairs_path))
    return {"inputs": inputs, "outputs": [members, pairs]}


def _search_intent(settings: Settings, store, ds: date, run_id, dataset) -> dict | None:
    from shopflow.sources import roles

    inputs = []
    for spec in roles.sources_of("search"):
        partition = _partition(store, spec.name, ds)
        if partition is not None and partition.status == "validated" and partition.clean_path:
            inputs.append(_dataset(partition.clean_path, logical=_logical("clean", spec.name),
                                   stats={"rowCount": partition.rows_clean}))
    return {"inputs": inputs, "outputs": []}


def _report(settings: Settings, store, ds: date, run_id, dataset) -> dict | None:
    report = store.report(ds)
    if report is None or (run_id is not None and report.airflow_run_id != run_id):
        return None
    return {"inputs": [], "outputs": [
        _dataset(report.html_path, stats=_stats(None, report.html_path), version=report.html_sha256,
                 logical={"namespace": LOGICAL_NAMESPACE, "name": "reports.daily.html", "type": "FILE"}),
        _dataset(report.json_path, stats=_stats(None, report.json_path), version=report.json_sha256,
                 logical={"namespace": LOGICAL_NAMESPACE, "name": "reports.daily.json", "type": "FILE"}),
    ]}


def open_store(url: str):
    """The metadata store on an engine without a connection pool: lineage may be built in a forked child of the task
    process (the OpenLineage listener forks), which must not reuse the parent's pooled connections."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from shopflow.config.settings import db_timeouts
    from shopflow.store.repository import MetadataStore, connect_args_for

    store = MetadataStore(url)
    store.engine = create_engine(url, poolclass=NullPool,
                                 connect_args={"timeout": 30} if url.startswith("sqlite")
                                 else connect_args_for(url, *db_timeouts()))
    return store

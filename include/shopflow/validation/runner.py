"""Runs a dataset's suite on a clean partition with the GX Core 1.x API (ephemeral context, pandas asset).

GX is imported here, inside the call, so importing shopflow (or parsing a DAG) never pays for it.
"""

from __future__ import annotations

import json
import logging
import math
import os

import numpy as np
import pandas as pd

from shopflow.validation.suites import ExpectationSpec, suite_for

log = logging.getLogger(__name__)


def _jsonable(value):
    """Observed values as plain JSON (GX returns numpy scalars, timestamps and NaN)."""
    return json.loads(json.dumps(value, default=str, allow_nan=True).replace("NaN", "null"))


# Table-level expectations that only look at the number of rows (they need no column, only the rows).
_ROW_COUNT_ONLY = {"ExpectTableRowCountToBeBetween", "ExpectTableRowCountToEqual"}
# Aggregates a day in chunks combines from the chunks' partial sums and counts (`_MeanOfChunks`).
_MEAN = "ExpectColumnMeanToBeBetween"
_MEAN_KWARGS = {"column", "min_value", "max_value", "strict_min", "strict_max", "result_format"}
# Expectations whose pandas metrics never copy the batch's rows (no null-filtered or per-value domain frame), so
# they can share one batch with each other and the row-count expectations at no cost per extra column.
_SHARE_A_BATCH = _ROW_COUNT_ONLY | {
    "ExpectColumnValuesToNotBeNull",
    "ExpectColumnMeanToBeBetween",
    "ExpectColumnProportionOfUniqueValuesToBeBetween",
    "ExpectColumnDistinctValuesToContainSet",
}


def _columns_of(spec: ExpectationSpec) -> tuple[str, ...] | None:
    """The columns an expectation reads; None for a table-level expectation."""
    kwargs = spec.kwargs
    if "column" in kwargs:
        return (kwargs["column"],)
    if "column_A" in kwargs and "column_B" in kwargs:
        return (kwargs["column_A"], kwargs["column_B"])
    if "column_list" in kwargs:
        return tuple(kwargs["column_list"])
    return None


def _batches(specs: list[ExpectationSpec]) -> dict[tuple[str, ...] | None, list[int]]:
    """Positions of the suite's expectations, grouped by the columns of the batch they are validated on (None: the
    whole frame). A column whose expectations all copy no rows joins the shared batch, with the row-count
    expectations; any other column gets a batch of its own; an expectation over several columns gets those."""
    by_columns: dict[tuple[str, ...] | None, list[int]] = {}
    for position, spec in enumerate(specs):
        columns = _columns_of(spec)
        if columns is None and spec.expectation in _ROW_COUNT_ONLY:
            columns = ()
        by_columns.setdefault(columns, []).append(position)
    shared_columns: list[str] = []
    shared: list[int] = []
    batches: dict[tuple[str, ...] | None, list[int]] = {}
    for columns, positions in by_columns.items():
        if columns is not None and len(columns) <= 1 and all(specs[i].expectation in _SHARE_A_BATCH for i in positions):
            shared_columns.extend(columns)
            shared.extend(positions)
        else:
            batches[columns] = positions
    if shared:
        batches[tuple(shared_columns)] = sorted(batches.get(tuple(shared_columns), []) + shared)
    return batches


def columns_needed_of(specs: list[ExpectationSpec], available: list[str]) -> list[str]:
    """The columns of `available` that `specs` read, in `available`'s order: what validate_frame needs of a
    partition. Every column when an expectation reads the whole table (anything but a row count), or when the
    suite names none of them (a frame needs a column to carry its rows)."""
    named: set[str] = set()
    for spec in specs:
        columns = _columns_of(spec)
        if columns is None:
            if spec.expectation not in _ROW_COUNT_ONLY:
                return list(available)
            continue
        named.update(columns)
    chosen = [c for c in available if c in named]
    return chosen or list(available)


def quiet_context():
    """An ephemeral GX context with its progress bars off.

    GX draws a tqdm bar ("Calculating Metrics") on stderr for every validation unless the context's
    `progress_bars` setting says not to; the Airflow UI shows a task's stderr as `error` lines, so a passing
    validate task would read as failing. TQDM_DISABLE does not help: GX passes `disable=` to tqdm itself.
    The validator asks the current project context (the one made last), so this must be the context in use."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def validate_frame(dataset: str, frame: pd.DataFrame, suite: list[ExpectationSpec] | None = None) -> list[dict]:
    """Validate `frame` against `suite`, by default the dataset's (`suite_for`); one dict per expectation, ready for
    the store, in the order one GX validation of the whole suite reports them."""
    specs: list[ExpectationSpec] = suite_for(dataset) if suite is None else suite
    results = _validate_in_suite_order(dataset, frame, specs)
    return [results[position] for position in _gx_order(specs)]


def _validate_in_suite_order(dataset: str, frame: pd.DataFrame, specs: list[ExpectationSpec],
                             batch_definition=None) -> list[dict]:
    """The results of `specs` on `frame`, one per expectation in the suite's order; `batch_definition` (from
    `_batch_definition`) may be shared by the validations of one day's chunks.

    The expectations are grouped by the columns they read and each group is validated on a batch holding only
    those columns (same index, same row count): GX's pandas engine filters and copies the whole batch frame for
    most column-map expectations, so a narrow batch does the same checks with far less copying. Expectations that
    copy no rows (not-null, mean, row count, ...) share one batch of their columns (see `_batches`); a table-level
    expectation other than a row count gets every column.
    The results come back in the order, and with the contents, that one validation of the whole frame would give.
    """
    import great_expectations as gx
    from great_expectations.validator.v1_validator import Validator as V1Validator

    batch_definition = batch_definition or _batch_definition(dataset)
    groups = _batches(specs)

    results: list[dict | None] = [None] * len(specs)
    for columns, positions in groups.items():
        part = frame if columns is None else frame[list(columns)]
        suite = gx.ExpectationSuite(name=f"shopflow_{dataset}")
        for position in positions:
            spec = specs[position]
            expectation_class = getattr(gx.expectations, spec.expectation)
            suite.add_expectation(expectation_class(**spec.kwargs, meta={"severity": spec.severity}))
        # What `batch_definition.get_batch(...).validate(suite)` does, without building (and fingerprinting) the
        # batch twice: the validator gets its batch once.
        validator = V1Validator(batch_definition=batch_definition, result_format="SUMMARY",
                                batch_parameters={"dataframe": _gx_friendly(part)})
        del part
        outcome = validator.validate_expectation_suite(suite)
        del validator
        described = outcome.describe_dict()["expectations"]
        for index, (position, item) in enumerate(zip(positions, outcome.results)):
            config = item.expectation_config
            summary = item.result or {}
            results[position] = {
                "expectation": config.type,
                "column_name": config.kwargs.get("column") or config.kwargs.get("column_A"),
                "severity": (config.meta or {}).get("severity", "critical"),
                "success": bool(item.success),
                "observed_value": _jsonable(summary.get("observed_value")),
                "unexpected_percent": _finite(summary.get("unexpected_percent")),
                "result": _jsonable(described[index] if index < len(described) else {}),
            }
    return results


def validate_parquet(dataset: str, path, suite: list[ExpectationSpec] | None = None) -> tuple[int, list[dict]]:
    """(rows, results) of the dataset's suite on a clean lake file, as `validate_frame` gives them for the whole
    frame, reading only the columns the suite needs.

    A file of one row group (a day that fits in one chunk) is validated as one frame. A file written in chunks is
    validated a row group at a time, so that memory follows the chunk, and every row is still seen: a column-map
    expectation (each row passes or fails on its own: not null, in set, between, regex, ...) runs with GX on each
    row group and its counts are added up (`_combined_map_result`, GX's own result format; success by its `mostly`
    on the day's totals); a row-count expectation runs with GX on the day's row count; a column mean runs with GX
    on the mean of the chunks' sums and counts (`_MeanOfChunks`); any other expectation (an aggregate such as
    uniqueness or distinct values) runs with GX on its whole columns, read alone.
    """
    from shopflow.common.parquet import parquet_columns, parquet_row_groups, read_parquet, read_row_groups

    specs: list[ExpectationSpec] = suite_for(dataset) if suite is None else suite
    columns = columns_needed_of(specs, parquet_columns(path))
    if parquet_row_groups(path) <= 1:
        frame = read_parquet(path, columns=columns)
        return len(frame), validate_frame(dataset, frame, specs)

    row_wise = [i for i, spec in enumerate(specs) if _is_column_map(spec)]
    counts = [i for i, spec in enumerate(specs) if spec.expectation in _ROW_COUNT_ONLY]
    means = {i: _MeanOfChunks(specs[i].kwargs["column"]) for i, spec in enumerate(specs)
             if spec.expectation == _MEAN and set(spec.kwargs) <= _MEAN_KWARGS and spec.kwargs["column"] in columns}
    results: list[dict | None] = [None] * len(specs)
    parts: list[list[dict]] = []
    rows = 0
    batch_definition = _batch_definition(dataset)
    map_specs = [specs[i] for i in row_wise]
    needed = set(columns_needed_of(map_specs, columns) if map_specs else columns[:1])
    needed |= {mean.column for mean in means.values()}
    read_columns = [column for column in columns if column in needed]  # in the file's order
    for chunk in read_row_groups(path, columns=read_columns):
        chunk.index = pd.RangeIndex(rows, rows + len(chunk))  # row numbers of the whole day in the results
        rows += len(chunk)
        if map_specs:
            parts.append(_validate_in_suite_order(dataset, chunk, map_specs, batch_definition))
        for mean in means.values():
            mean.add(chunk[mean.column])
        del chunk
    for at, position in enumerate(row_wise):
        results[position] = _combined_map_result(specs[position], [part[at] for part in parts])
    for position, mean in means.items():
        if mean.combinable:
            [results[position]] = _validate_in_suite_order(dataset, mean.as_frame(), [specs[position]],
                                                           batch_definition)
    if counts:
        rows_only = pd.DataFrame({"row": np.zeros(rows, dtype=np.uint8)})
        count_specs = [specs[i] for i in counts]
        for position, result in zip(counts, _validate_in_suite_order(dataset, rows_only, count_specs, batch_definition)):
            results[position] = result
    whole = [i for i, result in enumerate(results) if result is None]
    if whole:
        whole_specs = [specs[i] for i in whole]
        frame = read_parquet(path, columns=columns_needed_of(whole_specs, columns))
        for position, result in zip(whole, _validate_in_suite_order(dataset, frame, whole_specs, batch_definition)):
            results[position] = result
    return rows, [results[position] for position in _gx_order(specs)]


class _MeanOfChunks:
    """A column's mean over a day's chunks, from each chunk's sum and count of values (nulls left out, as GX's mean
    leaves them). GX then runs the expectation on a one-row column holding that mean, which gives the result one
    validation of the whole column gives: exactly, for a boolean or integer column (the sums are exact integers);
    for a float column, to the last bits of a float sum. A column that is not boolean or numeric in every chunk is
    not combinable (the expectation then runs on the whole column)."""

    def __init__(self, column: str):
        self.column = column
        self.total: int | float = 0
        self.count = 0
        self.combinable = True

    def add(self, values: pd.Series) -> None:
        if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_integer_dtype(values.dtype):
            self.total += int(values.sum())
        elif pd.api.types.is_float_dtype(values.dtype):
            self.total += float(values.sum())
        else:
            self.combinable = False
            return
        self.count += int(values.count())

    def as_frame(self) -> pd.DataFrame:
        return pd.DataFrame({self.column: pd.array([self.total / self.count if self.count else None], dtype="Float64")})


# Column-map expectations whose verdict on a row depends on other rows (a value seen before, the previous value):
# a chunk cannot judge them alone, so they run on the whole column.
_ACROSS_ROWS = {"ExpectColumnValuesToBeUnique", "ExpectColumnValuesToBeIncreasing", "ExpectColumnValuesToBeDecreasing"}


def _is_column_map(spec: ExpectationSpec) -> bool:
    """Whether `spec` judges each row on its own (a GX column-map expectation that looks at no other row)."""
    import great_expectations as gx
    from great_expectations.expectations.expectation import ColumnMapExpectation

    expectation_class = getattr(gx.expectations, spec.expectation, None)
    return (isinstance(expectation_class, type) and issubclass(expectation_class, ColumnMapExpectation)
            and spec.expectation not in _ACROSS_ROWS)


def _combined_map_result(spec: ExpectationSpec, parts: list[dict]) -> dict:
    """One column-map expectation's result on a whole day from its results on the day's row groups: the element,
    missing and unexpected counts added up, the first unexpected values and row numbers kept (as many as one
    validation shows), success judged on the totals with the expectation's `mostly`, formatted by GX."""
    from great_expectations.expectations.expectation import _format_map_output, _mostly_success
    from great_expectations.expectations.expectation_configuration import parse_result_format

    counted = [part["result"].get("result") or {} for part in parts]
    element_count = sum(c.get("element_count") or 0 for c in counted)
    missing_count = sum(c.get("missing_count") or 0 for c in counted)
    unexpected_count = sum(c.get("unexpected_count") or 0 for c in counted)
    nonnull_count = element_count - missing_count
    result_format = parse_result_format("SUMMARY")
    shown = result_format["partial_unexpected_count"]
    values = [v for c in counted for v in c.get("partial_unexpected_list") or []][:shown]
    indexes = [i for c in counted for i in c.get("partial_unexpected_index_list") or []][:shown]
    success = (element_count == 0 or nonnull_count == 0
               or _mostly_success(nonnull_count, unexpected_count, spec.kwargs.get("mostly", 1.0)))
    summary = _format_map_output(result_format=result_format, success=success, element_count=element_count,
                                 nonnull_count=nonnull_count, unexpected_count=unexpected_count,
                                 unexpected_list=values, unexpected_index_list=indexes)
    first = parts[0]
    # The fields this expectation reports (GX leaves some out for some expectations, e.g. missing_count for not-null).
    reported = {k: v for k, v in summary["result"].items() if k in (first["result"].get("result") or {})}
    return {**first, "success": bool(success), "unexpected_percent": _finite(reported.get("unexpected_percent")),
            "result": _jsonable({**first["result"], "success": bool(success), "result": reported})}


def _batch_definition(dataset: str):
    """A GX batch definition of a whole pandas frame of `dataset`, in a new quiet ephemeral context."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = quiet_context()
    return (context.data_sources.add_pandas(f"shopflow_{dataset}").add_dataframe_asset(dataset)
            .add_batch_definition_whole_dataframe("partition"))


def _gx_order(specs: list[ExpectationSpec]) -> list[int]:
    """The order in which one GX validation of the whole suite reports its results: grouped by the `column` kwarg
    (expectations without one form a group), groups in order of first appearance, suite order within a group
    (`Validator.process_expectations_for_validation`)."""
    groups: dict[str | None, list[int]] = {}
    for position, spec in enumerate(specs):
        column = spec.kwargs.get("column")
        groups.setdefault(column if isinstance(column, str) else None, []).append(position)
    return [position for members in groups.values() for position in members]


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


_GX_STRING = pd.StringDtype("pyarrow", na_value=np.nan)


def _gx_friendly(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable extension dtypes confuse some GX metrics; give it NaN-missing strings and float/bool columns.

    Text becomes pandas' default `str` dtype (Arrow-backed, missing = NaN): GX treats it like object strings (same
    results) but hashes, factorises and matches it far faster, and it does not cost a Python object per value.
    """
    columns = {}
    for column in frame.columns:
        values = frame[column]
        dtype = values.dtype
        if isinstance(dtype, pd.StringDtype):
            values = values.astype(_GX_STRING)
        elif str(dtype) in ("boolean", "Int64"):
            values = values.astype("float64")
        columns[column] = values
    return pd.DataFrame(columns, index=frame.index)

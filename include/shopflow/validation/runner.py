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

from shopflow.validation.suites import SUITES, ExpectationSpec

log = logging.getLogger(__name__)


def _jsonable(value):
    """Observed values as plain JSON (GX returns numpy scalars, timestamps and NaN)."""
    return json.loads(json.dumps(value, default=str, allow_nan=True).replace("NaN", "null"))


def validate_frame(dataset: str, frame: pd.DataFrame) -> list[dict]:
    """Validate `frame` against the dataset's suite; one dict per expectation, ready for the store."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # GX's metric progress bars would flood the task log
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    specs: list[ExpectationSpec] = SUITES[dataset]
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas(f"shopflow_{dataset}")
        .add_dataframe_asset(dataset)
        .add_batch_definition_whole_dataframe("partition")
        .get_batch(batch_parameters={"dataframe": _gx_friendly(frame)})
    )
    suite = gx.ExpectationSuite(name=f"shopflow_{dataset}")
    for spec in specs:
        expectation_class = getattr(gx.expectations, spec.expectation)
        suite.add_expectation(expectation_class(**spec.kwargs, meta={"severity": spec.severity}))
    outcome = batch.validate(suite, result_format="SUMMARY")
    described = {i: d for i, d in enumerate(outcome.describe_dict()["expectations"])}
    results = []
    for index, item in enumerate(outcome.results):
        config = item.expectation_config
        summary = item.result or {}
        results.append(
            {
                "expectation": config.type,
                "column_name": config.kwargs.get("column") or config.kwargs.get("column_A"),
                "severity": (config.meta or {}).get("severity", "critical"),
                "success": bool(item.success),
                "observed_value": _jsonable(summary.get("observed_value")),
                "unexpected_percent": _finite(summary.get("unexpected_percent")),
                "result": _jsonable(described.get(index, {})),
            }
        )
    return results


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


_GX_STRING = pd.StringDtype("pyarrow", na_value=np.nan)


def _gx_friendly(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable extension dtypes confuse some GX metrics; give it NaN-missing strings and float/bool columns.

    Text becomes pandas' default `str` dtype (Arrow-backed, missing = NaN): GX treats it like object strings (same
    results) but hashes, factorises and matches it far faster, and it does not cost a Python object per value.
    """
    out = frame.copy()
    for column in out.columns:
        dtype = out[column].dtype
        if isinstance(dtype, pd.StringDtype):
            out[column] = out[column].astype(_GX_STRING)
        elif str(dtype) == "boolean":
            out[column] = out[column].astype("float64")
        elif str(dtype) == "Int64":
            out[column] = out[column].astype("float64")
    return out

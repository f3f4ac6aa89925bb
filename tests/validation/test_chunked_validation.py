"""`validate_parquet` on a lake file written in chunks gives what one validation of the whole frame gives: column
means combined from the chunks' sums and counts (exactly for boolean and integer columns); uniqueness, order and
other aggregates on the whole column, so that a duplicate in another chunk is still one."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import Phase, given, settings as hypothesis_settings, strategies as st
from shopflow.common.parquet import ParquetChunks, parquet_row_groups
from shopflow.validation.runner import validate_frame, validate_parquet
from shopflow.validation.suites import ExpectationSpec


def _mean(column: str, **bounds) -> ExpectationSpec:
    return ExpectationSpec("warning", "ExpectColumnMeanToBeBetween", {"column": column, **bounds})


SUITE = [
    ExpectationSpec("critical", "ExpectTableRowCountToBeBetween", {"min_value": 1}),
    _mean("flag", max_value=0.1),
    _mean("quantity", min_value=0, strict_min=True),
    _mean("price", max_value=50),
    ExpectationSpec("warning", "ExpectColumnValuesToNotBeNull", {"column": "price", "mostly": 0.9}),
    ExpectationSpec("warning", "ExpectColumnValuesToBeUnique", {"column": "quantity"}),  # across rows: whole
    ExpectationSpec("warning", "ExpectColumnValuesToBeIncreasing", {"column": "quantity"}),
    ExpectationSpec("warning", "ExpectColumnUniqueValueCountToBeBetween", {"column": "flag", "max_value": 3}),
]


def _chunks(frame: pd.DataFrame, sizes: list[int]) -> list[pd.DataFrame]:
    cuts = np.cumsum([0, *sizes])
    return [frame.iloc[start:end].reset_index(drop=True) for start, end in zip(cuts[:-1], cuts[1:])]


def _written(tmp_path, parts: list[pd.DataFrame]):
    path = tmp_path / "part-0.parquet"
    with ParquetChunks(path) as lake_file:
        for part in parts:
            lake_file.write(part)
    return path


def _frame(flags: list[bool | None], quantities: list[int | None], prices: list[float | None]) -> pd.DataFrame:
    return pd.DataFrame({"flag": pd.array(flags, dtype="boolean"), "quantity": pd.array(quantities, dtype="Int64"),
                         "price": pd.array(prices, dtype="Float64")})


def _comparable(results: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "result"} for r in results]


@hypothesis_settings(max_examples=15, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(data=st.data())
def test_chunked_means_equal_the_whole_validation(tmp_path_factory, data):
    rows = data.draw(st.integers(2, 300))
    flags = data.draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=rows, max_size=rows))
    quantities = data.draw(st.lists(st.one_of(st.none(), st.integers(-10**6, 10**6)), min_size=rows, max_size=rows))
    prices = data.draw(st.lists(st.one_of(st.none(), st.floats(0, 1e4, allow_nan=False)), min_size=rows,
                                max_size=rows))
    cut = data.draw(st.lists(st.integers(1, rows), min_size=1, max_size=6))
    sizes = [c for c in cut if c] + [rows]
    sizes = np.diff([0, *sorted(set(np.clip(np.cumsum(sizes), 1, rows)))]).tolist()
    frame = _frame(flags, quantities, prices)
    path = _written(tmp_path_factory.mktemp("chunks"), _chunks(frame, sizes))
    assert parquet_row_groups(path) == len(sizes)

    rows_seen, chunked = validate_parquet("orders", path, SUITE)
    whole = validate_frame("orders", frame, SUITE)
    assert rows_seen == rows
    exact = [r for r in zip(chunked, whole) if r[1]["column_name"] != "price" or "mean" not in r[1]["expectation"]]
    assert all(a == b for a, b in exact)  # booleans, integers, row counts, maps, whole-column aggregates
    [(mean_of_chunks, mean)] = [r for r in zip(chunked, whole) if r[1]["column_name"] == "price"
                                and "mean" in r[1]["expectation"]]
    if mean["observed_value"] is None:
        assert mean_of_chunks == mean
    else:
        assert math.isclose(mean_of_chunks["observed_value"], mean["observed_value"], rel_tol=1e-12, abs_tol=1e-12)


def test_a_mean_of_a_text_column_runs_on_the_whole_column(tmp_path):
    frame = pd.DataFrame({"code": pd.array(["1", "2", "3", "x"], dtype="string")})
    path = _written(tmp_path, _chunks(frame, [2, 2]))
    suite = [_mean("code", max_value=5)]
    assert _comparable(validate_parquet("orders", path, suite)[1]) == _comparable(validate_frame("orders", frame, suite))


@pytest.mark.parametrize("flags", [[None, None, None], [True, None, False]])
def test_a_mean_with_nulls_leaves_them_out_as_gx_does(tmp_path, flags):
    frame = _frame(flags, [1, 2, 3], [1.0, 2.0, 3.0])
    path = _written(tmp_path, _chunks(frame, [1, 2]))
    suite = [_mean("flag", max_value=0.6)]
    assert validate_parquet("orders", path, suite)[1] == validate_frame("orders", frame, suite)


def test_a_duplicate_in_another_chunk_still_fails_uniqueness(tmp_path):
    frame = _frame([True, False, True, False], [1, 2, 1, 3], [1.0, 2.0, 3.0, 4.0])
    path = _written(tmp_path, _chunks(frame, [2, 2]))  # 1 in each chunk: unique within each
    suite = [ExpectationSpec("critical", "ExpectColumnValuesToBeUnique", {"column": "quantity"})]
    [result] = validate_parquet("orders", path, suite)[1]
    assert not result["success"] and result == validate_frame("orders", frame, suite)[0]

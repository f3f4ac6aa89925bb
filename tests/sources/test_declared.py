"""The declared cleaner (shopflow.sources.declared): types, reasons, rule order and placement, derived columns, lookups,
and hypothesis properties: any text in any column ends clean, quarantined with a declared reason, or a duplicate."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shopflow.common.landing_file import SOURCE_FILE, SOURCE_LINE, LandingFileError
from shopflow.sources.cleaner import cleaner_of
from shopflow.sources.cleaning import BLANK_ROW_REASON, FIELD, REASON, clean_partition
from shopflow.sources.spec import parse_sources

DAY = date(2011, 3, 27)  # the night Europe/London skips 01:00-02:00


def _spec(**entry):
    base = {"description": "d", "owner": "o", "timezone": "Europe/London",
            "files": [{"name": "rows.csv", "columns": ["a", "b", "c"]}]}
    return parse_sources({"shop": {**base, **entry}}, "test")["shop"]


def _raw(**columns) -> pd.DataFrame:
    length = len(next(iter(columns.values())))
    frame = pd.DataFrame({k: pd.array(v, dtype="string") for k, v in columns.items()})
    frame.insert(0, SOURCE_FILE, "rows.csv")
    frame[SOURCE_LINE] = np.arange(2, length + 2)
    return frame


def _clean(spec, **columns):
    raw = _raw(**{c: columns.get(c, [""] * len(next(iter(columns.values())))) for c in ("a", "b", "c")})
    return clean_partition(spec, raw, DAY)


def test_types_and_their_invalid_values():
    spec = _spec(schema=[{"name": "n", "from": "a", "type": "int", "min": 0},
                         {"name": "price", "from": "b", "type": "decimal(6,2)"},
                         {"name": "flag", "from": "c", "type": "bool"}], key=["n"])
    result = _clean(spec, a=["1", "2.0", "-1", "x", "3", "4", "9007199254740993"],
                    b=["2.555", "1.1", "1", "1", "99999", "", "1"],
                    c=["yes", "F", "true", "0", "1", "maybe", "no"])
    clean = result.clean
    assert clean["n"].tolist() == [1, 2]
    assert clean["price"].tolist() == [2.56, 1.1] and clean["flag"].tolist() == [True, False]
    assert result.quarantine[REASON].tolist() == ["invalid_n", "invalid_n", "invalid_price", "invalid_flag",
                                                  "invalid_n"]
    assert result.quarantine[FIELD].tolist() == ["a", "a", "b", "c", "a"]  # the raw column is named
    assert result.ledger.rows_in == 7 == result.ledger.rows_clean + result.ledger.rows_quarantined


def test_timestamps_in_the_source_zone_epochs_and_offsets():
    spec = _spec(schema=[{"name": "local", "from": "a", "type": "timestamp", "format": "%d/%m/%Y %H:%M"},
                         {"name": "iso", "from": "b", "type": "timestamp"},
                         {"name": "epoch", "from": "c", "type": "timestamp", "unit": "ms"}], key=["local"])
    result = _clean(spec, a=["27/03/2011 00:30", "27/03/2011 01:30", "27/03/2011 02:30"],
                    b=["2011-03-27T00:30:00Z", "2011-03-27 03:00", "2011-03-27T12:00:00+05:30"],
                    c=["1301185800000", "1301185800000", "1301185800000"])
    # 01:30 does not exist in London that night: invalid, never silently shifted
    assert result.quarantine[REASON].tolist() == ["invalid_local"]
    clean = result.clean
    assert [t.isoformat() for t in clean["local"]] == ["2011-03-27T00:30:00+00:00", "2011-03-27T01:30:00+00:00"]
    assert [t.isoformat() for t in clean["iso"]] == ["2011-03-27T00:30:00+00:00", "2011-03-27T06:30:00+00:00"]
    assert clean["epoch"].iloc[0].isoformat() == "2011-03-27T00:30:00+00:00"


def test_category_maps_normalise_first_and_required_columns_have_missing_reasons():
    spec = _spec(schema=[{"name": "event", "from": "a", "type": "category", "normalise": ["strip", "lower"],
                          "values": {"pv": "view", "buy": "buy"}, "required": True, "missing_reason": "no_event"},
                         {"name": "who", "from": "b", "null_values": ["N/A"], "required": True}], key=["event", "who"])
    result = _clean(spec, a=[" PV ", "buy", "", "fav", "pv"], b=["u1", "u1", "u2", "u3", "N/A"])
    assert result.clean["event"].tolist() == ["view", "buy"]
    assert result.quarantine[REASON].tolist() == ["no_event", "invalid_event", "missing_who"]


def test_rules_run_in_order_after_the_columns_unless_placed():
    rules = [{"rule": "compare", "left": "low", "op": "<=", "right": "high", "reason": "low_above_high"},
             {"rule": "range", "column": "low", "min": 0, "strict_min": True, "reason": "non_positive"},
             {"rule": "regex", "column": "code", "pattern": "[A-Z]{2}", "reason": "bad_code", "after": "code"}]
    spec = _spec(schema=[{"name": "low", "from": "a", "type": "float"}, {"name": "code", "from": "c"},
                         {"name": "high", "from": "b", "type": "float"}], key=["low", "code"], rules=rules)
    result = _clean(spec, a=["5", "-1", "1", "2", ""], b=["4", "3", "x", "9", "1"], c=["AB", "AB", "abc", "xy", "CD"])
    # the third row breaks bad_code (placed after code) before high's own invalid check; nulls pass compare and range
    assert result.quarantine[REASON].tolist() == ["low_above_high", "non_positive", "bad_code", "bad_code"]
    assert result.clean["low"].isna().tolist() == [True]


def test_a_rule_placed_before_its_columns_is_refused():
    with pytest.raises(ValueError, match=r"rules\[0\]: placed after 'low', before its column 'code' is typed"):
        _spec(schema=[{"name": "low", "from": "a"}, {"name": "code", "from": "c"}], key=["low"],
              rules=[{"rule": "regex", "column": "code", "pattern": "x", "reason": "r", "after": "low"}])


def test_partition_and_window_rules_use_the_source_time_zone():
    spec = _spec(schema=[{"name": "at", "from": "a", "type": "timestamp"}], key=["at"], window={"end": "2011-03-27"},
                 rules=[{"rule": "date_window", "column": "at", "reason": "after_window"},
                        {"rule": "in_partition", "column": "at", "reason": "outside_partition"}])
    # 23:30 UTC on the 27th is 00:30 on the 28th in London (BST): outside the window
    result = _clean(spec, a=["2011-03-27T23:30:00Z", "2011-03-26T23:59:00Z", "2011-03-27T12:00:00Z"])
    assert result.quarantine[REASON].tolist() == ["after_window", "outside_partition"]


def test_derived_columns_and_max_length():
    spec = _spec(schema=[{"name": "q", "from": "a", "normalise": ["query"]}, {"name": "n", "from": "b", "type": "int"},
                         {"name": "twice", "type": "int", "expression": "n * 2"},
                         {"name": "has_q", "type": "bool", "expression": "q.notna()"}],
                 key=["q", "n"], rules=[{"rule": "max_length", "column": "q", "length": 5, "reason": "too_long"}])
    result = _clean(spec, a=["  Sofa!! ", "", "a &amp; b and more"], b=["2", "3", "4"])
    assert result.clean["q"].iloc[0] == "sofa" and result.clean["q"].isna().iloc[1]
    assert result.clean["twice"].tolist() == [4, 6]
    assert result.clean["has_q"].tolist() == [True, False]
    assert result.quarantine[REASON].tolist() == ["too_long"]


def _lookup_spec():
    return _spec(files=[{"name": "rows.csv", "columns": ["a", "b", "c"]},
                        {"name": "names.csv", "columns": ["code", "name"]}],
                 joins=[{"file": "names.csv", "key": "b", "lookup_key": "code"}],
                 schema=[{"name": "id", "from": "a", "required": True}, {"name": "name"}], key=["id"])


def test_a_lookup_is_left_joined_and_a_repeated_lookup_key_names_its_line():
    spec = _lookup_spec()
    rows = _raw(a=["1", "2", "3"], b=["x", "y", "z"], c=["", "", ""])
    names = _raw(code=["x", "y"], name=["Ex", "Why"])
    joined = cleaner_of(spec).combine({"rows.csv": rows, "names.csv": names})
    assert joined["name"].tolist() == ["Ex", "Why", ""] and joined[SOURCE_LINE].tolist() == [2, 3, 4]
    result = clean_partition(spec, joined, DAY)
    assert result.clean["name"].iloc[:2].tolist() == ["Ex", "Why"] and result.clean["name"].isna().iloc[2]
    with pytest.raises(LandingFileError, match=r"names.csv, line 4: lookup key \{'code': 'x'\} appears more than once"):
        cleaner_of(spec).combine({"rows.csv": rows, "names.csv": _raw(code=["x", "y", "x"], name=["a", "b", "c"])})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12), st.text(max_size=12)), min_size=0, max_size=40))
def test_any_text_ends_clean_quarantined_with_a_declared_reason_or_duplicate(rows):
    spec = _spec(schema=[{"name": "n", "from": "a", "type": "int", "required": True},
                         {"name": "at", "from": "b", "type": "timestamp"},
                         {"name": "kind", "from": "c", "type": "category", "values": ["x", "y"]}],
                 key=["n", "kind"], rules=[{"rule": "range", "column": "n", "max": 100, "reason": "too_big"},
                                           {"rule": "in_partition", "column": "at", "reason": "outside_partition"}])
    columns = {"a": [r[0] for r in rows], "b": [r[1] for r in rows], "c": [r[2] for r in rows]}
    result = clean_partition(spec, _raw(**columns) if rows else _raw(a=[], b=[], c=[]), DAY)
    ledger = result.ledger
    assert ledger.rows_in == len(rows) == ledger.rows_clean + ledger.rows_quarantined + ledger.rows_duplicate
    declared = {"missing_n", "invalid_n", "invalid_at", "invalid_kind", "too_big", "outside_partition"}
    assert set(result.quarantine[REASON]) <= declared | {BLANK_ROW_REASON}  # blank_row: every source's
    # Blank: every field empty or white space (ASCII white space surely; Python's str.strip also strips a few
    # control characters that Unicode does not call white space, so that is only the upper bound).
    surely = sum(all(not v.strip(" \t\r\n") for v in row) for row in rows)
    at_most = sum(all(not v.strip() for v in row) for row in rows)
    assert surely <= (result.quarantine[REASON] == BLANK_ROW_REASON).sum() <= at_most
    assert result.clean["n"].le(100).all() and result.clean["kind"].dropna().isin(["x", "y"]).all()
    assert not result.clean.duplicated(subset=["n", "kind"]).any()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1), max_size=20))  # exact in float64
def test_integers_round_trip_through_their_text(numbers):
    spec = _spec(schema=[{"name": "n", "from": "a", "type": "int"}, {"name": "line", "from": "b"}], key=["line"])
    texts = [f" {n} " for n in numbers]
    result = clean_partition(spec, _raw(a=texts, b=[str(i) for i in range(len(numbers))], c=[""] * len(numbers))
                             if numbers else _raw(a=[], b=[], c=[]), DAY)
    assert result.clean["n"].tolist() == numbers

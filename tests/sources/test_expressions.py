"""The expression language of derived columns (shopflow.sources.expressions) and the RE2 patterns of regex rules
(shopflow.sources.patterns): every function on real rows of the sample data, through the declared cleaner, checked
against plain Python on the same fields; and hypothesis properties: whatever the text or the tree, the language
answers with a value or an ExpressionError, nothing else."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sample_rows import BEHAVIOR_FILE, WANDS_QUERIES, records
from shopflow.common.landing_file import SOURCE_FILE, SOURCE_LINE
from shopflow.landing.sample_data import OLIST_PRODUCTS
from shopflow.sources.cleaning import clean_partition
from shopflow.sources.expressions import (
    BOOL,
    DATE,
    FUNCTIONS,
    NUMBER,
    TEXT,
    TIMESTAMP,
    ExpressionError,
    check_expression,
    compile_expression,
)
from shopflow.sources.patterns import PatternError, compile_pattern, fully_matching
from shopflow.sources.spec import parse_sources

DAY = date(2015, 12, 3)


def _spec(columns: list[str], schema: list[dict], key: list[str]):
    entry = {"description": "d", "owner": "o", "files": [{"name": "rows.csv", "columns": columns}], "schema": schema,
             "key": key}
    return parse_sources({"shop": entry}, "test")["shop"]


def _raw(columns: list[str], rows: list[tuple[str, ...]]) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.array([r[i] for r in rows], dtype="string") for i, c in enumerate(columns)})
    frame.insert(0, SOURCE_FILE, "rows.csv")
    frame[SOURCE_LINE] = np.arange(2, len(rows) + 2)
    return frame


def _clean(columns, rows, schema, key, derived: dict[str, tuple[str, str]]) -> pd.DataFrame:
    schema = schema + [{"name": name, "type": kind, "expression": text} for name, (kind, text) in derived.items()]
    result = clean_partition(_spec(columns, schema, key), _raw(columns, rows), DAY)
    assert len(result.quarantine) == 0, result.quarantine
    return result.clean.set_index(key[0], drop=False)


def _nullable(value):
    return None if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value


# ---- every function on real rows ----------------------------------------------------------------------------------
TEXT_COLUMNS = {
    "lowered": ("string", "lower(query)", lambda q, c: q.lower()),
    "shouted": ("string", "query.str.upper()", lambda q, c: q.upper()),
    "class_stripped": ("string", "strip(' ' + query_class + ' ')", lambda q, c: c and c.strip()),
    "length": ("int", "len(query)", lambda q, c: len(q)),
    "first3": ("string", "query.str[:3]", lambda q, c: q[:3]),
    "inner": ("string", "slice(query, 1, -1)", lambda q, c: q[1:-1]),
    "sliced": ("string", "query.str.slice(2, 5)", lambda q, c: q[2:5]),
    "starts_s": ("bool", "startswith(query, 's')", lambda q, c: q.startswith("s")),
    "ends_s": ("bool", "query_class.str.endswith('s')", lambda q, c: None if c is None else c.endswith("s")),
    "tables": ("bool", "contains(query_class, 'Table')", lambda q, c: None if c is None else "Table" in c),
    "joined": ("string", "cat(query, query_class, sep=' | ')", lambda q, c: None if c is None else f"{q} | {c}"),
    "pandas_cat": ("string", "query.str.cat([query_class, query], sep='/')",
                   lambda q, c: None if c is None else f"{q}/{c}/{q}"),
    "plus": ("string", "query + '!' + query_class.str.lower()", lambda q, c: None if c is None else q + "!" + c.lower()),
    "no_class": ("bool", "isna(query_class)", lambda q, c: c is None),
    "has_class": ("bool", "query_class.notna()", lambda q, c: c is not None),
    "class_or_none": ("string", "fillna(query_class, 'none')", lambda q, c: "none" if c is None else c),
    "class_or_query": ("string", "coalesce(query_class, query)", lambda q, c: q if c is None else c),
    "kind": ("string", "'long' if len(query) > 20 else 'short' if len(query) > 5 else 'tiny'",
             lambda q, c: "long" if len(q) > 20 else "short" if len(q) > 5 else "tiny"),
    "same_start": ("bool", "query.str[:1] == query_class.str[:1].str.lower()",
                   lambda q, c: None if c is None else q[:1] == c[:1].lower()),
}


def test_every_text_function_on_the_real_wands_queries():
    rows = [r.fields for r in records(WANDS_QUERIES, "\t")[1:]]
    assert len(rows) == 384 and sum(1 for r in rows if not r[2]) == 6  # six queries have no class
    clean = _clean(["query_id", "query", "query_class"], rows,
                   [{"name": "query_id", "type": "int"}, {"name": "query"}, {"name": "query_class"}], ["query_id"],
                   {name: (kind, text) for name, (kind, text, _) in TEXT_COLUMNS.items()})
    for query_id, query, query_class in rows:
        row = clean.loc[int(query_id)]
        query, query_class = query.strip(), query_class.strip() or None
        for name, (_, text, expected) in TEXT_COLUMNS.items():
            assert _nullable(row[name]) == expected(query, query_class), (text, query, query_class)


def _olist_rows(first: int = 2000) -> list[tuple[str, ...]]:
    """The first products, and every product with an empty field (real gaps: nulls go through every function)."""
    rows = [r.fields for r in records(OLIST_PRODUCTS)[1:]]
    return rows[:first] + [r for r in rows[first:] if not all(r[4:8])]


def _number(text: str) -> float | None:
    return float(text) if text.strip() else None


def _not(a):
    return None if a is None else not a


def _and(a, b):  # three-valued, as SQL: null and false is false
    return False if a is False or b is False else None if None in (a, b) else True


def _or(a, b):  # null or true is true
    return True if a is True or b is True else None if None in (a, b) else False


NUMBER_COLUMNS = {
    "spread": ("float", "abs(length_cm - height_cm)", lambda w, p, ln, h: None if None in (ln, h) else abs(ln - h)),
    "third": ("float", "round(weight_g / 3, 2)", lambda w, p, ln, h: None if w is None else float(np.round(w / 3, 2))),
    "area": ("float", "length_cm * height_cm + 1", lambda w, p, ln, h: None if None in (ln, h) else ln * h + 1),
    "weeks": ("float", "weight_g // 7", lambda w, p, ln, h: None if w is None else w // 7),
    "odd_photos": ("int", "photos % 2", lambda w, p, ln, h: None if p is None else int(p) % 2),
    "negative": ("int", "-photos", lambda w, p, ln, h: None if p is None else -int(p)),
    "read": ("float", "to_number(weight_text)", lambda w, p, ln, h: w),
    "photos_or_zero": ("int", "fillna(photos, 0)", lambda w, p, ln, h: 0 if p is None else int(p)),
    "first_size": ("float", "coalesce(weight_g, length_cm, -1.0)",
                   lambda w, p, ln, h: w if w is not None else ln if ln is not None else -1.0),
    "heavy": ("string", "'heavy' if weight_g > 1000 else 'light'",
              lambda w, p, ln, h: None if w is None else "heavy" if w > 1000 else "light"),
    "mid_length": ("bool", "10 <= length_cm < 50", lambda w, p, ln, h: None if ln is None else 10 <= ln < 50),
    "light_with_photos": ("bool", "photos > 1 and not weight_g > 1000",
                          lambda w, p, ln, h: _and(p and p > 1, _not(w and w > 1000))),
    "either": ("bool", "(photos > 3) | ~(length_cm >= 20)", lambda w, p, ln, h: _or(p and p > 3, _not(ln and ln >= 20))),
}


def test_every_number_function_and_operator_on_real_olist_products():
    rows = [(r[0], r[4], r[5], r[5], r[6], r[7]) for r in _olist_rows()]
    columns = ["product_id", "photos", "weight_g", "weight_text", "length_cm", "height_cm"]
    schema = [{"name": "product_id"}, {"name": "photos", "type": "int"}, {"name": "weight_g", "type": "float"},
              {"name": "weight_text"}, {"name": "length_cm", "type": "float"}, {"name": "height_cm", "type": "float"}]
    clean = _clean(columns, rows, schema, ["product_id"],
                   {name: (kind, text) for name, (kind, text, _) in NUMBER_COLUMNS.items()})
    assert sum(1 for r in rows if not r[1]) > 100 and sum(1 for r in rows if not r[2]) > 0
    for product_id, photos, weight, _, length, height in rows:
        row = clean.loc[product_id]
        photos = int(photos) if photos else None
        values = (_number(weight), photos, _number(length), _number(height))
        for name, (_, text, expected) in NUMBER_COLUMNS.items():
            got, want = _nullable(row[name]), expected(*values)
            assert got == (pytest.approx(want) if isinstance(want, float) else want), (text, values)


def test_date_parts_on_real_behaviour_timestamps():
    behaviour = records(BEHAVIOR_FILE)[:2000]
    rows = [(str(i), r.fields[4], datetime.fromtimestamp(int(r.fields[4]), timezone.utc).date().isoformat())
            for i, r in enumerate(behaviour)]
    derived = {"y": ("int", "year(at)"), "m": ("int", "at.dt.month"), "d": ("int", "day(on)"), "h": ("int", "hour(at)"),
               "dm": ("int", "on.dt.day * 100 + month(on)"), "same_year": ("bool", "year(at) == on.dt.year")}
    clean = _clean(["line", "at", "on"], rows, [{"name": "line", "type": "int"},
                                                {"name": "at", "type": "timestamp", "unit": "s"},
                                                {"name": "on", "type": "date"}], ["line"], derived)
    for line, epoch, _ in rows:
        moment = datetime.fromtimestamp(int(epoch), timezone.utc)
        row = clean.loc[int(line)]
        assert (row["y"], row["m"], row["d"], row["h"]) == (moment.year, moment.month, moment.day, moment.hour)
        assert row["dm"] == moment.day * 100 + moment.month and row["same_year"]


def test_the_language_covers_every_function_it_documents():
    used = " ".join(text for _, text, _ in [*TEXT_COLUMNS.values(), *NUMBER_COLUMNS.values()])
    used += " year month day hour"
    assert all(name in used for name in FUNCTIONS), sorted(n for n in FUNCTIONS if n not in used)


def test_literals_and_nulls_stand_for_whole_columns():
    compiled = compile_expression("'x' if flag else None", {"flag": BOOL})
    flag = pd.Series([True, False, None], dtype="boolean")
    assert compiled.evaluate({"flag": flag}, flag.index).tolist() == ["x", pd.NA, pd.NA]
    assert compile_expression("1 / 0", {}).evaluate({}, pd.RangeIndex(2)).tolist() == [math.inf, math.inf]


def test_a_value_its_column_cannot_hold_fails_the_day_naming_the_column():
    spec = _spec(["a"], [{"name": "a"}, {"name": "whole", "type": "int", "expression": "to_number(a)"}], ["a"])
    with pytest.raises(ExpressionError, match=r"shop: derived column 'whole': gives 2.5, not a whole number"):
        clean_partition(spec, _raw(["a"], [("1",), ("2.5",)]), DAY)
    assert clean_partition(spec, _raw(["a"], [("1",), ("x",)]), DAY).clean["whole"].tolist() == [1, pd.NA]


@pytest.mark.parametrize(("text", "fragment"), [
    ("lower(n)", "an argument of lower is text, not number"),
    ("q + n", "is text, not number"),
    ("q == None", "isna(x) tests for null"),
    ("n == q", "compares values of different kinds"),
    ("~n", "the operand of not and ~ is bool, not number"),
    ("round(n, n)", "this argument of round is an integer literal"),
    ("slice(q, 'a', 2)", "this argument of slice is an integer literal"),
    ("cat(q)", "cat takes 2 or more arguments, not 1"),
    ("cat(q, q, joiner='-')", "cat takes no keyword 'joiner'"),
    ("year(q)", "an argument of year is date or timestamp, not text"),
    ("hour(d)", "an argument of hour is timestamp, not date"),
    ("'a' if n else 'b'", "the condition of if-else is bool, not number"),
    ("n if flag else q", "the two values of if-else are of different kinds"),
    ("12345678901234567890", "an integer literal is less than 2**53"),
    ("q.str.contains('a')", ".str.contains() is not a function of the language"),
    ("n.astype('str')", "attribute .astype"),
    ("q in ['a']", "the operator in"),
    ("q is None", "the operator is"),
    ("", "a non-empty text"),
    ("q +", "not an expression"),
])
def test_a_mistake_is_named_with_its_part(text, fragment):
    with pytest.raises(ExpressionError) as error:
        compile_expression(text, {"q": TEXT, "n": NUMBER, "flag": BOOL, "d": DATE, "t": TIMESTAMP})
    assert fragment in str(error.value), str(error.value)


# ---- properties ---------------------------------------------------------------------------------------------------
COLUMNS = {"q": TEXT, "n": NUMBER, "p": NUMBER, "flag": BOOL, "d": DATE, "t": TIMESTAMP}
FRAME = {
    "q": pd.Series(["smart coffee table", None, "Kids Wall Décor", "", "a&amp;b"], dtype="string"),
    "n": pd.Series([1, None, -3, 0, 2**40], dtype="Int64"),
    "p": pd.Series([0.5, math.nan, -2.25, 0.0, 1e300]),
    "flag": pd.Series([True, None, False, True, False], dtype="boolean"),
    "d": pd.Series(pd.to_datetime(["2015-12-03", None, "1970-01-01", "2099-12-31", "2011-03-27"])).astype(
        "datetime64[s]"),
    "t": pd.Series(pd.to_datetime(["2015-12-03T10:00Z", None, "1970-01-01T00:00Z", "2099-12-31T23:59Z",
                                   "2011-03-27T01:30Z"], utc=True)).astype("datetime64[us, UTC]"),
}
INDEX = pd.RangeIndex(5)

LEAVES = st.sampled_from(["q", "n", "p", "flag", "d", "t", "x", "os", "pd", "__import__", "__builtins__", "True",
                          "False", "None", "0", "1", "-2", "2.5", "1e308", "'abc'", "''", "'@x'", "2**53",
                          "12345678901234567890", "b'x'", "1j", "...", "[1]", "{}"])
OPERATORS = ["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", "and", "or", "&", "|", "^", "@",
             "in", "is", "<<"]
NAMES = [*FUNCTIONS, "eval", "exec", "open", "getattr", "globals", "str", "dt", "system", "__class__", "format",
         "astype", "apply", "pipe", "values", "contains", "replace"]


def _tree(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(OPERATORS), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "+", "not ", "~"]), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(NAMES), st.lists(children, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(children, st.sampled_from(NAMES), st.lists(children, max_size=2)).map(
            lambda t: f"{t[0]}.{t[1]}({', '.join(t[2])})"),
        st.tuples(children, st.sampled_from(["str", "dt"]), st.sampled_from(NAMES)).map(lambda t: f"{t[0]}.{t[1]}.{t[2]}"),
        st.tuples(children, st.sampled_from(NAMES), st.lists(children, max_size=2)).map(
            lambda t: f"{t[0]}.str.{t[1]}({', '.join(t[2])})"),
        st.tuples(children, st.integers(-3, 3), st.integers(-3, 3)).map(lambda t: f"{t[0]}.str[{t[1]}:{t[2]}]"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(children, st.sampled_from(["sep", "x"]), children).map(lambda t: f"cat({t[0]}, {t[0]}, {t[1]}={t[2]})"),
        children.map(lambda c: f"(lambda: {c})()"),
        children.map(lambda c: f"[v for v in {c}]"),
        children.map(lambda c: f"@{c}"),
    )


EXPRESSIONS = st.recursive(LEAVES, _tree, max_leaves=10)


def _typed_expressions():
    """Well-kinded expressions of every construct of the language, over COLUMNS."""
    small = st.integers(-4, 4).map(str)
    text = st.deferred(lambda: st.one_of(
        st.sampled_from(["q", "'abc'", "''", "'Décor'"]),
        st.tuples(st.sampled_from(["lower", "upper", "strip"]), text).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(text, st.sampled_from(["lower", "upper", "strip"])).map(lambda t: f"{t[0]}.str.{t[1]}()"),
        st.tuples(text, text).map(lambda t: f"({t[0]} + {t[1]})"),
        st.tuples(text, small, small).map(lambda t: f"slice({t[0]}, {t[1]}, {t[2]})"),
        st.tuples(text, small, small).map(lambda t: f"{t[0]}.str[{t[1]}:{t[2]}]"),
        st.tuples(text, text).map(lambda t: f"cat({t[0]}, {t[1]}, sep='-')"),
        st.tuples(text, text).map(lambda t: f"{t[0]}.str.cat({t[1]})"),
        st.tuples(text, text).map(lambda t: f"coalesce({t[0]}, {t[1]}, 'z')"),
        st.tuples(text).map(lambda t: f"fillna({t[0]}, 'none')"),
        st.tuples(text, boolean, text).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
    ))
    number = st.deferred(lambda: st.one_of(
        st.sampled_from(["n", "p", "0", "1", "-2", "2.5", "1e308", "9007199254740991"]),
        st.tuples(number, st.sampled_from(["+", "-", "*", "/", "//", "%"]), number).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        number.map(lambda t: f"-({t})"),
        st.tuples(st.sampled_from(["abs", "round"]), number).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(number, small).map(lambda t: f"round({t[0]}, {t[1]})"),
        text.map(lambda t: f"len({t})"),
        text.map(lambda t: f"to_number({t})"),
        st.sampled_from(["year(t)", "month(d)", "day(t)", "hour(t)", "t.dt.year", "d.dt.month"]),
        st.tuples(number, number).map(lambda t: f"fillna({t[0]}, {t[1]})"),
        st.tuples(number, boolean, number).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
    ))
    boolean = st.deferred(lambda: st.one_of(
        st.sampled_from(["flag", "True", "False"]),
        st.tuples(number, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), number).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(number, number, number).map(lambda t: f"({t[0]} < {t[1]} <= {t[2]})"),
        st.tuples(text, text).map(lambda t: f"({t[0]} == {t[1]})"),
        st.tuples(st.sampled_from(["t", "d"])).map(lambda t: f"({t[0]} > {t[0]})"),
        st.tuples(boolean, st.sampled_from(["and", "or", "&", "|"]), boolean).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        boolean.map(lambda t: f"(not ({t}))"),  # parenthesised: `a & not b` is not Python syntax
        boolean.map(lambda t: f"~({t})"),
        st.tuples(st.sampled_from(["isna", "notna"]), st.one_of(text, number, boolean)).map(
            lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(["startswith", "endswith", "contains"]), text).map(lambda t: f"{t[0]}({t[1]}, 'a')"),
    ))
    return st.one_of(text, number, boolean)


def _answer(text: str):
    """What the language makes of `text`: a Series of the frame's length, or an ExpressionError (anything else fails
    the property)."""
    try:
        compiled = compile_expression(text, COLUMNS)
    except ExpressionError:
        return None
    values = compiled.evaluate({name: FRAME[name] for name in compiled.columns}, INDEX)
    assert isinstance(values, pd.Series) and len(values) == len(INDEX)
    return values


@settings(max_examples=400, deadline=None)
@given(EXPRESSIONS)
def test_any_expression_tree_gives_values_or_an_expression_error(text):
    try:
        _answer(text)
    except ExpressionError:
        pass  # evaluated and refused (e.g. an integer overflow), with the expression named


@settings(max_examples=150, deadline=None)
@given(_typed_expressions())
def test_any_well_kinded_expression_compiles_and_gives_values_or_an_expression_error(text):
    if len(text) > 1000:
        return
    compile_expression(text, COLUMNS)  # accepted: every construct here is in the language
    try:
        _answer(text)
    except ExpressionError as error:  # e.g. an overflow on these rows: said so, naming the expression
        assert "cannot be evaluated on these rows" in str(error), str(error)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_gives_values_or_an_expression_error(text):
    try:
        check_expression(text)
        _answer(text)
    except ExpressionError:
        pass


def test_the_language_never_reaches_python_objects():
    """What the trees above try, spelled out: each is refused before anything runs."""
    for text in ["q.__class__", "q.str.__class__", "q.dt.__class__.__mro__", "().__class__", "n.real", "q.str",
                 "q.dt", "q.values", "q.index", "pd", "__builtins__", "globals()", "vars()", "type(q)"]:
        with pytest.raises(ExpressionError):
            compile_expression(text, COLUMNS)


# ---- patterns -------------------------------------------------------------------------------------------------------
def test_patterns_are_matched_whole_and_in_linear_time():
    assert fully_matching("[0-9a-f]{32}", ["c2d766ca982eca8304150849735ffef9", "C2D766CA982ECA8304150849735FFEF9",
                                           "c2d766ca982eca8304150849735ffef9\n", "x"]) == [
        "c2d766ca982eca8304150849735ffef9"]
    # (a+)+b is exponential under a backtracking engine; RE2 answers for a 100,000-character value at once.
    assert fully_matching("(a+)+b", ["a" * 100_000 + "c", "aaab"]) == ["aaab"]
    assert fully_matching(r"\d+", ["123", "٣"]) == ["123"]  # RE2's \d is ASCII (documented)
    assert fully_matching(".*", ["ok", "\ud800"]) == ["ok"]  # not valid Unicode: matches nothing


@pytest.mark.parametrize("pattern", ["(?=a)(a+)+b", r"(a)\1", "(?<!x)y", "(?>a)", "a{2,1}", "("])
def test_a_pattern_re2_cannot_compile_is_refused_naming_it(pattern):
    with pytest.raises(PatternError) as error:
        compile_pattern(pattern)
    assert repr(pattern) in str(error.value)

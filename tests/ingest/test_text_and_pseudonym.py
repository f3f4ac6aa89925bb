"""Text normalisation and keyed pseudonymisation, on real titles, queries and customer ids."""

from __future__ import annotations

import re
import unicodedata

import pandas as pd
import pytest
from sample_rows import CATALOG_NAMES, TEST_KEY, WANDS_QUERIES, orders_frame, pseudonymise_like_ingest, records
from shopflow.common.text import normalise_query, normalise_text, normalise_text_series
from shopflow.ingest.pseudonym import TOKEN_HEX_CHARS, canonical_id, pseudonymise, pseudonymise_series
from shopflow.sources import get_source

TOKEN = re.compile(rf"[0-9a-f]{{{TOKEN_HEX_CHARS}}}")

# --- normalise_text ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("WHITE HANGING HEART T-LIGHT HOLDER", "WHITE HANGING HEART T-LIGHT HOLDER"),
        ("  Bengal Blooms Rose Artificial Plant  with Pot ", "Bengal Blooms Rose Artificial Plant with Pot"),
        ("Coffee &amp; Cocktail Tables", "Coffee & Cocktail Tables"),
        ("Coffee &amp;amp; Cocktail Tables", "Coffee & Cocktail Tables"),  # double-escaped, as scraped text often is
        ("Kids Wall De\u0301cor", "Kids Wall Décor"),  # decomposed accent is composed by NFKC
        ("Kids Wall D\u00e9cor", "Kids Wall Décor"),
        ("\uff21\uff22\uff23 Ｂａｇ", "ABC Bag"),  # full-width forms
        ("\ufb01ne", "fine"),  # ligature
        ("line\r\nbreak\ttab\u00a0nbsp", "line break tab nbsp"),
        ("bell\x07 and null\x00", "bell and null"),
        ("e\x01\u0301", "é"),  # a control between a letter and its accent
        ("&lt;b&gt;bold&lt;/b&gt;", "<b>bold</b>"),
        ("&#233;t&eacute;", "été"),
        ("", None),
        ("   \t\n ", None),
        ("&nbsp;", None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_normalise_text(raw, expected):
    assert normalise_text(raw) == expected


def test_normalise_text_series_matches_scalar_and_keeps_index():
    values = pd.Series(["a  b", None, "a  b", "", "&amp;", "x"], index=[10, 11, 12, 13, 14, 15], dtype="string")
    out = normalise_text_series(values)
    assert list(out.index) == [10, 11, 12, 13, 14, 15]
    assert out.dtype == "string"
    assert out.tolist() == ["a b", pd.NA, "a b", pd.NA, "&", "x"]


def test_normalise_text_on_real_catalogue_titles():
    titles = [r.fields[1] for r in records(CATALOG_NAMES)]
    out = normalise_text_series(pd.Series(titles, dtype="string"))
    assert out.notna().all()
    assert not out.str.contains("  ", regex=False).any()
    assert (out == out.str.strip()).all()
    assert all(normalise_text(t) == t for t in out.unique())  # idempotent on real data
    doubled = [t for t in titles if "  " in t]
    assert doubled, "real titles with double spaces exist (e.g. 'Plant  with Pot')"


# --- normalise_query -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("smart coffee table", "smart coffee table"),
        ("gurney  slade 56", "gurney slade 56"),  # real WANDS query with a double space
        ("  Kids Wall Décor ", "kids wall décor"),
        ("Kids Wall De\u0301cor", "kids wall décor"),
        ("Coffee &amp; Cocktail Tables?", "coffee & cocktail tables"),
        ("&AMP;amp;", "&"),  # case folding forms a new entity: still a fixed point
        ("'dinosaur.'", "dinosaur"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),
        ("?!", None),
        ("", None),
        ("&nbsp;", None),
        (None, None),
    ],
)
def test_normalise_query(raw, expected):
    assert normalise_query(raw) == expected


def test_normalise_query_on_real_wands_queries():
    rows = records(WANDS_QUERIES, "\t")[1:]
    assert len(rows) == 384
    for row in rows:
        for text in row.fields[1:]:  # the query and its product class ('Kids Wall Décor', 'Coffee & Cocktail Tables')
            q = normalise_query(text)
            if q is None:
                assert not text.strip()
                continue
            assert normalise_query(q) == q
            assert q == q.casefold()
            assert q == q.strip() and "  " not in q


# --- pseudonymisation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("17850.0", "17850"), ("17850", "17850"), (" 17850.0 ", "17850"), ("", None), ("   ", None), (None, None),
     ("1000169", "1000169"), ("u00042", "u00042"), ("12.5", "12.5"), ("abc.0", "abc.0")],
)
def test_canonical_id(raw, canonical):
    assert canonical_id(raw) == canonical


def test_float_printed_and_integer_ids_get_the_same_token():
    assert pseudonymise(canonical_id("17850.0"), TEST_KEY) == pseudonymise(canonical_id("17850"), TEST_KEY)
    tokens = pseudonymise_series(pd.Series(["17850.0", "17850", " 17850 ", "13047.0"], dtype="string"), TEST_KEY)
    assert tokens.iloc[0] == tokens.iloc[1] == tokens.iloc[2] != tokens.iloc[3]


def test_tokens_are_keyed_hex_and_do_not_contain_the_id():
    token = pseudonymise("17850", TEST_KEY)
    assert TOKEN.fullmatch(token)
    assert token == pseudonymise("17850", TEST_KEY)
    assert token != pseudonymise("17850", b"another key")
    assert "17850" not in token


def test_blank_ids_stay_missing():
    tokens = pseudonymise_series(pd.Series(["", None, "  ", "17850.0"], dtype="string"), TEST_KEY)
    assert tokens.isna().tolist() == [True, True, True, False]
    assert tokens.dtype == "string"


def test_real_customer_ids_map_one_to_one_to_tokens():
    ids = orders_frame()["CustomerID"]
    assert ids.str.endswith(".0").sum() == (ids != "").sum()  # Spark printed every id as a float
    assert (ids == "").sum() == 98056  # SOURCES.md
    distinct = pd.Series(ids.unique(), dtype="string")
    tokens = pseudonymise_series(distinct, TEST_KEY)
    present = tokens.notna()
    assert present.sum() == len(distinct) - 1  # only '' has no token
    assert tokens[present].str.fullmatch(TOKEN.pattern).all()
    assert tokens[present].nunique() == present.sum()  # no collisions among the real ids
    assert not set(tokens[present]) & set(ids)


def test_pseudonymise_like_ingest_matches_the_pipeline():
    """The tests' raw frames are built like pipeline._pseudonymise builds them."""
    from shopflow.steps.partition import _pseudonymise

    class KeyOnly:
        def resolve_pseudonym_key(self) -> bytes:
            return TEST_KEY

    spec = get_source("orders")
    raw = orders_frame().iloc[:50].drop(columns=["line", "day"]).astype("string")
    raw["_source_line"] = range(2, 52)
    ours = pseudonymise_like_ingest(raw, spec)
    theirs = _pseudonymise(raw, spec, KeyOnly())
    pd.testing.assert_frame_equal(ours, theirs)
    assert "CustomerID" not in ours.columns
    assert list(ours.columns).index("customer_key") == list(raw.columns).index("CustomerID")


def test_unicode_id_is_hashed_as_utf8():
    assert TOKEN.fullmatch(pseudonymise("用户42", TEST_KEY))
    assert pseudonymise("é", TEST_KEY) != pseudonymise(unicodedata.normalize("NFD", "é"), TEST_KEY)

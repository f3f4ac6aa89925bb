"""How far `python -m shopflow sources infer` agrees with the hand-written entries of the shipped sources file.

Re-infers each sample source from its raw export in the sample data (SHOPFLOW_SOURCE_DATA, default ../shared/data;
the search source has no raw export: its generated log of one day is written to a temporary folder first) and
counts, per landing file, how many of the hand-written entry's columns, types, key columns and role fields the draft
gives back. Columns are compared by position (a file without a header row has no names to find); a type, key or
role field by the raw column it reads (a cleaner module's clean columns through its COLUMN_LINEAGE). Prints a
Markdown table, then every disagreement. Usage:

    PYTHONPATH=include:scripts .venv/bin/python scripts/infer_agreement.py
"""

from __future__ import annotations

import csv
import importlib
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

from shopflow.landing.search_log import generate_search_log, load_catalogue_titles
from shopflow.sources import load_sources
from shopflow.sources.infer import infer_draft

REPO = Path(__file__).resolve().parents[1]
GENERATED = "(generated: one day of shopflow.landing.search_log)"
CASES = [  # source, its declared landing file, the raw export in the sample data
    ("orders", "orders.csv", "events/online_retail_2010-12-01_to_2011-09-30.csv.gz"),
    ("behavior", "behavior.csv", "events/taobao_user_behavior_sample.csv.gz"),
    ("catalog", "flipkart_name_category_tree.csv", "catalog/flipkart_name_category_tree.csv.gz"),
    ("catalog", "flipkart_prices_brand.csv", "catalog/flipkart_prices_brand.csv.gz"),
    ("catalog", "flipkart_full_columns.csv", "catalog/flipkart_full_columns_first999.csv.gz"),
    ("search", "search_log.csv", GENERATED),
    ("olist_catalog", "olist_products_dataset.csv", "catalog/olist_products_dataset.csv.gz"),
    ("olist_catalog", "product_category_name_translation.csv", "catalog/product_category_name_translation.csv.gz"),
]
DTYPE_TYPES = {"string": "string", "Int64": "int", "int64": "int", "float64": "float", "boolean": "bool",
               "datetime64[us, UTC]": "timestamp", "datetime64[s]": "date"}


def hand_lineage(spec) -> dict[str, tuple[list[str], str | None]]:
    """Clean column -> (the raw columns it reads, its type) of a hand-written entry."""
    tokens = {token: raw for raw, token in spec.pseudonymise.items()}
    if spec.schema_ is not None:
        return {c.name: ([tokens.get(c.raw, c.raw)] if c.expression is None else [], c.type) for c in spec.schema_}
    module = importlib.import_module(spec.cleaner)
    return {clean: ([tokens.get(r, r) for r in raws], DTYPE_TYPES.get(module.CLEAN_SCHEMA.get(clean)))
            for clean, raws in module.COLUMN_LINEAGE.items() if clean != "source_line"}


def compare(source: str, file_name: str, export: Path) -> tuple[dict, list[str]]:
    spec = load_sources(REPO / "include/shopflow/sources.yaml")[source]
    declared = next(f for f in spec.files if f.name == file_name)
    draft = infer_draft(export)
    inferred_raw = list(draft.sample.columns)
    # the draft's raw names -> the hand-written ones, by position (a header-less file has no names to find)
    to_hand = dict(zip(inferred_raw, declared.columns))
    notes, lineage = [], hand_lineage(spec)

    columns = sum(a == b for a, b in zip(inferred_raw, declared.columns))
    if columns < len(declared.columns):
        notes.append(f"columns: drafted {inferred_raw}, hand-written {declared.columns}")
    header_ok = draft.sample.header == declared.header

    hand_types = {}
    for raws, column_type in lineage.values():
        if len(raws) == 1 and raws[0] in declared.columns and raws[0] not in hand_types and column_type:
            hand_types[raws[0]] = "string" if raws[0] in spec.pseudonymise else column_type
    drafted_types = {to_hand.get(p.raw): ("string" if p.raw in draft.pseudonymised else p.type) for p in draft.profiles}
    types = sum(drafted_types.get(raw) == t for raw, t in hand_types.items())
    notes += [f"type of {raw}: drafted {drafted_types.get(raw)}, hand-written {t}" for raw, t in hand_types.items()
              if drafted_types.get(raw) != t]

    hand_key = {r for c in spec.dedup_key for r in lineage.get(c, ([c], None))[0]}
    by_name = {p.name: p.raw for p in draft.profiles}
    drafted_key = {to_hand.get(by_name[c]) for c in draft.key.columns}
    key = "n/a (a lookup file)" if file_name in spec.lookup_files else (
        "yes" if hand_key == drafted_key else "no")
    if key == "no":
        notes.append(f"key: drafted {sorted(drafted_key)}, hand-written {sorted(hand_key)}")

    role = draft.role
    hand_fields = {}
    for role_field in (spec.role.fields if spec.role else {}):
        raws = {r for c in spec.role.columns(role_field) for r in lineage.get(c, ([], None))[0]}
        if raws and raws <= set(declared.columns):
            hand_fields[role_field] = raws
    drafted_fields = {}
    for role_field, guess in role.fields.items():
        raws = {to_hand.get(c.raw) for c in guess.columns}
        if guess.derived:
            raws = {to_hand.get(draft.role.fields["order_id"].columns[0].raw)}
        drafted_fields[role_field] = raws
    # a field the hand-written cleaner computes from several raw columns agrees when the draft maps one of them
    agreeing = {f for f, raws in hand_fields.items() if drafted_fields.get(f) and drafted_fields[f] <= raws}
    fields = len(agreeing)
    notes += [f"role field {f}: drafted {sorted(drafted_fields[f]) if f in drafted_fields else 'unmapped'}, "
              f"hand-written {sorted(raws)}" for f, raws in hand_fields.items() if f not in agreeing]
    extra = sorted(set(drafted_fields) - set(hand_fields))
    if extra:
        notes.append(f"role fields drafted beyond the hand-written ones (for this file): {extra}")
    hand_role = spec.role.name if spec.role else "-"
    if (role.name or "-") != hand_role:
        notes.append(f"role: drafted {role.name or 'none'}, hand-written {hand_role}")
    if draft.zone.zone != spec.timezone:
        notes.append(f"time zone: drafted {draft.zone.zone} ({draft.zone.evidence}), hand-written {spec.timezone}")
    row = {"source": source, "file": file_name, "columns": f"{columns}/{len(declared.columns)}",
           "header": "yes" if header_ok else "no", "types": f"{types}/{len(hand_types)}", "key": key,
           "role": f"{role.name or '-'} / {hand_role}", "role fields": f"{fields}/{len(hand_fields)}",
           "zone": f"{draft.zone.zone} / {spec.timezone}"}
    return row, notes


def main() -> int:
    data = Path(os.environ.get("SHOPFLOW_SOURCE_DATA", REPO.parent / "shared" / "data"))
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for source, file_name, relative in CASES:
            if relative == GENERATED:
                header, records = generate_search_log(load_catalogue_titles(data), date(2015, 12, 3))
                export = Path(scratch) / "search_log.csv"
                with export.open("w", newline="", encoding="utf-8") as handle:
                    csv.writer(handle).writerows([header, *records])
            else:
                export = data / relative
            row, found = compare(source, file_name, export)
            rows.append(row)
            notes += [f"- {source} / {file_name}: {note}" for note in found]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(row[k] for k in keys) + " |")
    print("\nDisagreements:\n" + "\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())

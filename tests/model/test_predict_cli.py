"""`python -m shopflow predict` on files of real products: CSV with the catalogue's column names, JSON lines with
the role's field names, and a file without titles (a clear error naming the file); hostile and unusable inputs
(tests/support/hostile_inputs.py, an output that is the input, empty or binary files) refused in one line before any
model is loaded."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys

import hostile_inputs as hostile
import pandas as pd
import pytest


def _real_products(source_data, n: int = 40) -> list[dict]:
    with gzip.open(source_data / "catalog" / "flipkart_prices_brand.csv.gz", "rt", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows[:: max(1, len(rows) // n)][:n]


def _predict(trained_model, tmp_path, input_path, output_path):
    env = {**os.environ, "SHOPFLOW_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "shopflow", "predict", "--input", str(input_path), "--output",
                           str(output_path), "--model", str(trained_model.model_dir)],
                          capture_output=True, text=True, env=env, timeout=600)


def test_predict_scores_a_csv_and_a_jsonl_file_of_real_products(trained_model, tmp_path, source_data):
    products = _real_products(source_data)
    csv_path = tmp_path / "products.csv"
    pd.DataFrame([{"uniq_id": p["uniq_id"], "product_name": p["product_name"], "brand": p["brand"]}
                  for p in products]).to_csv(csv_path, index=False)
    done = _predict(trained_model, tmp_path, csv_path, tmp_path / "scored.csv")
    assert done.returncode == 0, done.stderr[-2000:]
    scored = pd.read_csv(tmp_path / "scored.csv", dtype={"id": str})
    labels = trained_model.result["labels"]
    assert scored["id"].tolist() == [p["uniq_id"] for p in products]
    # A product the model puts in its fold-in class has no category (an empty cell).
    assert set(scored["category"].dropna()) <= set(labels["top"])
    assert set(scored["category_l2"].dropna()) <= set(labels["l2"])
    assert scored["confidence"].between(0, 1).all()
    for category, confidence, top3 in scored[["category", "confidence", "top3"]].itertuples(index=False):
        ranked = json.loads(top3)
        assert ranked[0] == [None if pd.isna(category) else category, confidence] and len(ranked) == 3
        assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)

    jsonl_path = tmp_path / "products.jsonl"
    jsonl_path.write_text("".join(json.dumps({"id": p["uniq_id"], "title": p["product_name"], "brand": p["brand"]})
                                  + "\n" for p in products))
    done = _predict(trained_model, tmp_path, jsonl_path, tmp_path / "scored.jsonl")
    assert done.returncode == 0, done.stderr[-2000:]
    again = pd.read_json(tmp_path / "scored.jsonl", lines=True, dtype={"id": str})
    # same fields, same text, same answer
    assert again["category"].fillna("-").tolist() == scored["category"].fillna("-").tolist()
    assert json.loads(done.stdout)["rows"] == len(products)


def test_predict_refuses_a_file_without_titles(trained_model, tmp_path):
    path = tmp_path / "no_titles.csv"
    path.write_text("uniq_id,colour\na1,red\n")
    done = _predict(trained_model, tmp_path, path, tmp_path / "out.csv")
    assert done.returncode == 2 and "no_titles.csv: no title field" in done.stderr
    assert not (tmp_path / "out.csv").exists()


# ---- hostile inputs: refused in one line, before any model is looked up or loaded (no trained model needed) -------
def _refused(tmp_path, monkeypatch, capsys, input_path, output_path) -> str:
    from shopflow.cli import main

    monkeypatch.setenv("SHOPFLOW_HOME", str(tmp_path / "home"))
    code = main(["predict", "--input", str(input_path), "--output", str(output_path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    [line] = [line for line in err.splitlines() if line.startswith("predict: ")]
    return line


@pytest.mark.parametrize("case", hostile.cases(hostile.PREDICT), ids=lambda case: case.id)
def test_predict_refuses_a_hostile_input(tmp_path, monkeypatch, capsys, source_data, case):
    from orders_days import real_orders_lines

    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "outside").mkdir()
    path = case.build(tmp_path / f"products.csv{case.suffix}", hostile.Ctx(real_orders_lines(source_data),
                                                                            tmp_path / "outside"))
    line = _refused(tmp_path, monkeypatch, capsys, path, tmp_path / "scored.csv")
    for text in (str(path), *case.expected(hostile.PREDICT)):
        assert text in line, f"{text!r} not in {line!r}"
    assert not (tmp_path / "scored.csv").exists()


def _same_file_outputs(input_path):
    yield "the same path", input_path
    yield "the same path spelled another way", input_path.parent / "." / input_path.name
    yield "a hard link", input_path.parent / "hard.csv"
    yield "a symbolic link", input_path.parent / "soft.csv"


def test_predict_refuses_to_write_over_its_input(tmp_path, monkeypatch, capsys):
    products = tmp_path / "products.csv"
    products.write_text("title,brand\nRed mug,Acme\n")
    os.link(products, tmp_path / "hard.csv")
    (tmp_path / "soft.csv").symlink_to(products)
    for how, output in _same_file_outputs(products):
        line = _refused(tmp_path, monkeypatch, capsys, products, output)
        assert f"the output is the input file {products}" in line and "choose another --output" in line, how
        assert products.read_text() == "title,brand\nRed mug,Acme\n", how


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("empty.csv", b"", "empty.csv: the file is empty: nothing to score"),
    ("blank.jsonl", b"\n\n", "blank.jsonl: the file is empty: nothing to score"),
    ("header_only.csv", b"title,brand\n", "header_only.csv: no products to score (columns: title, brand)"),
    ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image.csv: a binary file (it holds NUL bytes)"),
    ("latin1.csv", "title\nCaf\u00e9 mug\n".encode("latin-1"), "latin1.csv, line 2: not UTF-8 text (byte 0xe9)"),
    ("random.jsonl", bytes(range(128, 256)) * 4, "random.jsonl, line 1: not UTF-8 text (byte 0x80)"),
    ("broken.jsonl", b'{"title": "Red mug"}\n{"title": \n', "broken.jsonl: not JSON lines ("),
    ("no_titles.csv", b"uniq_id,colour\na1,red\n", "no_titles.csv: no title field"),
    ("products.xlsx", b"PK\x03\x04", "products.xlsx: unknown format"),
])
def test_predict_reports_an_unusable_input_in_one_line(tmp_path, monkeypatch, capsys, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    line = _refused(tmp_path, monkeypatch, capsys, path, tmp_path / "scored.csv")
    assert expected in line, line
    assert not (tmp_path / "scored.csv").exists()

"""`python -m shopflow predict` on files of real products: CSV with the catalogue's column names, JSON lines with
the role's field names, and a file without titles (a clear error naming the file)."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys

import pandas as pd


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
    assert set(scored["category"]) <= set(labels["top"]) and set(scored["category_l2"]) <= set(labels["l2"])
    assert scored["confidence"].between(0, 1).all()
    for category, confidence, top3 in scored[["category", "confidence", "top3"]].itertuples(index=False):
        ranked = json.loads(top3)
        assert ranked[0] == [category, confidence] and len(ranked) == 3
        assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)

    jsonl_path = tmp_path / "products.jsonl"
    jsonl_path.write_text("".join(json.dumps({"id": p["uniq_id"], "title": p["product_name"], "brand": p["brand"]})
                                  + "\n" for p in products))
    done = _predict(trained_model, tmp_path, jsonl_path, tmp_path / "scored.jsonl")
    assert done.returncode == 0, done.stderr[-2000:]
    again = pd.read_json(tmp_path / "scored.jsonl", lines=True, dtype={"id": str})
    assert again["category"].tolist() == scored["category"].tolist()  # same fields, same text, same answer
    assert json.loads(done.stdout)["rows"] == len(products)


def test_predict_refuses_a_file_without_titles(trained_model, tmp_path):
    path = tmp_path / "no_titles.csv"
    path.write_text("uniq_id,colour\na1,red\n")
    done = _predict(trained_model, tmp_path, path, tmp_path / "out.csv")
    assert done.returncode == 2 and "no_titles.csv: no title field" in done.stderr
    assert not (tmp_path / "out.csv").exists()

"""How this model directory was made: with the library as it was before it was regrouped into packages (commit
8c3cb48, where the linear candidates were `shopflow.training.candidates.LinearCandidate`), so its joblib files pickle
that old class path. Run from a checkout of that commit: `PYTHONPATH=include python make.py OUT_DIR DATA_DIR`.

200 real Flipkart products (the first rows of the name/category file whose tree has at least two levels); the
TF-IDF candidate alone serves, as a one-member champion card of format 2."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from shopflow.training import candidates

out, data = Path(sys.argv[1]), Path(sys.argv[2])
rows = pd.read_csv(data / "catalog" / "flipkart_name_category_tree.csv.gz", header=None, dtype=str, nrows=400)
levels = rows[2].str.strip('[]"').str.split(" >> ")
rows = rows[levels.str.len() > 2].head(200)
levels = levels[rows.index]
top, l2 = levels.str[0], levels.str[0] + " > " + levels.str[1]
labels_top, labels_l2 = sorted(top.unique()), sorted(l2.unique())
texts = rows[1].tolist()
y_top = np.array([labels_top.index(v) for v in top])
y_l2 = np.array([labels_l2.index(v) for v in l2])
(out / "linear").mkdir(parents=True, exist_ok=True)
candidates.save_linear(candidates.fit_linear("tfidf", len(labels_top), texts, None, y_top), out / "linear" / "tfidf_top.joblib")
candidates.save_linear(candidates.fit_linear("tfidf", len(labels_l2), texts, None, y_l2), out / "linear" / "tfidf_l2.joblib")
card = {"format": 2, "selected": "tfidf", "best_on_validation": "tfidf", "selection_reason": "made by make.py",
        "members": [{"name": "tfidf", "weight": 1.0, "temperature_top": 1.0, "temperature_l2": 1.0}],
        "temperature_top": 1.0, "temperature_l2": 1.0, "labels": {"top": labels_top, "l2": labels_l2},
        "max_length": 32, "repair_threshold": 0.9, "embedding": None}
(out / "champion.json").write_text(json.dumps(card, indent=2))
(out / "examples.json").write_text(json.dumps({"texts": texts[:20], "labels_top": top.tolist()[:20]}, indent=1))

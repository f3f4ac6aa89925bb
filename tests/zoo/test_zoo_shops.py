"""The zoo (tests/support/zoo_shops.py) through every step the daily DAG runs, one member at a time: the data steps
of each landed source, the training gate, training on a tiny CPU budget, the blessing, the repair, the
near-duplicates and the report; then a reviewer's decision and its reversal through the CLI. Each member proves a
role shape; the assertions are the same for all of them: every row accounted for, a registered champion trained on
the member's catalogue, audits keyed by the catalogue's own keys, a review round trip, a report without errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from conftest import TEST_KEY
from zoo_shops import DAY, ZOO, ZOO_ENV, ZooShop

from shopflow.cli import cmd_db_upgrade
from shopflow.common.parquet import read_parquet
from shopflow.config.settings import Settings
from shopflow.lake import zones as lake
from shopflow.model.registry import latest_model
from shopflow.report.build import build_report
from shopflow.sources import get_source
from shopflow.steps import model_branch
from shopflow.steps import partition as pipeline
from shopflow.store.repository import MetadataStore

pytestmark = [pytest.mark.slow]


@dataclass
class ZooRun:
    shop: ZooShop
    settings: Settings
    store: MetadataStore
    env: dict[str, str]
    steps: dict[str, dict]

    def shopflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "shopflow", *args], env=self.env, capture_output=True,
                              text=True, check=check)

    def clean(self, source: str):
        return read_parquet(lake.lake_file(self.settings, "clean", source, DAY))

    @property
    def key(self) -> str:
        return get_source(self.shop.catalog).role_column("id")


def landed_partitions(landing: Path) -> list[tuple[str, date]]:
    return sorted((folder.parent.name, date.fromisoformat(folder.name.removeprefix("ds=")))
                  for folder in landing.glob("*/ds=*"))


def land_exports(shop: ZooShop, root: Path, env: dict[str, str]) -> None:
    """Each export landed by its own field, as a user would (`land --by`)."""
    for source, (name, _content, by) in shop.exports.items():
        subprocess.run([sys.executable, "-m", "shopflow", "land", "--source", source, "--from", str(root / name),
                        "--by", by], env=env, capture_output=True, text=True, check=True)


def run_member(settings: Settings, shop: ZooShop) -> dict[str, dict]:
    """Every step, in the DAG's order: each landed partition's data steps, then the model steps and the report of
    DAY; each step's summary by name."""
    steps = {}
    for source, day in landed_partitions(settings.landing_dir):
        for step in (pipeline.ingest, pipeline.clean, pipeline.validate):
            steps[f"{source}.{day}.{step.__name__}"] = step(settings, source, day)
    steps["training_gate"] = model_branch.training_gate(settings, DAY)
    steps["train"] = model_branch.train(settings, DAY)
    steps["bless"] = model_branch.bless_candidate(settings, DAY)
    steps["repair"] = model_branch.repair(settings, DAY)
    steps["duplicates"] = model_branch.find_duplicates(settings, DAY)
    steps["report"] = build_report(settings, DAY)
    return steps


@pytest.fixture(scope="module", params=[member.__name__ for member in ZOO])
def zoo(request, tmp_path_factory, source_data):
    shop = {member.__name__: member for member in ZOO}[request.param]()
    root = tmp_path_factory.mktemp(shop.name)
    sources_file = shop.write(root / "home", root)
    variables = {"SHOPFLOW_HOME": str(root / "home"), "SHOPFLOW_SOURCES": str(sources_file),
                 "SHOPFLOW_SOURCE_DATA": str(source_data), "SHOPFLOW_PSEUDONYM_KEY": TEST_KEY,
                 **ZOO_ENV}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")} | variables
    land_exports(shop, root, env)
    with pytest.MonkeyPatch.context() as patch:
        for name in [k for k in os.environ if k.startswith("SHOPFLOW_")]:
            patch.delenv(name)
        for name, value in variables.items():
            patch.setenv(name, value)
        settings = Settings.from_env()
        cmd_db_upgrade(settings, None)
        steps = run_member(settings, shop)
        yield ZooRun(shop, settings, MetadataStore(settings.store_url), env, steps)


def test_every_row_is_clean_quarantined_or_a_counted_duplicate(zoo):
    landed = landed_partitions(zoo.settings.landing_dir)
    assert {source for source, _ in zoo.shop.landing} | set(zoo.shop.exports) == {source for source, _ in landed}
    for source, day in landed:
        [partition] = zoo.store.partitions(source, day)
        assert partition.status == "validated", (source, day, partition.error)
        reasons = partition.quarantined_by_reason or {}
        assert partition.rows_in == partition.rows_clean + sum(reasons.values()) + partition.rows_duplicate
    [catalogue] = zoo.store.partitions(zoo.shop.catalog, DAY)
    assert catalogue.rows_in == zoo.shop.product_count


def test_nested_events_land_on_their_own_days(zoo):
    """Sessions that span midnight are split by each event's own day: every event lands, none is quarantined as
    outside its partition."""
    for source, per_day in zoo.shop.expected_records.items():
        partitions = {p.ds: p for p in zoo.store.partitions(source)}
        assert {day: partitions[day].rows_in for day in per_day} == dict(per_day)
        assert not any((p.quarantined_by_reason or {}).get("outside_partition") for p in partitions.values())
    if not zoo.shop.expected_records:
        pytest.skip(f"{zoo.shop.name} has no nested export")


def test_the_champion_is_trained_on_the_members_catalogue(zoo):
    model = latest_model(zoo.store)
    assert model.status == "champion" and model.trained_on_ds == DAY
    assert model.data_lineage["catalog_source"] == zoo.shop.catalog and model.data_lineage["examples"] > 100
    card = json.loads((Path(model.artifact_path) / "champion.json").read_text())
    real = {level for level in card["labels"]["top"] if level != card["labels"]["fold_in"]["top"]}
    assert len(real) >= 3
    if zoo.shop.real_other_class:  # the real class keeps its name; the fold-in class gets another
        assert "other" in real and card["labels"]["fold_in"]["top"] == "other (rare classes)"


def test_the_serving_model_is_refit_on_every_label_and_measured_on_held_out_answers(zoo):
    """The proposal's linear members serve as refit on every labelled product (their TF-IDF vocabulary is that of all
    labelled texts, not of the train split's); the repair's masked precision comes from the answers saved at
    training on the test split, before the refit, at the day's threshold."""
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer

    from shopflow.lake.catalog_view import catalog_as_of
    from shopflow.model.inference import Predictor
    from shopflow.model.training.data import labelled_examples

    model = latest_model(zoo.store)
    card = json.loads((Path(model.artifact_path) / "champion.json").read_text())
    served = [m["name"] for m in card["members"]]
    if "tfidf" not in served:
        pytest.skip(f"{zoo.shop.name}: the fine-tune alone serves ({served}); nothing linear to refit")
    assert card["refit"]["members"] == [m for m in served if m != "finetune"]
    assert card["refit"]["products"] == model.data_lineage["examples"] == model.training["refit"]["products"]
    examples = labelled_examples(catalog_as_of(zoo.store, DAY, source=zoo.shop.catalog),
                                 int(ZOO_ENV["SHOPFLOW_TRAIN_RARE_CLASS_MIN"]), get_source(zoo.shop.catalog))
    words = joblib.load(Path(model.artifact_path) / "linear" / "tfidf_top.joblib").words.vocabulary_
    every_label = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(examples["text"])
    train_only = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(
        examples.loc[examples["split"] == "train", "text"])
    assert set(words) == set(every_label.vocabulary_) != set(train_only.vocabulary_)
    run = zoo.store.repair_run(DAY)
    held_out = Predictor(model.artifact_path, device="cpu").held_out("top", run.threshold)
    assert (run.masked_n, run.masked_filled) == (held_out["masked_n"], held_out["masked_filled"])
    assert held_out["masked_n"] == int((examples["split"] == "test").sum())


def test_repairs_are_audited_under_the_catalogues_own_keys(zoo):
    keys = set(zoo.clean(zoo.shop.catalog)[zoo.key].astype(str))
    audit = zoo.store.repair_audit(DAY)
    assert audit, "the repair audited nothing"
    assert all(isinstance(a.uniq_id, str) and a.uniq_id in keys for a in audit), [a.uniq_id for a in audit[:3]]


def test_a_review_decision_and_its_reversal(zoo):
    listed = zoo.shopflow("review", "list", DAY.isoformat(), "--action", "review").stdout
    lines = [line for line in listed.splitlines()[1:] if line.strip()]
    assert lines, listed
    product = lines[0].split()[0]
    categories = json.loads((Path(latest_model(zoo.store).artifact_path) / "champion.json").read_text())["labels"]
    category = next(c for c in categories["top"] if c != categories["fold_in"]["top"])
    decided = zoo.shopflow("review", "decide", DAY.isoformat(), "--id", product, "--correct", category,
                           "--reviewer", "zoo")
    assert "recorded" in decided.stdout, decided.stdout + decided.stderr
    repaired = read_parquet(lake.lake_file(zoo.settings, "repaired", zoo.shop.catalog, DAY))
    key = zoo.key
    row = repaired[repaired[key].astype(str) == product].iloc[0]
    assert row["category_top_repaired"] == category
    again = zoo.shopflow("review", "decide", DAY.isoformat(), "--id", product, "--reject", "--reviewer", "zoo")
    assert "replaced" in again.stdout, again.stdout + again.stderr
    repaired = read_parquet(lake.lake_file(zoo.settings, "repaired", zoo.shop.catalog, DAY))
    assert pd.isna(repaired[repaired[key].astype(str) == product].iloc[0]["category_top_repaired"])  # as it came


def test_near_duplicates_cover_the_catalogue(zoo):
    summary = zoo.steps["duplicates"]
    assert summary["products_in"] == zoo.store.partitions(zoo.shop.catalog, DAY)[0].rows_clean


def test_the_report_has_no_errors(zoo):
    report = zoo.steps["report"]
    assert report["status"] != "failed" and "failed" not in report["sections"].values(), report
    html = Path(report["html"]).read_text(encoding="utf-8")
    assert "Traceback" not in html and "b'\\x" not in html
    # The repair tables name each product by its title, found under the catalogue's own key type.
    document = json.loads(Path(report["json"]).read_text(encoding="utf-8"))
    rows = [row for block in _blocks(document) if block.get("kind") == "table" for row in block.get("rows", [])
            if "uniq_id" in row and "product" in row]
    assert rows and all(row["product"] != row["uniq_id"] for row in rows), rows[:3]


def _blocks(node):
    """Every block of a report document, nested subsections included."""
    if isinstance(node, dict):
        if "kind" in node:
            yield node
        for value in node.values():
            yield from _blocks(value)
    elif isinstance(node, list):
        for value in node:
            yield from _blocks(value)


def test_flags_are_the_label_issues_found_out_of_fold_under_the_catalogues_own_keys(zoo):
    """The training found label issues on the baseline's grouped out-of-fold probabilities (the linear candidates
    are off in the zoo; the baseline is still cross-validated) for products keyed as the catalogue keys them; the
    repair flags exactly the issues among the day's intact products, each with its label quality."""
    model = latest_model(zoo.store)
    rows = pd.read_parquet(Path(model.artifact_path) / "label_issues.parquet")
    assert len(rows) == model.data_lineage["examples"]
    keys = set(zoo.clean(zoo.shop.catalog)[zoo.key].astype(str))
    assert set(rows["uniq_id"]) <= keys, sorted(set(rows["uniq_id"]) - keys)[:3]
    from shopflow.sources.role_frames import category_field

    field = category_field(get_source(zoo.shop.catalog))
    flags = [a for a in zoo.store.repair_audit(DAY) if a.action == "flag" and a.field == field]
    assert {a.uniq_id for a in flags} == set(rows.loc[rows["issue"], "uniq_id"])
    assert all(a.label_quality is not None and a.after != a.before for a in flags)

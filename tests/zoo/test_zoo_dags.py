"""Two zoo members (tests/support/zoo_shops.py) through `airflow dags test shopflow_daily`: the DAG built from their
own sources files, every task group, the model branch and the report, on a fresh Airflow and shopflow home each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_KEY
from local_airflow import airflow, airflow_env, free_port
from zoo_shops import DAY, ZOO_ENV, ZooShop, numbered_two_levels, path_without_price_or_brand

from shopflow.model.registry import latest_model
from shopflow.store.repository import MetadataStore

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def _sandbox(shop: ZooShop, root: Path, source_data: Path) -> dict[str, str]:
    env = airflow_env(root / "airflow", root / "home", port=free_port(), parallelism=2)
    sources = shop.write(root / "home", root)
    env.update({"SHOPFLOW_SOURCES": str(sources), "SHOPFLOW_SOURCE_DATA": str(source_data),
                "SHOPFLOW_PSEUDONYM_KEY": TEST_KEY, **ZOO_ENV})
    shopflow = [sys.executable, "-m", "shopflow"]
    subprocess.run([*shopflow, "db", "upgrade"], env=env, check=True, capture_output=True, text=True)
    for source, (name, _content, by) in shop.exports.items():
        subprocess.run([*shopflow, "land", "--source", source, "--from", str(root / name), "--by", by], env=env,
                       check=True, capture_output=True, text=True)
    airflow(env, "db", "migrate", timeout=600)
    return env


@pytest.mark.parametrize("member", [numbered_two_levels, path_without_price_or_brand], ids=lambda m: m.__name__)
def test_a_zoo_shop_runs_its_day_under_airflow(member, tmp_path, source_data):
    shop = member()
    env = _sandbox(shop, tmp_path, source_data)
    result = airflow(env, "dags", "test", "shopflow_daily", DAY.isoformat(), check=False, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    store = MetadataStore(f"sqlite:///{tmp_path / 'home' / 'shopflow.db'}")
    for source, _ in shop.landing:
        [partition] = store.partitions(source, DAY)
        assert partition.status == "validated", (source, partition.error)
    model = latest_model(store)
    assert model.status == "champion" and model.data_lineage["catalog_source"] == shop.catalog
    assert store.repair_audit(DAY)
    report = store.report(DAY)
    assert report is not None and report.status in ("ok", "warning"), report.status

"""Review on any shop's keys, and near-duplicates decided once, on real rows of the shipped catalogue without a trained
model (tests/support/review_days.py: a slice cleaned and validated, repaired by a stand-in predictor, its
near-duplicates found by the real step with a stand-in embedder).

- integer product keys (the real rows re-keyed 1001, 1002, …) go through the repair audit, `review list`,
  `review decide --id N`, the JSON API (`"uniq_id": N`), `revert-repair --product N` and a re-run as text;
- the items of one near-duplicate cluster are one card: one decision on the page is recorded for each item (one
  decision row each, each re-decidable on its own), an item decided on its own in the same form keeps its own;
  a day without a duplicates output has no clusters;
- the duplicates files name the key after the source's declared id column, and files written before (`uniq_id`)
  are still read."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pandas as pd
import pytest
from review_days import publish_same_title_duplicates, review_day
from shopflow import cli
from shopflow.common.parquet import parquet_columns, read_parquet, write_parquet_atomic
from shopflow.governance import duplicates, review
from shopflow.lake import zones as lake


@pytest.fixture
def integer_day(tmp_path, source_data):
    return review_day(tmp_path, source_data, integer_keys=True)


def _use_home(monkeypatch, day) -> None:
    for name in [n for n in os.environ if n.startswith("SHOPFLOW_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SHOPFLOW_HOME", str(day.settings.home))
    monkeypatch.setenv("SHOPFLOW_SOURCE_DATA", str(day.settings.source_data))


def _repaired(day) -> pd.DataFrame:
    return read_parquet(lake.lake_file(day.settings, "repaired", "catalog", day.ds)).set_index("uniq_id")


def _first(day, action: str, **wanted) -> review.Item:
    return next(i for i in review.items(day.settings, day.store, day.ds, action=action)
                if all(getattr(i, k) == v for k, v in wanted.items()))


def test_integer_keys_through_audit_list_decide_json_and_revert(integer_day, monkeypatch, capsys, client, mint):
    day = integer_day
    assert pd.api.types.is_integer_dtype(day.catalog["uniq_id"])
    audit = day.store.repair_audit(day.ds)
    assert audit and all(type(a.uniq_id) is str and a.uniq_id.isdigit() for a in audit), "keys are their text"
    _use_home(monkeypatch, day)
    ds = day.ds.isoformat()

    assert cli.main(["review", "list", ds]) == 0
    listing = capsys.readouterr().out
    item, other = [i for i in review.items(day.settings, day.store, day.ds, state="pending") if i.acceptable][:2]
    assert f"\n{item.uniq_id}  {item.action}" in listing and "b'" not in listing
    assert cli.main(["review", "decide", ds, "--id", item.uniq_id, "--accept", "--reviewer", "cy"]) == 0
    assert "accept recorded" in capsys.readouterr().out
    assert _repaired(day).loc[int(item.uniq_id), "category_source"] == "reviewer_accepted"

    # the JSON API takes the key as a number or as text
    user = {"Authorization": f"Bearer {mint('user')}"}
    answer = client.post(f"/review/{ds}/decisions", headers=user,
                         json={"decisions": [{"uniq_id": int(other.uniq_id), "decision": "reject"}]})
    assert answer.status_code == 200 and answer.json()["recorded"] == 1, answer.text
    again = client.post(f"/review/{ds}/decisions", headers=user,
                        json={"decisions": [{"uniq_id": other.uniq_id, "decision": "reject"}]})
    assert again.json()["unchanged"] == 1
    listed = client.get(f"/review/{ds}.json", params={"state": "decided"}, headers=user).json()["items"]
    assert {i["uniq_id"]: i["decision"] for i in listed} == {item.uniq_id: "accept", other.uniq_id: "reject"}

    # a fill reverted by its integer key stays reverted on a re-run; the decisions survive it
    fill = _first(day, "fill")
    assert cli.main(["revert-repair", ds, "--product", fill.uniq_id]) == 0
    assert "reverted 1 category fills" in capsys.readouterr().out
    assert _repaired(day).loc[int(fill.uniq_id), "category_source"] == "reverted"
    summary = day.rerun()
    assert summary["rows_reverted_kept"] == 1
    after = _repaired(day)
    assert after.loc[int(fill.uniq_id), "category_source"] == "reverted"
    assert after.loc[int(item.uniq_id), "category_source"] == "reviewer_accepted"
    assert after.loc[int(other.uniq_id), "category_source"] == "reviewer_rejected"
    assert cli.main(["review", "list", ds, "--state", "decided"]) == 0
    assert f"accept -> {item.suggestion} by cy" in capsys.readouterr().out


def _cluster_card(day) -> review.Card:
    found = review.items(day.settings, day.store, day.ds, state="pending")
    return next(c for c in review.cards(found) if c.cluster_id is not None and c.acceptable and len(c.items) >= 2)


def test_a_near_duplicate_cluster_is_decided_once_for_all_its_items(integer_day, monkeypatch, client, mint):
    day = integer_day
    published = publish_same_title_duplicates(day)
    assert published["clusters"] > 0 and published["validation_success"]
    _use_home(monkeypatch, day)
    ds, user = day.ds.isoformat(), {"Authorization": f"Bearer {mint('user')}"}
    card = _cluster_card(day)
    titles = {i.title for i in card.items}
    assert len(titles) == 1, "same-title listings"
    page = client.get(f"/review/{ds}", headers=user).text
    assert f'data-cluster="{card.cluster_id}"' in page
    assert all(f'<tr data-id="{uid}"' not in page for uid in card.ids), "no row of its own"
    clusters = client.get(f"/review/{ds}.json", params={"state": "pending"}, headers=user).json()["clusters"]
    assert {"cluster_id": card.cluster_id, "ids": card.ids} in [{k: c[k] for k in ("cluster_id", "ids")}
                                                                for c in clusters]

    form = {f"g.{card.cluster_id}": "accept", f"gm.{card.cluster_id}": card.ids, "state": "pending"}
    saved = client.post(f"/review/{ds}", data=form, headers=user)
    assert saved.status_code == 303 and f"saved={len(card.ids)}" in saved.headers["location"]
    decisions = {d.uniq_id: d for d in day.store.review_decisions("catalog", day.ds)}
    assert set(decisions) == set(card.ids), "one decision row per item"
    assert {(d.decision, d.value, d.revision, d.via) for d in decisions.values()} == {
        ("accept", card.suggestion, 1, "page")}
    repaired = _repaired(day)
    assert (repaired.loc[[int(u) for u in card.ids], "category_source"] == "reviewer_accepted").all()

    # each item is re-decided on its own; an item decided on its own in the same form keeps its own decision
    first, *rest = card.ids
    client.post(f"/review/{ds}", data={f"d.{first}": "reject"}, headers=user)
    form = {f"g.{card.cluster_id}": "accept", f"gm.{card.cluster_id}": card.ids, f"d.{rest[0]}": "reject"}
    assert client.post(f"/review/{ds}", data=form, headers=user).status_code == 303
    now = {d.uniq_id: (d.decision, d.revision) for d in day.store.review_decisions("catalog", day.ds)}
    assert now[first] == ("accept", 3), "rejected on its own, then accepted with its cluster again"
    assert now[rest[0]] == ("reject", 2)
    assert all(now[u] == ("accept", 1) for u in rest[1:])
    assert _repaired(day).loc[int(rest[0]), "category_source"] == "reviewer_rejected"


def test_a_day_without_duplicates_output_has_no_clusters(integer_day, monkeypatch, client, mint):
    day = integer_day
    assert not lake.lake_file(day.settings, duplicates.ZONE, "catalog", day.ds).exists()
    found = review.items(day.settings, day.store, day.ds)
    assert found and all(i.cluster_id is None for i in found)
    assert all(len(c.items) == 1 for c in review.cards(found))
    _use_home(monkeypatch, day)
    page = client.get(f"/review/{day.ds.isoformat()}", headers={"Authorization": f"Bearer {mint('viewer')}"})
    assert page.status_code == 200 and 'class="cluster"' not in page.text and "<tr data-id=" in page.text


def test_duplicates_files_name_the_declared_key_and_older_files_are_read(integer_day, tmp_path):
    day = integer_day
    publish_same_title_duplicates(day)
    spec = review.roles.model_catalog_source()
    members_path = lake.lake_file(day.settings, duplicates.ZONE, "catalog", day.ds)
    assert duplicates.key_column(spec) == "uniq_id" == parquet_columns(members_path)[1]
    members = duplicates.read_members(members_path, spec)
    # the same clusters written by a source keyed by `sku`, and read back under that spec
    sku = SimpleNamespace(role_column=lambda field: {"id": "sku"}.get(field))
    assert duplicates.key_column(sku) == "sku"
    assert duplicates.member_columns("sku") == ["cluster_id", "sku", "cluster_size", "nearest_sku", "similarity",
                                                "rule", "reason"]
    renamed = duplicates.keyed(members, "sku")
    assert list(renamed.columns) == duplicates.member_columns("sku")
    assert list(duplicates.keyed(pd.DataFrame(columns=duplicates.PAIR_COLUMNS), "sku").columns) == \
        duplicates.pair_columns("sku")
    assert {e["column"] for e in duplicates.suite("sku")} >= {"sku", "nearest_sku"}
    sku_file = tmp_path / "sku" / "part-0.parquet"
    write_parquet_atomic(renamed, sku_file)
    pd.testing.assert_frame_equal(duplicates.read_members(sku_file, sku), members)
    # a file written before keys were named (`uniq_id`) is read under the sku spec too
    pd.testing.assert_frame_equal(duplicates.read_members(members_path, sku), members)
    # a declared key that is another column's name keeps `uniq_id`
    assert duplicates.key_column(SimpleNamespace(role_column=lambda field: "similarity")) == "uniq_id"

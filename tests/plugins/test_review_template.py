"""The review page's template (plugins/shopflow_ui/templates/review.html) rendered on its own, without a store or a
model: the header shows the day's real counts (never a Python method's repr: `counts.items` would be dict.items in
Jinja, hence `counts.total`), and an item whose suggestion is the model's fold-in class is shown as one the model
knows no class for, with no accept to offer (correct and reject stay). The same on the app, with a real model's
items: tests/governance/test_review.py."""

from __future__ import annotations

import re

from shopflow.governance import review
from shopflow.model.training.data import OTHER

from shopflow_ui.deps import templates

DS = "2015-12-03"


def _item(uniq_id: str, action: str, suggestion: str | None, confidence: float, **decided) -> review.Item:
    return review.Item(uniq_id=uniq_id, action=action, field="category_top", before=None, suggestion=suggestion,
                       confidence=confidence, model_version=1, airflow_run_id="repair-run", reverted=False,
                       title=f"title of {uniq_id}", **decided)


def _render(found: list[review.Item]) -> str:
    everything = found + [_item(f"fill{n}", "fill", "Clothing", 0.99) for n in range(3)]
    counts = {  # review.summary's shape
        "ds": DS, "source": "catalog", "total": len(everything), "items": len(everything),
        "by_action": {a: sum(1 for i in everything if i.action == a) for a in review.ACTIONS},
        "pending": sum(1 for i in everything if i.pending),
        "pending_by_action": {a: sum(1 for i in everything if i.pending and i.action == a)
                              for a in review.PENDING_ACTIONS},
        "decided": {d: sum(1 for i in everything if i.decision == d) for d in review.DECISIONS},
    }
    filters = {"state": "pending", "action": ""}
    return templates.get_template("review.html").render(
        ds=DS, counts=counts, items=found, cards=review.cards(found), total=len(found), page=1, pages=1, filters=filters,
        query="state=pending&action=", categories=["Clothing", "Jewellery"], saved=None, states=review.STATES,
        actions=review.ACTIONS)


def _row(html: str, uniq_id: str) -> str:
    match = re.search(rf'<tr data-id="{uniq_id}".*?</tr>', html, re.S)
    assert match, f"no row of {uniq_id}"
    return match.group(0)


def test_the_header_shows_the_real_count_of_items():
    html = _render([_item("r1", "review", "Jewellery", 0.6), _item("f1", "flag", "Clothing", 0.9)])
    header = re.search(r'<p class="lead" id="counts">.*?</p>', html, re.S).group(0)
    assert "<strong>2</strong> pending (1 to review, 1 flagged) of 5 items of <strong>catalog</strong>" in header
    assert "(3 model fills)" in header
    assert "built-in method" not in html and "object at 0x" not in html


def test_a_fold_in_suggestion_is_shown_as_no_class_and_cannot_be_accepted():
    folded, plain = _item("r1", "review", None, 0.7), _item("r2", "review", "Jewellery", 0.6)
    assert folded.fold_in and not folded.acceptable and plain.acceptable and not plain.fold_in
    html = _render([folded, plain])
    row = _row(html, "r1")
    assert "the model knows no class for this" in row and "data-fold-in" in row
    assert f">{OTHER}<" not in row, "the fold-in class is not shown as a suggestion"
    assert 'value="accept"' not in row, "nothing to accept"
    assert 'value="reject"' in row and 'value="correct"' in row and 'name="v.r1"' in row
    row = _row(html, "r2")
    assert "<td>Jewellery</td>" in row and 'value="accept"' in row and "knows no class" not in row
    assert "data-fold-in" not in row
    assert folded.as_dict()["fold_in"] is True and folded.as_dict()["acceptable"] is False


def _cluster(item: review.Item, cluster_id: str) -> review.Item:
    item.cluster_id = cluster_id
    return item


def test_a_near_duplicate_cluster_is_one_card_with_one_decision_for_all():
    bedsheets = [_cluster(_item(uid, "review", "Home Furnishing", 0.6), "b1") for uid in ("b1", "b2", "b3")]
    alone = _item("r9", "review", "Jewellery", 0.5)
    found = [bedsheets[0], alone, bedsheets[1], bedsheets[2]]
    assert [card.ids for card in review.cards(found)] == [["b1", "b2", "b3"], ["r9"]], \
        "the cluster stands where its first item does, the others join it"
    html = _render(found)
    card = re.search(r'<tr class="cluster" data-cluster="b1".*?</tr>', html, re.S).group(0)
    assert 'data-size="3"' in card and "3 near-duplicate listings of one product" in card
    for uid in ("b1", "b2", "b3"):
        assert f'<input type="hidden" name="gm.b1" value="{uid}">' in card
        assert f'name="d.{uid}"' in card, "each listing can still be decided on its own"
        assert f'<tr data-id="{uid}"' not in html, "no row of its own"
    assert card.count('name="g.b1" value="accept"') == 1 and 'name="gv.b1"' in card
    assert "<td>Home Furnishing</td>" in card
    _row(html, "r9")


def test_a_cluster_whose_items_suggest_different_categories_offers_no_accept():
    found = [_cluster(_item("b1", "review", "Home Furnishing", 0.6), "b1"),
             _cluster(_item("b2", "flag", "Clothing", 0.9), "b1")]
    card = review.cards(found)[0]
    assert card.cluster_id == "b1" and card.suggestion is None and not card.acceptable
    html = _render(found)
    group = re.search(r'<tr class="cluster" data-cluster="b1".*?</tr>', html, re.S).group(0)
    assert 'name="g.b1" value="accept"' not in group and 'name="g.b1" value="correct"' in group
    assert "Home Furnishing" in group and "Clothing" in group


def test_a_cluster_with_one_item_listed_is_an_ordinary_row():
    html = _render([_cluster(_item("b1", "review", "Home Furnishing", 0.6), "b1")])
    assert 'class="cluster"' not in html
    _row(html, "b1")


def test_label_issues_show_their_label_quality_and_come_first_likeliest_error_first():
    likely = _item("f1", "flag", "Home Furnishing", 0.95, label_quality=0.004)
    doubtful = _item("f2", "flag", "Pens & Stationery", 0.6, label_quality=0.31)
    confident = _item("r1", "review", "Jewellery", 0.99)
    found = sorted([confident, doubtful, likely], key=review.rank)
    assert [i.uniq_id for i in found] == ["f1", "f2", "r1"]
    html = _render(found)
    assert html.index('data-id="f1"') < html.index('data-id="f2"') < html.index('data-id="r1"')
    assert '<td class="label-quality">0.004</td>' in _row(html, "f1")
    assert '<td class="label-quality">0.31</td>' in _row(html, "f2")
    assert '<td class="label-quality">—</td>' in _row(html, "r1")
    assert likely.as_dict()["label_quality"] == 0.004

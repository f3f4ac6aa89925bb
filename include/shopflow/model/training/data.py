"""Labelled examples from the clean catalogue of the model catalogue (`shopflow.sources.roles.model_catalog`): text,
top-level and second-level labels, a stable split. Columns are read through the source's catalog role: the text is
its title (then brand and the start of the description, where mapped), the labels its first two category levels.

Products whose top level is known are labelled: category_status `ok`, and `truncated_leaf` (the tree was cut short
at its leaf, its first levels are intact; a second level that is the cut-off leaf is `other`). A source without a
status field labels every product with a category. Depth-1 "trees" that are the product name and missing trees are
what the repair step fixes, not what the model learns from. Rare classes (fewer than `rare_class_min` products)
are folded into one class, the fold-in class; so is the second level of a source that has only one. The fold-in class
is named `other` unless a real class already has that name (any case), then `other (rare classes)` (`fold_in_label`):
it never merges with a real class. Rows labelled with it are marked (`top_folded`, `l2_folded`), so the trained
model records its name, and a prediction of it means "the model knows no class for this" (shopflow.model.inference).

Two splits, both stable across days and runs:
- `split` (the GROUPED split, used for training, model selection and every figure that decides something):
  products with the same normalised title (case, punctuation and spacing folded) or the same product group id
  (the role's `group` field, Flipkart's `pid`) are one group, and a hash of the group's smallest normalised title
  puts the whole group in train, validation or test. Near-identical listings (one title has 108 products) never
  sit on both sides of the split, so a test figure measures products the model has not seen.
- `row_split` (a hash of the product id: the split before groups, "today's split") is reported beside it, to show
  how much the row split flatters a model.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import pandas as pd

from shopflow.sources import SourceSpec, roles
from shopflow.sources.role_frames import INTACT_STATUS, LEVEL_SEPARATOR, categories, category_status

OTHER = "other"
SPLITS = (("train", 80), ("validation", 90), ("test", 100))
DESCRIPTION_CHARS = 300


LABELLED_STATUSES = (INTACT_STATUS, "truncated_leaf")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def split_of(key: str) -> str:
    """train, validation or test from a hash of `key` (a product id, or a group key)."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    return next(name for name, upper in SPLITS if bucket < upper)


def normalised_title(title: str | None) -> str:
    """Case, accents, punctuation and spacing folded: the listings of one product under several ids meet here."""
    if title is None or (isinstance(title, float) and title != title):
        return ""
    text = unicodedata.normalize("NFKD", str(title)).encode("ascii", "ignore").decode().lower()
    return _NOT_ALNUM.sub(" ", text).strip()


def product_groups(titles: pd.Series, group_ids: pd.Series | None = None, ids: pd.Series | None = None) -> pd.Series:
    """A group key per product: the smallest normalised title of its connected component, where products are
    connected by an equal normalised title or an equal group id (union-find; index and order of `titles` kept).
    A product without a title is keyed by its id (`ids`; default its position)."""
    keys = [normalised_title(t) for t in titles.tolist()]
    fallback = [str(i) for i in (ids.tolist() if ids is not None else range(len(keys)))]
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        root = node
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(node, node) != root:
            parent[node], node = root, parent[node]
        return root

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            low, high = sorted((ra, rb))
            parent[high] = low

    nodes = ["t:" + k if k else "u:" + fallback[i] for i, k in enumerate(keys)]
    for node in nodes:
        parent.setdefault(node, node)
    if group_ids is not None:
        for node, group in zip(nodes, group_ids.tolist()):
            if group is not None and not (isinstance(group, float) and group != group) and str(group).strip():
                gid = "g:" + str(group).strip()
                parent.setdefault(gid, gid)
                union(node, gid)
    # The representative is the smallest title node of each component ("g:" ids sort before "t:" titles, so
    # pick among title nodes explicitly).
    smallest: dict[str, str] = {}
    for node in nodes:
        root = find(node)
        if root not in smallest or node < smallest[root]:
            smallest[root] = node
    return pd.Series([smallest[find(node)] for node in nodes], index=titles.index, dtype="object")


def grouped_split(frame: pd.DataFrame, spec: SourceSpec | None = None) -> pd.Series:
    """The grouped split of every product of a catalogue frame (see the module docstring)."""
    spec = _trainable(spec)
    group_column = spec.role_column("group")
    group_ids = frame[group_column] if group_column and group_column in frame else None
    groups = product_groups(frame[spec.role_column("title")], group_ids, frame[spec.role_column("id")].astype(str))
    return groups.map(split_of)


def _trainable(spec: SourceSpec | None) -> SourceSpec:
    """The given catalog source, checked to be able to train, or the model catalogue."""
    if spec is None:
        return roles.model_catalog_source()
    obstacle = roles.training_obstacle(spec)
    if obstacle:
        raise ValueError(obstacle)
    return spec


def product_text(frame: pd.DataFrame, spec: SourceSpec | None = None) -> pd.Series:
    """Title, then brand and the start of the description when present (`spec`: default the model catalogue)."""
    spec = _trainable(spec)
    brand_column, description_column = spec.role_column("brand"), spec.role_column("description")
    title = frame[spec.role_column("title")].fillna("")
    absent = pd.Series("", index=frame.index, dtype="object")
    brand = frame[brand_column].fillna("") if brand_column and brand_column in frame else absent
    description = frame[description_column].fillna("").str.slice(0, DESCRIPTION_CHARS) \
        if description_column and description_column in frame else absent
    text = title + (" | " + brand).where(brand != "", "") + (" | " + description).where(description != "", "")
    return text.str.strip()


def fold_in_label(real_classes) -> str:
    """The name of the fold-in class: `other`, unless a real class already has a name equal to it in any case."""
    taken = {str(name).casefold() for name in real_classes}
    candidates = [OTHER, f"{OTHER} (rare classes)", *(f"{OTHER} (rare classes {n})" for n in range(2, len(taken) + 3))]
    return next(name for name in candidates if name.casefold() not in taken)


def _collapse_rare(labels: pd.Series, known: pd.Series, minimum: int) -> tuple[pd.Series, pd.Series]:
    """(labels with the rare and the unknown folded into the fold-in class, which rows were folded)."""
    known = known.to_numpy(dtype=bool)
    counts = labels[known].value_counts()
    kept = known & (labels.map(counts).fillna(0).to_numpy() >= minimum)
    fold_in = fold_in_label(labels[known].unique())
    return labels.where(kept, fold_in), pd.Series(~kept, index=labels.index)


def labelled_examples(catalog: pd.DataFrame, rare_class_min: int, spec: SourceSpec | None = None,
                      gold: pd.DataFrame | None = None) -> pd.DataFrame:
    """uniq_id (the product's id), text, label_top, label_l2, group, split (grouped) and row_split for every
    product whose top level is known (see the module docstring), plus a `gold` flag.

    `gold` (uniq_id, label_top, label_l2: reviewers' decisions, `shopflow.governance.review.gold_labels`) overrides the
    catalogue's labels of those products and labels products the catalogue left without a category."""
    spec = _trainable(spec)
    product_id = spec.role_column("id")
    catalog = catalog.sort_values(product_id, kind="stable").reset_index(drop=True)
    top, second = categories(catalog, spec)
    status = category_status(catalog, spec)
    gold_top = gold_l2 = None
    if gold is not None and len(gold):
        gold = gold.drop_duplicates("uniq_id", keep="last").set_index("uniq_id")
        ids = catalog[product_id].astype(str)
        gold_top = ids.map(gold["label_top"])
        gold_l2 = ids.map(gold["label_l2"]) if "label_l2" in gold else None
        has_gold = gold_top.notna()
        top = top.astype("object").where(~has_gold, gold_top)
        status = status.astype("object").where(~has_gold, INTACT_STATUS)
        if second is not None and gold_l2 is not None:
            # A reviewer who set only the top level leaves the second level unknown.
            second = second.astype("object").where(~has_gold, gold_l2.str.split(LEVEL_SEPARATOR).str[-1])
    # Groups are formed over the whole catalogue: an unlabelled listing can still join two labelled ones.
    group_column = spec.role_column("group")
    groups = product_groups(catalog[spec.role_column("title")],
                            catalog[group_column] if group_column and group_column in catalog else None,
                            catalog[product_id].astype(str))
    usable = (status.isin(LABELLED_STATUSES) & top.notna()).to_numpy()
    truncated = (status == "truncated_leaf").to_numpy()[usable]
    labelled = catalog[usable].reset_index(drop=True)
    top = top[usable].reset_index(drop=True)
    second = None if second is None else second[usable].reset_index(drop=True)
    is_gold = (gold_top.notna().to_numpy()[usable] if gold_top is not None
               else pd.Series(False, index=labelled.index).to_numpy())
    everything = pd.Series(True, index=labelled.index)
    top_label, top_folded = _collapse_rare(top.astype(str), everything, rare_class_min)
    if second is None:
        second_label, l2_folded = pd.Series(fold_in_label([]), index=labelled.index), ~everything
    else:
        # A truncated tree's second level may be the cut-off leaf itself: not a label to learn.
        known = pd.Series(second.notna().to_numpy() & ~truncated, index=labelled.index)
        second_label, l2_folded = _collapse_rare(top.astype(str) + LEVEL_SEPARATOR + second.astype(str), known,
                                                 rare_class_min)
    group = pd.Series(groups.to_numpy()[usable], index=labelled.index)
    return pd.DataFrame({
        "uniq_id": labelled[product_id].astype(str),
        "text": product_text(labelled, spec),
        "label_top": top_label,
        "label_l2": second_label,
        "top_folded": top_folded.to_numpy(dtype=bool),
        "l2_folded": l2_folded.to_numpy(dtype=bool),
        "group": group,
        "split": group.map(split_of),
        "row_split": labelled[product_id].astype(str).map(split_of),
        "gold": is_gold,
    })


def repair_candidates(catalog: pd.DataFrame, spec: SourceSpec | None = None) -> pd.DataFrame:
    """Products whose category the repair step may fill (no usable category) -- with their text."""
    spec = _trainable(spec)
    broken = catalog[category_status(catalog, spec).isin(["name_only", "missing"])].copy()
    broken["text"] = product_text(broken, spec)
    return broken

"""Which role (catalog, orders, events, search) an export plays, and which column plays each role field, with the
evidence: column-name words first, values where the names say nothing (a file without a header row).

Each role is tried; a role is a candidate when its required fields (`ROLE_REQUIRED`) and its signature fields are
found, and the candidate mapping the most fields wins. The evidence names the words or values each guess rests on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shopflow.sources.infer.profile import ColumnProfile, shown
from shopflow.sources.infer.sample import ExportSample
from shopflow.sources.spec import ROLE_REQUIRED

# Spellings of each event type (lower-cased) in the exports seen so far.
EVENT_SYNONYMS = {
    "view": {"pv", "view", "views", "page_view", "pageview", "detail", "detail_view", "impression", "visit"},
    "favourite": {"fav", "favorite", "favourite", "like", "wishlist", "save"},
    "cart": {"cart", "addtocart", "add_to_cart", "add-to-cart", "basket", "add_to_basket"},
    "buy": {"buy", "purchase", "order", "transaction", "checkout"},
}
# Role -> fields that must be found, beyond the required ones, for the role to be a candidate (any one of them).
SIGNATURE = {"orders": ("quantity", "unit_price"), "catalog": ("title", "category_path", "category_levels", "brand",
                                                               "price"), "events": (), "search": ()}
ROLE_ORDER = ("events", "orders", "search", "catalog")  # ties: the more specific role first
ID_LIKE_TYPES = ("string", "int")
MAX_CANCELLATION_SHARE = 0.3
# A column of a file without a header row, named after the role field it plays.
HEADERLESS_NAMES = {"user": "user_id", "item": "item_id", "customer": "customer_id", "product": "product_id",
                    "session": "session_id", "clicked_item": "clicked_item_id"}


@dataclass
class FieldGuess:
    columns: list[ColumnProfile]  # empty for a derived column
    evidence: str
    derived: str | None = None  # the derived clean column that plays the field


@dataclass
class DerivedColumn:
    name: str
    type: str
    expression: str
    evidence: str


@dataclass
class RoleGuess:
    name: str | None
    fields: dict[str, FieldGuess] = field(default_factory=dict)
    evidence: str = ""
    derived: list[DerivedColumn] = field(default_factory=list)
    event_values: dict[str, str] = field(default_factory=dict)  # raw label (lower-cased) -> event type


def guess_role(profiles: list[ColumnProfile], time_column: ColumnProfile | None) -> RoleGuess:
    tried = {role: _FINDERS[role](profiles, time_column) for role in ROLE_ORDER}
    candidates = {role: guess for role, guess in tried.items() if _eligible(role, guess)}
    summary = "; ".join(f"{role} {len(guess.fields)} fields" + ("" if role in candidates else " (not a candidate)")
                        for role, guess in tried.items())
    if not candidates:
        return RoleGuess(None, evidence=f"no role's required fields were found ({summary}): add a role by hand")
    best = max(candidates, key=lambda role: (len(tried[role].fields), -ROLE_ORDER.index(role)))
    chosen = tried[best]
    chosen.name = best
    chosen.evidence = f"maps the most fields of the candidate roles ({summary})"
    return chosen


def _eligible(role: str, guess: RoleGuess) -> bool:
    required = all(f in guess.fields for f in ROLE_REQUIRED[role])
    signature = not SIGNATURE[role] or any(f in guess.fields for f in SIGNATURE[role])
    return required and signature


def name_headerless(sample: ExportSample, profiles: list[ColumnProfile], role: RoleGuess) -> None:
    """A file without a header row: name the columns the role found after their field (`user_id`, `timestamp`)."""
    if sample.header or role.name is None:
        return
    taken = set(sample.columns)
    for field_name, guess in role.fields.items():
        if len(guess.columns) != 1 or not guess.columns[0].raw.startswith("column_"):
            continue
        column = guess.columns[0]
        new = HEADERLESS_NAMES.get(field_name, field_name)
        if new in taken:
            continue
        taken.add(new)
        sample.columns[sample.columns.index(column.raw)] = new
        column.raw = column.name = new


# ---- matching ----------------------------------------------------------------------------------------------------
def _named(profiles: list[ColumnProfile], words: set[str], *, also: set[str] | None = None,
           without: set[str] = frozenset(), types: tuple[str, ...] | None = None,
           used: set[str] = frozenset(), idish: bool | None = None) -> ColumnProfile | None:
    """The first column whose name has one of `words` (and one of `also`), none of `without`, of one of `types`."""
    for profile in profiles:
        tokens = set(profile.tokens)
        if profile.name in used or not tokens & words or (also and not tokens & also) or tokens & without:
            continue
        if types and profile.type not in types:
            continue
        if idish is not None and profile.idish != idish:
            continue
        return profile
    return None


def _words(profile: ColumnProfile, words: set[str]) -> str:
    found = [t for t in profile.tokens if t in words]
    return f"{profile.raw}: the name says {', '.join(map(repr, found))}"


def _add(guess: RoleGuess, role_field: str, profile: ColumnProfile | None, evidence: str) -> bool:
    if profile is None:
        return False
    guess.fields[role_field] = FieldGuess([profile], f"{evidence}; {profile.summary()}")
    return True


def _used(guess: RoleGuess) -> set[str]:
    return {c.name for g in guess.fields.values() for c in g.columns}


def _time(guess: RoleGuess, time_column: ColumnProfile | None) -> None:
    if time_column is not None:
        _add(guess, "timestamp", time_column, f"{time_column.raw}: the time column ({time_column.type_evidence})")


def _id_by_name(guess: RoleGuess, profiles, role_field: str, words: set[str], extra_words: set[str] | None = None,
                without: set[str] = frozenset()) -> bool:
    found = _named(profiles, words, also=extra_words, without=without, types=ID_LIKE_TYPES, used=_used(guess))
    return _add(guess, role_field, found, _words(found, words | (extra_words or set())) if found else "")


# ---- roles -------------------------------------------------------------------------------------------------------
def _catalog(profiles: list[ColumnProfile], time_column: ColumnProfile | None) -> RoleGuess:
    guess = RoleGuess("catalog")
    unique_ids = [p for p in profiles if p.unique and p.idish and p.type in ID_LIKE_TYPES]
    named_ids = [p for p in unique_ids if set(p.tokens) & {"product", "item", "uniq", "sku", "article"}
                 or p.tokens in (["id"], ["uuid"])]
    if named_ids:
        _add(guess, "id", named_ids[0], f"{named_ids[0].raw}: unique in the sample and named as a product id")
    elif unique_ids and unique_ids[0].raw.startswith("column_"):
        _add(guess, "id", unique_ids[0], f"{unique_ids[0].raw}: unique in the sample, id-shaped "
                                         f"({unique_ids[0].shape or 'digits'})")
    paths = [p for p in profiles if p.type == "string" and _path_share(p) >= 0.5]
    if paths:
        _add(guess, "category_path", paths[0], f"{paths[0].raw}: {_path_share(paths[0]):.0%} of values hold a "
                                                "'>>' or ' > ' separated path")
    used = _used(guess)
    title = _named(profiles, {"title", "name"}, without={"category", "brand", "customer", "user", "file", "url",
                                                         "image", "country", "seller", "store", "shop"},
                   types=("string",), used=used)
    if title is None:
        title = next((p for p in profiles if p.name not in used and p.raw.startswith("column_") and p.type == "string"
                      and not p.idish and p.distinct >= 0.5 * max(p.present, 1) and _spaced_share(p) >= 0.8), None)
        _add(guess, "title", title, f"{title.raw}: distinct, several-word text" if title else "")
    else:
        _add(guess, "title", title, _words(title, {"title", "name"}))
    levels = [p for p in profiles if set(p.tokens) & {"category", "categories", "department", "segment", "class"}
              and p.type in ("string", "category") and p.name not in _used(guess) and not p.idish]
    if levels:
        guess.fields["category_levels"] = FieldGuess(levels, "; ".join(
            f"{_words(p, {'category', 'categories', 'department', 'segment', 'class'})}, {p.distinct:,} distinct labels"
            for p in levels))
    for role_field, words, without in (
            ("brand", {"brand", "manufacturer", "maker", "vendor"}, set()),
            ("discounted_price", {"discount", "discounted", "sale", "offer", "special"}, set()),
            ("price", {"price", "cost", "mrp"}, {"discount", "discounted", "sale", "offer", "special"}),
            ("description", {"description", "desc", "details"}, {"length", "lenght", "len"})):
        types = ("int", "float") if "price" in role_field else ("string",)
        also = {"price", "cost"} if role_field == "discounted_price" else None
        found = _named(profiles, words, also=also, without=without, types=types, used=_used(guess))
        _add(guess, role_field, found, _words(found, words) if found else "")
    group = _named(profiles, {"group", "parent", "family", "pid", "variant", "model"}, types=ID_LIKE_TYPES,
                   used=_used(guess))
    if group is not None and not group.unique:
        _add(guess, "group", group, f"{_words(group, {'group', 'parent', 'family', 'pid', 'variant', 'model'})}, "
                                    "repeated across rows: listings of one product")
    return guess


def _orders(profiles: list[ColumnProfile], time_column: ColumnProfile | None) -> RoleGuess:
    guess = RoleGuess("orders")
    ids = {"id", "no", "number", "num", "key", "code", "sku"}
    order_words = {"order", "invoice", "transaction", "receipt", "basket"}
    not_order = {"line", "date", "time", "item", "status", "at", "total", "amount"}
    if not _id_by_name(guess, profiles, "order_id", order_words, ids, without=not_order):
        found = _named(profiles, order_words, without=not_order, types=ID_LIKE_TYPES, idish=True)
        _add(guess, "order_id", found, f"{_words(found, order_words)}, id-shaped values" if found else "")
    _id_by_name(guess, profiles, "line_id", {"line"}, ids)
    _id_by_name(guess, profiles, "customer", {"customer", "client", "buyer", "user", "member", "account"}, ids)
    _time(guess, time_column)
    for role_field, words, without, types in (
            ("quantity", {"quantity", "qty", "units"}, set(), ("int", "float")),
            ("unit_price", {"price"}, {"total", "amount", "line"}, ("int", "float")),
            ("product_name", {"description", "title", "name"}, {"customer", "country", "user", "file"}, ("string",)),
            ("country", {"country"}, set(), ("string", "category"))):
        found = _named(profiles, words, without=without, types=types, used=_used(guess))
        _add(guess, role_field, found, _words(found, words) if found else "")
    _id_by_name(guess, profiles, "product", {"stock", "sku", "product", "item", "article"}, ids)
    cancel = _named(profiles, {"cancel", "cancelled", "canceled", "cancellation", "returned"}, types=("bool",))
    if cancel is not None:
        _add(guess, "cancellation", cancel, _words(cancel, {"cancel", "cancelled", "canceled", "cancellation"}))
    elif "order_id" in guess.fields:
        _cancellation_prefix(guess, guess.fields["order_id"].columns[0])
    return guess


def _cancellation_prefix(guess: RoleGuess, order_id: ColumnProfile) -> None:
    """Order ids that are digits but for a minority with one leading letter (UCI's `C536379`): that letter marks
    a cancellation, a derived bool column."""
    if len(order_id.leading_letters) != 1:
        return
    letter, count = next(iter(order_id.leading_letters.items()))
    share = count / max(order_id.present, 1)
    if share > MAX_CANCELLATION_SHARE:
        return
    column = DerivedColumn("is_cancellation", "bool", f'{order_id.name}.startswith("{letter}")',
                           f"{count:,} of {order_id.present:,} {order_id.raw} values ({share:.1%}) are digits after "
                           f"a leading {letter!r}, the others digits only: read as cancellations (a guess: check it)")
    guess.derived.append(column)
    guess.fields["cancellation"] = FieldGuess([], column.evidence, derived=column.name)


def _events(profiles: list[ColumnProfile], time_column: ColumnProfile | None) -> RoleGuess:
    guess = RoleGuess("events")
    for profile in profiles:
        if profile.type != "category":
            continue
        mapping = {v.strip().lower(): _event_type(v) for v in profile.values}
        known = {v: t for v, t in mapping.items() if t}
        if len(known) >= 2:
            guess.event_values = {v: known.get(v, v) for v in mapping}
            _add(guess, "event_type", profile, f"{profile.raw}: its values {', '.join(map(shown, mapping))} are "
                                               f"event types ({', '.join(f'{v}->{t}' for v, t in known.items())})")
            break
    _id_by_name(guess, profiles, "user", {"user", "customer", "visitor", "member", "client", "shopper"},
                {"id", "key", "uid", "no", "number"})
    _id_by_name(guess, profiles, "item", {"item", "product", "sku", "offer", "article"}, {"id", "key", "no", "code"})
    headerless = [p for p in profiles if p.raw.startswith("column_") and p.name not in _used(guess)
                  and p.type in ID_LIKE_TYPES and p.present == p.rows and (p.type == "int" or p.idish)]
    headerless.sort(key=lambda p: p.distinct / max(p.rows, 1))
    if "user" not in guess.fields and headerless and headerless[0].distinct <= 0.5 * headerless[0].rows:
        user = headerless.pop(0)
        _add(guess, "user", user, f"{user.raw}: the id-like column with the fewest distinct values "
                                  f"({user.distinct:,} in {user.rows:,} rows), as users repeat most")
    if "item" not in guess.fields and headerless:
        item = headerless[-1]
        _add(guess, "item", item, f"{item.raw}: the id-like column with the most distinct values")
    _time(guess, time_column)
    return guess


def _event_type(label: str) -> str | None:
    lowered = label.strip().lower()
    return next((event for event, spellings in EVENT_SYNONYMS.items() if lowered in spellings), None)


def _search(profiles: list[ColumnProfile], time_column: ColumnProfile | None) -> RoleGuess:
    guess = RoleGuess("search")
    query = _named(profiles, {"query", "search", "term", "keyword", "keywords", "q", "searchterm"},
                   without={"class", "category", "type", "id", "count", "length"}, types=("string",))
    _add(guess, "query", query, _words(query, {"query", "search", "term", "keyword", "keywords", "q"}) if query else "")
    if query is None:
        return guess
    _id_by_name(guess, profiles, "session", {"session", "visit"}, {"id", "key", "no"})
    _id_by_name(guess, profiles, "user", {"user", "customer", "visitor", "member", "client"}, {"id", "key", "no"})
    _id_by_name(guess, profiles, "clicked_item", {"click", "clicked"})
    _time(guess, time_column)
    return guess


def _path_share(profile: ColumnProfile) -> float:
    values = profile.some_values
    return sum((">>" in v or " > " in v) for v in values) / len(values) if values else 0.0


def _spaced_share(profile: ColumnProfile) -> float:
    values = profile.some_values
    return sum(" " in v.strip() for v in values) / len(values) if values else 0.0


_FINDERS = {"catalog": _catalog, "orders": _orders, "events": _events, "search": _search}

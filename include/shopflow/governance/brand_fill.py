"""A missing brand read from the product title, against the brands the catalogue itself knows (pure pandas).

Marketplace titles usually start with the brand ("Allure Auto CM 907 Car Mat Hyundai i10"). The brands a title is
matched against come from the catalogue's own products that have one, never from a list kept here, so another
shop's catalogue brings its own brands. Brands and titles are compared as token sequences after normalisation
(Unicode NFKC, case folded, every run of punctuation or spacing one separator: "TP-LINK", "tp link" and "Tp-Link"
are one brand).

The vocabulary (`build_vocabulary`), from the products that have a brand:
- a brand is a candidate when it has at least `min_products` products and at least `min_support` of them have a
  title that starts with it: a value of the brand column that titles do not carry (a colour, a fit, "Regular")
  is not one;
- its precision is calibrated on the catalogue itself: over the products whose given brand appears in their own
  title (the products whose brand the title can confirm), the LEADING match (the longest candidate that the
  title's first tokens spell) is right in that share of the cases. A candidate below `min_precision` is dropped
  (a first word that is often a different brand's line or a generic word);
- a brand may also be found AWAY from the start of a title only when, over all products with a brand, finding it
  there (in a title without a leading match) was right in at least `min_precision` of at least `min_products`
  cases. A brand that titles mention for compatibility ("Back Cover for Apple iPad") does not qualify.

The match (`extract`): the longest leading match wins; else a brand found elsewhere in the title. Ambiguous
titles get no brand: a leading match with a different brand found further on, or two different brands found
away from the start. The confidence of a match is the calibrated precision of its brand and rule.

`masked_brand_evaluation` measures the rule honestly: the vocabulary is built without the held-out products, their
brand is hidden, and the extracted brands are compared with the hidden ones.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import pandas as pd

GIVEN, TITLE_MATCH, MISSING, REVERTED = "given", "title_match", "missing", "reverted"
LEADING, ANYWHERE = "leading", "anywhere"
MIN_PRODUCTS = 3
MIN_SUPPORT = 0.5
MIN_PRECISION = 0.9
MAX_BRAND_TOKENS = 6
DECIMALS = 6
_SEPARATORS = re.compile(r"[\W_]+", re.UNICODE)

Tokens = tuple[str, ...]


def tokens(text) -> Tokens:
    """The normalised token sequence of a brand or a title (empty for a missing value)."""
    if text is None or (isinstance(text, float) and text != text) or text is pd.NA:
        return ()
    folded = unicodedata.normalize("NFKC", str(text)).casefold()
    return tuple(t for t in _SEPARATORS.split(folded) if t)


def brand_key(brand) -> str:
    """A brand's comparison key ("" for none): its tokens joined by a space."""
    return " ".join(tokens(brand))


@dataclass(frozen=True)
class BrandVocabulary:
    """The brands a title is matched against: display spelling and calibrated precision per token sequence."""

    display: dict[Tokens, str] = field(default_factory=dict)
    leading: dict[Tokens, float] = field(default_factory=dict)  # brand -> precision of a leading match
    anywhere: dict[Tokens, float] = field(default_factory=dict)  # brand -> precision of a match away from the start
    max_tokens: int = 0

    def __len__(self) -> int:
        return len(self.leading)


def _leading_match(title: Tokens, brands, max_tokens: int) -> Tokens | None:
    for length in range(min(max_tokens, len(title)), 0, -1):
        if title[:length] in brands:
            return title[:length]
    return None


def _found_away(title: Tokens, brands, max_tokens: int, start: int = 1) -> set[Tokens]:
    """The brands found at a position >= `start`, longest first: a brand inside a longer one found there is not
    counted again."""
    found, covered = set(), set()
    for length in range(min(max_tokens, len(title)), 0, -1):
        for position in range(start, len(title) - length + 1):
            key = title[position:position + length]
            span = set(range(position, position + length))
            if key in brands and not span & covered:
                found.add(key)
                covered |= span
    return found


def _contains(title: Tokens, brand: Tokens) -> bool:
    n = len(brand)
    return n > 0 and any(title[i:i + n] == brand for i in range(len(title) - n + 1))


def build_vocabulary(titles: pd.Series, brands: pd.Series, *, min_products: int = MIN_PRODUCTS,
                     min_support: float = MIN_SUPPORT, min_precision: float = MIN_PRECISION,
                     max_tokens: int = MAX_BRAND_TOKENS) -> BrandVocabulary:
    """The vocabulary from products with a known brand (`titles` and `brands` row for row; see the module
    docstring). Deterministic: the same products give the same vocabulary."""
    frame = pd.DataFrame({"title": titles.to_numpy(dtype=object), "brand": brands.to_numpy(dtype=object)})
    frame["brand_tokens"] = frame["brand"].map(tokens)
    frame = frame[frame["brand_tokens"].map(len).between(1, max_tokens)].reset_index(drop=True)
    frame["key"] = frame["brand_tokens"].map(" ".join)  # pandas groups by the string, matching uses the tokens
    frame["title_tokens"] = frame["title"].map(tokens)
    frame["starts"] = [t[:len(b)] == b for t, b in zip(frame["title_tokens"], frame["brand_tokens"])]
    per_brand = frame.groupby("key", sort=True).agg(products=("starts", "size"), support=("starts", "mean"))
    chosen = per_brand[(per_brand["products"] >= min_products) & (per_brand["support"] >= min_support)]
    if chosen.empty:
        return BrandVocabulary()
    candidates = {tuple(key.split(" ")) for key in chosen.index}
    spelling = (frame[frame["key"].isin(chosen.index)].assign(brand=lambda f: f["brand"].astype(str).str.strip())
                .groupby(["key", "brand"]).size().reset_index(name="n")
                .sort_values(["key", "n", "brand"], ascending=[True, False, True], kind="stable")
                .drop_duplicates("key"))
    display = {tuple(key.split(" ")): brand for key, brand in zip(spelling["key"], spelling["brand"])}

    # Calibrate on the products whose title confirms their given brand.
    verified = frame[[_contains(t, b) for t, b in zip(frame["title_tokens"], frame["brand_tokens"])]]
    longest = max(len(b) for b in candidates)
    kept, leading = set(candidates), {}
    for _ in range(3):  # dropping a brand can hand its titles to a shorter one: settle in a few rounds
        seen, right = {}, {}
        for title, brand in zip(verified["title_tokens"], verified["brand_tokens"]):
            match = _leading_match(title, kept, longest)
            if match is not None:
                seen[match] = seen.get(match, 0) + 1
                right[match] = right.get(match, 0) + (match == brand)
        # A candidate that leads no confirming title (a longer brand always takes them) is dropped too.
        leading = {b: round(right[b] / n, DECIMALS) for b, n in seen.items() if right[b] / n >= min_precision}
        if set(leading) == kept:
            break
        kept = set(leading)

    # Away from the start: only where no leading match took the title, over every product with a brand (a given
    # brand the title does not carry counts against: the careful side).
    found_at, right_at = {}, {}
    for title, brand in zip(frame["title_tokens"], frame["brand_tokens"]):
        if _leading_match(title, leading, longest) is not None:
            continue
        for key in _found_away(title, leading, longest):
            found_at[key] = found_at.get(key, 0) + 1
            right_at[key] = right_at.get(key, 0) + (key == brand)
    anywhere = {b: round(right_at[b] / n, DECIMALS) for b, n in found_at.items()
                if n >= min_products and right_at[b] / n >= min_precision}
    return BrandVocabulary(display={b: display[b] for b in leading}, leading=leading, anywhere=anywhere,
                           max_tokens=max((len(b) for b in leading), default=0))


def extract(titles: pd.Series, vocabulary: BrandVocabulary) -> pd.DataFrame:
    """brand (the display spelling, or NA), confidence (NaN without a match), rule (leading | anywhere | NA) and
    ambiguous (a title that named more than one brand) per title; index of `titles` kept."""
    brands, confidences, rules, ambiguous = [], [], [], []
    longest = vocabulary.max_tokens
    for title in titles.tolist():
        words = tokens(title)
        lead = _leading_match(words, vocabulary.leading, longest) if longest else None
        away = _found_away(words, vocabulary.anywhere, longest, start=len(lead) if lead else 1) if longest else set()
        away.discard(lead)
        choice, rule, confidence, unclear = None, None, float("nan"), False
        if lead is not None:
            unclear = bool(away)
            if not unclear:
                choice, rule, confidence = lead, LEADING, vocabulary.leading[lead]
        elif len(away) == 1:
            choice = next(iter(away))
            rule, confidence = ANYWHERE, vocabulary.anywhere[choice]
        else:
            unclear = len(away) > 1
        brands.append(vocabulary.display[choice] if choice else None)
        confidences.append(confidence)
        rules.append(rule)
        ambiguous.append(unclear)
    return pd.DataFrame({"brand": pd.array(brands, dtype="string"), "confidence": pd.array(confidences, dtype="float64"),
                         "rule": pd.array(rules, dtype="string"), "ambiguous": pd.array(ambiguous, dtype=bool)},
                        index=titles.index)


def fill_brands(titles: pd.Series, brands: pd.Series, vocabulary: BrandVocabulary) -> pd.DataFrame:
    """brand_repaired (the given brand, else the title's), brand_source (given | title_match | missing) and
    confidence (of a fill; NaN otherwise) per product; the index of `titles` kept."""
    given = brands.astype("string")
    missing = given.str.strip().fillna("").eq("").to_numpy(dtype=bool)  # a blank brand is no brand
    given = given.mask(missing)
    found = extract(titles[missing], vocabulary) if missing.any() else extract(titles.iloc[:0], vocabulary)
    filled_brand = pd.Series(pd.NA, index=titles.index, dtype="string")
    filled_brand[missing] = found["brand"].to_numpy()
    confidence = pd.Series(float("nan"), index=titles.index, dtype="float64")
    confidence[missing] = found["confidence"].to_numpy(dtype="float64", na_value=float("nan"))
    fill = missing & filled_brand.notna().to_numpy()
    source = pd.Series(GIVEN, index=titles.index, dtype="string")
    source[missing] = MISSING
    source[fill] = TITLE_MATCH
    return pd.DataFrame({"brand_repaired": given.where(~fill, filled_brand), "brand_source": source,
                         "confidence": confidence.where(fill)}, index=titles.index)


def masked_brand_evaluation(titles: pd.Series, brands: pd.Series, held_out: pd.Series, **vocabulary_options) -> dict:
    """Precision and coverage of the brand fill on held-out products whose brand is known but hidden.

    The vocabulary is built from the products with a brand that are NOT held out; the held-out ones with a brand
    have it hidden and extracted; a fill is right when its key equals the hidden brand's. Also reported on the
    held-out products whose title contains their brand ("verifiable": their given brand is not dirt)."""
    held_out = held_out.to_numpy(dtype=bool)
    has_brand = brands.astype("string").str.strip().fillna("").ne("").to_numpy(dtype=bool)
    vocabulary = build_vocabulary(titles[~held_out & has_brand], brands[~held_out & has_brand], **vocabulary_options)
    masked_titles, truth = titles[held_out & has_brand], brands[held_out & has_brand]
    found = extract(masked_titles, vocabulary)
    truth_keys = truth.map(brand_key).to_numpy(dtype=object)
    filled = found["brand"].notna().to_numpy(dtype=bool)
    found_keys = found["brand"].astype(object).map(brand_key).to_numpy(dtype=object)
    right = filled & (found_keys == truth_keys)
    verifiable = pd.Series([_contains(tokens(t), tokens(b)) for t, b in zip(masked_titles, truth)],
                           dtype=bool).to_numpy()
    n, n_filled, n_right = len(truth), int(filled.sum()), int(right.sum())
    v_n, v_filled, v_right = int(verifiable.sum()), int((filled & verifiable).sum()), int((right & verifiable).sum())
    return {"masked_n": n, "masked_filled": n_filled, "masked_correct": n_right,
            "masked_precision": n_right / n_filled if n_filled else None,
            "masked_coverage": n_filled / n if n else None,
            "masked_ambiguous": int(found["ambiguous"].sum()),
            "verifiable_n": v_n, "verifiable_precision": v_right / v_filled if v_filled else None,
            "verifiable_coverage": v_filled / v_n if v_n else None, "vocabulary": len(vocabulary)}

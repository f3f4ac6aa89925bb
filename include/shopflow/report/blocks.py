"""The building blocks a report section is made of (tables, plots, notes, headline figures) as plain dicts.

Sections return these; the template renders them and the JSON summary stores them (plots without their image).
Values stay raw numbers; the column's `fmt` says how the page shows them (see `render.format_value`).
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple

STATUS_ORDER = {"no_data": 0, "ok": 1, "warning": 2, "failed": 3}


# The money formats the page knows (render.format_value); an amount in another or no currency shows as a number.
MONEY_FORMATS = {"GBP": "gbp", "INR": "inr"}


def money_fmt(currency: str | None) -> str:
    return MONEY_FORMATS.get(currency or "", "float")


def currency_label(currency: str | None) -> str:
    """What an amount is in, for a column label: the source's currency, or that it declares none."""
    return currency or "currency not declared"


def for_source(title: str, source: str) -> str:
    """The title of a block about one source of a role (a section shows one such block per source)."""
    return f"{title} · {source}"


def column(key: str, label: str, fmt: str = "text") -> dict:
    """fmt: text | code | int | float | pct | pp | delta | gbp | inr | status | date."""
    return {"key": key, "label": label, "fmt": fmt}


def table(title: str, columns: list[dict], rows: Iterable[dict], *, note: str | None = None,
          empty: str = "nothing to show", shown_rows: int | None = None, folded: str | None = None) -> dict:
    """`shown_rows`: the page shows only the first rows open and folds the rest into a closed <details> titled
    `folded` (the JSON keeps every row in `rows`)."""
    return {"kind": "table", "title": title, "columns": columns, "rows": list(rows), "note": note, "empty": empty,
            "shown_rows": shown_rows, "folded": folded}


def plot(title: str, image: str, *, alt: str | None = None) -> dict:
    """`image` is a data: URI (see `plots.to_data_uri`); the JSON summary keeps only the title."""
    return {"kind": "plot", "title": title, "image": image, "alt": alt or title}


def note(text: str, level: str = "info") -> dict:
    """level: info | warning | failed | generated."""
    return {"kind": "note", "text": text, "level": level}


def figures(items: list[tuple[str, Any, str]]) -> dict:
    """Headline figures: (label, value, fmt)."""
    return {"kind": "figures", "items": [{"label": label, "value": value, "fmt": fmt} for label, value, fmt in items]}


def subsection(title: str, blocks: list[dict], *, status: str | None = None, collapsed: bool = False) -> dict:
    """A titled group of blocks; `collapsed` renders it as a closed <details> element (no script needed)."""
    return {"kind": "subsection", "title": title, "status": status, "blocks": blocks, "collapsed": collapsed}


def section(section_id: str, title: str, blocks: list[dict], *, status: str = "ok", summary: dict | None = None,
            intro: str | None = None) -> dict:
    return {"id": section_id, "title": title, "status": status, "intro": intro, "summary": summary or {},
            "blocks": blocks}


def worst(statuses: Iterable[str | None]) -> str:
    present = [s for s in statuses if s in STATUS_ORDER]
    return max(present, key=STATUS_ORDER.__getitem__) if present else "no_data"


def without_images(value):
    """A copy of a section (or any block tree) for the JSON summary: plots keep their title, not their image."""
    if isinstance(value, dict):
        return {k: without_images(v) for k, v in value.items() if not (k == "image" and value.get("kind") == "plot")}
    if isinstance(value, list):
        return [without_images(v) for v in value]
    return value


class SourcePart(NamedTuple):
    """One source's subsection of a section, with its status and summary (source None: no source of the role)."""

    block: dict
    status: str
    source: str | None
    summary: dict


def source_part(title: str, source: str, built: tuple[list[dict], str, dict]) -> SourcePart:
    """A source's subsection, titled for it, from (content, status, summary)."""
    content, status, summary = built
    return SourcePart(subsection(for_source(title, source), content, status=status), status, source, summary)


def no_source_part(title: str, role: str, consequence: str, summary: dict) -> SourcePart:
    """The subsection that says the sources file has no source of the role, and what is therefore missing."""
    text = note(f"The sources file declares no source with the {role} role: {consequence}.")
    return SourcePart(subsection(title, [text], status="no_data"), "no_data", None, summary)


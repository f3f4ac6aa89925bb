"""Jinja2 rendering of a report to one self-contained HTML page (inline CSS, images as data URIs, no script).

Autoescaping is on for everything: titles, queries and brands come from the data and may contain markup.
"""

from __future__ import annotations

import math
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

# The one line of the page that differs between two renderings of the same day.
GENERATED_AT_MARKER = 'class="generated-at"'


def format_value(value, fmt: str = "text") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if fmt == "int":
        return f"{int(round(value)):,}"
    if fmt == "float":
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if fmt == "pct":
        return f"{value * 100:.1f}%"
    if fmt == "pp":
        return f"{value * 100:+.1f} pp"
    if fmt == "delta":
        return f"{value * 100:+.1f}%"
    if fmt == "gbp":
        return f"£{value:,.2f}"
    if fmt == "inr":
        return f"₹{value:,.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


def status_class(value) -> str:
    text = str(value).lower()
    for marker, css in (("fail", "failed"), ("drift", "warning"), ("shift", "warning"), ("warn", "warning"),
                        ("missing", "missing"),
                        ("not run", "missing"), ("no_data", "missing"), ("ok", "ok"), ("pass", "ok"),
                        ("validated", "ok")):
        if marker in text:
            return css
    return "neutral"


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("shopflow.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = format_value
    env.filters["status_class"] = status_class
    return env


def render_html(report: dict, generated_at: str) -> str:
    return environment().get_template("report.html.j2").render(report=report, generated_at=generated_at)

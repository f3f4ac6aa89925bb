"""Section 5, search hotspots, one part per search-role source: the day's top queries, queries rising against the
previous days of the window, queries by the category the model predicts for them (when a model attributed them),
and queries without clicks. Columns are read through the search role (query, and where mapped session and
clicked_item); a source that maps no session or clicked_item field gets a note instead of those figures. A
source marked generated (the demo's search log) says so."""

from __future__ import annotations

import pandas as pd

from shopflow.model.search_intent import query_counts
from shopflow.report import blocks, plots
from shopflow.report.context import ReportContext
from shopflow.sources import SourceSpec, roles
from shopflow.sources.role_frames import role_frame

TOP = 15
RISING_MIN_SEARCHES = 3


def build(ctx: ReportContext) -> dict:
    """One subsection per search source; the summary's top-level keys describe the first, `per_source` every one."""
    specs = ctx.sources_of("search")
    if not specs:
        return blocks.section("search", "Search hotspots", [blocks.note(
            "The sources file declares no source with the search role: no search hotspots.")], status="no_data")
    intents = {i.query: i for i in ctx.store.search_intents(ctx.ds)}
    parts = [(spec.name, *_source_part(ctx, spec, intents)) for spec in specs]
    return blocks.section(
        "search", "Search hotspots",
        [blocks.subsection(blocks.for_source("Search hotspots", name), content, status=status)
         for name, content, status, _ in parts],
        status=blocks.worst([status for _, _, status, _ in parts]),
        summary={**parts[0][3], "per_source": {name: summary for name, _, _, summary in parts}},
        intro="Queries are normalised (case, spacing) before counting. One part per source of the search role.")


def _source_part(ctx: ReportContext, spec: SourceSpec, intents: dict) -> tuple[list[dict], str, dict]:
    content = []
    if spec.generated:
        content.append(blocks.note("GENERATED search log: these queries were generated deterministically from real "
                                   "catalogue titles and WANDS queries; they are not observed shopper behaviour.",
                                   "generated"))
    search = ctx.clean(spec.name)
    if search is None or search.empty:
        content.append(blocks.note(f"No {spec.name} partition for {ctx.ds}."))
        return content, "no_data", {}
    searches = _searches(search, spec)
    per_query = _per_query(searches)
    summary = {
        "searches": int(len(searches)),
        "distinct_queries": int(len(per_query)),
        "sessions": int(searches["session"].nunique()) if "session" in searches else None,
        "click_through_rate": float(searches["clicked"].mean()) if "clicked" in searches else None,
        "queries_without_clicks": int((per_query["clicks"] == 0).sum()) if "clicked" in searches else None,
        "generated": bool(spec.generated),
    }
    content.append(blocks.figures([
        ("searches", summary["searches"], "int"), ("distinct queries", summary["distinct_queries"], "int"),
        ("sessions", summary["sessions"], "int"), ("searches with a click", summary["click_through_rate"], "pct"),
        ("queries never clicked", summary["queries_without_clicks"], "int")]))
    for role_field, consequence in (("session", "no sessions per query"),
                                    ("clicked_item", "no clicks: no click rates and no queries without clicks")):
        if not roles.maps(spec, role_field):
            content.append(blocks.note(roles.no_field(spec, role_field, consequence) + "."))
    own = {query: intents[query] for query in per_query["query"] if query in intents}
    content.append(_top_queries(per_query, own))
    content.append(_rising(ctx, spec, per_query))
    content += _by_category(own, per_query, summary)
    if "clicked" in searches:
        content.append(_without_clicks(per_query))
    return content, "ok", summary


def _searches(search: pd.DataFrame, spec: SourceSpec) -> pd.DataFrame:
    """The day's searches by role field (query, session), with `clicked` where the source maps clicked_item."""
    searches = role_frame(search, spec, ("query", "session", "clicked_item"))
    if "clicked_item" in searches:
        searches["clicked"] = searches.pop("clicked_item").notna()
    return searches


def _per_query(searches: pd.DataFrame) -> pd.DataFrame:
    counts = query_counts(searches)
    grouped = searches.dropna(subset=["query"]).groupby("query")
    stats = {}
    if "session" in searches:
        stats["sessions"] = grouped["session"].nunique()
    if "clicked" in searches:
        stats["clicks"] = grouped["clicked"].sum().astype("int64")
    frame = counts.merge(pd.DataFrame(stats), left_on="query", right_index=True, how="left") if stats else counts
    for absent in {"sessions", "clicks"} - set(stats):
        frame[absent] = pd.NA
    frame["click_rate"] = frame["clicks"] / frame["searches"]
    return frame


def _maybe(value, cast):
    return None if pd.isna(value) else cast(value)


def _top_queries(per_query: pd.DataFrame, intents: dict) -> dict:
    rows = [{"query": r.query, "searches": int(r.searches), "sessions": _maybe(r.sessions, int),
             "click_rate": _maybe(r.click_rate, float),
             "category": intents[r.query].category if r.query in intents else None}
            for r in per_query.head(TOP).itertuples(index=False)]
    return blocks.table(f"Top {TOP} queries of the day", [
        blocks.column("query", "query"), blocks.column("searches", "searches", "int"),
        blocks.column("sessions", "sessions", "int"), blocks.column("click_rate", "searches with a click", "pct"),
        blocks.column("category", "predicted category")], rows)


def _rising(ctx: ReportContext, spec: SourceSpec, per_query: pd.DataFrame) -> dict:
    earlier = [d for d in ctx.window[:-1] if ctx.has_data(spec.name, d)]
    title = "Rising queries against the previous days"
    if not earlier:
        return blocks.table(title, [], [], empty=f"No earlier {spec.name} partition in the window to compare with.")
    query = spec.role_column("query")
    before = pd.concat([query_counts(ctx.clean(spec.name, d), query) for d in earlier], ignore_index=True)
    mean_before = before.groupby("query")["searches"].sum() / len(earlier)
    frame = per_query[per_query["searches"] >= RISING_MIN_SEARCHES][["query", "searches"]].copy()
    frame["before"] = frame["query"].map(mean_before).fillna(0.0)
    # +1 smooths queries never seen before, so a first appearance counts as a rise, not an infinite one
    frame["ratio"] = (frame["searches"] + 1) / (frame["before"] + 1)
    frame = frame[frame["ratio"] > 1].sort_values(["ratio", "searches", "query"], ascending=[False, False, True])
    rows = [{"query": r.query, "today": int(r.searches), "before": float(r.before), "ratio": float(r.ratio),
             "new": "new" if r.before == 0 else ""} for r in frame.head(10).itertuples(index=False)]
    return blocks.table(title, [
        blocks.column("query", "query"), blocks.column("today", "searches today", "int"),
        blocks.column("before", "mean per earlier day", "float"), blocks.column("ratio", "(today+1)/(before+1)", "float"),
        blocks.column("new", "")], rows,
        note=f"Compared with {len(earlier)} earlier {spec.name} day(s) in the window ({earlier[0]} .. "
             f"{earlier[-1]}); queries searched at least {RISING_MIN_SEARCHES} times today.",
        empty="No query rose against the earlier days.")


def _by_category(intents: dict, per_query: pd.DataFrame, summary: dict) -> list[dict]:
    """The source's searches by the category the model attributed to their query (intents: of its queries)."""
    if not intents:
        return [blocks.note("No model attribution for this day's queries (no champion model when the day ran, or "
                            "search_intent did not run).")]
    searches = dict(zip(per_query["query"], per_query["searches"]))
    frame = pd.DataFrame([{"category": i.category, "searches": int(searches[i.query]), "confidence": i.confidence,
                           "model": i.model_version} for i in intents.values()])
    frame["weighted"] = frame["confidence"] * frame["searches"]
    grouped = frame.groupby("category").agg(queries=("searches", "size"), searches=("searches", "sum"),
                                            weighted=("weighted", "sum")).reset_index()
    grouped["confidence"] = grouped["weighted"] / grouped["searches"]
    grouped = grouped.sort_values(["searches", "category"], ascending=[False, True])
    total = int(grouped["searches"].sum())
    summary["top_predicted_category"] = str(grouped.iloc[0]["category"])
    summary["model_version"] = int(frame["model"].max())
    rows = [{"category": r.category, "queries": int(r.queries), "searches": int(r.searches),
             "share": r.searches / total, "confidence": float(r.confidence)} for r in grouped.itertuples(index=False)]
    shown = grouped.head(12)
    return [
        blocks.plot("Searches by predicted category", plots.barh(
            shown["category"].tolist(), shown["searches"].tolist(),
            title=f"Searches by predicted category (model v{summary['model_version']})", xlabel="searches")),
        blocks.table("Queries by predicted category", [
            blocks.column("category", "category"), blocks.column("queries", "distinct queries", "int"),
            blocks.column("searches", "searches", "int"), blocks.column("share", "share of searches", "pct"),
            blocks.column("confidence", "mean confidence (search-weighted)", "pct")], rows),
    ]


def _without_clicks(per_query: pd.DataFrame) -> dict:
    never = per_query[per_query["clicks"] == 0].head(10)
    rows = [{"query": r.query, "searches": int(r.searches), "sessions": _maybe(r.sessions, int)}
            for r in never.itertuples(index=False)]
    return blocks.table("Most searched queries without any click", [
        blocks.column("query", "query"), blocks.column("searches", "searches", "int"),
        blocks.column("sessions", "sessions", "int")], rows,
        note="Candidates for missing products, bad ranking or a synonym.", empty="Every query got a click.")

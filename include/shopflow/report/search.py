"""Section 5, search hotspots: the day's top queries, queries rising against the previous days of the window,
queries by the category the model predicts for them (when a model attributed them), and queries without clicks.
The demo's search log is GENERATED; the section says so whenever the dataset is marked generated."""

from __future__ import annotations

import pandas as pd

from shopflow.report import blocks, plots
from shopflow.report.context import ReportContext
from shopflow.search_intent import query_counts

TOP = 15
RISING_MIN_SEARCHES = 3


def build(ctx: ReportContext) -> dict:
    spec = ctx.specs["search"]
    content = []
    if spec.generated:
        content.append(blocks.note("GENERATED search log: these queries were generated deterministically from real "
                                   "catalogue titles and WANDS queries; they are not observed shopper behaviour.",
                                   "generated"))
    search = ctx.clean("search")
    if search is None or search.empty:
        content.append(blocks.note(f"No search partition for {ctx.ds}."))
        return blocks.section("search", "Search hotspots", content, status="no_data")
    per_query = _per_query(search)
    intents = {i.query: i for i in ctx.store.search_intents(ctx.ds)}
    summary = {
        "searches": int(len(search)),
        "distinct_queries": int(len(per_query)),
        "sessions": int(search["session_id"].nunique()),
        "click_through_rate": float(search["has_click"].fillna(False).mean()),
        "queries_without_clicks": int((per_query["clicks"] == 0).sum()),
        "generated": bool(spec.generated),
    }
    content.append(blocks.figures([
        ("searches", summary["searches"], "int"), ("distinct queries", summary["distinct_queries"], "int"),
        ("sessions", summary["sessions"], "int"), ("searches with a click", summary["click_through_rate"], "pct"),
        ("queries never clicked", summary["queries_without_clicks"], "int")]))
    content.append(_top_queries(per_query, intents))
    content.append(_rising(ctx, per_query))
    content += _by_category(intents, summary)
    content.append(_without_clicks(per_query))
    return blocks.section("search", "Search hotspots", content, status="ok", summary=summary,
                          intro="Queries are normalised (case, spacing) before counting.")


def _per_query(search: pd.DataFrame) -> pd.DataFrame:
    counts = query_counts(search)
    grouped = search.dropna(subset=["query"]).groupby("query")
    stats = pd.DataFrame({"sessions": grouped["session_id"].nunique(),
                          "clicks": grouped["has_click"].sum().astype("int64")})
    frame = counts.merge(stats, left_on="query", right_index=True, how="left")
    frame["click_rate"] = frame["clicks"] / frame["searches"]
    return frame


def _top_queries(per_query: pd.DataFrame, intents: dict) -> dict:
    rows = [{"query": r.query, "searches": int(r.searches), "sessions": int(r.sessions),
             "click_rate": float(r.click_rate),
             "category": intents[r.query].category if r.query in intents else None}
            for r in per_query.head(TOP).itertuples(index=False)]
    return blocks.table(f"Top {TOP} queries of the day", [
        blocks.column("query", "query"), blocks.column("searches", "searches", "int"),
        blocks.column("sessions", "sessions", "int"), blocks.column("click_rate", "searches with a click", "pct"),
        blocks.column("category", "predicted category")], rows)


def _rising(ctx: ReportContext, per_query: pd.DataFrame) -> dict:
    earlier = [d for d in ctx.window[:-1] if ctx.has_data("search", d)]
    title = "Rising queries against the previous days"
    if not earlier:
        return blocks.table(title, [], [], empty="No earlier search partition in the window to compare with.")
    before = pd.concat([query_counts(ctx.clean("search", d)) for d in earlier], ignore_index=True)
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
        note=f"Compared with {len(earlier)} earlier search day(s) in the window ({earlier[0]} .. {earlier[-1]}); "
             f"queries searched at least {RISING_MIN_SEARCHES} times today.",
        empty="No query rose against the earlier days.")


def _by_category(intents: dict, summary: dict) -> list[dict]:
    if not intents:
        return [blocks.note("No model attribution for this day's queries (no champion model when the day ran, or "
                            "search_intent did not run).")]
    frame = pd.DataFrame([{"category": i.category, "searches": i.searches, "confidence": i.confidence,
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
    rows = [{"query": r.query, "searches": int(r.searches), "sessions": int(r.sessions)}
            for r in never.itertuples(index=False)]
    return blocks.table("Most searched queries without any click", [
        blocks.column("query", "query"), blocks.column("searches", "searches", "int"),
        blocks.column("sessions", "sessions", "int")], rows,
        note="Candidates for missing products, bad ranking or a synonym.", empty="Every query got a click.")

"""Section 3, users: per orders-role source, customer segments from its look-back (RFM) and customers by country;
per events-role source, the report day's funnel (view → favourite → cart → buy) with its hour-of-day profile.
Columns are read through the role's fields; a source that does not map a field a block needs gets a note saying
what is left out instead (e.g. no customer field: no segments; no timestamp: no hour-of-day profile).

RFM covers the customers (rows with a customer) of every clean partition of the orders source in the look-back,
as of the end of its latest day:

- recency: days from the customer's last non-cancelled purchase to the as-of day (calendar days in the source's
  own time zone);
- frequency: distinct non-cancelled orders (the order_id field: invoices);
- monetary: net amount (quantity × unit price, in the source's currency) of merchandise lines, cancellations
  counted as negative amounts.

Customers whose only lines in the look-back are cancellations have no purchase to date and are not segmented.
Each measure is scored 1..5 by its percentile rank p = (customers below + half the customers equal) / N, i.e.
(average rank - 0.5) / N, as score = floor(5 p) + 1, ranked so that 5 is best (most recent, most invoices, most
spent). Tied values share a score; a single customer or an all-tied population scores 3. Scores place a customer
within this population, not on an absolute scale.

Segments, the first matching rule wins (the table is shown in the section):

| segment             | rule                                  |
|---------------------|---------------------------------------|
| champions           | R ≥ 4, F ≥ 4 and M ≥ 4                |
| loyal               | R ≥ 3 and F ≥ 4                       |
| new                 | R ≥ 4 and exactly one invoice         |
| potential loyalists | R ≥ 4 (other recent customers)        |
| at risk             | R ≤ 2 and F ≥ 4                       |
| hibernating         | R ≤ 2 (other lapsed customers)        |
| needs attention     | everyone else (R = 3 and F ≤ 3)       |

The lowest tied group has p ≤ 0.5 and so scores at most 3: one-invoice customers, the lowest frequency, never
reach F ≥ 4, and "new" looks at the invoice count itself rather than at F.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from shopflow.report import blocks, plots
from shopflow.report.context import ReportContext
from shopflow.report.orders_metrics import caveats, coverage, is_sale, net_product_revenue, plain, records
from shopflow.sources import SourceSpec, roles
from shopflow.sources.role_frames import event_rows, order_lines
from shopflow.sources.spec import EVENT_TYPES

SEGMENT_RULES = [
    ("champions", "R ≥ 4, F ≥ 4 and M ≥ 4", lambda s: (s.r_score >= 4) & (s.f_score >= 4) & (s.m_score >= 4)),
    ("loyal", "R ≥ 3 and F ≥ 4", lambda s: (s.r_score >= 3) & (s.f_score >= 4)),
    ("new", "R ≥ 4 and exactly one invoice", lambda s: (s.r_score >= 4) & (s.frequency == 1)),
    ("potential loyalists", "R ≥ 4 (other recent customers)", lambda s: s.r_score >= 4),
    ("at risk", "R ≤ 2 and F ≥ 4", lambda s: (s.r_score <= 2) & (s.f_score >= 4)),
    ("hibernating", "R ≤ 2 (other lapsed customers)", lambda s: s.r_score <= 2),
    ("needs attention", "everyone else (R = 3 and F ≤ 3)", lambda s: pd.Series(True, index=s.index)),
]
SEGMENTS = [name for name, _, _ in SEGMENT_RULES]
TOP_COUNTRIES = 10
BUSIEST_HOURS = 5
# An events source's event types in funnel order (its event_type values are these: shopflow.sources.spec).
FUNNEL = list(EVENT_TYPES)
VIEW, CART, BUY = "view", "cart", "buy"
ORDERS_TITLE = "Customer segments (RFM) and countries"
# What RFM and the countries table need of an orders source beyond its required order_id and timestamp.
RFM_FIELDS = ("customer", "quantity", "unit_price")
COUNTRY_FIELDS = ("country", "customer", "quantity", "unit_price")



def build(ctx: ReportContext) -> dict:
    """One subsection per orders source and one per events source; the summary's top-level keys describe the first
    source of each role, `per_source` every one."""
    funnel_title = f"Behaviour funnel on {ctx.ds}"
    orders = [blocks.source_part(ORDERS_TITLE, spec.name, _orders_part(ctx, spec)) for spec in ctx.sources_of("orders")] \
        or [blocks.no_source_part(ORDERS_TITLE, "orders", "no customer segments", {"customers": 0})]
    events = [blocks.source_part(funnel_title, spec.name, _behaviour_part(ctx, spec)) for spec in ctx.sources_of("events")] \
        or [blocks.no_source_part(funnel_title, "events", "no funnel", {})]
    parts = orders + events
    return blocks.section(
        "users", "Users", [part.block for part in parts],
        status=blocks.worst([part.status for part in parts]),
        summary={**orders[0].summary, **events[0].summary,
                 "per_source": {part.source: part.summary for part in parts if part.source}},
        intro=(f"Who buys: RFM segments of the customers in the orders of the last {ctx.lookback_days} days and "
               f"where they are; how the day's marketplace users move from viewing to buying. One part per source "
               f"of the orders and events roles. Customer and user ids are pseudonymised at ingest."))




# ---- RFM -------------------------------------------------------------------------------------------------------
def rfm_table(orders: pd.DataFrame, as_of: date, timezone: str, spec: SourceSpec | None = None) -> pd.DataFrame:
    """recency_days, frequency and monetary_gbp (the net amount, in the source's currency) per customer with at least
    one purchase. `orders`: clean rows of the orders source `spec` (default: the first orders-role source)."""
    lines = order_lines(orders, spec or roles.source_of("orders"))
    keyed = lines[lines["customer"].notna()]
    sales = keyed[is_sale(keyed)]
    last_purchase = sales.groupby("customer")["timestamp"].max().dt.tz_convert(timezone).dt.date
    frame = pd.DataFrame({
        "recency_days": last_purchase.map(lambda day: (as_of - day).days),
        "frequency": sales.groupby("customer")["order_id"].nunique(),
    })
    frame["monetary_gbp"] = net_product_revenue(keyed, "customer").reindex(frame.index, fill_value=0.0)
    return frame.astype({"recency_days": "int64", "frequency": "int64", "monetary_gbp": "float64"}).sort_index()


def quantile_score(values: pd.Series, higher_is_better: bool = True) -> pd.Series:
    """1..5 by percentile rank (see the module docstring); ties share a score."""
    ranks = values.rank(method="average", ascending=higher_is_better)
    percentile = (ranks - 0.5) / len(values)
    return (np.floor(percentile * 5) + 1).clip(1, 5).astype("int64")


def score_rfm(rfm: pd.DataFrame) -> pd.DataFrame:
    """The RFM frame with r_score, f_score, m_score and its segment (the first matching SEGMENT_RULES entry)."""
    scored = rfm.assign(r_score=quantile_score(rfm["recency_days"], higher_is_better=False),
                        f_score=quantile_score(rfm["frequency"]),
                        m_score=quantile_score(rfm["monetary_gbp"]))
    matches = [rule(scored).to_numpy(dtype=bool) for _, _, rule in SEGMENT_RULES]
    return scored.assign(segment=np.select(matches, SEGMENTS, default=SEGMENTS[-1]))


def segment_table(scored: pd.DataFrame) -> pd.DataFrame:
    grouped = scored.groupby("segment")
    table = pd.DataFrame({
        "customers": grouped.size(),
        "recency": grouped["recency_days"].mean(),
        "frequency": grouped["frequency"].mean(),
        "monetary_mean": grouped["monetary_gbp"].mean(),
        "monetary_total": grouped["monetary_gbp"].sum(),
    }).reindex(SEGMENTS)
    table["customers"] = table["customers"].fillna(0).astype("int64")
    table["monetary_total"] = table["monetary_total"].fillna(0.0).round(2)
    table["share"] = table["customers"] / max(len(scored), 1)
    return table.rename_axis("segment").reset_index()


def _orders_part(ctx: ReportContext, spec: SourceSpec) -> tuple[list[dict], str, dict]:
    since = ctx.ds - timedelta(days=ctx.lookback_days - 1)
    orders, days = ctx.clean_since(spec.name, since)
    if orders is None or orders.empty:
        return [blocks.note(f"No clean {spec.name} rows between {since} and {ctx.ds}: no customer segments.")], \
            "no_data", {"customers": 0}
    as_of = days[-1]
    covered, status = coverage(ctx, spec.name, days, orders)
    level = "warning" if status == "warning" else "info"
    summary = {"customers": None, "rfm_as_of": as_of.isoformat(), "orders_days": len(days)}
    countries = _countries_blocks(orders, spec)
    lacking = roles.absent(spec, *RFM_FIELDS)
    if lacking:
        content = [blocks.figures([("orders days", len(days), "int"), ("order lines", len(orders), "int")]),
                   blocks.note(covered, level), *caveats(spec, orders),
                   blocks.note(roles.no_field(spec, lacking, "no customer segments (RFM)") + ".")]
        return content + countries, status, summary
    scored = score_rfm(rfm_table(orders, as_of, spec.timezone, spec))
    keyed = orders[spec.role_column("customer")].notna()
    only_cancelled = orders.loc[keyed, spec.role_column("customer")].nunique() - len(scored)
    content = [
        blocks.figures([("customers segmented", len(scored), "int"), ("RFM as of", as_of.isoformat(), "text"),
                        ("orders days", len(days), "int"), ("order lines", len(orders), "int")]),
        blocks.note(f"{covered} RFM as of the end of {as_of}. {int((~keyed).sum()):,} lines have no customer key "
                    f"and are left out; {only_cancelled:,} customer(s) with only cancellations are not segmented.",
                    level),
        *caveats(spec, orders),
    ]
    summary["customers"] = len(scored)
    if scored.empty:
        content.append(blocks.note("No customer made a purchase in the look-back."))
        return content + countries, status, summary
    segments = segment_table(scored)
    summary["segments"] = {row["segment"]: int(row["customers"]) for row in records(segments)}
    content += [_rules_block(spec.currency), _segments_block(segments, spec.currency), _segments_plot(segments),
                *countries]
    return content, status, summary


def _rules_block(currency: str | None) -> dict:
    return blocks.table(
        "Segment rules (first match wins)",
        [blocks.column("segment", "segment"), blocks.column("rule", "rule")],
        [{"segment": name, "rule": rule} for name, rule, _ in SEGMENT_RULES],
        note=("R, F, M: recency (days since the last purchase), frequency (distinct invoices) and monetary value "
              f"(net {blocks.currency_label(currency)} of product lines) scored 1..5 by percentile rank within these "
              "customers (floor(5 p) + 1, p = share below + half the share equal); 5 is best, ties share a score."))


def _segments_block(segments: pd.DataFrame, currency: str | None) -> dict:
    unit, money = blocks.currency_label(currency), blocks.money_fmt(currency)
    return blocks.table("Segment sizes", [
        blocks.column("segment", "segment"), blocks.column("customers", "customers", "int"),
        blocks.column("share", "share", "pct"), blocks.column("recency", "mean recency (days)", "float"),
        blocks.column("frequency", "mean invoices", "float"),
        blocks.column("monetary_mean", f"mean net spend ({unit})", money),
        blocks.column("monetary_total", f"total net spend ({unit})", money),
    ], records(segments))


def _segments_plot(segments: pd.DataFrame) -> dict:
    image = plots.barh(list(segments["segment"]), [int(v) for v in segments["customers"]],
                       title="Customers per RFM segment", xlabel="customers")
    return blocks.plot("Customers per RFM segment", image)


# ---- countries -------------------------------------------------------------------------------------------------
def country_table(orders: pd.DataFrame, spec: SourceSpec | None = None) -> pd.DataFrame:
    """Top countries by distinct customers (with the net merchandise revenue of all their lines), then the rest.
    `orders`: clean rows of the orders source `spec` (default: the first orders-role source)."""
    lines = order_lines(orders, spec or roles.source_of("orders"))
    lines = lines.assign(country=lines["country"].fillna("(unknown)"))
    keyed = lines[lines["customer"].notna()]
    table = pd.DataFrame({"customers": keyed.groupby("country")["customer"].nunique(),
                          "revenue_gbp": net_product_revenue(lines, "country")}).fillna(0)
    table = table.rename_axis("country").reset_index().sort_values(
        ["customers", "revenue_gbp", "country"], ascending=[False, False, True])
    top, rest = table.head(TOP_COUNTRIES), table.iloc[TOP_COUNTRIES:]
    if not rest.empty:
        in_rest = keyed["country"].isin(rest["country"])
        other = {"country": f"other countries ({len(rest)})",
                 "customers": keyed.loc[in_rest, "customer"].nunique(),
                 "revenue_gbp": round(float(rest["revenue_gbp"].sum()), 2)}
        top = pd.concat([top, pd.DataFrame([other])], ignore_index=True)
    top["share"] = top["customers"] / max(keyed["customer"].nunique(), 1)
    return top.astype({"customers": "int64"})


def _countries_blocks(orders: pd.DataFrame, spec: SourceSpec) -> list[dict]:
    lacking = roles.absent(spec, *COUNTRY_FIELDS)
    if lacking:
        return [blocks.note(roles.no_field(spec, lacking, "no customers by country") + ".")]
    unit = blocks.currency_label(spec.currency)
    return [blocks.table(f"Customers by country (top {TOP_COUNTRIES} by customers)", [
        blocks.column("country", "country"), blocks.column("customers", "customers", "int"),
        blocks.column("share", "share of customers", "pct"),
        blocks.column("revenue_gbp", f"net product revenue ({unit})", blocks.money_fmt(spec.currency)),
    ], records(country_table(orders, spec)),
        note="Revenue counts every product line of the country, with or without a customer key.")]


# ---- behaviour -------------------------------------------------------------------------------------------------
def funnel_table(events: pd.DataFrame, spec: SourceSpec | None = None) -> pd.DataFrame:
    """Per stage: events, distinct users, and the share of the viewers who also reached the stage. `events`: clean
    rows of the events source `spec` (default: the first events-role source)."""
    rows = event_rows(events, spec or roles.source_of("events"))
    users = {stage: set(rows.loc[rows["event_type"] == stage, "user"].dropna()) for stage in FUNNEL}
    viewers = users[VIEW]
    return pd.DataFrame([{
        "stage": stage,
        "events": int((rows["event_type"] == stage).sum()),
        "users": len(users[stage]),
        "from_view": len(users[stage] & viewers) / len(viewers) if viewers else None,
    } for stage in FUNNEL])


def cart_to_buy(events: pd.DataFrame, spec: SourceSpec | None = None) -> float | None:
    """The share of the users who carted that day who also bought that day."""
    rows = event_rows(events, spec or roles.source_of("events"))
    carted = set(rows.loc[rows["event_type"] == CART, "user"].dropna())
    bought = set(rows.loc[rows["event_type"] == BUY, "user"].dropna())
    return len(carted & bought) / len(carted) if carted else None


def hour_profile(events: pd.DataFrame, timezone: str, spec: SourceSpec | None = None) -> pd.DataFrame:
    """Events and distinct users per local hour 0..23 (hours without events included). `events`: clean rows of
    the events source `spec` (default: the first events-role source), which must map a timestamp."""
    rows = event_rows(events, spec or roles.source_of("events"))
    hours = rows["timestamp"].dt.tz_convert(timezone).dt.hour
    grouped = rows.groupby(hours)
    profile = pd.DataFrame({"events": grouped.size(), "users": grouped["user"].nunique()})
    profile = profile.reindex(range(24), fill_value=0).rename_axis("hour").reset_index()
    profile["share"] = profile["events"] / max(len(rows), 1)
    return profile.astype({"hour": "int64", "events": "int64", "users": "int64"})


def _behaviour_part(ctx: ReportContext, spec: SourceSpec) -> tuple[list[dict], str, dict]:
    partition = ctx.partition(spec.name)
    events = ctx.clean(spec.name)
    if events is None:
        state = partition.status if partition else "not run"
        return [blocks.note(f"No readable {spec.name} partition for {ctx.ds} (state: {state}): no funnel.")], \
            "no_data", {}
    if events.empty:
        return [blocks.note(f"The {spec.name} partition of {ctx.ds} has no clean events.")], "no_data", {"events": 0}
    content, summary = _behaviour_blocks(events, spec)
    if partition.status == "failed_validation":
        content.insert(1, blocks.note(f"The {spec.name} partition of {ctx.ds} failed validation: the figures come "
                                      f"from its clean rows all the same.", "warning"))
        return content, "warning", summary
    return content, "ok", summary


def _behaviour_blocks(events: pd.DataFrame, spec: SourceSpec) -> tuple[list[dict], dict]:
    funnel = funnel_table(events, spec)
    to_buy = cart_to_buy(events, spec)
    view_to_buy = plain(funnel.loc[funnel["stage"] == BUY, "from_view"].iloc[0])
    users = int(events[spec.role_column("user")].nunique())
    figures = blocks.figures([
        ("events", len(events), "int"), ("users", users, "int"),
        (f"{VIEW} → {BUY} (users)", view_to_buy, "pct"), (f"{CART} → {BUY} (users)", to_buy, "pct")])
    content = [figures, _funnel_block(funnel), _funnel_plot(funnel)]
    stage_users = {f"{row['stage']}_users": row["users"] for row in records(funnel)}
    summary = {"events": len(events), "funnel": {**stage_users, "view_to_buy": view_to_buy, "cart_to_buy": to_buy},
               "busiest_hour": None}
    if not roles.maps(spec, "timestamp"):
        content.append(blocks.note(roles.no_field(spec, "timestamp", "no hour-of-day profile") + "."))
        return content, summary
    profile = hour_profile(events, spec.timezone, spec)
    busiest = profile.sort_values(["events", "hour"], ascending=[False, True]).head(BUSIEST_HOURS)
    content += [_hours_plot(profile, spec.timezone), _busiest_block(busiest, spec.timezone)]
    summary["busiest_hour"] = int(busiest["hour"].iloc[0])
    return content, summary


def _funnel_block(funnel: pd.DataFrame) -> dict:
    return blocks.table("Funnel", [
        blocks.column("stage", "stage"), blocks.column("events", "events", "int"),
        blocks.column("users", "distinct users", "int"),
        blocks.column("from_view", f"share of {VIEW} users who reached it", "pct"),
    ], records(funnel), note=("A stage is reached by a user with at least one event of that type on the day; the "
                              "conversion counts only the users who also viewed."))


def _funnel_plot(funnel: pd.DataFrame) -> dict:
    image = plots.barh(list(funnel["stage"]), [int(v) for v in funnel["users"]],
                       title="Distinct users per funnel stage", xlabel="distinct users")
    return blocks.plot("Behaviour funnel: distinct users per stage", image)


def _hours_plot(profile: pd.DataFrame, timezone: str) -> dict:
    image = plots.bars([f"{h:02d}" for h in profile["hour"]], [int(v) for v in profile["events"]],
                       title="Events per hour of day", xlabel=f"hour of day ({timezone})", ylabel="events")
    return blocks.plot(f"Behaviour events per hour of day ({timezone})", image)


def _busiest_block(busiest: pd.DataFrame, timezone: str) -> dict:
    rows = [{**row, "hour": f"{row['hour']:02d}:00–{row['hour']:02d}:59"} for row in records(busiest)]
    return blocks.table(f"Busiest hours ({timezone})", [
        blocks.column("hour", "hour", "code"), blocks.column("events", "events", "int"),
        blocks.column("share", "share of the day's events", "pct"), blocks.column("users", "distinct users", "int"),
    ], rows)

"""Section 4, products: the catalogue as of the report day (categories, INR prices per category, brand coverage,
missing fields, category-tree status) and the products sold over the report window (best sellers by GBP revenue and
by quantity, cancellation rates)."""

from __future__ import annotations

import pandas as pd

from shopflow.catalog_view import catalog_as_of
from shopflow.report import blocks, plots
from shopflow.report.context import ReportContext
from shopflow.report.orders_metrics import coverage, is_sale, net_product_revenue, plain, product_lines, records
from shopflow.sources.catalog import CATEGORY_STATUSES

TOP_CATEGORIES = 12
PRICE_CATEGORIES = 8
TOP_BRANDS = 10
TOP_MISSING = 10
TOP_SELLERS = 10
MIN_SOLD_LINES = 5  # a cancellation rate over fewer sale lines says little
NO_CATEGORY = "(no category)"
PRICE_QUANTILES = {"p25": 0.25, "median": 0.5, "p75": 0.75, "p90": 0.9}


def build(ctx: ReportContext) -> dict:
    catalogue_blocks, catalogue_status, catalogue_summary = _catalogue_part(ctx)
    orders_blocks, orders_status, orders_summary = _orders_part(ctx)
    return blocks.section(
        "products", "Products",
        [blocks.subsection(f"Catalogue as of {ctx.ds}", catalogue_blocks, status=catalogue_status),
         blocks.subsection(f"Products sold over the last {ctx.window_days} days", orders_blocks,
                           status=orders_status)],
        status=blocks.worst([catalogue_status, orders_status]),
        summary={**catalogue_summary, **orders_summary},
        intro=("What the shop offers (the Flipkart catalogue: latest validated snapshot plus later deltas, prices in "
               "INR) and what sells (the UK retailer's invoice lines, amounts in GBP). The two sources do not share "
               "product ids."))


# ---- catalogue -------------------------------------------------------------------------------------------------
def _catalogue_part(ctx: ReportContext) -> tuple[list[dict], str, dict]:
    try:
        catalogue = catalog_as_of(ctx.store, ctx.ds)
    except LookupError as exc:
        return [blocks.note(f"No catalogue to show: {exc}.")], "no_data", {"catalogue_products": None}
    if catalogue.empty:
        return [blocks.note(f"The catalogue as of {ctx.ds} has no products.")], "no_data", {"catalogue_products": 0}
    categories = category_distribution(catalogue)
    brands = brand_coverage(catalogue)
    prices = price_table(catalogue)
    columns = list(ctx.specs["catalog"].clean_schema)
    snapshot = catalogue["as_of_ds"].min()
    content = [
        blocks.figures([("products", len(catalogue), "int"),
                        ("top-level categories", _category_count(catalogue), "int"),
                        ("with a brand", brands["coverage"], "pct"), ("distinct brands", brands["brands"], "int")]),
        blocks.note(f"The validated snapshot of {snapshot} with the validated deltas after it applied: "
                    f"{int((catalogue['as_of_ds'] != snapshot).sum()):,} products carry a later delta's version."),
        _categories_block(categories), _categories_plot(categories),
        _prices_block(prices), _prices_plot(catalogue, prices),
        _brands_block(brands), _missing_block(missing_fields(catalogue, columns)),
        _status_block(category_status_shares(catalogue)),
    ]
    content = [block for block in content if block is not None]
    summary = {"catalogue_products": len(catalogue), "categories": _category_count(catalogue),
               "brand_coverage": brands["coverage"], "distinct_brands": brands["brands"],
               "largest_category": plain(categories["category"].iloc[0])}
    return content, "ok", summary


def _category_count(catalogue: pd.DataFrame) -> int:
    return int(catalogue["category_top"].nunique())


def category_distribution(catalogue: pd.DataFrame) -> pd.DataFrame:
    """Products per top-level category, the largest TOP_CATEGORIES and one row for the rest."""
    counts = (catalogue["category_top"].fillna(NO_CATEGORY).value_counts().rename_axis("category")
              .reset_index(name="products").sort_values(["products", "category"], ascending=[False, True]))
    top, rest = counts.head(TOP_CATEGORIES), counts.iloc[TOP_CATEGORIES:]
    if not rest.empty:
        top = pd.concat([top, pd.DataFrame([{"category": f"other ({len(rest)} categories)",
                                             "products": rest["products"].sum()}])], ignore_index=True)
    top["share"] = top["products"] / max(len(catalogue), 1)
    return top.astype({"products": "int64"})


def _categories_block(categories: pd.DataFrame) -> dict:
    return blocks.table(f"Products per top-level category (largest {TOP_CATEGORIES})", [
        blocks.column("category", "top-level category"), blocks.column("products", "products", "int"),
        blocks.column("share", "share", "pct"),
    ], records(categories), note=f"{NO_CATEGORY}: the category tree holds only the product name or nothing.")


def _categories_plot(categories: pd.DataFrame) -> dict:
    image = plots.barh(list(categories["category"]), [int(v) for v in categories["products"]],
                       title="Products per top-level category", xlabel="products")
    return blocks.plot("Products per top-level category", image)


def product_prices(catalogue: pd.DataFrame) -> pd.Series:
    """The price a buyer pays in INR: the discounted price, else the retail price; non-positive prices dropped."""
    price = catalogue["discounted_price_inr"].fillna(catalogue["retail_price_inr"])
    return price[price > 0]


def price_table(catalogue: pd.DataFrame) -> pd.DataFrame:
    """Price quantiles (INR) of the PRICE_CATEGORIES largest top-level categories, largest first."""
    sizes = (catalogue["category_top"].dropna().value_counts().rename_axis("category").reset_index(name="size")
             .sort_values(["size", "category"], ascending=[False, True]).head(PRICE_CATEGORIES))
    prices = product_prices(catalogue)
    category = catalogue.loc[prices.index, "category_top"]
    rows = []
    for name in sizes["category"]:
        priced = prices[category == name]
        quantiles = {key: round(float(priced.quantile(q)), 2) if len(priced) else None
                     for key, q in PRICE_QUANTILES.items()}
        rows.append({"category": name, "count": len(priced), **quantiles})
    return pd.DataFrame(rows, columns=["category", "count", *PRICE_QUANTILES])


def _prices_block(prices: pd.DataFrame) -> dict:
    columns = [blocks.column("category", "top-level category"), blocks.column("count", "priced products", "int")]
    columns += [blocks.column(key, f"{key} (INR)", "inr") for key in PRICE_QUANTILES]
    return blocks.table(f"Prices of the {PRICE_CATEGORIES} largest categories (INR)", columns, records(prices),
                        note="Price: the discounted price, or the retail price where there is none.")


def _prices_plot(catalogue: pd.DataFrame, prices: pd.DataFrame) -> dict | None:
    price = product_prices(catalogue)
    category = catalogue.loc[price.index, "category_top"]
    names = list(prices.loc[prices["count"] > 0, "category"])[::-1]  # the largest category on top
    if not names:
        return None
    data = [price[category == name].to_numpy() for name in names]
    fig, axes = plots.figure(7.0, 0.8 + 0.35 * len(names))
    ax = axes[0][0]
    with plots.plt.rc_context(plots.STYLE):
        ax.boxplot(data, orientation="horizontal", tick_labels=[plots.shorten(n) for n in names], whis=(5, 95),
                   showfliers=False, patch_artist=True, boxprops={"facecolor": plots.PALETTE[0], "alpha": 0.6},
                   medianprops={"color": plots.PALETTE[1]})
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plots.matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xlabel("price (INR, log scale)")
        ax.set_title("Price per top-level category")
    return blocks.plot("Price distribution per category (box: p25–p75, line: median, whiskers: p5–p95)",
                       plots.to_data_uri(fig))


def has_value(values: pd.Series) -> pd.Series:
    """Not null and, for text, not blank."""
    present = values.notna()
    if pd.api.types.is_string_dtype(values):
        present &= values.fillna("").str.strip() != ""
    return present


def brand_coverage(catalogue: pd.DataFrame) -> dict:
    branded = catalogue.loc[has_value(catalogue["brand"]), "brand"]
    top = (branded.value_counts().rename_axis("brand").reset_index(name="products")
           .sort_values(["products", "brand"], ascending=[False, True]).head(TOP_BRANDS))
    top["share"] = top["products"] / max(len(catalogue), 1)
    return {"coverage": len(branded) / len(catalogue) if len(catalogue) else None,
            "brands": int(branded.nunique()), "top": top}


def _brands_block(brands: dict) -> dict:
    return blocks.table(f"Top {TOP_BRANDS} brands by products", [
        blocks.column("brand", "brand"), blocks.column("products", "products", "int"),
        blocks.column("share", "share of all products", "pct"),
    ], records(brands["top"]),
        note=f"{plain(brands['brands']):,} distinct brands; products with a brand: "
             f"{(brands['coverage'] or 0) * 100:.1f}%.", empty="no product has a brand")


def missing_fields(catalogue: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The TOP_MISSING clean columns most often null or blank, with their share of products."""
    shares = pd.DataFrame([{"field": c, "missing": float((~has_value(catalogue[c])).mean())}
                           for c in columns if c in catalogue])
    return shares.sort_values(["missing", "field"], ascending=[False, True]).head(TOP_MISSING)


def _missing_block(missing: pd.DataFrame) -> dict:
    return blocks.table(f"Fields most often missing (top {TOP_MISSING})", [
        blocks.column("field", "clean column", "code"), blocks.column("missing", "null or blank", "pct"),
    ], records(missing))


def category_status_shares(catalogue: pd.DataFrame) -> pd.DataFrame:
    counts = catalogue["category_status"].fillna("(none)").value_counts()
    order = CATEGORY_STATUSES + sorted(set(counts.index) - set(CATEGORY_STATUSES))
    table = counts.reindex(order, fill_value=0).rename_axis("status").reset_index(name="products")
    table["share"] = table["products"] / max(len(catalogue), 1)
    return table.astype({"products": "int64"})


def _status_block(statuses: pd.DataFrame) -> dict:
    return blocks.table("Category-tree status", [
        blocks.column("status", "category_status", "code"), blocks.column("products", "products", "int"),
        blocks.column("share", "share", "pct"),
    ], records(statuses), note=("ok: a full tree; truncated_leaf: the leaf was cut off with '...'; name_only: the "
                                "tree is only the product name; missing: no tree."))


# ---- sales over the window ------------------------------------------------------------------------------------
def product_sales(orders: pd.DataFrame) -> pd.DataFrame:
    """Per stock_code over product lines: net quantity and GBP revenue, sale invoices, sold and cancelled lines and
    quantities, and its most frequent description."""
    lines = product_lines(orders)
    sale = is_sale(lines)
    sales, cancels = lines[sale].groupby("stock_code"), lines[~sale].groupby("stock_code")
    table = pd.DataFrame({
        "quantity": lines.groupby("stock_code")["quantity"].sum(),
        "revenue_gbp": net_product_revenue(orders, "stock_code"),
        "invoices": sales["invoice_no"].nunique(),
        "sold_lines": sales.size(),
        "sold_quantity": sales["quantity"].sum(),
        "cancelled_lines": cancels.size(),
        "cancelled_quantity": -cancels["quantity"].sum(),
    }).fillna(0).astype({"quantity": "int64", "invoices": "int64", "sold_lines": "int64", "sold_quantity": "int64",
                         "cancelled_lines": "int64", "cancelled_quantity": "int64"})
    table["description"] = _descriptions(lines).reindex(table.index)
    return table.rename_axis("stock_code").reset_index()


def _descriptions(lines: pd.DataFrame) -> pd.Series:
    """The most frequent description per stock code (ties: alphabetical)."""
    counts = lines.dropna(subset=["description"]).groupby(["stock_code", "description"]).size().reset_index(name="n")
    counts = counts.sort_values(["stock_code", "n", "description"], ascending=[True, False, True])
    return counts.drop_duplicates("stock_code").set_index("stock_code")["description"]


def best_sellers(sales: pd.DataFrame, by: str) -> pd.DataFrame:
    return sales.sort_values([by, "stock_code"], ascending=[False, True]).head(TOP_SELLERS)


def cancellation_rates(sales: pd.DataFrame) -> pd.DataFrame:
    """Cancelled / sold quantity for products with at least MIN_SOLD_LINES sale lines and any cancellation."""
    eligible = sales[(sales["sold_lines"] >= MIN_SOLD_LINES) & (sales["cancelled_quantity"] > 0)]
    eligible = eligible.assign(rate=eligible["cancelled_quantity"] / eligible["sold_quantity"])
    return eligible.sort_values(["rate", "cancelled_quantity", "stock_code"],
                                ascending=[False, False, True]).head(TOP_SELLERS)


def _orders_part(ctx: ReportContext) -> tuple[list[dict], str, dict]:
    orders, days = ctx.clean_since("orders", ctx.window[0])
    if orders is None or product_lines(orders).empty:
        return [blocks.note(f"No product lines in the clean orders between {ctx.window[0]} and {ctx.ds}.")], \
            "no_data", {"orders_days": [d.isoformat() for d in days]}
    sales = product_sales(orders)
    by_revenue, by_quantity = best_sellers(sales, "revenue_gbp"), best_sellers(sales, "quantity")
    covered, status = coverage(ctx, days, orders)
    content = [
        blocks.note(f"{covered} Days: {', '.join(d.isoformat() for d in days)}.",
                    "warning" if status == "warning" else "info"),
        blocks.figures([("products sold", int((sales["sold_lines"] > 0).sum()), "int"),
                        ("net product revenue (GBP)", round(float(sales["revenue_gbp"].sum()), 2), "gbp"),
                        ("net units", int(sales["quantity"].sum()), "int")]),
        _sellers_block(f"Best sellers by net revenue (GBP), top {TOP_SELLERS}", by_revenue),
        _sellers_plot(by_revenue),
        _sellers_block(f"Best sellers by net quantity, top {TOP_SELLERS}", by_quantity),
        _cancellations_block(cancellation_rates(sales)),
    ]
    summary = {"orders_days": [d.isoformat() for d in days], "products_sold": int((sales["sold_lines"] > 0).sum()),
               "best_seller_by_revenue": _headline(by_revenue), "best_seller_by_quantity": _headline(by_quantity)}
    return content, status, summary


def _headline(sellers: pd.DataFrame) -> dict:
    return {k: v for k, v in records(sellers.head(1))[0].items()
            if k in ("stock_code", "description", "quantity", "revenue_gbp", "invoices")}


def _sellers_block(title: str, sellers: pd.DataFrame) -> dict:
    return blocks.table(title, [
        blocks.column("stock_code", "stock code", "code"), blocks.column("description", "description"),
        blocks.column("quantity", "net quantity", "int"), blocks.column("revenue_gbp", "net revenue (GBP)", "gbp"),
        blocks.column("invoices", "invoices", "int"),
    ], records(sellers), note="Net: sales minus cancellations in the window; product lines only.")


def _sellers_plot(sellers: pd.DataFrame) -> dict:
    labels = [f"{code} {plain(description) or ''}".strip()
              for code, description in zip(sellers["stock_code"], sellers["description"])]
    image = plots.barh(labels, [float(v) for v in sellers["revenue_gbp"]], title="Best sellers by net revenue",
                       xlabel="net revenue (GBP)")
    return blocks.plot("Best sellers by net revenue (GBP)", image)


def _cancellations_block(rates: pd.DataFrame) -> dict:
    return blocks.table(f"Highest cancellation rates (products with ≥ {MIN_SOLD_LINES} sale lines)", [
        blocks.column("stock_code", "stock code", "code"), blocks.column("description", "description"),
        blocks.column("sold_lines", "sale lines", "int"), blocks.column("cancelled_lines", "cancelled lines", "int"),
        blocks.column("sold_quantity", "sold quantity", "int"),
        blocks.column("cancelled_quantity", "cancelled quantity", "int"),
        blocks.column("rate", "cancelled / sold quantity", "pct"),
    ], records(rates), empty=f"no product with ≥ {MIN_SOLD_LINES} sale lines had a cancellation in the window",
        note="A cancellation in the window may refer to a sale before it, so a rate can exceed 100%.")

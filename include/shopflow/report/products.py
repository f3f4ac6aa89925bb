"""Section 4, products: per catalog-role source, its catalogue as of the report day (categories, prices per category,
brand coverage, missing fields, category-tree status); per orders-role source, the products sold over the report
window (best sellers by revenue and by quantity, cancellation rates).

Columns are read through the role's fields. A block whose field the source does not map is replaced by a note that
says so ("olist_catalog declares no price field: no price distribution"); the rest of the source's blocks stay.
"""

from __future__ import annotations

import pandas as pd

from shopflow.lake.catalog_view import catalog_as_of
from shopflow.report import blocks, plots
from shopflow.report.context import ReportContext
from shopflow.report.orders_metrics import caveats, coverage, is_sale, net_product_revenue, plain, product_lines, records
from shopflow.sources import SourceSpec, roles
from shopflow.sources.catalog import CATEGORY_STATUSES
from shopflow.sources.role_frames import categories, order_lines, role_frame

TOP_CATEGORIES = 12
PRICE_CATEGORIES = 8
TOP_BRANDS = 10
TOP_MISSING = 10
TOP_SELLERS = 10
MIN_SOLD_LINES = 5  # a cancellation rate over fewer sale lines says little
NO_CATEGORY = "(no category)"
PRICE_QUANTILES = {"p25": 0.25, "median": 0.5, "p75": 0.75, "p90": 0.9}
CATALOGUE_TITLE = "Catalogue as of {ds}"
SOLD_TITLE = "Products sold over the last {days} days"
# A source that maps discounted_price beside price is priced at what a buyer pays: the discounted price, else the
# (retail) price.
# What the best sellers need of an orders source beyond its required order_id and timestamp.
SALES_FIELDS = ("product", "quantity", "unit_price")



def build(ctx: ReportContext) -> dict:
    """One subsection per catalog source, then one per orders source; the summary's top-level keys describe the
    first source of each role, `per_source` every one."""
    catalogue_title = CATALOGUE_TITLE.format(ds=ctx.ds)
    sold_title = SOLD_TITLE.format(days=ctx.window_days)
    catalogues = [blocks.source_part(catalogue_title, spec.name, _catalogue_part(ctx, spec))
                  for spec in ctx.sources_of("catalog")] \
        or [blocks.no_source_part(catalogue_title, "catalog", "no catalogue", {"catalogue_products": None})]
    sold = [blocks.source_part(sold_title, spec.name, _orders_part(ctx, spec)) for spec in ctx.sources_of("orders")] \
        or [blocks.no_source_part(sold_title, "orders", "no best sellers", {"orders_days": []})]
    parts = catalogues + sold
    catalog_names = ", ".join(p.source for p in catalogues if p.source) or "none"
    orders_names = ", ".join(p.source for p in sold if p.source) or "none"
    return blocks.section(
        "products", "Products", [part.block for part in parts],
        status=blocks.worst([part.status for part in parts]),
        summary={**catalogues[0].summary, **sold[0].summary,
                 "per_source": {part.source: part.summary for part in parts if part.source}},
        intro=(f"What the shop offers (each catalogue as of the day, its latest validated snapshot plus later deltas: "
               f"{catalog_names}) and what sells (the order lines of {orders_names}). Prices and amounts are in each "
               f"source's own currency; catalogues and orders do not share product ids."))




# ---- catalogue -------------------------------------------------------------------------------------------------
def discounted_price_column(spec: SourceSpec) -> str | None:
    """The column of the catalog role's discounted_price field (what a buyer pays where it differs), if mapped."""
    return spec.role_column("discounted_price")


def catalogue_products(catalogue: pd.DataFrame, spec: SourceSpec) -> pd.DataFrame:
    """The catalogue by role field (id and, where mapped, title, brand, price, description, category_status), with
    `top_level` and `second_level` (its first two category levels) and `buyer_price` where it has a price."""
    products = role_frame(catalogue, spec)
    top, second = categories(catalogue, spec)
    if top is not None:
        products["top_level"] = top
    if second is not None:
        products["second_level"] = second
    if "price" in products:
        discounted = discounted_price_column(spec)
        products["buyer_price"] = catalogue[discounted].fillna(products["price"]) if discounted else products["price"]
    return products


def _catalogue_part(ctx: ReportContext, spec: SourceSpec) -> tuple[list[dict], str, dict]:
    try:
        catalogue = catalog_as_of(ctx.store, ctx.ds, source=spec.name)
    except LookupError as exc:
        return [blocks.note(f"No catalogue to show: {exc}.")], "no_data", {"catalogue_products": None}
    if catalogue.empty:
        return [blocks.note(f"The {spec.name} catalogue as of {ctx.ds} has no products.")], "no_data", \
            {"catalogue_products": 0}
    products = catalogue_products(catalogue, spec)
    snapshot = catalogue["as_of_ds"].min()
    summary = {"catalogue_products": len(products), "categories": None, "brand_coverage": None,
               "distinct_brands": None, "largest_category": None}
    headline = [("products", len(products), "int")]
    category_blocks = [_missing_note(spec, ["category_levels", "category_path"], "no categories")]
    if "top_level" in products:
        categories_table = category_distribution(products)
        summary["categories"] = _category_count(products)
        summary["largest_category"] = plain(categories_table["category"].iloc[0])
        headline.append(("top-level categories", summary["categories"], "int"))
        category_blocks = [_categories_block(categories_table), _categories_plot(categories_table)]
    price_blocks = [_missing_note(spec, "price", "no price distribution")]
    if "buyer_price" in products:
        prices = price_table(products) if "top_level" in products else None
        price_blocks = [_prices_block(prices, spec), _prices_plot(products, prices, spec.currency)] \
            if prices is not None else [blocks.note(f"{spec.name} has no categories: no prices per category.")]
    brand_blocks = [_missing_note(spec, "brand", "no brand coverage")]
    if "brand" in products:
        brands = brand_coverage(products)
        summary["brand_coverage"], summary["distinct_brands"] = brands["coverage"], brands["brands"]
        headline += [("with a brand", brands["coverage"], "pct"), ("distinct brands", brands["brands"], "int")]
        brand_blocks = [_brands_block(brands)]
    status_blocks = [_missing_note(spec, "category_status", "no category-tree status (every product with a "
                                                            "category counts as usable)")]
    if "category_status" in products:
        status_blocks = [_status_block(category_status_shares(products))]
    content = [
        blocks.figures(headline),
        blocks.note(f"The validated snapshot of {snapshot} with the validated deltas after it applied: "
                    f"{int((catalogue['as_of_ds'] != snapshot).sum()):,} products carry a later delta's version."),
        _duplicates_note(ctx, spec),
        *category_blocks, *price_blocks, *brand_blocks,
        _missing_block(missing_fields(catalogue, list(spec.clean_schema))), *status_blocks,
    ]
    return [block for block in content if block is not None], "ok", summary


def _duplicates_note(ctx: ReportContext, spec: SourceSpec) -> dict | None:
    """One line on the catalogue's latest near-duplicate run up to the day (shopflow.governance.duplicates), if any."""
    run = ctx.store.latest_duplicate_run(spec.name, ctx.ds)
    if run is None:
        return None
    return blocks.note(f"Near-duplicate listings (as of {run.ds}): {run.clusters:,} clusters holding "
                       f"{run.products_in_clusters:,} of {run.products_in:,} products ({run.singletons:,} singletons); "
                       f"lake zone duplicates/{spec.name}.")


def _missing_note(spec: SourceSpec, role_fields: str | list[str], consequence: str) -> dict:
    return blocks.note(roles.no_field(spec, role_fields, consequence) + ".")


def _category_count(products: pd.DataFrame) -> int:
    return int(products["top_level"].nunique())


def category_distribution(products: pd.DataFrame) -> pd.DataFrame:
    """Products per top-level category, the largest TOP_CATEGORIES and one row for the rest."""
    counts = (products["top_level"].fillna(NO_CATEGORY).value_counts().rename_axis("category")
              .reset_index(name="products").sort_values(["products", "category"], ascending=[False, True]))
    top, rest = counts.head(TOP_CATEGORIES), counts.iloc[TOP_CATEGORIES:]
    if not rest.empty:
        top = pd.concat([top, pd.DataFrame([{"category": f"other ({len(rest)} categories)",
                                             "products": rest["products"].sum()}])], ignore_index=True)
    top["share"] = top["products"] / max(len(products), 1)
    return top.astype({"products": "int64"})


def _categories_block(categories_table: pd.DataFrame) -> dict:
    return blocks.table(f"Products per top-level category (largest {TOP_CATEGORIES})", [
        blocks.column("category", "top-level category"), blocks.column("products", "products", "int"),
        blocks.column("share", "share", "pct"),
    ], records(categories_table), note=f"{NO_CATEGORY}: products without a top-level category (for a category "
                                       f"tree: it holds only the product name, or nothing).")


def _categories_plot(categories_table: pd.DataFrame) -> dict:
    image = plots.barh(list(categories_table["category"]), [int(v) for v in categories_table["products"]],
                       title="Products per top-level category", xlabel="products")
    return blocks.plot("Products per top-level category", image)


def product_prices(products: pd.DataFrame) -> pd.Series:
    """The price a buyer pays (see catalogue_products); non-positive prices dropped."""
    price = products["buyer_price"]
    return price[price > 0]


def price_table(products: pd.DataFrame) -> pd.DataFrame:
    """Price quantiles of the PRICE_CATEGORIES largest top-level categories, largest first."""
    sizes = (products["top_level"].dropna().value_counts().rename_axis("category").reset_index(name="size")
             .sort_values(["size", "category"], ascending=[False, True]).head(PRICE_CATEGORIES))
    prices = product_prices(products)
    category = products.loc[prices.index, "top_level"]
    rows = []
    for name in sizes["category"]:
        priced = prices[category == name]
        quantiles = {key: round(float(priced.quantile(q)), 2) if len(priced) else None
                     for key, q in PRICE_QUANTILES.items()}
        rows.append({"category": name, "count": len(priced), **quantiles})
    return pd.DataFrame(rows, columns=["category", "count", *PRICE_QUANTILES])


def _prices_block(prices: pd.DataFrame, spec: SourceSpec) -> dict:
    unit, money = blocks.currency_label(spec.currency), blocks.money_fmt(spec.currency)
    columns = [blocks.column("category", "top-level category"), blocks.column("count", "priced products", "int")]
    columns += [blocks.column(key, f"{key} ({unit})", money) for key in PRICE_QUANTILES]
    discounted = discounted_price_column(spec)
    note = ("Price: the discounted price, or the retail price where there is none." if discounted
            else f"Price: {spec.role_column('price')}.")
    return blocks.table(f"Prices of the {PRICE_CATEGORIES} largest categories ({unit})", columns, records(prices),
                        note=note)


def _prices_plot(products: pd.DataFrame, prices: pd.DataFrame, currency: str | None) -> dict | None:
    price = product_prices(products)
    category = products.loc[price.index, "top_level"]
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
        ax.set_xlabel(f"price ({blocks.currency_label(currency)}, log scale)")
        ax.set_title("Price per top-level category")
    return blocks.plot("Price distribution per category (box: p25–p75, line: median, whiskers: p5–p95)",
                       plots.to_data_uri(fig))


def has_value(values: pd.Series) -> pd.Series:
    """Not null and, for text, not blank."""
    present = values.notna()
    if pd.api.types.is_string_dtype(values):
        present &= values.fillna("").str.strip() != ""
    return present


def brand_coverage(products: pd.DataFrame) -> dict:
    branded = products.loc[has_value(products["brand"]), "brand"]
    top = (branded.value_counts().rename_axis("brand").reset_index(name="products")
           .sort_values(["products", "brand"], ascending=[False, True]).head(TOP_BRANDS))
    top["share"] = top["products"] / max(len(products), 1)
    return {"coverage": len(branded) / len(products) if len(products) else None,
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


def category_status_shares(products: pd.DataFrame) -> pd.DataFrame:
    counts = products["category_status"].fillna("(none)").value_counts()
    order = CATEGORY_STATUSES + sorted(set(counts.index) - set(CATEGORY_STATUSES))
    table = counts.reindex(order, fill_value=0).rename_axis("status").reset_index(name="products")
    table["share"] = table["products"] / max(len(products), 1)
    return table.astype({"products": "int64"})


def _status_block(statuses: pd.DataFrame) -> dict:
    return blocks.table("Category-tree status", [
        blocks.column("status", "category_status", "code"), blocks.column("products", "products", "int"),
        blocks.column("share", "share", "pct"),
    ], records(statuses), note=("ok: a full tree; truncated_leaf: the leaf was cut off with '...'; name_only: the "
                                "tree is only the product name; missing: no tree."))


# ---- sales over the window ------------------------------------------------------------------------------------
def product_sales(orders: pd.DataFrame, spec: SourceSpec | None = None) -> pd.DataFrame:
    """Per product (stock_code: the product field) over merchandise lines: net quantity and revenue, sale orders,
    sold and cancelled lines and quantities, and its most frequent name (description: the product_name field).
    `orders`: clean rows of the orders source `spec` (default: the first orders-role source)."""
    lines = product_lines(order_lines(orders, spec or roles.source_of("orders")))
    sale = is_sale(lines)
    sales, cancels = lines[sale].groupby("product"), lines[~sale].groupby("product")
    table = pd.DataFrame({
        "quantity": lines.groupby("product")["quantity"].sum(),
        "revenue_gbp": net_product_revenue(lines, "product"),
        "invoices": sales["order_id"].nunique(),
        "sold_lines": sales.size(),
        "sold_quantity": sales["quantity"].sum(),
        "cancelled_lines": cancels.size(),
        "cancelled_quantity": -cancels["quantity"].sum(),
    }).fillna(0).astype({"quantity": "int64", "invoices": "int64", "sold_lines": "int64", "sold_quantity": "int64",
                         "cancelled_lines": "int64", "cancelled_quantity": "int64"})
    table["description"] = _descriptions(lines).reindex(table.index) if "product_name" in lines else None
    return table.rename_axis("stock_code").reset_index()


def _descriptions(lines: pd.DataFrame) -> pd.Series:
    """The most frequent name per product (ties: alphabetical)."""
    counts = lines.dropna(subset=["product_name"]).groupby(["product", "product_name"]).size().reset_index(name="n")
    counts = counts.sort_values(["product", "n", "product_name"], ascending=[True, False, True])
    return counts.drop_duplicates("product").set_index("product")["product_name"]


def best_sellers(sales: pd.DataFrame, by: str) -> pd.DataFrame:
    return sales.sort_values([by, "stock_code"], ascending=[False, True]).head(TOP_SELLERS)


def cancellation_rates(sales: pd.DataFrame) -> pd.DataFrame:
    """Cancelled / sold quantity for products with at least MIN_SOLD_LINES sale lines and any cancellation."""
    eligible = sales[(sales["sold_lines"] >= MIN_SOLD_LINES) & (sales["cancelled_quantity"] > 0)]
    eligible = eligible.assign(rate=eligible["cancelled_quantity"] / eligible["sold_quantity"])
    return eligible.sort_values(["rate", "cancelled_quantity", "stock_code"],
                                ascending=[False, False, True]).head(TOP_SELLERS)


def _orders_part(ctx: ReportContext, spec: SourceSpec) -> tuple[list[dict], str, dict]:
    orders, days = ctx.clean_since(spec.name, ctx.window[0])
    summary = {"orders_days": [d.isoformat() for d in days]}
    lacking = roles.absent(spec, *SALES_FIELDS)
    if lacking:
        return [blocks.note(roles.no_field(spec, lacking, "no best sellers") + ".")], "no_data", summary
    if orders is None or product_lines(order_lines(orders, spec)).empty:
        return [blocks.note(f"No product lines in the clean {spec.name} rows between {ctx.window[0]} and "
                            f"{ctx.ds}.")], "no_data", summary
    sales = product_sales(orders, spec)
    by_revenue, by_quantity = best_sellers(sales, "revenue_gbp"), best_sellers(sales, "quantity")
    covered, status = coverage(ctx, spec.name, days, orders)
    unit, money = blocks.currency_label(spec.currency), blocks.money_fmt(spec.currency)
    content = [
        blocks.note(f"{covered} Days: {', '.join(d.isoformat() for d in days)}.",
                    "warning" if status == "warning" else "info"),
        *caveats(spec, orders),
        blocks.figures([("products sold", int((sales["sold_lines"] > 0).sum()), "int"),
                        (f"net product revenue ({unit})", round(float(sales["revenue_gbp"].sum()), 2), money),
                        ("net units", int(sales["quantity"].sum()), "int")]),
        _sellers_block(f"Best sellers by net revenue ({unit}), top {TOP_SELLERS}", by_revenue, spec.currency),
        _sellers_plot(by_revenue, spec.currency),
        _sellers_block(f"Best sellers by net quantity, top {TOP_SELLERS}", by_quantity, spec.currency),
        _cancellations_block(cancellation_rates(sales)),
    ]
    summary.update({"products_sold": int((sales["sold_lines"] > 0).sum()),
                    "best_seller_by_revenue": _headline(by_revenue), "best_seller_by_quantity": _headline(by_quantity)})
    return content, status, summary


def _headline(sellers: pd.DataFrame) -> dict:
    return {k: v for k, v in records(sellers.head(1))[0].items()
            if k in ("stock_code", "description", "quantity", "revenue_gbp", "invoices")}


def _sellers_block(title: str, sellers: pd.DataFrame, currency: str | None) -> dict:
    return blocks.table(title, [
        blocks.column("stock_code", "product", "code"), blocks.column("description", "description"),
        blocks.column("quantity", "net quantity", "int"),
        blocks.column("revenue_gbp", f"net revenue ({blocks.currency_label(currency)})", blocks.money_fmt(currency)),
        blocks.column("invoices", "invoices", "int"),
    ], records(sellers), note="Net: sales minus cancellations in the window; product lines only.")


def _sellers_plot(sellers: pd.DataFrame, currency: str | None) -> dict:
    labels = [f"{code} {plain(description) or ''}".strip()
              for code, description in zip(sellers["stock_code"], sellers["description"])]
    unit = blocks.currency_label(currency)
    image = plots.barh(labels, [float(v) for v in sellers["revenue_gbp"]], title="Best sellers by net revenue",
                       xlabel=f"net revenue ({unit})")
    return blocks.plot(f"Best sellers by net revenue ({unit})", image)


def _cancellations_block(rates: pd.DataFrame) -> dict:
    return blocks.table(f"Highest cancellation rates (products with ≥ {MIN_SOLD_LINES} sale lines)", [
        blocks.column("stock_code", "product", "code"), blocks.column("description", "description"),
        blocks.column("sold_lines", "sale lines", "int"), blocks.column("cancelled_lines", "cancelled lines", "int"),
        blocks.column("sold_quantity", "sold quantity", "int"),
        blocks.column("cancelled_quantity", "cancelled quantity", "int"),
        blocks.column("rate", "cancelled / sold quantity", "pct"),
    ], records(rates), empty=f"no product with ≥ {MIN_SOLD_LINES} sale lines had a cancellation in the window",
        note="A cancellation in the window may refer to a sale before it, so a rate can exceed 100%.")

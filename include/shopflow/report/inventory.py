"""Section 1, the data-asset inventory: per dataset its description, owner, tags, schema, freshness over the
window, row counts and quality pass rate over time, quarantine reasons with example rows, lineage and last run."""

from __future__ import annotations

from collections import Counter

from shopflow.common.parquet import read_parquet
from shopflow.report import blocks, cadence, plots
from shopflow.report.context import ReportContext

EXAMPLE_ROWS = 3
MAX_CELL = 80


def build(ctx: ReportContext) -> dict:
    pass_rates = _pass_rates(ctx)
    overview, details, summary = [], [], {}
    for name, spec in ctx.specs.items():
        window = {p.ds: p for p in ctx.window_partitions(name)}
        validated = [p for p in ctx.partitions(name) if p.status == "validated"]
        last = validated[-1] if validated else None
        present = sum(1 for p in window.values() if p.status != "missing")
        age = (ctx.ds - last.ds).days if last else None
        expected = cadence.expectation(spec, ctx.ds, ctx.partitions(name))
        status = _freshness_status(ctx, name, expected)
        passed = sum(pass_rates.get(name, {}).get(d, (0, 0))[0] for d in window)
        evaluated = sum(pass_rates.get(name, {}).get(d, (0, 0))[1] for d in window)
        summary[name] = {"partitions_present": present, "days_in_window": ctx.window_days,
                         "last_validated": last.ds.isoformat() if last else None, "age_days": age,
                         "cadence": expected.cadence, "expected": expected.expected, "stale": expected.stale,
                         "freshness": expected.reason,
                         "rows_clean_in_window": sum(p.rows_clean or 0 for p in window.values()),
                         "rows_quarantined_in_window": sum(p.rows_quarantined or 0 for p in window.values()),
                         "expectations_passed": passed, "expectations_evaluated": evaluated}
        overview.append({
            "dataset": name, "freshness": status, "cadence": expected.reason,
            "owner": spec.owner,
            "present": f"{present} of {ctx.window_days}", "last": last.ds.isoformat() if last else "never",
            "age": age, "rows": summary[name]["rows_clean_in_window"],
            "quarantined": summary[name]["rows_quarantined_in_window"],
            "pass_rate": passed / evaluated if evaluated else None,
            "last_run": last.airflow_run_id if last else None,
        })
        details.append(_dataset_details(ctx, name, spec, window, last, pass_rates.get(name, {}), status))
    stale = [n for n, s in summary.items() if s["stale"]]
    content = [blocks.table("Datasets", [
        blocks.column("dataset", "dataset", "code"), blocks.column("freshness", "freshness", "status"),
        blocks.column("cadence", "expected"), blocks.column("owner", "owner"),
        blocks.column("present", "partitions in window"), blocks.column("last", "last validated", "code"),
        blocks.column("age", "age (days)", "int"), blocks.column("rows", "clean rows in window", "int"),
        blocks.column("quarantined", "quarantined in window", "int"),
        blocks.column("pass_rate", "expectations passed", "pct"),
        blocks.column("last_run", "last successful run", "code")], overview,
        note=f"Freshness follows each source's cadence (absent: its load kind's, append daily, snapshots on_change): "
             f"a daily source is stale when its last validated partition is more than "
             f"{cadence.PERIOD_DAYS['daily'] + cadence.GRACE_DAYS - 1} day old, a weekly one more than "
             f"{cadence.PERIOD_DAYS['weekly'] + cadence.GRACE_DAYS - 1} days; on_change sources, days outside a "
             f"declared window and sources not started yet are not expected and never stale. Age counts days "
             f"before the report day.")]
    if any(s["rows_clean_in_window"] or s["rows_quarantined_in_window"] for s in summary.values()):
        content.append(_rows_plot(ctx))
    content += details
    return blocks.section(
        "inventory", "Data-asset inventory", content, summary=summary,
        status="failed" if any(d["status"] == "failed" for d in details) else "warning" if stale else "ok",
        intro=(f"Every dataset the shop publishes, from its configuration and the metadata store, over the last "
               f"{ctx.window_days} days. Stale (due by its cadence, no recent validated partition): "
               f"{', '.join(stale) or 'none'}."))


def _dataset_details(ctx: ReportContext, name: str, spec, window: dict, last, rates: dict, status: str) -> dict:
    content = [blocks.note(f"{spec.description} Tags: {', '.join(spec.tags)}."
                           + (" GENERATED data, not observed." if spec.generated else ""),
                           "generated" if spec.generated else "info")]
    content += _quarantine_blocks(ctx, name, window) if window else []
    content.append(_lineage_table(ctx, name, last))
    content.append(blocks.subsection("Schema of the clean zone and load settings", [
        blocks.table("", [blocks.column("column", "column", "code"), blocks.column("type", "type", "code"),
                          blocks.column("key", "dedup key")],
                     [{"column": c, "type": t, "key": "yes" if c in spec.dedup_key else ""}
                      for c, t in spec.clean_schema.items()],
                     note=f"Business day in {spec.timezone}; load kind {spec.load_kind}"
                          + (f"; amounts in {spec.currency}" if spec.currency else "") + ".")], collapsed=True))
    content.append(blocks.subsection(f"Partitions recorded in the window ({len(window)})",
                                     [_freshness_table(ctx, window, rates)], collapsed=True))
    return blocks.subsection(name, content, status=status)


def _freshness_status(ctx: ReportContext, name: str, expected: cadence.Expectation) -> str:
    today = ctx.partition(name)
    if today is not None and today.status.startswith("failed"):
        return "failed"
    return expected.freshness


def _pass_rates(ctx: ReportContext) -> dict[str, dict]:
    """dataset -> ds -> (passed, evaluated) expectations over the window."""
    rates: dict[str, dict] = {}
    for name in ctx.specs:
        for partition in ctx.window_partitions(name):
            if partition.validation_success is None:
                continue
            results = ctx.store.validations(name, partition.ds)
            if results:
                rates.setdefault(name, {})[partition.ds] = (sum(r.success for r in results), len(results))
    return rates


def _freshness_table(ctx: ReportContext, window: dict, rates: dict) -> dict:
    rows = []
    for day in sorted(window, reverse=True):
        partition = window[day]
        passed, evaluated = rates.get(day, (None, None))
        rows.append({
            "ds": day.isoformat(), "state": partition.status, "load": partition.load_kind,
            "rows_in": partition.rows_in, "rows_clean": partition.rows_clean,
            "pass_rate": passed / evaluated if evaluated else None,
            "expectations": f"{passed}/{evaluated}" if evaluated else "–", "run": partition.airflow_run_id,
        })
    return blocks.table(
        "",
        [blocks.column("ds", "day", "code"), blocks.column("state", "state", "status"), blocks.column("load", "load"),
         blocks.column("rows_in", "rows in", "int"), blocks.column("rows_clean", "clean rows", "int"),
         blocks.column("pass_rate", "expectations passed", "pct"), blocks.column("expectations", "passed/evaluated"),
         blocks.column("run", "Airflow run", "code")], rows,
        note="'missing': the run found no landing files that day. Days without a row had no run.",
        empty="no run recorded in the window")


def _rows_plot(ctx: ReportContext) -> dict:
    names = [n for n in ctx.specs if any(p.rows_in for p in ctx.window_partitions(n))]
    labels = [d.strftime("%m-%d") for d in ctx.window]
    ncols = 2
    nrows = (len(names) + ncols - 1) // ncols
    fig, axes = plots.figure(7.5, 0.6 + 2.0 * nrows, ncols=ncols, nrows=nrows)
    with plots.plt.rc_context(plots.STYLE):
        for index, name in enumerate(names):
            ax = axes[index // ncols][index % ncols]
            window = {p.ds: p for p in ctx.window_partitions(name)}
            clean = [(window[d].rows_clean or 0) if d in window else 0 for d in ctx.window]
            bad = [((window[d].rows_quarantined or 0) + (window[d].rows_duplicate or 0)) if d in window else 0
                   for d in ctx.window]
            ax.bar(labels, clean, label="clean", color=plots.PALETTE[0])
            ax.bar(labels, bad, bottom=clean, label="quarantined + duplicate", color=plots.PALETTE[1])
            ax.set_title(name)
            ax.set_ylabel("rows")
            ax.yaxis.set_major_formatter(plots.matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        for index in range(len(names), nrows * ncols):
            axes[index // ncols][index % ncols].set_visible(False)
        axes[0][0].legend(frameon=False, fontsize=7)
        fig.supxlabel("partition day (ds)", fontsize=9)
    return blocks.plot("Rows per partition day over the window: clean, and quarantined + duplicate",
                       plots.to_data_uri(fig))


def _quarantine_blocks(ctx: ReportContext, name: str, window: dict) -> list[dict]:
    reasons: Counter = Counter()
    today: Counter = Counter()
    for day, partition in window.items():
        reasons.update(partition.quarantined_by_reason or {})
        if day == ctx.ds:
            today.update(partition.quarantined_by_reason or {})
    out = [blocks.table(
        "Quarantine reasons",
        [blocks.column("reason", "reason", "code"), blocks.column("today", f"{ctx.ds}", "int"),
         blocks.column("window", "window total", "int")],
        [{"reason": r, "today": today.get(r, 0), "window": n} for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])],
        empty="no row quarantined in the window")]
    examples = _quarantine_examples(ctx, name, window)
    if examples:
        out.append(examples)
    return out


def _quarantine_examples(ctx: ReportContext, name: str, window: dict) -> dict | None:
    """A few quarantined rows of the latest partition that has any (user ids are already pseudonymised)."""
    with_rows = [p for p in window.values() if p.rows_quarantined and p.quarantine_path]
    if not with_rows:
        return None
    partition = max(with_rows, key=lambda p: p.ds)
    frame = read_parquet(partition.quarantine_path)
    picked = frame.sort_values("_source_line").groupby("_reason", sort=True).head(1).head(EXAMPLE_ROWS)
    rows = []
    for record in picked.to_dict("records"):
        values = {k: v for k, v in record.items() if not k.startswith("_") and v not in (None, "")}
        shown = "; ".join(f"{k}={_cell(v)}" for k, v in values.items())
        rows.append({"file": record.get("_source_file"), "line": record.get("_source_line"),
                     "reason": record.get("_reason"), "field": record.get("_field"), "row": shown})
    return blocks.table(
        f"Example quarantined rows ({partition.ds}, one per reason)",
        [blocks.column("file", "file", "code"), blocks.column("line", "line", "int"),
         blocks.column("reason", "reason", "code"), blocks.column("field", "field", "code"),
         blocks.column("row", "row (as landed; user ids pseudonymised)")], rows)


def _cell(value) -> str:
    text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _lineage_table(ctx: ReportContext, name: str, partition) -> dict:
    edges = ctx.store.lineage(name, partition.ds) if partition else []
    order = {"ingest": 0, "clean": 1, "validate": 2}
    rows = [{"task": e.task, "inputs": "\n".join(_relative(ctx, i) for i in e.inputs),
             "outputs": "\n".join(_relative(ctx, o) for o in e.outputs), "run": e.airflow_run_id,
             "at": e.recorded_at.strftime("%Y-%m-%d %H:%M UTC") if e.recorded_at else None}
            for e in sorted(edges, key=lambda e: order.get(e.task, 9))]
    title = f"Lineage of the last validated partition ({partition.ds})" if partition else "Lineage"
    return blocks.table(title, [blocks.column("task", "task", "code"), blocks.column("inputs", "inputs", "code"),
                                blocks.column("outputs", "outputs", "code"), blocks.column("run", "Airflow run", "code"),
                                blocks.column("at", "recorded")], rows,
                        empty="no validated partition yet, so no lineage")


def _relative(ctx: ReportContext, path: str) -> str:
    home = str(ctx.settings.home) + "/"
    return path[len(home):] if path.startswith(home) else path

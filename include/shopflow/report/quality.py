"""Section 2, data quality: the day's Great Expectations results per dataset (observed values of failures), the
trend of failed expectations over the window, and each partition's row ledger (in = clean + quarantined + dup)."""

from __future__ import annotations

import json

from shopflow.report import blocks, plots
from shopflow.report.context import ReportContext


def build(ctx: ReportContext) -> dict:
    content, summary, statuses = [ _ledger_table(ctx) ], {}, []
    for name in ctx.specs:
        partition = ctx.partition(name)
        if partition is not None and partition.status == "failed":
            statuses.append("failed")
            summary[name] = {"failed_step": (partition.error or "").split(":", 1)[0] or None}
            content.append(blocks.subsection(f"{name}: expectations", [blocks.note(_failure_note(partition))],
                                             status="failed"))
            continue
        results = ctx.store.validations(name, ctx.ds) if partition is not None else []
        if not results:
            state = partition.status if partition else "not run"
            content.append(blocks.subsection(f"{name}: expectations", [blocks.note(
                f"No Great Expectations results for {ctx.ds} (partition state: {state}).")], status="no_data"))
            continue
        critical = [r for r in results if not r.success and r.severity == "critical"]
        warnings = [r for r in results if not r.success and r.severity == "warning"]
        status = "failed" if critical else "warning" if warnings else "ok"
        statuses.append(status)
        summary[name] = {"evaluated": len(results), "passed": sum(r.success for r in results),
                         "critical_failures": len(critical), "warning_failures": len(warnings)}
        rows = [{"result": "pass" if r.success else f"FAIL ({r.severity})", "expectation": r.expectation,
                 "column": r.column_name, "severity": r.severity, "observed": _observed(r),
                 "examples": None if r.success else _unexpected_examples(r.result),
                 "unexpected": None if r.unexpected_percent is None else r.unexpected_percent / 100,
                 "kwargs": _kwargs(r.result)}
                for r in sorted(results, key=lambda r: (r.success, r.severity != "critical", r.expectation,
                                                         r.column_name or ""))]
        content.append(blocks.subsection(f"{name}: expectations on {ctx.ds}", [
            blocks.figures([("evaluated", len(results), "int"), ("passed", summary[name]["passed"], "int"),
                            ("critical failures", len(critical), "int"), ("warnings", len(warnings), "int")]),
            blocks.table(f"suite {results[0].suite} (failures first)", [
                blocks.column("result", "result", "status"), blocks.column("expectation", "expectation", "code"),
                blocks.column("column", "column", "code"), blocks.column("kwargs", "parameters", "code"),
                blocks.column("observed", "observed value"), blocks.column("unexpected", "unexpected rows", "pct"),
                blocks.column("examples", "unexpected values (sample)"),
            ], rows)], status=status))
    trend = _failure_trend(ctx)
    if trend:
        content.append(trend)
    return blocks.section(
        "quality", "Data quality", content, status=blocks.worst(statuses), summary=summary,
        intro="Great Expectations suites run on every clean partition; a failed critical expectation fails the "
              "partition, a failed warning is recorded. The ledger shows where every landed row went.")


def _failure_note(partition) -> str:
    """A failing partition's current state: its error, and (not as current) what its last good run left."""
    note = f"The current run ({partition.airflow_run_id or 'unknown run'}) failed: {partition.error or 'no error recorded'}."
    good = (partition.timings or {}).get("last_good")
    if good:
        note += (f" Last good (not current): {good.get('status')} by run {good.get('run_id') or '-'} at "
                 f"{good.get('at')}; its expectation results and ledger are not shown as today's.")
    return note


def _observed(result) -> str | None:
    value = result.observed_value
    if value is None:
        return None
    if isinstance(value, float):
        return f"{value:,.4g}"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:119] + "…"


def _unexpected_examples(result: dict) -> str | None:
    detail = result.get("result") or {}
    values = detail.get("partial_unexpected_list") or []
    if not values:
        return None
    count = detail.get("unexpected_count")
    shown = ", ".join(_short(v) for v in values[:5])
    return f"{shown} ({count:,} rows)" if isinstance(count, int) else shown


def _short(value) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _kwargs(result: dict) -> str:
    kwargs = result.get("kwargs") or (result.get("expectation_config") or {}).get("kwargs") or {}
    shown = {k: v for k, v in kwargs.items() if k not in ("column", "batch_id") and v is not None}
    text = ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))
    return text if len(text) <= 100 else text[:99] + "…"


def _ledger_table(ctx: ReportContext) -> dict:
    rows = []
    for name in ctx.specs:
        p = ctx.partition(name)
        if p is None or p.rows_in is None or p.status == "failed":  # a failing run's counts are not today's
            rows.append({"dataset": name, "state": p.status if p else "not run"})
            continue
        reasons = p.quarantined_by_reason or {}
        accounted = (p.rows_clean or 0) + (p.rows_quarantined or 0) + (p.rows_duplicate or 0)
        rows.append({"dataset": name, "state": p.status, "rows_in": p.rows_in, "clean": p.rows_clean,
                     "quarantined": p.rows_quarantined, "duplicate": p.rows_duplicate,
                     "reasons": ", ".join(f"{k}: {v:,}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])),
                     "adds_up": "ok" if accounted == p.rows_in else f"FAILED: {accounted:,} ≠ {p.rows_in:,}"})
    return blocks.table(f"Row ledger of {ctx.ds}", [
        blocks.column("dataset", "dataset", "code"), blocks.column("state", "state", "status"),
        blocks.column("rows_in", "rows in", "int"), blocks.column("clean", "clean", "int"),
        blocks.column("quarantined", "quarantined", "int"), blocks.column("duplicate", "duplicates", "int"),
        blocks.column("reasons", "quarantine reasons"), blocks.column("adds_up", "in = clean + quar. + dup.", "status"),
    ], rows)


def _failure_trend(ctx: ReportContext) -> dict | None:
    """Failed expectations per dataset and day over the window, as a table and a plot."""
    series: dict[str, list[int | None]] = {}
    for name in ctx.specs:
        by_day = {p.ds: p for p in ctx.window_partitions(name) if p.validation_success is not None}
        if by_day:
            series[name] = [((by_day[d].critical_failures or 0) + (by_day[d].warning_failures or 0))
                            if d in by_day else None for d in ctx.window]
    if not series:
        return None
    rows = [{"dataset": name, **{d.isoformat(): v for d, v in zip(ctx.window, values)}}
            for name, values in series.items()]
    columns = [blocks.column("dataset", "dataset", "code")] + [
        blocks.column(d.isoformat(), d.strftime("%m-%d"), "int") for d in ctx.window]
    fig, axes = plots.figure(7.0, 2.6)
    ax = axes[0][0]
    labels = [d.strftime("%m-%d") for d in ctx.window]
    with plots.plt.rc_context(plots.STYLE):
        for name, values in series.items():
            ax.plot(labels, [float("nan") if v is None else v for v in values], marker="o", label=name)
        ax.set_title("Failed expectations per validated partition")
        ax.set_xlabel("partition day (ds)")
        ax.set_ylabel("failed expectations")
        ax.tick_params(axis="x", labelrotation=45)
        ax.yaxis.set_major_locator(plots.matplotlib.ticker.MaxNLocator(integer=True))
        highest = max((v for values in series.values() for v in values if v is not None), default=0)
        ax.set_ylim(0, max(1, highest) * 1.15)  # a day without failures sits on the axis, not mid-plot
        ax.legend(frameon=False, fontsize=8)
    return blocks.subsection(f"Failures over the last {ctx.window_days} days", [
        blocks.plot("Failed expectations (critical + warning) per dataset and day; gaps: no validated partition",
                    plots.to_data_uri(fig)),
        blocks.table("", columns, rows, note="– : no validated partition that day")])

"""Section 6, model and repairs: the category classifier that was champion on the report day, its test metrics
against the TF-IDF baseline, its confusion matrix, the registry's history, and what the day's repair filled,
sent to review and flagged (with confidence), with the precision measured on masked products.

The model serves one catalog source, the model catalogue (`shopflow.sources.roles.model_catalog`); the section names it
and says why each other catalog source is not trained on or repaired."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from shopflow.model.registry import MODEL_NAME
from shopflow.report import blocks, plots
from shopflow.report.context import ReportContext
from shopflow.sources import roles
from shopflow.sources.role_frames import category_field
from shopflow.store.models import ModelVersion, product_key_text

SHOWN_ACTIONS = 15
METRICS = [("accuracy", "accuracy", "pct"), ("macro_f1", "macro-F1", "float"), ("ece", "ECE (calibrated)", "float")]


def build(ctx: ReportContext) -> dict:
    catalogue = roles.model_catalog(ctx.specs)
    served = [blocks.note(f"The model serves the catalog source {catalogue.name}." if catalogue.source
                          else "No catalog source can train the category model.")]
    served += [blocks.note(reason + ".") for reason in catalogue.passed_over.values()]
    section = _build(ctx, catalogue)
    section["blocks"] = served + section["blocks"]
    section["summary"].update({"model_catalog": catalogue.name, "not_trained": catalogue.passed_over})
    return section


def _build(ctx: ReportContext, catalogue: roles.ModelCatalog) -> dict:
    repair = ctx.store.repair_run(ctx.ds)
    versions = _versions(ctx, repair.model_version if repair else None)
    # The model that repaired the day, when one did; else the last one blessed by then. (Backfill runs of
    # neighbouring days run side by side, so the day's repair may use a model trained on a later day.)
    champion = next((m for m in versions if repair and m.version == repair.model_version), None) or next(
        (m for m in reversed(versions) if m.status in ("champion", "retired") and m.trained_on_ds <= ctx.ds), None)
    content = [_registry_table(versions)]
    if champion is None:
        content.insert(0, blocks.note(f"No model had been blessed by {ctx.ds}: nothing to compare and no repair. "
                                      "Training runs when the clean catalogue changes (task group `model`)."))
        return blocks.section("model", "Model and repairs", content, status="no_data",
                              summary={"models": len(versions), "champion_version": None})
    summary = {"champion_version": champion.version, "macro_f1": champion.macro_f1,
               "baseline_macro_f1": champion.baseline_metrics["top"]["macro_f1"], "models": len(versions)}
    content = [_champion_blocks(champion)] + content
    status = "ok"
    if repair is None:
        content.append(blocks.note(f"No catalogue repair ran for {ctx.ds} (no catalogue partition that day, or no "
                                   "champion when it ran)."))
    else:
        content.append(_repair_blocks(ctx, repair, catalogue.source, (champion.training or {}).get("refit")))
        summary.update({"repair_filled": repair.rows_filled, "repair_review": repair.rows_review,
                        "repair_flagged": repair.rows_flagged, "masked_precision": repair.masked_precision})
        if repair.masked_precision is not None and repair.masked_precision < 0.9:
            status = "warning"
    return blocks.section("model", "Model and repairs", content, status=status, summary=summary,
                          intro=f"Model `{MODEL_NAME}`: top-level category of a product from its title. Metrics are "
                                "on the held-out GROUPED test split (listings with the same normalised title or product "
                                "group never straddle it); the TF-IDF + logistic-regression baseline is trained on "
                                "the same split.")


def _versions(ctx: ReportContext, repair_version: int | None) -> list[ModelVersion]:
    """The registry up to the report day, plus the model that repaired the day if it was trained later."""
    trained_by_then = ModelVersion.trained_on_ds <= ctx.ds
    if repair_version is not None:
        trained_by_then = trained_by_then | (ModelVersion.version == repair_version)
    with ctx.store.session() as session:
        return list(session.scalars(select(ModelVersion).where(ModelVersion.name == MODEL_NAME, trained_by_then)
                                    .order_by(ModelVersion.version)))


def _champion_blocks(model: ModelVersion) -> dict:
    top, base = model.metrics["top"], model.baseline_metrics["top"]
    rows = [{"metric": label, "model": top.get(key), "baseline": base.get(key),
             "delta": (top[key] - base[key]) if key in top and key in base else None} for key, label, _ in METRICS]
    per_class = sorted(top.get("per_class", {}).items(), key=lambda kv: (-kv[1]["support"], kv[0]))
    content = [
        blocks.figures([("champion version", f"v{model.version}", "text"),
                        ("serving", model.metrics.get("selected", "–"), "text"), ("macro-F1", model.macro_f1, "float"),
                        ("TF-IDF baseline macro-F1", base["macro_f1"], "float"),
                        ("test products", top.get("n"), "int"), ("device", model.training.get("device"), "text")]),
        blocks.table("Test metrics against the baseline", [
            blocks.column("metric", "metric"), blocks.column("model", f"v{model.version}", "float"),
            blocks.column("baseline", "TF-IDF baseline", "float"), blocks.column("delta", "model − baseline", "float")],
            rows, note=f"Blessing decision: {model.decision_reason or '–'}"),
        _candidates_table(model),
        blocks.table("Per class (test split)", [
            blocks.column("label", "category"), blocks.column("support", "products", "int"),
            blocks.column("precision", "precision", "pct"), blocks.column("recall", "recall", "pct"),
            blocks.column("f1", "F1", "float")],
            [{"label": name, **values} for name, values in per_class]),
    ]
    matrix = top.get("confusion_matrix")
    if matrix and matrix.get("matrix"):
        content.append(blocks.plot(f"Confusion matrix of v{model.version} on the test split (row-normalised)",
                                   _confusion_plot(matrix["labels"], matrix["matrix"])))
    return blocks.subsection(f"Champion v{model.version} (trained on {model.trained_on_ds})", content)


def _candidates_table(model: ModelVersion) -> dict:
    """Every candidate of the champion's training on the same grouped split, beside the baseline."""
    rows = []
    for name, row in (model.metrics.get("candidates") or {}).items():
        boot = row.get("versus_baseline") or {}
        rows.append({"candidate": name, "validation": row.get("validation_macro_f1"),
                     "macro_f1": row["test"].get("macro_f1"), "accuracy": row["test"].get("accuracy"),
                     "ece": row["test"].get("ece"), "gain": boot.get("gain"),
                     "interval": (f"[{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}]" if boot.get("ci_low") is not None
                                  else "baseline" if not boot else "–"),
                     "seconds": row.get("train_seconds")})
    versus = model.metrics.get("versus_champion") or {}
    note = model.metrics.get("selection_reason") or ""
    if versus.get("ci_low") is not None:
        note += (f". Against champion v{versus['version']} on the same test split: gain {versus['gain']:+.4f}, 95% CI "
                 f"[{versus['ci_low']:+.4f}, {versus['ci_high']:+.4f}].")
    return blocks.table("Candidates of this training (grouped test split; paired group bootstrap against TF-IDF)", [
        blocks.column("candidate", "candidate", "code"), blocks.column("validation", "validation macro-F1", "float"),
        blocks.column("macro_f1", "test macro-F1", "float"), blocks.column("accuracy", "accuracy", "pct"),
        blocks.column("ece", "ECE", "float"), blocks.column("gain", "gain over TF-IDF", "float"),
        blocks.column("interval", "95% CI"), blocks.column("seconds", "train s", "float")],
        rows, note=note, empty="this model was registered before candidates were compared")


def _confusion_plot(labels: list[str], matrix: list[list[int]]) -> str:
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.32 * len(labels)
    fig, axes = plots.figure(size + 1.5, size)
    ax = axes[0][0]
    short = [plots.shorten(label, 22) for label in labels]
    with plots.plt.rc_context(plots.STYLE):
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(labels)), short, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), short, fontsize=7)
        ax.set_xlabel("predicted category")
        ax.set_ylabel("true category")
        ax.set_title("share of each true category's test products")
        fig.colorbar(image, ax=ax, fraction=0.04, label="share of row")
    return plots.to_data_uri(fig)


def _registry_table(versions: list[ModelVersion]) -> dict:
    rows = [{"version": f"v{m.version}", "status": m.status, "trained_on": m.trained_on_ds.isoformat(),
             "device": m.training.get("device"), "macro_f1": m.macro_f1,
             "accuracy": m.metrics["top"].get("accuracy"), "baseline": m.baseline_metrics["top"].get("macro_f1"),
             "decision": m.decision_reason} for m in reversed(versions)]
    return blocks.table("Model registry (up to the report day, newest first)", [
        blocks.column("version", "version", "code"), blocks.column("status", "status", "status"),
        blocks.column("trained_on", "trained on ds", "code"), blocks.column("device", "device"),
        blocks.column("macro_f1", "macro-F1", "float"), blocks.column("accuracy", "accuracy", "pct"),
        blocks.column("baseline", "TF-IDF macro-F1", "float"), blocks.column("decision", "blessing decision")],
        rows, empty="no model trained yet")


def _repair_blocks(ctx: ReportContext, repair, spec, refit: dict | None = None) -> dict:
    audit = ctx.store.repair_audit(ctx.ds)
    if spec is not None:  # the other fields' fills and flags are counted in one line below
        audit = [a for a in audit if a.field == category_field(spec)]
    catalog = ctx.clean(spec.name) if spec is not None else None
    # Keyed as the store keys the audit (text, whatever the source's key type).
    titles = dict(zip(catalog[spec.role_column("id")].map(product_key_text), catalog[spec.role_column("title")])) \
        if catalog is not None and spec.role_column("title") else {}
    content = [
        blocks.figures([("products in", repair.rows_in, "int"), ("filled", repair.rows_filled, "int"),
                        ("to review", repair.rows_review, "int"), ("flagged", repair.rows_flagged, "int"),
                        ("unchanged", repair.rows_unchanged, "int"),
                        ("masked precision", repair.masked_precision, "pct")]),
        blocks.note(f"Model v{repair.model_version}, threshold {repair.threshold:.2f}. Masked precision: the share "
                    f"of {repair.masked_n or 0:,} held-out products (category hidden) that the repair filled "
                    f"({repair.masked_filled or 0:,}) with their true category"
                    + (" (its grouped test split, answered at training before the serving model was refit on every "
                       f"label: {refit['products']:,} products)" if refit else "")
                    + ". Repairs go to a repaired copy; the clean catalogue is never overwritten."),
    ]
    fields = _field_repairs_line(repair)
    if fields:
        content.append(blocks.note(fields))
    confidences = [a.confidence for a in audit]
    if confidences:
        content.append(blocks.plot("Confidence of the day's repair actions", _confidence_plot(audit, repair.threshold)))
    for action, title in (("fill", "Filled (category was missing)"), ("review", "Sent to review (below threshold)"),
                          ("flag", "Flagged (model disagrees with the given category)")):
        chosen = sorted((a for a in audit if a.action == action), key=lambda a: (-a.confidence, a.uniq_id))
        rows = [{"product": titles.get(a.uniq_id, a.uniq_id), "uniq_id": a.uniq_id, "before": a.before,
                 "after": a.after, "confidence": a.confidence,
                 "state": "reverted" if a.reverted_at else ""} for a in chosen[:SHOWN_ACTIONS]]
        content.append(blocks.table(f"{title}: {len(chosen):,}, most confident first", [
            blocks.column("product", "product title"), blocks.column("uniq_id", "product id", "code"),
            blocks.column("before", "given category"), blocks.column("after", "model's category"),
            blocks.column("confidence", "confidence", "pct"), blocks.column("state", "")], rows,
            empty="none today"))
    source = spec.name if spec is not None else "catalogue"
    return blocks.subsection(f"Repair of the {source} partition {ctx.ds}", content)


def _field_repairs_line(repair) -> str | None:
    """The day's fills and flags of the other fields (brand, second level, price), where the run made them."""
    def precision(value, n) -> str:
        return f"masked precision {value:.1%} on {n or 0:,} held-out products" if value is not None else \
            f"no masked fill among {n or 0:,} held-out products"

    parts = []
    if getattr(repair, "rows_brand_filled", None) is not None:
        parts.append(f"{repair.rows_brand_filled:,} brands filled from product titles "
                     f"({precision(repair.brand_masked_precision, repair.brand_masked_n)})")
    if getattr(repair, "rows_l2_filled", None) is not None:
        parts.append(f"{repair.rows_l2_filled:,} second-level categories filled "
                     f"({precision(repair.l2_masked_precision, repair.l2_masked_n)})" if repair.l2_masked_n is not None
                     else "no second-level category filled (the model answers no second level)")
    if getattr(repair, "rows_price_flagged", None) is not None:
        parts.append(f"{repair.rows_price_flagged:,} prices flagged as anomalies (flags only: no price is changed)")
    return ("Other fields: " + "; ".join(parts) + ".") if parts else None


def _confidence_plot(audit, threshold: float) -> str:
    fig, axes = plots.figure(7.0, 2.6)
    ax = axes[0][0]
    bins = np.linspace(0, 1, 21)
    with plots.plt.rc_context(plots.STYLE):
        for action in ("fill", "review", "flag"):
            values = [a.confidence for a in audit if a.action == action]
            if values:
                ax.hist(values, bins=bins, alpha=0.7, label=f"{action} ({len(values):,})")
        ax.axvline(threshold, color="#555753", linestyle="--", linewidth=1, label=f"threshold {threshold:.2f}")
        ax.set_xlabel("model confidence (calibrated probability)")
        ax.set_ylabel("products")
        ax.set_title("Repair actions by confidence")
        ax.legend(frameon=False, fontsize=8)
    return plots.to_data_uri(fig)

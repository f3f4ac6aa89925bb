"""Training job entry point, run in a fresh interpreter: `python -m shopflow.model.worker JOB.json`.

One training trains and evaluates every candidate on the same grouped split (shopflow.model.training.data):
1. frozen-encoder embeddings of every example (shopflow.model.embeddings; cached by model and text hash, so a daily
   retrain embeds only new or changed products);
2. the linear candidates (shopflow.model.training.candidates): the TF-IDF baseline, embeddings + LR, TF-IDF + embeddings;
3. the fine-tuned transformer (mean pooling, split learning rates; whole epochs on CUDA, a time budget on CPU),
   warm-started from the previous fine-tune when the job names one;
4. calibrated ensembles of the fine-tune with each linear candidate (weight and temperature on validation); on a CPU,
   skipped when the fine-tune's validation macro-F1 is more than SHOPFLOW_TRAIN_CPU_ENSEMBLE_MARGIN (0.05) below the
   best linear candidate's (one log line with both numbers; result.json `training.ensembles_skipped`);
5. label issues: confident learning on the grouped cross-validation's out-of-fold probabilities
   (shopflow.model.training.label_issues), saved as `label_issues.parquet` for the repair's flags.
On 2+ cores the logistic regressions (the candidates, the row-split baseline, the cross-validation's folds, the
second-level heads and the serving fit) run side by side in worker processes, one single-threaded fit per core, and
the TF-IDF vectorisers are fitted once per set of training texts and shared (shopflow.model.training.candidates).
Each is calibrated on the validation split and measured on the test split (accuracy, macro-F1, ECE, per class,
train and inference seconds). The proposal follows `shopflow.model.training.selection.choose`; its gain over the current
champion (when the job names one) is measured on today's test split by a paired group bootstrap, for the blessing.
The repair threshold is set on the validation split (unseen titles) with a Clopper-Pearson bound.

The model directory holds `champion.json` (what serves: members, weights, temperatures, labels, threshold), the
members' files (`finetune/`, `linear/*.joblib`) and `result.json`. Progress goes to stdout, a line at a time.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SPLIT_NAMES = ("train", "validation", "test")
HELD_OUT = "held_out.npz"  # the test split's answers before the serving refit (see _save_held_out)
NO_FILL = 1.000001
ENSEMBLE_WEIGHTS = [round(0.1 * i, 1) for i in range(1, 10)]


def log(message: str) -> None:
    print(message, flush=True)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Evaluation:
    """Calibrated validation/test probabilities per candidate and the figures that describe them."""

    def __init__(self, parts: dict, labels_top: list[str], labels_l2: list[str]):
        self.parts, self.labels_top, self.labels_l2 = parts, labels_top, labels_l2
        self.probs: dict[str, dict[str, object]] = {}
        self.table: dict[str, dict] = {}

    def add(self, name: str, val_logits, test_logits, seconds_train: float, seconds_infer: float, **extra) -> None:
        from shopflow.model.training import metrics

        y_val = self.parts["validation"]["y_top"].to_numpy()
        y_test = self.parts["test"]["y_top"].to_numpy()
        temperature = metrics.fit_temperature(val_logits, y_val)
        val, test = metrics.softmax(val_logits, temperature), metrics.softmax(test_logits, temperature)
        self.probs[name] = {"validation": val, "test": test, "temperature": temperature}
        report = metrics.classification_report(y_test, test, self.labels_top)
        report.pop("confusion_matrix")
        validation_report = metrics.classification_report(y_val, val, self.labels_top)
        self.table[name] = {"validation_macro_f1": validation_report["macro_f1"], "test": report,
                            "temperature": temperature, "train_seconds": round(seconds_train, 2),
                            "inference_seconds": round(seconds_infer, 3),
                            "inference_per_second": round(len(y_test) / seconds_infer, 1) if seconds_infer else None,
                            "peak_rss_mib": round(_peak_rss_mib(), 1), **extra}
        log(f"candidate {name}: validation macro-F1 {validation_report['macro_f1']:.4f}; test macro-F1 "
            f"{report['macro_f1']:.4f} accuracy {report['accuracy']:.4f} ECE {report['ece']:.4f}; "
            f"trained in {seconds_train:.1f}s")


def run(job: dict) -> dict:
    import numpy as np
    import pandas as pd
    import torch

    from shopflow.model.embeddings import Embedder
    from shopflow.model.training import candidates, loop, metrics, selection
    from shopflow.model.training import model as model_io
    from shopflow.model.training.config import TrainingConfig

    started_all = time.perf_counter()
    config = TrainingConfig.from_dict(job["config"])
    output = Path(job["output_dir"])
    split_column = job.get("split_column", "split")
    examples = pd.read_parquet(job["examples"])
    labels_top, labels_l2 = sorted(examples["label_top"].unique()), sorted(examples["label_l2"].unique())
    fold_in = {level: _fold_in_name(examples, level) for level in ("top", "l2")}
    top_id = {name: i for i, name in enumerate(labels_top)}
    l2_id = {name: i for i, name in enumerate(labels_l2)}
    examples["y_top"] = examples["label_top"].map(top_id)
    examples["y_l2"] = examples["label_l2"].map(l2_id)
    if "group" not in examples:
        examples["group"] = examples["uniq_id"]
    parts = {name: examples[examples[split_column] == name].reset_index(drop=True) for name in SPLIT_NAMES}
    log("examples: " + ", ".join(f"{k} {len(v):,}" for k, v in parts.items())
        + f" ({split_column}); {len(labels_top)} top-level classes, {len(labels_l2)} second-level classes"
        + (f"; {int(examples['gold'].sum()):,} gold labels from reviewers" if "gold" in examples else ""))
    texts = {name: part["text"].tolist() for name, part in parts.items()}
    evaluation = Evaluation(parts, labels_top, labels_l2)
    stages: dict[str, float] = {}

    # 1. embeddings (cached)
    embedder = embedded = None
    if config.linear_candidates:
        stage = time.perf_counter()
        embedder = Embedder(config.base_model, cache_dir=job.get("embedding_cache_dir"), max_length=config.max_length,
                            device=config.device, log_line=log)
        everything = embedder.embed(texts["train"] + texts["validation"] + texts["test"])
        cut1, cut2 = len(texts["train"]), len(texts["train"]) + len(texts["validation"])
        embedded = {"train": everything[:cut1], "validation": everything[cut1:cut2], "test": everything[cut2:]}
        stages["embeddings"] = time.perf_counter() - stage
        embedding_stats = dict(embedder.stats)

    # 2. linear candidates; the TF-IDF vectorisers are fitted once on the train split and shared by the candidates
    # that use them and by the second-level heads (candidates.TextFeatures: the same models, one fit)
    linear: dict[str, candidates.LinearCandidate] = {}
    started_linear = time.perf_counter()
    stage = time.perf_counter()
    shared = candidates.TextFeatures(texts["train"])
    text_matrix = {"validation": shared.transform(texts["validation"]), "test": shared.transform(texts["test"])}
    vectorised = time.perf_counter() - stage
    # the candidates side by side (one per core), with the baseline on the row split (below) among them
    names = candidates.LINEAR if config.linear_candidates else (candidates.BASELINE,)
    fits = [candidates.Fit(name, len(labels_top), texts["train"], embedded["train"] if embedded else None,
                           parts["train"]["y_top"].to_numpy(), config.seed, shared) for name in names]
    rows = None
    if "row_split" in examples and split_column != "row_split":
        rows = {name: examples[examples["row_split"] == name].reset_index(drop=True) for name in ("train", "test")}
        if len(rows["train"]) and len(rows["test"]):
            fits.append(candidates.Fit(candidates.BASELINE, len(labels_top), rows["train"]["text"].tolist(), None,
                                       rows["train"]["y_top"].to_numpy(), config.seed))
        else:
            rows = None
    fitted = candidates.fit_many(fits)
    row_split_model = fitted.pop() if rows is not None else None
    for name, model in zip(names, fitted):
        # a candidate's training time counts the vectorisers' fit it uses, as if it had fitted them alone
        trained = model.fit_seconds + (vectorised if model.uses_text else 0.0)
        val_logits = model.logits(texts["validation"], embedded["validation"] if embedded else None,
                                  text_matrix=text_matrix["validation"])
        infer = time.perf_counter()
        test_logits = model.logits(texts["test"], embedded["test"] if embedded else None,
                                   text_matrix=text_matrix["test"])
        evaluation.add(name, val_logits, test_logits, trained, time.perf_counter() - infer)
        linear[name] = model
    stages["linear"] = time.perf_counter() - started_linear

    # 2b. grouped K-fold cross-validation of the linear candidates over every labelled product
    # (with the linear candidates off, the baseline alone is cross-validated: its out-of-fold probabilities are what
    # the label issues are found on; the test split then decides the selection, as without cross-validation)
    cross_validation = None
    if config.cv_folds >= 2:
        cross_validation = _cross_validate(parts, texts, embedded, len(labels_top), config, log, tuple(linear))
        out_of_fold = cross_validation.pop("probabilities")
        stages["cross_validation"] = cross_validation["seconds"]

    # The baseline on the row split too ("today's split", a hash of the product id): how much a split that puts
    # listings of one product on both sides flatters a model.
    # (fitted beside the linear candidates, above)
    row_split_baseline = None
    if row_split_model is not None:
        row_split_baseline = metrics.classification_report(
            rows["test"]["y_top"].to_numpy(), np.exp(row_split_model.logits(rows["test"]["text"].tolist(), None)),
            labels_top)
        row_split_baseline.pop("confusion_matrix")
        log(f"baseline on the row split (today's split): test macro-F1 {row_split_baseline['macro_f1']:.4f}, "
            f"grouped: {evaluation.table[candidates.BASELINE]['test']['macro_f1']:.4f}")

    # 3. fine-tune
    device = loop.pick_device(config)
    torch.manual_seed(config.seed)  # the new heads' initialisation, so a rerun trains the same model
    label_map = model_io.LabelMap(top=labels_top, l2=labels_l2, max_length=config.max_length)
    classifier, tokenizer = model_io.build(config.base_model, label_map, warm_start=job.get("warm_start"), log=log)
    pad_id = tokenizer.pad_token_id
    ids = {name: loop.tokenize(tokenizer, texts[name], config.max_length) for name in SPLIT_NAMES}
    stage = time.perf_counter()
    stats = loop.train(classifier, ids["train"], parts["train"]["y_top"].to_numpy(),
                       parts["train"]["y_l2"].to_numpy(), pad_id, config, log=log, device=device)
    peak_gpu = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    val_top, val_l2 = loop.predict_logits(classifier, ids["validation"], pad_id, config.eval_batch_size, device)
    infer = time.perf_counter()
    test_top, test_l2 = loop.predict_logits(classifier, ids["test"], pad_id, config.eval_batch_size, device)
    finetune_infer = time.perf_counter() - infer
    label_map.temperature_l2 = metrics.fit_temperature(val_l2, parts["validation"]["y_l2"].to_numpy())
    evaluation.add(candidates.FINETUNE, val_top, test_top, stats.seconds, finetune_infer, device=device.type,
                   steps=stats.steps, epochs=round(stats.samples / max(1, len(ids["train"])), 2),
                   warm_start=job.get("warm_start"))
    label_map.temperature_top = evaluation.probs[candidates.FINETUNE]["temperature"]
    stages["finetune"] = time.perf_counter() - stage

    # 4. calibrated ensembles of the fine-tune with each linear candidate; on a CPU, none when the fine-tune ended
    # far below the best linear candidate (see _ensembles_skipped)
    stage = time.perf_counter()
    ensembles: dict[str, list[tuple[str, float]]] = {}
    y_val = parts["validation"]["y_top"].to_numpy()
    ensembles_skipped = _ensembles_skipped(device.type, evaluation.table, list(linear), config.cpu_ensemble_margin,
                                           stats)
    if ensembles_skipped:
        log(ensembles_skipped["message"])
    for partner in ([] if ensembles_skipped else linear):
        name = f"ensemble_{candidates.FINETUNE}+{partner}"
        members = [evaluation.probs[candidates.FINETUNE], evaluation.probs[partner]]
        weight = max(ENSEMBLE_WEIGHTS, key=lambda w: selection.macro_f1(
            y_val, np.argmax(w * members[0]["validation"] + (1 - w) * members[1]["validation"], 1), len(labels_top)))
        log_mean = {s: candidates.ensemble_log_mean([m[s] for m in members], [weight, 1 - weight])
                    for s in ("validation", "test")}
        table_f = evaluation.table
        evaluation.add(name, log_mean["validation"], log_mean["test"],
                       table_f[candidates.FINETUNE]["train_seconds"] + table_f[partner]["train_seconds"],
                       table_f[candidates.FINETUNE]["inference_seconds"] + table_f[partner]["inference_seconds"],
                       weights={candidates.FINETUNE: weight, partner: round(1 - weight, 1)})
        ensembles[name] = [(candidates.FINETUNE, weight), (partner, round(1 - weight, 1))]

    stages["ensembles"] = time.perf_counter() - stage

    # 5. selection: best on validation, kept only if it beats the baseline beyond the uncertainty
    stage = time.perf_counter()
    y_test = parts["test"]["y_top"].to_numpy()
    groups_test = parts["test"]["group"].astype(str).to_numpy()
    predicted = {name: np.argmax(p["test"], 1) for name, p in evaluation.probs.items()}
    order = list(evaluation.table)
    boot_vs_baseline = {
        name: selection.paired_bootstrap(y_test, predicted[name], predicted[candidates.BASELINE], groups_test,
                                         len(labels_top), rounds=config.bootstrap_rounds, seed=config.seed)
        for name in order if name != candidates.BASELINE}
    for name, boot in boot_vs_baseline.items():
        evaluation.table[name]["versus_baseline"] = boot
    validation_f1 = {n: evaluation.table[n]["validation_macro_f1"] for n in order}
    cv_selects = cross_validation is not None and config.linear_candidates
    if not cv_selects:
        best, proposal, reason = selection.choose(validation_f1, boot_vs_baseline, candidates.BASELINE, order)
        linear_proposal = None
    else:
        others = [n for n in order if n not in linear]
        versus_linear = {
            base: {name: selection.paired_bootstrap(y_test, predicted[name], predicted[base], groups_test,
                                                    len(labels_top), rounds=config.bootstrap_rounds, seed=config.seed)
                   for name in others} for base in linear}
        for name in linear:
            evaluation.table[name]["cross_validation"] = {
                "folds": config.cv_folds, "macro_f1": cross_validation["macro_f1"][name],
                "versus_baseline": cross_validation["versus_baseline"].get(name)}
        best, proposal, reason, linear_proposal = selection.choose_with_cv(
            cross_validation["macro_f1"], cross_validation["versus_baseline"], validation_f1, versus_linear,
            candidates.BASELINE, list(linear), others)
    log(f"selection: {reason}")
    evidence = _evidence(proposal, linear, cross_validation if cv_selects else None, boot_vs_baseline,
                         versus_linear if cv_selects else None, linear_proposal)
    members = ensembles.get(proposal, [(proposal, 1.0)])
    stages["selection"] = time.perf_counter() - stage

    # 6. the proposal's second level: the fine-tune has its head; a linear member fits one now (on the top level's
    # shared TF-IDF features of the train split: the same vectorisers it would fit). The serving fit's models (step
    # 9) are fitted beside them, one per core: they depend on the members only.
    linear_l2 = {}
    started_l2 = time.perf_counter()
    linear_members = [member for member, _ in members if member in linear]
    fits = [candidates.Fit(member, len(labels_l2), texts["train"], embedded["train"] if embedded else None,
                           parts["train"]["y_l2"].to_numpy(), config.seed, shared) for member in linear_members]
    refit_fits = []
    if config.refit_on_all_labels and linear_members:
        stage = time.perf_counter()
        all_texts = texts["train"] + texts["validation"] + texts["test"]
        all_vectors = np.concatenate([embedded[s] for s in SPLIT_NAMES]) if embedded else None
        all_top = np.concatenate([parts[s]["y_top"].to_numpy() for s in SPLIT_NAMES])
        all_l2 = np.concatenate([parts[s]["y_l2"].to_numpy() for s in SPLIT_NAMES])
        shared_all = candidates.TextFeatures(all_texts) if any(linear[m].uses_text for m in linear_members) else None
        for member in linear_members:
            refit_fits += [candidates.Fit(member, len(labels_top), all_texts, all_vectors, all_top, config.seed,
                                          shared_all),
                           candidates.Fit(member, len(labels_l2), all_texts, all_vectors, all_l2, config.seed,
                                          shared_all)]
        refit_vectorised = time.perf_counter() - stage
    fitted = candidates.fit_many(fits + refit_fits)
    refit_models = fitted[len(fits):]
    for member, model in zip(linear_members, fitted):
        linear_l2[member] = model
        log(f"second-level {member} fitted in {model.fit_seconds:.1f}s")
    l2_temperatures = {candidates.FINETUNE: label_map.temperature_l2}
    member_l2 = {"validation": [], "test": []}
    for member, _weight in members:
        for split in ("validation", "test"):
            if member == candidates.FINETUNE:
                logits = val_l2 if split == "validation" else test_l2
            else:
                logits = linear_l2[member].logits(texts[split], embedded[split] if embedded else None,
                                                  text_matrix=text_matrix[split])
                if split == "validation":
                    l2_temperatures[member] = metrics.fit_temperature(logits, parts["validation"]["y_l2"].to_numpy())
            member_l2[split].append(metrics.softmax(logits, l2_temperatures[member]))
    weights = [w for _, w in members]
    l2_log = {s: candidates.ensemble_log_mean(member_l2[s], weights) for s in member_l2}
    l2_temperature = metrics.fit_temperature(l2_log["validation"], parts["validation"]["y_l2"].to_numpy()) \
        if len(members) > 1 else 1.0
    report_l2 = metrics.classification_report(parts["test"]["y_l2"].to_numpy(),
                                              metrics.softmax(l2_log["test"], l2_temperature), labels_l2)
    report_l2.pop("confusion_matrix")
    stages["second_level"] = time.perf_counter() - started_l2
    log(f"second level ({proposal}): accuracy {report_l2['accuracy']:.4f} macro-F1 {report_l2['macro_f1']:.4f}")

    # 7. the repair threshold on unseen titles (validation), checked on test
    proposal_probs = evaluation.probs[proposal]
    other = top_id.get(fold_in["top"], -1)
    threshold_fit = _threshold(proposal_probs["validation"], y_val, other, config.repair_precision_bound)
    at_threshold = _at(proposal_probs["test"], y_test, other, threshold_fit["threshold"])
    log(f"repair threshold {threshold_fit['threshold']}: validation precision {threshold_fit['precision']} "
        f"(lower bound {threshold_fit['precision_lower_bound']:.4f}, coverage {threshold_fit['coverage']}); on test "
        f"precision {at_threshold['precision']} lower bound {at_threshold['precision_lower_bound']:.4f} coverage "
        f"{at_threshold['coverage']}")

    # 8. versus the current champion, on today's test split
    versus_champion = None
    if job.get("champion"):
        versus_champion = _versus_champion(job, texts["test"], y_test, labels_top, fold_in["top"], predicted[proposal],
                                           groups_test, config)

    # 8b. label issues: confident learning on the out-of-fold probabilities of the linear recipe that serves (or
    # would serve beside a fine-tune), for every labelled product (shopflow.model.training.label_issues)
    label_issues = None
    if cross_validation is not None:
        from shopflow.model.training import label_issues as issues

        stage = time.perf_counter()
        recipe = linear_proposal or candidates.BASELINE
        found = issues.find_label_issues(
            np.concatenate([parts[s]["uniq_id"].astype(str).to_numpy() for s in SPLIT_NAMES]).tolist(),
            np.concatenate([parts[s]["y_top"].to_numpy() for s in SPLIT_NAMES]), out_of_fold[recipe], labels_top,
            fold_in=fold_in["top"],
            gold=np.concatenate([parts[s]["gold"].to_numpy(dtype=bool) for s in SPLIT_NAMES])
            if "gold" in examples else None)
        found.save(output)
        label_issues = found.describe(recipe)
        stages["label_issues"] = time.perf_counter() - stage
        log(f"label issues: {found.found:,} of {len(found.rows):,} labelled products flagged by {issues.METHOD} of "
            f"{recipe} ({stages['label_issues']:.1f}s); they go to the review queue; most frequent (given -> "
            "suggested): " + "; ".join(f"{p['given']} -> {p['suggested']} {p['products']}" for p in found.pairs(5)))

    # 9. the serving fit: the proposal's linear members refit on every labelled product (train, validation and test,
    # reviewers' gold labels among them). Every figure above stays that of the held-out evaluation, and the
    # temperatures and the repair threshold stay fitted on held-out predictions of the same recipe (validation), so
    # the refit makes none of them optimistic. A fine-tune member serves as trained (refitting it is retraining it).
    # (fitted in step 6, beside the second-level heads; their own fit seconds, plus the shared vectorisers')
    refit = None
    refit_members = linear_members if refit_fits else []
    if refit_members:
        for i, member in enumerate(refit_members):
            linear[member], linear_l2[member] = refit_models[2 * i], refit_models[2 * i + 1]
        stages["refit"] = refit_vectorised + sum(model.fit_seconds for model in refit_models)
        refit = {"members": refit_members, "products": len(all_texts),
                 "held_out_products": len(all_texts) - len(texts["train"]),
                 "gold_labels": int(examples["gold"].sum()) if "gold" in examples else 0,
                 "seconds": round(stages["refit"], 2)}
        log(f"serving fit: {', '.join(refit_members)} refit on all {len(all_texts):,} labelled products "
            f"(the {refit['held_out_products']:,} held-out ones included) in {stages['refit']:.1f}s; the figures, "
            "temperatures and repair threshold above are those of the held-out evaluation")

    # 10. save what serves, plus the fine-tune for tomorrow's warm start; and the held-out answers of the test split
    # (before any refit), from which the repair measures its fills' precision at its threshold once the serving
    # model has seen every label (shopflow.model.inference.Predictor.held_out)
    _save_held_out(output / HELD_OUT, proposal_probs["test"], y_test, other,
                   metrics.softmax(l2_log["test"], l2_temperature), parts["test"]["y_l2"].to_numpy(),
                   l2_id.get(fold_in["l2"], -1), labels_top, labels_l2)
    model_io.save(classifier.cpu(), tokenizer, label_map, output / "finetune")
    for member, _ in members:
        if member in linear:
            candidates.save_linear(linear[member], output / "linear" / f"{member}_top.joblib")
            candidates.save_linear(linear_l2[member], output / "linear" / f"{member}_l2.joblib")
    card = {
        "format": 2, "selected": proposal, "best_on_validation": best, "selection_reason": reason,
        "members": [{"name": m, "weight": w, "temperature_top": evaluation.probs[m]["temperature"],
                     "temperature_l2": l2_temperatures[m]} for m, w in members],
        "temperature_top": 1.0 if len(members) == 1 else evaluation.table[proposal]["temperature"],
        "temperature_l2": l2_temperature,
        "labels": {"top": labels_top, "l2": labels_l2, "fold_in": fold_in}, "max_length": config.max_length,
        # No threshold reaching the bound: a threshold above any confidence, so nothing is filled.
        "repair_threshold": NO_FILL if threshold_fit["threshold"] is None else threshold_fit["threshold"],
        "embedding": embedder.describe() if embedder else None,
        "refit": refit,
        "label_issues": label_issues,
    }
    (output / "champion.json").write_text(json.dumps(card, indent=2))
    proposal_report = metrics.classification_report(y_test, evaluation.probs[proposal]["test"], labels_top)
    result = {
        "selected": proposal, "selection_reason": reason, "best_on_validation": best,
        "metrics": {"top": proposal_report, "l2": report_l2},
        "baseline": {"top": evaluation.table[candidates.BASELINE]["test"], "row_split_top": row_split_baseline},
        "candidates": evaluation.table,
        "versus_champion": versus_champion,
        "repair_threshold": {"validation": threshold_fit, "test": at_threshold},
        "embeddings": embedding_stats if embedder else None,
        "cross_validation": cross_validation,
        "evidence": evidence,
        "refit": refit,
        "label_issues": {k: v for k, v in label_issues.items() if k != "class_thresholds"} if label_issues else None,
        "training": {**stats.__dict__, "samples_per_second": stats.samples_per_second,
                     "tokens_per_second": stats.tokens / stats.seconds if stats.seconds else 0.0,
                     "peak_gpu_memory_bytes": peak_gpu, "warm_start": job.get("warm_start"),
                     "stages_seconds": {k: round(v, 2) for k, v in stages.items()},
                     "ensembles_skipped": ({k: v for k, v in ensembles_skipped.items() if k != "message"}
                                           if ensembles_skipped else None),
                     "total_seconds": round(time.perf_counter() - started_all, 2),
                     "peak_rss_mib": round(_peak_rss_mib(), 1),
                     "test_inference_samples_per_second": evaluation.table[proposal]["inference_per_second"],
                     "refit": refit},
        "labels": {"top": labels_top, "l2": labels_l2, "fold_in": fold_in},
        "split_sizes": {k: len(v) for k, v in parts.items()}, "split": split_column,
        "gold_labels": int(examples["gold"].sum()) if "gold" in examples else 0,
        "config": config.as_dict(),
        "artifact_path": str(output),
    }
    log("evaluation on the test split (top level), the proposal against the baseline:\n"
        + metrics.format_table(proposal_report, result["baseline"]["top"]))
    log(format_candidates(evaluation.table))
    (output / "result.json").write_text(json.dumps(result, indent=2, default=str))
    log(f"saved model to {output} in {result['training']['total_seconds']:.0f}s: serving {proposal}")
    return result


def _evidence(proposal: str, linear: dict, cross_validation: dict | None, boot_vs_baseline: dict,
              versus_linear: dict | None, linear_proposal: str | None) -> dict | None:
    """The bootstrap that justified a proposal other than the baseline: what the blessing checks again."""
    from shopflow.model.training import candidates

    if proposal == candidates.BASELINE:
        return None
    if cross_validation is None:
        return {"against": candidates.BASELINE, "on": "test split", "bootstrap": boot_vs_baseline[proposal]}
    if proposal in linear:
        return {"against": candidates.BASELINE, "on": "grouped cross-validation",
                "bootstrap": cross_validation["versus_baseline"][proposal]}
    return {"against": linear_proposal, "on": "test split", "bootstrap": versus_linear[linear_proposal][proposal]}


def _ensembles_skipped(device: str, table: dict, linear: list[str], margin: float, stats) -> dict | None:
    """On a CPU, whether the fine-tune ensembles are not worth building: the fine-tune's validation macro-F1 is below
    the best linear candidate's by more than `margin` (TrainingConfig.cpu_ensemble_margin,
    SHOPFLOW_TRAIN_CPU_ENSEMBLE_MARGIN). An ensemble of a far weaker fine-tune with a linear candidate does not beat that
    candidate beyond the uncertainty on the test split, which is what a proposal needs; skipping it saves building,
    calibrating and bootstrapping one per linear candidate. None where they are built (always on CUDA, where the
    fine-tune runs whole epochs)."""
    from shopflow.model.training import candidates

    if device != "cpu" or not linear or candidates.FINETUNE not in table:
        return None
    margin = float(margin)
    finetune = table[candidates.FINETUNE]["validation_macro_f1"]
    best = max(linear, key=lambda name: table[name]["validation_macro_f1"])
    gap = table[best]["validation_macro_f1"] - finetune
    if gap <= margin:
        return None
    skipped = [f"ensemble_{candidates.FINETUNE}+{partner}" for partner in linear]
    reason = (f"on cpu the fine-tune reached validation macro-F1 {finetune:.4f} in {stats.steps} steps, "
              f"{gap:.4f} below the best linear candidate {best} ({table[best]['validation_macro_f1']:.4f}), more "
              f"than the margin {margin:g}")
    return {"reason": reason, "finetune_validation_macro_f1": round(finetune, 6), "best_linear": best,
            "best_linear_validation_macro_f1": round(table[best]["validation_macro_f1"], 6), "margin": margin,
            "finetune_steps": stats.steps, "skipped": skipped,
            "message": f"ensembles skipped: {reason}; the {len(skipped)} fine-tune ensembles are not built"}


def _cross_validate(parts: dict, texts: dict, embedded: dict | None, n_classes: int, config, log,
                    names: tuple[str, ...]) -> dict:
    """Out-of-fold probabilities of each linear candidate in `names` for every labelled product (folds by product
    group, `selection.fold_of`; rows in the order train, validation, test; `candidates.cross_validated_probabilities`:
    the fits side by side, one per core), their macro-F1 and each one's paired bootstrap gain over the baseline."""
    import numpy as np

    from shopflow.model.training import candidates, selection

    started = time.perf_counter()
    all_texts = texts["train"] + texts["validation"] + texts["test"]
    all_vectors = np.concatenate([embedded[s] for s in SPLIT_NAMES]) if embedded else None
    y = np.concatenate([parts[s]["y_top"].to_numpy() for s in SPLIT_NAMES])
    groups = np.concatenate([parts[s]["group"].astype(str).to_numpy() for s in SPLIT_NAMES])
    folds = np.array([selection.fold_of(g, config.cv_folds) for g in groups])
    jobs = max(1, min(config.cv_folds * len(names), candidates.cpu_cores()))

    def on_fold(fold: int, held) -> None:
        log(f"cross-validation fold {fold + 1}/{config.cv_folds}: {len(held):,} held-out products "
            f"({time.perf_counter() - started:.0f}s, {jobs} fits at a time)")

    probabilities = candidates.cross_validated_probabilities(names, n_classes, all_texts, all_vectors, y, folds,
                                                             seed=config.seed, on_fold=on_fold)
    out_of_fold = {name: p.argmax(1) for name, p in probabilities.items()}
    macro = {name: selection.macro_f1(y, predicted, n_classes) for name, predicted in out_of_fold.items()}
    versus = {name: selection.paired_bootstrap(y, out_of_fold[name], out_of_fold[candidates.BASELINE], groups,
                                               n_classes, rounds=config.bootstrap_rounds, seed=config.seed)
              for name in names if name != candidates.BASELINE}
    log(f"{config.cv_folds}-fold grouped cross-validation of the linear candidates on {len(y):,} products in "
        f"{time.perf_counter() - started:.0f}s: " + ", ".join(
            f"{name} {macro[name]:.4f}" + (f" ({versus[name]['gain']:+.4f} [{versus[name]['ci_low']:+.4f}, "
                                          f"{versus[name]['ci_high']:+.4f}])" if name in versus else "")
            for name in names))
    return {"macro_f1": macro, "versus_baseline": versus, "seconds": round(time.perf_counter() - started, 1),
            "probabilities": probabilities}


def _fillable(probabilities, y, other: int):
    import numpy as np

    predicted = np.argmax(probabilities, 1)
    return probabilities.max(1), predicted == y, predicted != other


def _save_held_out(path: Path, top_probs, y_top, top_fold_in: int, l2_probs, y_l2, l2_fold_in: int, labels_top,
                   labels_l2) -> None:
    """Per test product: the proposal's confidence, whether its answer is right, and whether the repair could fill
    it (not the fold-in class; at the second level, a "Top > Second" answer under the product's true top level, for
    a product whose second level is known), at both levels."""
    import numpy as np

    top_answer, l2_answer = np.argmax(top_probs, 1), np.argmax(l2_probs, 1)
    l2_top_of = np.array([name.split(" > ")[0] for name in labels_l2], dtype=object)
    true_top = np.asarray(labels_top, dtype=object)[np.asarray(y_top)]
    known_l2 = np.asarray(y_l2) != l2_fold_in
    np.savez_compressed(
        path, top_confidence=top_probs.max(1), top_correct=top_answer == y_top,
        top_fillable=top_answer != top_fold_in, l2_confidence=l2_probs.max(1)[known_l2],
        l2_correct=(l2_answer == y_l2)[known_l2],
        l2_fillable=((l2_answer != l2_fold_in) & (l2_top_of[l2_answer] == true_top))[known_l2])


def _fold_in_name(examples, level: str) -> str | None:
    """The fold-in class of `level` in the examples (shopflow.model.training.data.fold_in_label), None where no row
    was folded; examples written before the rows were marked fold into `other`."""
    folded = f"{level}_folded"
    if folded not in examples:
        return "other" if (examples[f"label_{level}"] == "other").any() else None
    names = examples.loc[examples[folded], f"label_{level}"].unique()
    return str(names[0]) if len(names) else None


def _threshold(probabilities, y, other: int, target: float) -> dict:
    from shopflow.model.training import selection

    confidence, correct, fillable = _fillable(probabilities, y, other)
    return selection.repair_threshold(confidence, correct, fillable, target)


def _at(probabilities, y, other: int, threshold: float | None) -> dict:
    from shopflow.model.training import selection

    confidence, correct, fillable = _fillable(probabilities, y, other)
    return selection.precision_at(confidence, correct, fillable, 1.01 if threshold is None else threshold)


def _versus_champion(job: dict, test_texts, y_test, labels_top, fold_in_top: str | None, proposal_predicted, groups,
                     config) -> dict:
    """The proposal's macro-F1 gain over the champion's predictions on today's test split (paired bootstrap)."""
    import numpy as np

    from shopflow.model.inference import Predictor
    from shopflow.model.training import selection

    champion = job["champion"]
    try:
        predictor = Predictor(champion["path"], device=config.device if config.device != "auto" else "auto",
                              embedding_cache_dir=job.get("embedding_cache_dir"))
    except Exception as exc:  # an unreadable champion must not stop a training; the blessing sees why
        log(f"champion v{champion['version']} could not be loaded ({exc}); no paired comparison")
        return {"version": champion["version"], "error": str(exc)[:300]}
    predicted = predictor.predict(test_texts)
    index = {name: i for i, name in enumerate(labels_top)}
    # The champion's "no class" answer is right where today's label is today's fold-in class.
    fold_in = index.get(fold_in_top, -1)
    champion_predicted = np.array([fold_in if unknown else index.get(name, -1)
                                   for name, unknown in zip(predicted["label"].tolist(), predicted["fold_in"])])
    boot = selection.paired_bootstrap(y_test, proposal_predicted, champion_predicted, groups, len(labels_top),
                                      rounds=config.bootstrap_rounds, seed=config.seed)
    champion_f1 = selection.macro_f1(np.asarray(y_test), champion_predicted, len(labels_top))
    log(f"versus champion v{champion['version']} on today's test split: champion macro-F1 {champion_f1:.4f}, gain "
        f"{boot['gain']:+.4f} (95% CI [{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}])")
    return {"version": champion["version"], "champion_macro_f1": champion_f1, **boot}


def format_candidates(table: dict) -> str:
    lines = [f"{'candidate':<40} {'val F1':>7} {'test F1':>7} {'acc':>6} {'ECE':>6} {'train s':>8} {'infer/s':>8} "
             f"{'vs baseline (95% CI)':>28}"]
    for name, row in table.items():
        boot = row.get("versus_baseline")
        versus = (f"{boot['gain']:+.4f} [{boot['ci_low']:+.4f},{boot['ci_high']:+.4f}]" if boot and boot["ci_low"]
                  is not None else "baseline" if boot is None else f"{boot['gain']:+.4f}")
        lines.append(f"{name[:40]:<40} {row['validation_macro_f1']:7.4f} {row['test']['macro_f1']:7.4f} "
                     f"{row['test']['accuracy']:6.3f} {row['test']['ece']:6.3f} {row['train_seconds']:8.1f} "
                     f"{row['inference_per_second'] or 0:8.0f} {versus:>28}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    run(job)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

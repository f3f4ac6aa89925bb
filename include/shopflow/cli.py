"""`python -m shopflow …`: set up the store, land the sample data, run partitions, and print status from the store."""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
from datetime import date

from shopflow.common.errors import ConfigurationError
from shopflow.common.redaction import redact
from shopflow.config.settings import Settings


def _day(text: str) -> date:
    return date.fromisoformat(text)


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return number


def cmd_db_upgrade(settings: Settings, _args) -> int:
    from shopflow.sources import load_sources
    from shopflow.store import migrate
    from shopflow.store.repository import MetadataStore

    settings.home.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.store_url)
    store = MetadataStore(settings.store_url)
    for spec in load_sources().values():
        store.register_dataset(spec)
    print(f"metadata store at revision {migrate.head_revision()}: {store.engine.url.render_as_string(hide_password=True)}")
    return 0


def cmd_init_key(settings: Settings, _args) -> int:
    path = settings.pseudonym_key_file
    if path.exists():
        print(f"pseudonymisation key exists: {path}")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    print(f"created pseudonymisation key {path} (keep it secret; losing it breaks joins across days)")
    return 0


def cmd_rekey(settings: Settings, args) -> int:
    """Show which key fingerprints the partitions carry; with --new-epoch, forget them so that ingest accepts the
    current key (tokens of earlier partitions were made under the old key and do not join with the new ones)."""
    from shopflow.ingest.pseudonym import key_fingerprint
    from shopflow.store.repository import MetadataStore

    current = key_fingerprint(settings.resolve_pseudonym_key())
    store = MetadataStore(settings.store_url)
    if not args.new_epoch:
        datasets = [args.dataset] if args.dataset else sorted({p.dataset.name for p in store.partitions()})
        for name in datasets:
            print(f"{name}: partitions pseudonymised under {', '.join(sorted(store.key_fingerprints(name))) or '-'}")
        print(f"current key fingerprint {current}; `rekey --new-epoch` starts a new key epoch")
        return 0
    found = store.start_key_epoch(args.dataset)
    for name, counts in sorted(found.items()):
        print(f"{name}: forgot " + ", ".join(f"{fp} ({n} partitions)" for fp, n in sorted(counts.items())))
    print(f"new key epoch: the next ingests record the current key fingerprint {current}")
    return 0


def cmd_land(settings: Settings, args) -> int:
    """Without --source: land the sample data. With --source NAME --from EXPORT: land a shop's own export."""
    if args.source:
        return _land_export(settings, args)
    if args.export or args.by or args.file or args.undated_day or args.day or args.max_days:
        print("--from, --by, --file, --day, --undated-day and --max-days need --source NAME", file=sys.stderr)
        return 2
    from shopflow.landing.sample_data import land_all

    landed = land_all(settings, (args.search_from, args.search_to))
    for source, days in landed.items():
        print(f"{source:9s} {len(days):4d} days  {sum(days.values()):9,d} rows  {min(days)} .. {max(days)}"
              f"  -> {settings.landing_dir / source}")
    return 0


def _land_export(settings: Settings, args) -> int:
    from pathlib import Path

    from shopflow.common.landing_file import LandingFileError
    from shopflow.landing.export import ExportError, land_export
    from shopflow.sources import get_source

    if not args.export:
        print("--source needs --from EXPORT (a file, or a folder of per-day files)", file=sys.stderr)
        return 2
    try:
        counts = land_export(settings, get_source(args.source), Path(args.export), by=args.by, file_name=args.file,
                             undated_day=args.undated_day, day=args.day, max_days=args.max_days)
    except (ExportError, LandingFileError, KeyError) as exc:
        print(exc.args[0] if isinstance(exc, KeyError) else exc, file=sys.stderr)
        return 1
    except OSError as exc:  # missing, unreadable: one line naming the file, no traceback
        print(f"{exc.filename or args.export}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if counts:
        what = "files" if args.day or Path(args.export).is_dir() else "records"
        print(f"{args.source}: {len(counts)} days, {sum(counts.values()):,} {what}, {min(counts)} .. {max(counts)} "
              f"-> {settings.landing_dir / args.source}")
    else:
        print(f"{args.source}: the export holds no records")
    return 0


def cmd_run(settings: Settings, args) -> int:
    """Run ingest -> clean -> validate without Airflow: one day (handy for debugging a partition), or every day of
    DAY --to LAST in this one process (a backfill that imports the libraries once)."""
    from datetime import datetime, timezone

    from shopflow.sources import get_source, load_sources
    from shopflow.steps.day_range import DayRangeError, days_between, run_days

    try:
        days = days_between(args.ds, args.to, args.max_days)
        sources = [get_source(name).name for name in args.source] if args.source else list(load_sources())
    except (DayRangeError, KeyError) as exc:  # before any day runs
        print(f"run: {exc.args[0]}", file=sys.stderr)
        return 2
    run_id = f"cli__{datetime.now(timezone.utc).isoformat(timespec='seconds')}"  # recorded like an Airflow run id
    outcome = run_days(settings, sources, days, run_id)
    for failure in outcome.failures:
        print(f"{failure.source} {failure.ds}: {redact(failure.error)}", file=sys.stderr)
    print(outcome.summary())
    return 1 if outcome.failures else 0


def cmd_status(settings: Settings, args) -> int:
    from shopflow.observability.status import render_status

    print(render_status(settings, dataset=args.dataset, as_json=args.json, show_missing=args.all))
    return 0


def cmd_quarantine(settings: Settings, args) -> int:
    """The day's quarantined rows of a source: reason, field, file and line, as a table or CSV (at most --limit)."""
    from shopflow.observability.status import QuarantineLookupError, more_note, quarantined_rows, render_quarantine

    try:
        found = quarantined_rows(settings, args.source, args.ds, limit=args.limit)
    except QuarantineLookupError as exc:
        print(f"quarantine: {exc}", file=sys.stderr)
        return 1
    print(render_quarantine(found, as_csv=args.csv))
    if args.csv and found.more:
        print(more_note(found), file=sys.stderr)
    return 0


def cmd_models(settings: Settings, _args) -> int:
    from shopflow.observability.status import render_models

    print(render_models(settings))
    return 0


def cmd_revert_repair(settings: Settings, args) -> int:
    from shopflow.governance.repair import revert
    from shopflow.store.repository import MetadataStore

    count = revert(settings, MetadataStore(settings.store_url), args.ds, args.product or None, field=args.field)
    print(f"reverted {count} {args.field or 'category'} fills of the catalogue partition {args.ds}")
    return 0


def cmd_review(settings: Settings, args) -> int:
    """`review list DS`: the day's repair items to review. `review decide DS --id ID --accept|--reject|--correct V`."""
    import getpass

    from shopflow.governance import review
    from shopflow.store.repository import MetadataStore

    store = MetadataStore(settings.store_url)
    try:
        if args.review_command == "list":
            found = review.items(settings, store, args.ds, args.source, action=args.action, state=args.state)
            counts = review.summary(settings, store, args.ds, args.source)
            print(f"{counts['source']} {args.ds}: {counts['pending']} pending ({counts['pending_by_action']['review']} "
                  f"to review, {counts['pending_by_action']['flag']} flagged) of {counts['total']} items; decided: "
                  + ", ".join(f"{n} {d}" for d, n in counts["decided"].items()) + f"; showing {len(found)} {args.state}")
            for i in found:
                state = f"{i.decision} -> {i.value or '-'} by {i.reviewer}" if i.decision else (
                    "PENDING" if i.pending else "")
                suggestion = "(the model knows no class for this)" if i.fold_in else i.suggestion or "-"
                cluster = f"  [near-duplicate cluster {i.cluster_id}]" if i.cluster_id is not None else ""
                quality = f"  label quality {i.label_quality:.3g}" if i.label_quality is not None else ""
                print(f"{i.uniq_id}  {i.action:6s} {i.confidence:5.3f}  {i.before or '-'} => {suggestion}"
                      f"{quality}  {state}  {(i.title or '')[:60]}{cluster}")
            return 0
        decision = "accept" if args.accept else "reject" if args.reject else "correct"
        result = review.decide(settings, store, args.ds, [review.ItemDecision(args.id, decision, args.correct)],
                               args.reviewer or getpass.getuser(), source=args.source, via="cli")
    except review.ReviewError as exc:
        print(f"review: {exc}", file=sys.stderr)
        return 1
    what = "recorded" if result["recorded"] else "replaced" if result["replaced"] else "unchanged (already decided)"
    print(f"{args.id}: {decision} {what}; {result['applied']} decisions applied to the repaired {result['source']} "
          f"partition {args.ds}")
    return 0


def cmd_catalog_as_of(settings: Settings, args) -> int:
    from shopflow.lake.catalog_view import catalog_as_of
    from shopflow.store.repository import MetadataStore

    frame = catalog_as_of(MetadataStore(settings.store_url), args.ds)
    print(f"catalogue as of {args.ds}: {len(frame):,} products; rows per source partition: "
          f"{json.dumps(frame['as_of_ds'].value_counts().sort_index().to_dict())}")
    if args.output:
        frame.to_parquet(args.output, index=False)
        print(f"written to {args.output}")
    return 0


def cmd_report(settings: Settings, args) -> int:
    """(Re)generate the report of each day from the store and the lake, without re-running the pipeline."""
    from datetime import timedelta

    from shopflow.report.build import ReportIncomplete, build_report
    from shopflow.store.repository import MetadataStore

    store = MetadataStore(settings.store_url)
    last = args.until or args.ds
    if last < args.ds:
        print(f"--until {last} is before {args.ds}", file=sys.stderr)
        return 2
    failures, day = 0, args.ds
    while day <= last:
        previous = store.report(day)
        try:
            result = build_report(settings, day, store=store,
                                  run_id=previous.airflow_run_id if previous else None)
            print(f"{day}: {result['status']:8s} {result['html']}")
        except ReportIncomplete as exc:
            failures += 1
            print(f"{day}: incomplete: {exc}", file=sys.stderr)
        day += timedelta(days=1)
    return 1 if failures else 0


def cmd_sources(settings: Settings, args) -> int:
    """`sources list`: one line per source. `sources check`: validate the sources file and print every source as it
    resolves (files, schema, key, expectations); exit 1 with the errors when it is not valid."""
    from shopflow.observability.describe import describe, list_line
    from shopflow.sources import SourcesFileError, load_sources, sources_location

    location = args.file or sources_location()
    try:
        sources = load_sources(location)
    except SourcesFileError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.sources_command == "list":
        for spec in sources.values():
            print(list_line(spec))
        return 0
    problems = 0
    for spec in sources.values():
        try:
            print(describe(spec) + "\n")
        except Exception as exc:  # a cleaner module that does not import, a suite that cannot be derived
            problems += 1
            print(f"{spec.name}: cannot be resolved: {type(exc).__name__}: {exc}\n", file=sys.stderr)
    from shopflow.sources.roles import model_catalog

    print(f"model branch: {model_catalog(sources).explain()}")
    print(f"{location}: {len(sources)} sources, " + ("valid" if not problems else f"{problems} with problems"))
    return 1 if problems else 0


def cmd_sources_infer(_settings: Settings, args) -> int:
    """`sources infer --from EXPORT`: print a draft sources-file entry inferred from a sample of the export."""
    from shopflow.sources.infer import InferError, draft_text

    try:
        print(draft_text(args.export, args.name), end="")
    except InferError as exc:
        print(f"sources infer: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shopflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    db = sub.add_parser("db", help="metadata store schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply the Alembic migrations and register the datasets").set_defaults(func=cmd_db_upgrade)
    sub.add_parser("init-key", help="create the local pseudonymisation key file").set_defaults(func=cmd_init_key)
    rekey = sub.add_parser("rekey", help="show the pseudonymisation key fingerprints of the partitions; --new-epoch: "
                                         "accept a new key from now on")
    rekey.add_argument("--new-epoch", action="store_true", help="forget the recorded fingerprints: a new key epoch")
    rekey.add_argument("--dataset", help="only this dataset")
    rekey.set_defaults(func=cmd_rekey)
    land = sub.add_parser("land", help="land the sample data (no --source) or a shop's export as daily landing files")
    land.add_argument("--search-from", type=_day, default=date(2015, 12, 3))
    land.add_argument("--search-to", type=_day, default=date(2015, 12, 16))
    land.add_argument("--source", help="a source of the sources file: land its export given by --from")
    land.add_argument("--from", dest="export", help="the export: a file, or a folder of per-day files")
    land.add_argument("--by", help="the column (or JSON field path) whose day, in the source's time zone, splits it")
    land.add_argument("--file", help="which declared landing file the export is (when the source declares several)")
    land.add_argument("--undated-day", type=_day, help="where records whose --by value is not a date go")
    land.add_argument("--day", type=_day, help="land the whole export on this day (a snapshot or a lookup file)")
    land.add_argument("--max-days", type=_positive_int, metavar="N",
                      help="with --by: land up to N distinct days (default SHOPFLOW_LAND_MAX_DAYS)")
    land.set_defaults(func=cmd_land)
    run = sub.add_parser("run", help="ingest, clean and validate one day, or a range of days, without Airflow")
    run.add_argument("ds", type=_day, help="the day (the first day with --to)")
    run.add_argument("--to", type=_day, help="run every day from DS to this one (inclusive) in this one process")
    run.add_argument("--max-days", type=_positive_int, metavar="N",
                     help="with --to: run up to N days (default SHOPFLOW_RUN_MAX_DAYS)")
    run.add_argument("--source", action="append", help="only this source (repeatable; default: every source)")
    run.set_defaults(func=cmd_run)
    status = sub.add_parser("status", help="partitions, ledgers and validation state from the metadata store")
    status.add_argument("--dataset")
    status.add_argument("--json", action="store_true")
    status.add_argument("--all", action="store_true", help="also list partitions recorded as missing")
    status.set_defaults(func=cmd_status)
    quarantine = sub.add_parser("quarantine", help="a day's quarantined rows of a source: reason, field, file, line")
    quarantine.add_argument("ds", type=_day)
    quarantine.add_argument("--source", required=True, help="the source (dataset) whose partition to show")
    quarantine.add_argument("--csv", action="store_true", help="CSV with every column of the rows, not a table")
    quarantine.add_argument("--limit", type=_positive_int, default=50, metavar="N",
                            help="show at most N rows (default 50); the output says how many more there are")
    quarantine.set_defaults(func=cmd_quarantine)
    sub.add_parser("models", help="model registry, catalogue repairs and search intents").set_defaults(func=cmd_models)
    revert = sub.add_parser("revert-repair", help="undo a day's model fills from the audit trail")
    revert.add_argument("ds", type=_day)
    revert.add_argument("--product", action="append", help="uniq_id to revert (repeatable); default: every fill")
    revert.add_argument("--field", help="the column whose fills to revert: the top-level category (default), the "
                        "second level or the brand column (e.g. category_l2, brand)")
    revert.set_defaults(func=cmd_revert_repair)
    review_parser = sub.add_parser("review", help="review the catalogue repair: list a day's items, decide one")
    review_sub = review_parser.add_subparsers(dest="review_command", required=True)
    review_list = review_sub.add_parser("list", help="the day's fills, review items and flags with their decisions")
    review_list.add_argument("ds", type=_day)
    review_list.add_argument("--action", choices=["fill", "review", "flag"])
    review_list.add_argument("--state", choices=["pending", "decided", "all"], default="pending")
    review_decide = review_sub.add_parser("decide", help="accept, reject or correct one item (re-deciding replaces)")
    review_decide.add_argument("ds", type=_day)
    review_decide.add_argument("--id", required=True, help="the product's key as `review list` prints it (any key type)")
    choice = review_decide.add_mutually_exclusive_group(required=True)
    choice.add_argument("--accept", action="store_true", help="take the model's suggestion")
    choice.add_argument("--reject", action="store_true", help="a fill reverts, a flag keeps the given category")
    choice.add_argument("--correct", metavar="CATEGORY", help="a known category ('Top' or 'Top > Second')")
    review_decide.add_argument("--reviewer", help="who decides (default: the login name)")
    for command in (review_list, review_decide):
        command.add_argument("--source", help="the catalogue source (default: the model catalogue)")
        command.set_defaults(func=cmd_review)
    predict = sub.add_parser("predict", help="score a file of products (CSV or JSON lines) with the champion")
    predict.add_argument("--input", required=True, help="CSV/TSV or JSON lines with title (brand, description, id)")
    predict.add_argument("--output", required=True, help="CSV or JSON lines (by suffix)")
    predict.add_argument("--model", help="a model directory (default: the champion of the metadata store)")
    predict.set_defaults(func=cmd_predict)
    as_of = sub.add_parser("catalog-as-of", help="reconstruct the clean catalogue as of a day")
    as_of.add_argument("ds", type=_day)
    as_of.add_argument("--output")
    as_of.set_defaults(func=cmd_catalog_as_of)
    report = sub.add_parser("report", help="(re)generate the daily report of a day (or a range) from the store")
    report.add_argument("ds", type=_day)
    report.add_argument("--until", type=_day, help="last day of a range (inclusive)")
    report.set_defaults(func=cmd_report)
    sources = sub.add_parser("sources", help="the sources file (SHOPFLOW_SOURCES): list or check it")
    sources_sub = sources.add_subparsers(dest="sources_command", required=True)
    for name, text in (("list", "one line per declared source"),
                       ("check", "validate the file and print each source's resolved files, schema and expectations")):
        command = sources_sub.add_parser(name, help=text)
        command.add_argument("--file", help="a sources file to use instead of SHOPFLOW_SOURCES")
        command.set_defaults(func=cmd_sources)
    infer = sources_sub.add_parser("infer", help="profile an export (a bounded sample) and print a draft, commented "
                                                 "sources-file entry (docs/sources-infer.md)")
    infer.add_argument("--from", dest="export", required=True, help="the export: CSV, TSV, JSON lines or Parquet, "
                                                                    "gzip/zstd or not")
    infer.add_argument("--name", help="the source's name (default: from the file name)")
    infer.set_defaults(func=cmd_sources_infer)
    return parser


def cmd_predict(settings: Settings, args) -> int:
    from pathlib import Path

    from shopflow.model.batch_predict import PredictInputError, predict_input, read_input
    from shopflow.model.inference import Predictor
    from shopflow.model.registry import champion
    from shopflow.store.repository import MetadataStore

    try:  # the input first: a bad one fails in a line, before a model is looked up and loaded
        checked = read_input(Path(args.input), Path(args.output))
    except PredictInputError as exc:
        print(f"predict: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"predict: {exc.filename or args.input}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    model = args.model
    if model is None:
        current = champion(MetadataStore(settings.store_url))
        if current is None:
            print("no champion model in the metadata store: train one (the DAG's model group) or pass --model DIR",
                  file=sys.stderr)
            return 2
        model = current.artifact_path
    predictor = Predictor(model, cache_root=settings.model_cache_dir, embedding_cache_dir=settings.embedding_cache_dir)
    summary = predict_input(checked, Path(args.output), predictor)
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return args.func(Settings.from_env(), args)
    except ConfigurationError as exc:  # a bad or missing setting: one line that names it, no traceback
        print(f"shopflow: {redact(exc)}", file=sys.stderr)
        return 2

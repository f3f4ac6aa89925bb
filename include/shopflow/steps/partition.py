"""The three steps of a partition (one day of one source): ingest, clean, validate.

Each step reads its inputs from the landing zone or the lake, writes its outputs atomically, records what it did
in the metadata store, and returns a small dict (what an Airflow XCom may carry).
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import date

import pandas as pd

from shopflow.common.parquet import (
    RAW_ZONE_OPTIONS,
    ParquetChunks,
    parquet_row_groups,
    read_parquet,
    read_row_groups,
    release_unused_memory,
    write_parquet_atomic,
)
from shopflow.common.storage import size_of
from shopflow.config.settings import ConfigurationError, Settings
from shopflow.ingest.folder import partition_files
from shopflow.ingest.pseudonym import key_fingerprint, pseudonymise_columns
from shopflow.ingest.bounded_read import ReadLimits
from shopflow.ingest.readers import can_stream, read_landing, read_landing_chunks
from shopflow.lake import zones as lake
from shopflow.sources import SourceSpec, get_source
from shopflow.sources.cleaner import cleaner_of
from shopflow.sources.cleaning import SeenKeys, clean_partition
from shopflow.sources.ledger import Ledger
from shopflow.store.repository import MetadataStore

log = logging.getLogger("shopflow.steps.partition")


class PartitionMissing(Exception):
    """No landing files for this day; recorded as missing. Not an error unless the source is required."""


class RequiredPartitionMissing(RuntimeError):
    """A required source has no landing files for the day."""


class ValidationFailed(RuntimeError):
    """A critical expectation failed: the partition must not flow downstream."""


def _store(settings: Settings) -> MetadataStore:
    store = MetadataStore(settings.store_url)
    store.check_schema()
    return store


def _records_failure(step: str):
    """Make a step record its own failure (partition `failed`, `error` = "<step>: <message>", the run id), so that
    the CLI, the Airflow operators and a library caller leave the same state behind. A missing partition is no
    failure (recorded as missing by the step). The last good run's facts stay as `last_good` (see the store)."""
    def wrap(function):
        @functools.wraps(function)
        def run(settings: Settings, source: str, ds: date, run_id: str | None = None) -> dict:
            try:
                return function(settings, source, ds, run_id)
            except PartitionMissing:
                raise
            except Exception as exc:
                record_failure(settings, source, ds, step=step, error=exc, run_id=run_id)
                raise
        return run
    return wrap


def record_failure(settings: Settings, source: str, ds: date, *, step: str, error: BaseException | str,
                   run_id: str | None) -> None:
    """Record a step's failure in the store; never raises (the store may be what failed: the error matters more)."""
    try:
        store = MetadataStore(settings.store_url)
        store.register_dataset(get_source(source))
        store.record_failure(source, ds, step=step, error=str(error), run_id=run_id)
    except Exception:
        log.exception("%s %s: could not record the %s failure in the metadata store", source, ds, step)


def plan_day(settings: Settings, ds: date, run_id: str | None = None, sources: list[str] | None = None) -> dict:
    """Which sources have something to ingest on `ds`: one cheap look at each landing folder, no file read.

    A source whose folder holds no entry is recorded as missing here (and its old outputs dropped), exactly as its
    ingest would; a required source is kept in `present` so that its ingest fails loudly. Anything in a folder
    counts as present: ingest then reads it, or names what should not be there (LandingFolderError).
    """
    from shopflow.ingest.folder import has_entries
    from shopflow.sources import load_sources

    specs = load_sources()
    names = list(specs) if sources is None else sources
    present, missing = [], []
    store = None
    for name in names:
        folder = lake.landing_dir(settings, name, ds)
        if has_entries(folder) or specs[name].required:
            present.append(name)
            continue
        store = store or _store(settings)
        store.register_dataset(specs[name])
        store.record_missing(name, ds, run_id)
        lake.drop_outputs(settings, name, ds)
        missing.append(name)
    log.info("%s: landing files for %s; nothing landed for %s (recorded as missing)", ds,
             ", ".join(present) or "no source", ", ".join(missing) or "no source")
    return {"ds": ds.isoformat(), "present": present, "missing": missing}


@_records_failure("ingest")
def ingest(settings: Settings, source: str, ds: date, run_id: str | None = None) -> dict:
    """Read the landing files of (source, ds), pseudonymise user ids, write the raw Parquet and record the files.

    Raises PartitionMissing (recorded) when the day has no landing files, RequiredPartitionMissing for a
    required source, LandingFolderError (naming the files) when the folder holds a file that is not exactly one
    declared landing file, and LandingFileError (naming file and line) for an unreadable file.
    """
    started = time.perf_counter()
    spec = get_source(source)
    store = _store(settings)
    store.register_dataset(spec)
    folder = lake.landing_dir(settings, source, ds)
    landed = partition_files(folder, spec)
    if not landed:
        store.record_missing(source, ds, run_id)
        lake.drop_outputs(settings, source, ds)
        log.warning("%s %s: no landing files in %s; partition recorded as missing", source, ds, folder)
        if spec.required:
            raise RequiredPartitionMissing(f"{source} is required but has no landing files for {ds} in {folder}")
        raise PartitionMissing(f"{source} {ds}: no landing files")
    present = {landing.spec.name for landing in landed}
    missing_required = [f.name for f in spec.files if not f.optional and f.name not in present]
    if missing_required:
        raise RequiredPartitionMissing(f"{source} {ds}: landing files {missing_required} missing in {folder}")
    fingerprint = _checked_key_fingerprint(store, spec, ds, settings)

    combine = getattr(cleaner_of(spec), "combine", None)
    load_kind = _load_kind(spec, sorted(present))
    chunks = _chunks_of(spec, landed, combine)
    if chunks is not None and chunks.second is not None:
        return _ingest_in_chunks(settings, spec, ds, run_id, store, folder, chunks, started, load_kind=load_kind,
                                 fingerprint=fingerprint)

    per_file: dict[str, list[pd.DataFrame]] = {}
    files, rows_reference = [], 0
    for landing in landed:
        if chunks is not None:  # the day's one file, read in its one chunk
            frame = chunks.first
            facts = chunks.files[0][0]
            chunks = None
        else:
            facts, frame = read_landing(landing.path, landing.spec)
        per_file.setdefault(landing.spec.name, []).append(frame)
        files.append({**facts.as_dict(), "rows": len(frame)})
        if landing.spec.name in spec.lookup_files:
            rows_reference += len(frame)
        log.info("%s %s: read %s (%s, %s bytes, sha256 %s…): %s rows", source, ds, landing.path,
                 landing.spec.resolved_format, f"{facts.size_bytes:,}", facts.sha256[:12], f"{len(frame):,}")
        del frame
    # A glob that matched several files gives one frame per declared file (its files in name order).
    frames = {name: _concat(parts) for name, parts in per_file.items()}
    per_file.clear()
    raw = combine(frames) if combine else _concat(list(frames.values()))
    frames.clear()  # drop the per-file frames before the next copies are made
    raw = _pseudonymise(raw, spec, settings)

    rows_in = len(raw)
    raw_path = write_parquet_atomic(raw, lake.lake_file(settings, "raw", source, ds), **RAW_ZONE_OPTIONS)
    del raw
    release_unused_memory()
    return _record_ingest(store, spec, ds, run_id, folder, files, rows_in, rows_reference, raw_path, started,
                          load_kind=load_kind, fingerprint=fingerprint)


def _record_ingest(store: MetadataStore, spec: SourceSpec, ds: date, run_id: str | None, folder, files: list[dict],
                   rows_in: int, rows_reference: int, raw_path, started: float, *, load_kind: str,
                   fingerprint: str | None) -> dict:
    source = spec.name
    seconds = time.perf_counter() - started
    store.record_ingest(source, ds, run_id=run_id, load_kind=load_kind, files=files, rows_in=rows_in,
                        raw_path=str(raw_path), seconds=seconds, rows_reference=rows_reference,
                        key_fingerprint=fingerprint)
    store.record_lineage(source, ds, task="ingest", inputs=[str(folder / f["name"]) for f in files],
                         outputs=[str(raw_path)], run_id=run_id)
    log.info("%s %s: ingested %s rows (%s load) into %s in %.2fs", source, ds, f"{rows_in:,}", load_kind, raw_path, seconds)
    if rows_reference:
        log.info("%s %s: %s reference rows in the lookup files %s (joined onto the rows, not cleaned themselves)",
                 source, ds, f"{rows_reference:,}", spec.lookup_files)
    return {"dataset": source, "ds": ds.isoformat(), "rows_in": rows_in, "rows_reference": rows_reference,
            "raw_path": str(raw_path),
            "load_kind": load_kind, "files": [f["name"] for f in files]}


class _Chunks:
    """The day's landing files read in chunks (`read_landing_chunks`), one file after the other in the order the
    whole read concatenates them; `files` gets each file's facts and rows once it is read through. The first two
    frames are read on creation, so that a day of one file in one chunk (`second` None) is read whole like any
    other; `all()` gives every frame once, holding none after it is handed over."""

    def __init__(self, landed: list, limits: ReadLimits):
        self.landed, self.files = landed, []
        self._limits = limits
        self._frames = self._read()
        self.first = next(self._frames)
        self.second = next(self._frames, None)

    def _read(self):
        for landing in self.landed:
            frames = read_landing_chunks(landing.path, landing.spec, self._limits)
            rows = 0
            while True:
                try:
                    frame = next(frames)
                except StopIteration as done:
                    self.files.append((done.value, rows))
                    break
                rows += len(frame)
                yield frame
                del frame  # not held while the next chunk is parsed

    def all(self):
        read = [self.first, self.second]
        self.first = self.second = None
        while read:
            yield read.pop(0)
        yield from self._frames


def _chunks_of(spec: SourceSpec, landed: list, combine) -> _Chunks | None:
    """The day's landing files read in chunks, when they are files of one declared file (line-based or Parquet),
    joined with nothing (one file, or a glob's files whose bytes on disk exceed a chunk, SHOPFLOW_CHUNK_BYTES); None
    for a day read whole. Only a day bigger than one chunk then streams through the steps."""
    names = {landing.spec.name for landing in landed}
    if (len(names) != 1 or combine is not None or spec.lookup_files
            or not all(can_stream(landing.spec) for landing in landed)):
        return None
    limits = ReadLimits.from_environment()
    if len(landed) > 1 and sum(size_of(landing.path) for landing in landed) <= limits.chunk_bytes:
        return None  # several small files: read whole, as before
    return _Chunks(landed, limits)


def _ingest_in_chunks(settings: Settings, spec: SourceSpec, ds: date, run_id: str | None, store: MetadataStore,
                      folder, chunks: _Chunks, started: float, *, load_kind: str, fingerprint: str | None) -> dict:
    """Ingest a day bigger than one chunk: each chunk pseudonymised and written as one row group of the raw
    Parquet, so that memory holds a chunk or two, never the day. The raw file appears only once complete."""
    source = spec.name
    raw_path = lake.lake_file(settings, "raw", source, ds)
    with ParquetChunks(raw_path, **RAW_ZONE_OPTIONS) as raw:
        for number, frame in enumerate(chunks.all(), start=1):
            raw.write(_pseudonymise(frame.reset_index(drop=True), spec, settings))
            del frame
            seconds = time.perf_counter() - started
            log.info("%s %s: chunk %s (file %s of %s): %s rows so far (%s rows/s)", source, ds, number,
                     len(chunks.files) + 1, len(chunks.landed), f"{raw.rows:,}", f"{raw.rows / max(seconds, 1e-9):,.0f}")
    release_unused_memory()
    files = []
    for landing, (facts, rows) in zip(chunks.landed, chunks.files):
        log.info("%s %s: read %s (%s, %s bytes, sha256 %s…): %s rows", source, ds, landing.path,
                 landing.spec.resolved_format, f"{facts.size_bytes:,}", facts.sha256[:12], f"{rows:,}")
        files.append({**facts.as_dict(), "rows": rows})
    log.info("%s %s: %s rows in %s chunks", source, ds, f"{raw.rows:,}", number)
    return _record_ingest(store, spec, ds, run_id, folder, files, raw.rows, 0, raw_path, started,
                          load_kind=load_kind, fingerprint=fingerprint)


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if len(parts) == 1:  # what concat(ignore_index=True) gives for one frame, without copying it
        return parts[0].reset_index(drop=True)
    return pd.concat(parts, ignore_index=True)


def _checked_key_fingerprint(store: MetadataStore, spec: SourceSpec, ds: date, settings: Settings) -> str | None:
    """The pseudonymisation key's fingerprint (for a source with ids to pseudonymise). Fails when the dataset's other
    partitions carry another key's fingerprint (their tokens would not join with this day's), unless a new key epoch
    was started (`python -m shopflow rekey --new-epoch`) or SHOPFLOW_ALLOW_REKEY is true."""
    if not spec.pseudonymise:
        return None
    fingerprint = key_fingerprint(settings.resolve_pseudonym_key())
    others = store.key_fingerprints(spec.name, exclude_ds=ds) - {fingerprint}
    if others and not settings.allow_rekey:
        raise ConfigurationError(
            f"{spec.name} {ds}: the pseudonymisation key changed: earlier partitions of {spec.name} were pseudonymised "
            f"under the key with fingerprint {', '.join(sorted(others))}, the current key's is {fingerprint}, so their "
            "tokens would not join. Restore the earlier key, or start a new key epoch with "
            "`python -m shopflow rekey --new-epoch` (or set SHOPFLOW_ALLOW_REKEY=true for this run)")
    return fingerprint


def _pseudonymise(raw: pd.DataFrame, spec: SourceSpec, settings: Settings) -> pd.DataFrame:
    if not spec.pseudonymise:
        return raw
    from shopflow.sources.cleaning import INVALID_ID_TOKEN, ids_with_control_characters

    invalid = {column: ids_with_control_characters(raw[column]) for column in spec.pseudonymise if column in raw}
    raw = pseudonymise_columns(raw, spec.pseudonymise, settings.resolve_pseudonym_key())
    for column, rows in invalid.items():  # marked, not tokenised: clean quarantines them (control_character_in_id)
        if rows.any():
            raw[spec.pseudonymise[column]] = raw[spec.pseudonymise[column]].mask(rows, INVALID_ID_TOKEN)
    return raw


def _load_kind(spec: SourceSpec, file_names: list[str]) -> str:
    if spec.load_kind == "snapshot_or_delta":
        return "snapshot" if spec.snapshot_file in file_names else "delta"
    return spec.load_kind


@_records_failure("clean")
def clean(settings: Settings, source: str, ds: date, run_id: str | None = None) -> dict:
    """Clean the raw partition into clean + quarantine Parquet and record the row ledger (which must add up)."""
    started = time.perf_counter()
    spec = get_source(source)
    store = _store(settings)
    raw_path = lake.lake_file(settings, "raw", source, ds)
    cleaner = cleaner_of(spec)
    as_dictionary = getattr(cleaner, "RAW_TEXT_AS_DICTIONARY", False)
    clean_path = lake.lake_file(settings, "clean", source, ds)
    quarantine_path = lake.lake_file(settings, "quarantine", source, ds)
    if getattr(cleaner, "ROW_LOCAL", False) and parquet_row_groups(raw_path) > 1:
        ledger = _clean_in_chunks(spec, ds, raw_path, clean_path, quarantine_path, as_dictionary, started).as_dict()
        return _record_clean(store, spec, ds, run_id, ledger, raw_path, clean_path, quarantine_path, started)
    # A loader rather than the frame, so that clean_partition holds the only reference and can drop the raw rows
    # once the typed rows and the quarantine are built.
    result = clean_partition(spec, lambda: read_parquet(raw_path, text_as_dictionary=as_dictionary), ds)
    write_parquet_atomic(result.clean, clean_path)
    write_parquet_atomic(result.quarantine, quarantine_path)
    ledger = result.ledger.as_dict()
    del result
    release_unused_memory()
    return _record_clean(store, spec, ds, run_id, ledger, raw_path, clean_path, quarantine_path, started)


def _clean_in_chunks(spec: SourceSpec, ds: date, raw_path, clean_path, quarantine_path, as_dictionary: bool,
                     started: float) -> Ledger:
    """Clean a raw partition written in chunks one row group at a time (a cleaner whose rules look at one row at a
    time: ROW_LOCAL). A row whose key an earlier chunk kept is a duplicate, as in one pass over the day (SeenKeys);
    the ledger is the chunks' sum, checked for the whole day. The outputs appear only once complete."""
    seen = SeenKeys()
    ledger = Ledger(rows_in=0, rows_clean=0, rows_duplicate=0)
    with ParquetChunks(clean_path) as clean_out, ParquetChunks(quarantine_path) as quarantine_out:
        for number, chunk in enumerate(read_row_groups(raw_path, text_as_dictionary=as_dictionary), start=1):
            result = clean_partition(spec, chunk, ds, seen=seen)
            del chunk
            clean_out.write(result.clean)
            quarantine_out.write(result.quarantine)
            ledger = ledger + result.ledger
            del result
            seconds = time.perf_counter() - started
            log.info("%s %s: chunk %s: %s rows in so far, %s clean, %s keys kept (%s rows/s)", spec.name, ds, number,
                     f"{ledger.rows_in:,}", f"{ledger.rows_clean:,}", f"{len(seen):,}",
                     f"{ledger.rows_in / max(seconds, 1e-9):,.0f}")
    release_unused_memory()
    return ledger.check(f"{spec.name} {ds}")


def _record_clean(store: MetadataStore, spec: SourceSpec, ds: date, run_id: str | None, ledger: dict, raw_path,
                  clean_path, quarantine_path, started: float) -> dict:
    source = spec.name
    seconds = time.perf_counter() - started
    store.record_clean(source, ds, run_id=run_id, ledger=ledger, clean_path=str(clean_path),
                       quarantine_path=str(quarantine_path), seconds=seconds)
    store.record_lineage(source, ds, task="clean", inputs=[str(raw_path)],
                         outputs=[str(clean_path), str(quarantine_path)], run_id=run_id)
    log.info("%s %s: %s rows in -> %s clean, %s quarantined, %s duplicate (%.2fs)", source, ds,
             f"{ledger['rows_in']:,}", f"{ledger['rows_clean']:,}", f"{ledger['rows_quarantined']:,}",
             f"{ledger['rows_duplicate']:,}", seconds)
    for reason, count in ledger["quarantined_by_reason"].items():
        log.info("%s %s: quarantined %s rows: %s", source, ds, f"{count:,}", reason)
    return {"dataset": source, "ds": ds.isoformat(), **{k: v for k, v in ledger.items()}, "clean_path": str(clean_path),
            "quarantine_path": str(quarantine_path)}


@_records_failure("validate")
def validate(settings: Settings, source: str, ds: date, run_id: str | None = None) -> dict:
    """Run the dataset's GX suite on the clean partition; record every expectation; fail on a critical one."""
    from shopflow.validation.runner import validate_parquet

    started = time.perf_counter()
    store = _store(settings)
    clean_path = lake.lake_file(settings, "clean", source, ds)
    rows, results = validate_parquet(source, clean_path)
    seconds = time.perf_counter() - started
    store.record_validation(source, ds, run_id=run_id, suite=f"shopflow_{source}", results=results, seconds=seconds)
    store.record_lineage(source, ds, task="validate", inputs=[str(clean_path)], outputs=[f"validations:{source}/{ds}"],
                         run_id=run_id)
    failed_critical = [r for r in results if r["severity"] == "critical" and not r["success"]]
    failed_warning = [r for r in results if r["severity"] == "warning" and not r["success"]]
    for r in results:
        seen = r["observed_value"] if r["observed_value"] is not None else f"{r['unexpected_percent'] or 0:.2f}% unexpected"
        log.info("%s %s: %-8s %-4s %s(%s) observed=%s", source, ds, r["severity"], "ok" if r["success"] else "FAIL",
                 r["expectation"], r["column_name"] or "", _short(seen))
    log.info("%s %s: %s expectations, %s critical failures, %s warnings (%.2fs)", source, ds, len(results),
             len(failed_critical), len(failed_warning), seconds)
    summary = {"dataset": source, "ds": ds.isoformat(), "rows": rows, "expectations": len(results),
               "critical_failures": len(failed_critical), "warning_failures": len(failed_warning),
               "success": not failed_critical}
    if failed_critical:
        names = ", ".join(f"{r['expectation']}({r['column_name'] or ''})" for r in failed_critical)
        raise ValidationFailed(f"{source} {ds}: critical expectations failed: {names}")
    return summary


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."

"""Reads and writes of the metadata store. Re-recording a partition replaces its rows, never duplicates them."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
import weakref
from datetime import date, datetime, timezone
from functools import cache
from typing import Iterable, Iterator

from sqlalchemy import Engine, and_, create_engine, delete, event, insert, not_, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, selectinload

from shopflow.common.redaction import redact
from shopflow.config.settings import ConfigurationError, db_timeouts
from shopflow.sources import SourceSpec
from shopflow.store import migrate
from shopflow.store.models import (
    Dataset,
    DuplicateRun,
    LineageEdge,
    Partition,
    PartitionFile,
    PartitionStatus,
    RepairAudit,
    RepairRun,
    Report,
    ReviewDecision,
    SearchIntent,
    Validation,
    product_key_text,
)

# How long past its statement_timeout the client still waits for a frozen server's answer (shopflow.store.deadline).
ANSWER_GRACE_S = 10.0


def connect_args_for(url: str, connect_timeout_s: float = 10.0, statement_timeout_s: float = 30.0) -> dict:
    """The DB-API connect arguments of a store URL. PostgreSQL gets a connect timeout, a statement timeout, TCP
    keepalives and a client-side deadline of statement timeout + ANSWER_GRACE_S on every round trip, so that a
    vanished, stopped or frozen server fails a call instead of hanging it; SQLite gets its busy timeout."""
    if url.startswith("sqlite"):
        return {"timeout": 60}
    if make_url(url).get_backend_name() == "postgresql":
        from shopflow.store.deadline import connection_factory

        return {"connect_timeout": max(1, round(connect_timeout_s)),
                "options": f"-c statement_timeout={round(statement_timeout_s * 1000)}",
                "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
                "connection_factory": connection_factory(statement_timeout_s + ANSWER_GRACE_S, connect_timeout_s)}
    return {}


@cache
def engine_for(url: str, connect_timeout_s: float = 10.0, statement_timeout_s: float = 30.0) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args=connect_args_for(url))

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # parallel Airflow tasks share one SQLite file
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True,
                           connect_args=connect_args_for(url, connect_timeout_s, statement_timeout_s))
    if engine.dialect.name == "postgresql":  # the checkout ping with its own deadline (shopflow.store.deadline)
        from shopflow.store import deadline

        engine.dialect.do_ping = functools.partial(deadline.ping, engine.dialect.do_ping)
    return engine


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _lock_key(*parts) -> int:
    """A signed 64-bit key (what pg_advisory_xact_lock takes) for a partition or a dataset name."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_for_write(session: Session, *parts) -> None:
    """Serialise the writers of one partition (or dataset), held until the session's transaction ends: on PostgreSQL
    a transaction-level advisory lock; on SQLite the database's write lock, taken first (a no-op UPDATE) so that the
    transaction's reads come after it and a second writer waits (busy timeout) instead of failing mid-way."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(*parts)})
    elif dialect == "sqlite":
        session.execute(text("UPDATE datasets SET id = id WHERE 0 = 1"))


# One lock per key for the threads of this process (see MetadataStore.partition_lock); a key's lock lives while some
# thread holds or awaits it.
_THREAD_LOCKS: "weakref.WeakValueDictionary[int, threading.Lock]" = weakref.WeakValueDictionary()
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(key: int) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        lock = _THREAD_LOCKS.get(key)
        if lock is None:
            lock = _THREAD_LOCKS[key] = threading.Lock()
        return lock


def _last_good(partition: "Partition") -> dict | None:
    """What the partition's last good (validated) run left: kept, as `timings["last_good"]`, while a later run of
    the partition is failing, so that its outputs stay visible as the last good ones rather than as current."""
    if partition.status == PartitionStatus.VALIDATED:
        return {"status": str(partition.status), "run_id": partition.airflow_run_id,
                "at": partition.updated_at.isoformat() if partition.updated_at else None,
                "rows_in": partition.rows_in, "rows_clean": partition.rows_clean,
                "rows_quarantined": partition.rows_quarantined, "clean_path": partition.clean_path}
    return (partition.timings or {}).get("last_good")


class MetadataStore:
    def __init__(self, url: str):
        self.url = url
        self.engine = engine_for(url, *db_timeouts())

    def check_schema(self) -> None:
        """Fail with a clear message when the store has not been migrated to this code's schema."""
        current, head = migrate.current_revision(self.url), migrate.head_revision()
        if current != head:
            raise ConfigurationError(
                f"metadata store at {self.engine.url.render_as_string(hide_password=True)} is at schema revision "
                f"{current!r}, the code needs {head!r}: run `python -m shopflow db upgrade`"
            )

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def partition_lock(self, *parts) -> Iterator[None]:
        """Hold the write lock of `parts` (e.g. "repaired", dataset, ds) for the block, for work outside the store
        such as the read-modify-write of a lake file: one holder at a time among the threads of this process (a
        lock per key, taken first, so that a waiting thread holds no database connection) and among processes
        (`lock_for_write` in a transaction that lasts the block: PostgreSQL's advisory lock of the key, SQLite's
        database write lock). The block may read the store but must not write it on SQLite, whose one write lock
        this transaction holds."""
        with _thread_lock(_lock_key(*parts)), self.session() as session, session.begin():
            lock_for_write(session, *parts)
            yield

    # ---- datasets -------------------------------------------------------------------------------------------
    def register_dataset(self, spec: SourceSpec) -> int:
        with self.session() as session, session.begin():
            lock_for_write(session, "dataset", spec.name)
            dataset = session.scalar(select(Dataset).where(Dataset.name == spec.name))
            if dataset is None:
                dataset = Dataset(name=spec.name)
                session.add(dataset)
            dataset.owner = spec.owner
            dataset.description = spec.description
            dataset.tags = list(spec.tags)
            dataset.schema = spec.clean_schema
            dataset.timezone = spec.timezone
            dataset.generated = spec.generated
            session.flush()
            return dataset.id

    def _partition(self, session: Session, dataset: str, ds: date) -> Partition:
        lock_for_write(session, dataset, ds)  # first in every partition write: one writer of a partition at a time
        dataset_row = session.scalar(select(Dataset).where(Dataset.name == dataset))
        if dataset_row is None:
            raise KeyError(f"dataset {dataset!r} is not registered in the metadata store")
        partition = session.scalar(
            select(Partition).where(Partition.dataset_id == dataset_row.id, Partition.ds == ds)
        )
        if partition is None:
            partition = Partition(dataset_id=dataset_row.id, ds=ds, status="new", updated_at=_now())
            session.add(partition)
            session.flush()
        return partition

    # ---- partition lifecycle --------------------------------------------------------------------------------
    def record_missing(self, dataset: str, ds: date, run_id: str | None) -> None:
        with self.session() as session, session.begin():
            partition = self._partition(session, dataset, ds)
            self._reset(session, partition)
            partition.status = PartitionStatus.MISSING
            partition.airflow_run_id = run_id

    def record_ingest(
        self, dataset: str, ds: date, *, run_id: str | None, load_kind: str, files: Iterable[dict], rows_in: int,
        raw_path: str, seconds: float, rows_reference: int = 0, key_fingerprint: str | None = None,
    ) -> None:
        with self.session() as session, session.begin():
            partition = self._partition(session, dataset, ds)
            last_good = _last_good(partition)
            self._reset(session, partition)
            partition.status = PartitionStatus.INGESTED
            partition.load_kind = load_kind
            partition.rows_in = rows_in
            partition.rows_reference = rows_reference
            partition.raw_path = raw_path
            partition.airflow_run_id = run_id
            partition.timings = {"ingest": round(seconds, 3), **({"last_good": last_good} if last_good else {})}
            partition.files = [PartitionFile(**f) for f in files]
            partition.key_fingerprint = key_fingerprint

    def key_fingerprints(self, dataset: str, *, exclude_ds: date | None = None) -> set[str]:
        """The pseudonymisation key fingerprints the dataset's partitions (but `exclude_ds`) were recorded with."""
        with self.session() as session:
            query = (select(Partition.key_fingerprint).join(Dataset)
                     .where(Dataset.name == dataset, Partition.key_fingerprint.is_not(None)))
            if exclude_ds is not None:
                query = query.where(Partition.ds != exclude_ds)
            return set(session.scalars(query.distinct()))

    def start_key_epoch(self, dataset: str | None = None) -> dict[str, dict[str, int]]:
        """Forget the recorded key fingerprints (of one dataset, or all): the next ingest starts a new key epoch.
        Returns dataset -> fingerprint -> partitions that carried it."""
        with self.session() as session, session.begin():
            query = (select(Dataset.name, Partition.key_fingerprint).join(Dataset)
                     .where(Partition.key_fingerprint.is_not(None)))
            if dataset is not None:
                query = query.where(Dataset.name == dataset)
            found: dict[str, dict[str, int]] = {}
            for name, fingerprint in session.execute(query):
                found.setdefault(name, {}).setdefault(fingerprint, 0)
                found[name][fingerprint] += 1
            ids = select(Dataset.id).where(Dataset.name == dataset) if dataset is not None else None
            statement = update(Partition).where(Partition.key_fingerprint.is_not(None))
            if ids is not None:
                statement = statement.where(Partition.dataset_id.in_(ids))
            session.execute(statement.values(key_fingerprint=None).execution_options(synchronize_session=False))
            return found

    def record_clean(
        self, dataset: str, ds: date, *, run_id: str | None, ledger: dict, clean_path: str, quarantine_path: str,
        seconds: float,
    ) -> None:
        with self.session() as session, session.begin():
            partition = self._partition(session, dataset, ds)
            if partition.rows_in != ledger["rows_in"]:
                raise AssertionError(
                    f"{dataset} {ds}: ingest recorded {partition.rows_in} rows but clean read {ledger['rows_in']}"
                )
            session.execute(delete(Validation).where(Validation.partition_id == partition.id))
            partition.status = PartitionStatus.CLEANED
            partition.rows_clean = ledger["rows_clean"]
            partition.rows_quarantined = ledger["rows_quarantined"]
            partition.rows_duplicate = ledger["rows_duplicate"]
            partition.quarantined_by_reason = ledger["quarantined_by_reason"]
            partition.clean_path = clean_path
            partition.quarantine_path = quarantine_path
            partition.validation_success = None
            partition.critical_failures = partition.warning_failures = None
            partition.timings = {**(partition.timings or {}), "clean": round(seconds, 3)}
            partition.airflow_run_id = run_id
            partition.updated_at = _now()

    def record_validation(
        self, dataset: str, ds: date, *, run_id: str | None, suite: str, results: list[dict], seconds: float
    ) -> None:
        with self.session() as session, session.begin():
            partition = self._partition(session, dataset, ds)
            session.execute(delete(Validation).where(Validation.partition_id == partition.id))
            for result in results:
                session.add(Validation(partition_id=partition.id, suite=suite, airflow_run_id=run_id, **result))
            critical = sum(1 for r in results if r["severity"] == "critical" and not r["success"])
            warnings = sum(1 for r in results if r["severity"] == "warning" and not r["success"])
            partition.critical_failures = critical
            partition.warning_failures = warnings
            partition.validation_success = critical == 0
            partition.status = PartitionStatus.VALIDATED if critical == 0 else PartitionStatus.FAILED_VALIDATION
            partition.timings = {**(partition.timings or {}), "validate": round(seconds, 3)}
            if critical == 0:  # this run is the good one now
                partition.timings.pop("last_good", None)
            partition.error = None
            partition.airflow_run_id = run_id
            partition.updated_at = _now()

    def record_failure(self, dataset: str, ds: date, *, step: str, error: str, run_id: str | None) -> None:
        with self.session() as session, session.begin():
            partition = self._partition(session, dataset, ds)
            last_good = _last_good(partition)
            if last_good:
                partition.timings = {**(partition.timings or {}), "last_good": last_good}
            # A failed critical expectation was recorded as such by validate: keep that more precise status.
            if not (step == "validate" and partition.status == PartitionStatus.FAILED_VALIDATION):
                partition.status = PartitionStatus.FAILED
            partition.error = redact(f"{step}: {error}", limit=4000)  # no secrets, no environment dumps
            partition.airflow_run_id = run_id
            partition.updated_at = _now()

    def _reset(self, session: Session, partition: Partition) -> None:
        session.execute(delete(Validation).where(Validation.partition_id == partition.id))
        session.execute(delete(PartitionFile).where(PartitionFile.partition_id == partition.id))
        session.refresh(partition)
        for column in (
            "load_kind", "rows_in", "rows_clean", "rows_quarantined", "rows_duplicate", "quarantined_by_reason",
            "raw_path", "clean_path", "quarantine_path", "validation_success", "critical_failures",
            "warning_failures", "timings", "error", "key_fingerprint",
        ):
            setattr(partition, column, None)
        partition.updated_at = _now()

    def record_lineage(
        self, dataset: str, ds: date, *, task: str, inputs: list[str], outputs: list[str], run_id: str | None
    ) -> None:
        with self.session() as session, session.begin():
            lock_for_write(session, dataset, ds)
            dataset_id = session.scalar(select(Dataset.id).where(Dataset.name == dataset))
            edge = session.scalar(
                select(LineageEdge).where(
                    LineageEdge.dataset_id == dataset_id, LineageEdge.ds == ds, LineageEdge.task == task
                )
            )
            if edge is None:
                edge = LineageEdge(dataset_id=dataset_id, ds=ds, task=task)
                session.add(edge)
            edge.inputs, edge.outputs, edge.airflow_run_id, edge.recorded_at = inputs, outputs, run_id, _now()

    # ---- reads ----------------------------------------------------------------------------------------------
    def partitions(self, dataset: str | None = None, ds: date | None = None) -> list[Partition]:
        with self.session() as session:
            query = (
                select(Partition)
                .join(Dataset)
                .options(selectinload(Partition.dataset), selectinload(Partition.files))
                .order_by(Dataset.name, Partition.ds)
            )
            if dataset:
                query = query.where(Dataset.name == dataset)
            if ds:
                query = query.where(Partition.ds == ds)
            return list(session.scalars(query))

    def validations(self, dataset: str, ds: date) -> list[Validation]:
        with self.session() as session:
            return list(
                session.scalars(
                    select(Validation)
                    .join(Partition)
                    .join(Dataset)
                    .where(Dataset.name == dataset, Partition.ds == ds)
                    .order_by(Validation.id)
                )
            )

    def lineage(self, dataset: str, ds: date) -> list[LineageEdge]:
        with self.session() as session:
            return list(
                session.scalars(
                    select(LineageEdge)
                    .join(Dataset)
                    .where(Dataset.name == dataset, LineageEdge.ds == ds)
                    .order_by(LineageEdge.task)
                )
            )

    # ---- catalogue repairs ----------------------------------------------------------------------------------
    def record_repair(self, ds: date, *, run: dict, audit: Iterable[dict], run_id: str | None) -> None:
        """Replace the day's repair run and audit trail with this run's, in one transaction.

        Reverted fills are the exception: a person's revert is history, so those audit rows stay.
        """
        now = _now()
        with self.session() as session, session.begin():
            session.execute(delete(RepairAudit).where(
                RepairAudit.ds == ds, not_(and_(RepairAudit.action == "fill", RepairAudit.reverted_at.is_not(None)))))
            rows = [{"label_quality": None, **row, "ds": ds, "airflow_run_id": run_id, "reverted_at": None,
                     "recorded_at": now} for row in audit]
            if rows:
                session.execute(insert(RepairAudit), rows)
            record = session.scalar(select(RepairRun).where(RepairRun.ds == ds))
            if record is None:
                record = RepairRun(ds=ds)
                session.add(record)
            for column, value in run.items():
                setattr(record, column, value)
            record.airflow_run_id, record.recorded_at = run_id, now

    def repair_run(self, ds: date) -> RepairRun | None:
        with self.session() as session:
            return session.scalar(select(RepairRun).where(RepairRun.ds == ds))

    def repair_audit(self, ds: date, action: str | None = None) -> list[RepairAudit]:
        with self.session() as session:
            query = select(RepairAudit).where(RepairAudit.ds == ds)
            if action:
                query = query.where(RepairAudit.action == action)
            return list(session.scalars(query.order_by(RepairAudit.uniq_id, RepairAudit.action, RepairAudit.id)))

    def mark_reverted(self, ds: date, uniq_ids: Iterable[str], at: datetime | None = None, *, field: str | None = None,
                      counter: str = "rows_filled", moves_to: str | None = "rows_unchanged") -> int:
        """Mark the day's not yet reverted fills of these products (of `field` only, when given) reverted; the
        run's `counter` loses them and `moves_to` (when given) gains them: a reverted category fill moves from
        filled to unchanged. Returns how many fills were marked."""
        ids = sorted({product_key_text(uid) for uid in uniq_ids})
        if not ids:
            return 0
        with self.session() as session, session.begin():
            marked = 0
            for start in range(0, len(ids), 500):  # keep IN lists short
                query = update(RepairAudit).where(RepairAudit.ds == ds, RepairAudit.action == "fill",
                                                  RepairAudit.reverted_at.is_(None),
                                                  RepairAudit.uniq_id.in_(ids[start:start + 500]))
                if field is not None:
                    query = query.where(RepairAudit.field == field)
                marked += session.execute(
                    query.values(reverted_at=at or _now()).execution_options(synchronize_session=False)).rowcount
            record = session.scalar(select(RepairRun).where(RepairRun.ds == ds))
            if record is not None and marked:
                setattr(record, counter, (getattr(record, counter) or 0) - marked)
                if moves_to is not None:
                    setattr(record, moves_to, (getattr(record, moves_to) or 0) + marked)
            return marked

    def repair_runs(self) -> list[RepairRun]:
        """Every day's repair run, newest day first."""
        with self.session() as session:
            return list(session.scalars(select(RepairRun).order_by(RepairRun.ds.desc())))

    # ---- review decisions (shopflow.governance.review) -----------------------------------------------------------------
    _DECISION_KEYS = ("decision", "value", "value_l2")
    _HISTORY_KEYS = ("decision", "value", "value_l2", "reviewer", "via", "decided_at")

    def record_review_decisions(self, rows: Iterable[dict], at: datetime | None = None) -> dict:
        """Insert or replace reviewers' decisions (one per source, ds, uniq_id, field) in one transaction.

        Deciding what is already decided changes nothing (idempotent); a different decision replaces the current
        one (revision + 1) and the replaced one is appended to `history`. Returns how many were recorded,
        replaced and unchanged."""
        now = at or _now()
        rows = list(rows)
        counts = {"recorded": 0, "replaced": 0, "unchanged": 0}
        days = sorted({(row["source"], row["ds"]) for row in rows})
        with contextlib.ExitStack() as held:
            # Reviewers deciding the same day at once: one at a time, so that two first decisions of one product
            # never both insert, and a replaced decision always lands in the history. The threads of this process
            # (the api-server's request threads) queue on a lock of their own first, holding no pooled connection
            # while they wait: sixteen waiting requests would otherwise exhaust the pool and answer 503.
            for source, ds in days:
                held.enter_context(_thread_lock(_lock_key("review_decisions", source, ds)))
            session = held.enter_context(self.session())
            held.enter_context(session.begin())
            for source, ds in days:
                lock_for_write(session, "review_decisions", source, ds)
            for row in rows:
                current = session.scalar(select(ReviewDecision).where(
                    ReviewDecision.source == row["source"], ReviewDecision.ds == row["ds"],
                    ReviewDecision.uniq_id == row["uniq_id"], ReviewDecision.field == row["field"]))
                if current is None:
                    session.add(ReviewDecision(**row, revision=1, history=[], decided_at=now))
                    counts["recorded"] += 1
                    continue
                if all(getattr(current, key) == row.get(key) for key in self._DECISION_KEYS):
                    counts["unchanged"] += 1
                    continue
                previous = {key: getattr(current, key) for key in self._HISTORY_KEYS}
                previous["decided_at"] = current.decided_at.isoformat()
                for column, value in row.items():
                    setattr(current, column, value)
                current.history = [*(current.history or []), previous]
                current.revision += 1
                current.decided_at = now
                counts["replaced"] += 1
        return counts

    def review_decisions(self, source: str | None = None, ds: date | None = None) -> list[ReviewDecision]:
        """The current decisions (of a source, of a day), by day, product and field."""
        with self.session() as session:
            query = select(ReviewDecision)
            if source is not None:
                query = query.where(ReviewDecision.source == source)
            if ds is not None:
                query = query.where(ReviewDecision.ds == ds)
            return list(session.scalars(query.order_by(ReviewDecision.ds, ReviewDecision.uniq_id,
                                                       ReviewDecision.field)))

    # ---- search intents -------------------------------------------------------------------------------------
    def record_search_intents(self, ds: date, rows: Iterable[dict], *, model_version: int,
                              run_id: str | None) -> int:
        """Replace the day's query -> category attributions (rows: query, searches, category, confidence)."""
        records = [{**row, "ds": ds, "model_version": model_version, "airflow_run_id": run_id} for row in rows]
        with self.session() as session, session.begin():
            session.execute(delete(SearchIntent).where(SearchIntent.ds == ds))
            if records:
                session.execute(insert(SearchIntent), records)
        return len(records)

    def search_intents(self, ds: date) -> list[SearchIntent]:
        with self.session() as session:
            return list(session.scalars(select(SearchIntent).where(SearchIntent.ds == ds)
                                        .order_by(SearchIntent.searches.desc(), SearchIntent.query)))

    # ---- catalogue duplicates -------------------------------------------------------------------------------
    def record_duplicates(self, source: str, ds: date, *, run: dict, run_id: str | None) -> None:
        """Insert or replace the near-duplicate run of a catalogue day (columns of DuplicateRun)."""
        with self.session() as session, session.begin():
            record = session.scalar(select(DuplicateRun).where(DuplicateRun.source == source, DuplicateRun.ds == ds))
            if record is None:
                record = DuplicateRun(source=source, ds=ds)
                session.add(record)
            for column, value in run.items():
                setattr(record, column, value)
            record.airflow_run_id, record.recorded_at = run_id, _now()

    def duplicate_run(self, source: str, ds: date) -> DuplicateRun | None:
        with self.session() as session:
            return session.scalar(select(DuplicateRun).where(DuplicateRun.source == source, DuplicateRun.ds == ds))

    def latest_duplicate_run(self, source: str, ds: date) -> DuplicateRun | None:
        """The catalogue's latest duplicate run on or before `ds` (what a report of that day shows)."""
        with self.session() as session:
            return session.scalar(select(DuplicateRun).where(DuplicateRun.source == source, DuplicateRun.ds <= ds)
                                  .order_by(DuplicateRun.ds.desc()).limit(1))

    # ---- reports --------------------------------------------------------------------------------------------
    def record_report(self, ds: date, *, status: str, datasets: dict, summary: dict, html_path: str,
                      json_path: str, html_sha256: str, json_sha256: str, run_id: str | None,
                      generated_at: datetime | None = None) -> None:
        """Insert or replace the report of the day."""
        with self.session() as session, session.begin():
            record = session.scalar(select(Report).where(Report.ds == ds))
            if record is None:
                record = Report(ds=ds)
                session.add(record)
            record.status, record.datasets, record.summary = status, datasets, summary
            record.html_path, record.json_path = html_path, json_path
            record.html_sha256, record.json_sha256 = html_sha256, json_sha256
            record.airflow_run_id, record.generated_at = run_id, generated_at or _now()

    def report(self, ds: date) -> Report | None:
        with self.session() as session:
            return session.scalar(select(Report).where(Report.ds == ds))

    def report_for_run(self, run_id: str) -> Report | None:
        with self.session() as session:
            return session.scalar(select(Report).where(Report.airflow_run_id == run_id))

    def reports(self, dataset: str | None = None) -> list[Report]:
        """All reports, newest day first; with a dataset, only the days on which it had a partition."""
        with self.session() as session:
            rows = list(session.scalars(select(Report).order_by(Report.ds.desc())))
        return [row for row in rows
                if dataset is None or (row.datasets or {}).get(dataset, "missing") not in ("missing", "not run")]

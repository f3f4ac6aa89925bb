"""Settings: every location, URL and secret comes from the environment, with embedded defaults.

Which variables, their types and defaults: `shopflow.config.options` (the catalogue; docs/settings.md shows it).
`Settings.from_env` validates every SHOPFLOW_* variable that is set (`check_environment`), so each entry point
(CLI, operators, UI, DAG parsing) fails at startup on a bad value, naming the variable.

With SHOPFLOW_STORAGE_URL set (e.g. s3://bucket/prefix), the landing zone, lake, models and reports are
`<url>/landing`, `<url>/lake`, `<url>/models` and `<url>/reports` (UPaths) and the four *_DIR variables are ignored;
SHOPFLOW_HOME stays local (the SQLite store, the key file, the model cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from shopflow.common import storage
from shopflow.common.errors import ConfigurationError
from shopflow.common.storage import StoragePath
from shopflow.config.options import check_environment, default, value

CONNECT_TIMEOUT, STATEMENT_TIMEOUT = "SHOPFLOW_DB_CONNECT_TIMEOUT_S", "SHOPFLOW_DB_STATEMENT_TIMEOUT_S"
DB_TIMEOUT_DEFAULTS = {CONNECT_TIMEOUT: default(CONNECT_TIMEOUT), STATEMENT_TIMEOUT: default(STATEMENT_TIMEOUT)}
DATA_DIRS = {"landing": "SHOPFLOW_LANDING_DIR", "lake": "SHOPFLOW_LAKE_DIR", "models": "SHOPFLOW_MODELS_DIR",
             "reports": "SHOPFLOW_REPORTS_DIR"}


def db_timeouts(env: Mapping[str, str] | None = None) -> tuple[float, float]:
    """(connect timeout, statement timeout) of the metadata store in seconds, from the environment."""
    return value(CONNECT_TIMEOUT, env), value(STATEMENT_TIMEOUT, env)


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
    db_connect_timeout_s: float = default(CONNECT_TIMEOUT)
    db_statement_timeout_s: float = default(STATEMENT_TIMEOUT)
    allow_rekey: bool = default("SHOPFLOW_ALLOW_REKEY")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """The settings of `env` (default: the process environment), every SHOPFLOW_* variable of it validated
        first: one ConfigurationError names each bad one."""
        env = dict(os.environ if env is None else env)
        check_environment(env)
        home = Path(value("SHOPFLOW_HOME", env)).resolve()
        url = value("SHOPFLOW_STORAGE_URL", env)

        def data_dir(name: str) -> StoragePath:
            if url is None:
                return Path(value(DATA_DIRS[name], env)).resolve()
            try:
                return storage.location(url, name)
            except ValueError as exc:
                raise ConfigurationError(f"SHOPFLOW_STORAGE_URL: {exc}") from None

        connect_timeout, statement_timeout = db_timeouts(env)
        return cls(
            home=home,
            source_data=Path(value("SHOPFLOW_SOURCE_DATA", env)).resolve(),
            landing_dir=data_dir("landing"),
            lake_dir=data_dir("lake"),
            models_dir=data_dir("models"),
            reports_dir=data_dir("reports"),
            store_url=value("SHOPFLOW_STORE_URL", env),
            pseudonym_key=value("SHOPFLOW_PSEUDONYM_KEY", env),
            pseudonym_key_file=Path(value("SHOPFLOW_PSEUDONYM_KEY_FILE", env)),
            storage_url=url,
            sources_file=value("SHOPFLOW_SOURCES", env),
            db_connect_timeout_s=connect_timeout,
            db_statement_timeout_s=statement_timeout,
            allow_rekey=value("SHOPFLOW_ALLOW_REKEY", env),
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

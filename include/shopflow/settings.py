"""Settings: every location, URL and secret comes from the environment, with embedded defaults.

| variable                      | default                                   |
|-------------------------------|-------------------------------------------|
| SHOPFLOW_HOME                 | ./.shopflow                               |
| SHOPFLOW_SOURCE_DATA          | ../shared/data (the real sample data)     |
| SHOPFLOW_LANDING_DIR          | $SHOPFLOW_HOME/landing                    |
| SHOPFLOW_LAKE_DIR             | $SHOPFLOW_HOME/lake                       |
| SHOPFLOW_MODELS_DIR           | $SHOPFLOW_HOME/models                     |
| SHOPFLOW_REPORTS_DIR          | $SHOPFLOW_HOME/reports                    |
| SHOPFLOW_STORE_URL            | sqlite:///$SHOPFLOW_HOME/shopflow.db      |
| SHOPFLOW_PSEUDONYM_KEY        | (none)                                    |
| SHOPFLOW_PSEUDONYM_KEY_FILE   | $SHOPFLOW_HOME/pseudonym.key              |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class ConfigurationError(RuntimeError):
    """A setting is missing or unusable; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    home: Path
    source_data: Path
    landing_dir: Path
    lake_dir: Path
    models_dir: Path
    reports_dir: Path
    store_url: str
    pseudonym_key: str | None
    pseudonym_key_file: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        home = Path(env.get("SHOPFLOW_HOME", ".shopflow")).resolve()
        return cls(
            home=home,
            source_data=Path(env.get("SHOPFLOW_SOURCE_DATA", "../shared/data")).resolve(),
            landing_dir=Path(env.get("SHOPFLOW_LANDING_DIR", home / "landing")).resolve(),
            lake_dir=Path(env.get("SHOPFLOW_LAKE_DIR", home / "lake")).resolve(),
            models_dir=Path(env.get("SHOPFLOW_MODELS_DIR", home / "models")).resolve(),
            reports_dir=Path(env.get("SHOPFLOW_REPORTS_DIR", home / "reports")).resolve(),
            store_url=env.get("SHOPFLOW_STORE_URL") or f"sqlite:///{home / 'shopflow.db'}",
            pseudonym_key=env.get("SHOPFLOW_PSEUDONYM_KEY") or None,
            pseudonym_key_file=Path(env.get("SHOPFLOW_PSEUDONYM_KEY_FILE", home / "pseudonym.key")),
        )

    def resolve_pseudonym_key(self) -> bytes:
        """The HMAC key: SHOPFLOW_PSEUDONYM_KEY if set, else the key file; never a built-in default."""
        if self.pseudonym_key:
            return self.pseudonym_key.encode()
        if self.pseudonym_key_file.is_file():
            key = self.pseudonym_key_file.read_text().strip()
            if key:
                return key.encode()
        raise ConfigurationError(
            "no pseudonymisation key: set SHOPFLOW_PSEUDONYM_KEY (or the Airflow connection "
            f"'shopflow_pseudonym'), or create {self.pseudonym_key_file} with `python -m shopflow init-key`"
        )

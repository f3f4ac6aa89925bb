"""One redaction step for every error text that is stored (the metadata store) or printed (the CLI).

`redact(text)` masks the known secrets: the pseudonymisation key (SHOPFLOW_PSEUDONYM_KEY or its key file), the
password of any URL with credentials (SQLAlchemy, Airflow connection URLs), the values of AIRFLOW_CONN_* and of
the API/JWT secrets (AIRFLOW__API_AUTH__JWT_SECRET, AIRFLOW__API__SECRET_KEY, ...), and every environment variable
named *PASSWORD*, *SECRET*, *TOKEN* or *KEY* whose value has 8 or more characters. Anything that looks like an
environment dump (a run of `NAME=value`, NUL-separated as in /proc/self/environ, or several on a line) is replaced
as a whole. A `NAME=value` whose value is a bare boolean (`true`, `false`, `yes`, `no`, `on`, `off`) is left as it
is, whatever the name: a one-bit setting is no secret, and hints such as `set SHOPFLOW_ALLOW_REKEY=true for this run`
stay readable (a value that merely starts with one of those words is still masked). What is left is cut to a short
printable excerpt (control characters shown as `?`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import unquote

MASK = "***"
ENV_DUMP = "[environment dump redacted]"
DEFAULT_LIMIT = 1000
MIN_SECRET_CHARS = 8
NOT_SECRET_SUFFIXES = ("_FILE", "_DIR", "_PATH")  # SHOPFLOW_PSEUDONYM_KEY_FILE names where the key is, not the key

SECRET_NAMES = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
EXPLICIT_SECRETS = ("SHOPFLOW_PSEUDONYM_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY",
                    "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__WEBSERVER__SECRET_KEY")

# scheme://user:password@host -- the password is everything between the first ':' after the user and the last '@'
# before the host part.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*:)(?P<password>[^\s'\"]+?)(?=@[^@\s]*(?:[\s'\"]|$))")
_ASSIGNMENT = r"[A-Za-z_][A-Za-z0-9_]*=[^\x00\s]*"
_NUL = r"(?:\x00|\\x00|\\0)"
# A run of assignments with NUL separators (raw or as Python escapes): /proc/self/environ.
_NUL_DUMP = re.compile(rf"{_ASSIGNMENT}(?:{_NUL}+(?:{_ASSIGNMENT})?)+")
# Three or more NAME=value (upper-case names) in a row, separated by white space: `env` output.
_LINE_DUMP = re.compile(r"(?:\b[A-Z_][A-Z0-9_]*=\S*\s+){2,}[A-Z_][A-Z0-9_]*=\S*")
# One SECRET_NAME=value assignment.
_SECRET_ASSIGNMENT = re.compile(r"(?P<name>\b[A-Za-z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|KEY)[A-Za-z0-9_]*)"
                                r"(?P<sep>\s*[=:]\s*)(?P<value>[^\s'\",;]{4,})", re.IGNORECASE)
# Values a SECRET_NAME=value assignment may show: a setting's boolean, never a secret (closing brackets and a final
# full stop around it are ignored, as in "(or set X_REKEY=true)").
_BOOLEAN_VALUE = re.compile(r"(?:true|false|yes|no|on|off)[)\]}>.]*", re.IGNORECASE)
_UNPRINTABLE = re.compile(r"[^\S \n\t]|[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _url_passwords(value: str) -> Iterable[str]:
    for match in _URL_PASSWORD.finditer(value):
        yield match.group("password")
        yield unquote(match.group("password"))


def _connection_secrets(value: str) -> Iterable[str]:
    """The password (and extra secrets) of an AIRFLOW_CONN_* value: a URL, or Airflow's JSON form."""
    yield from _url_passwords(value)
    if value.lstrip().startswith("{"):
        try:
            fields = json.loads(value)
        except ValueError:
            return
        if isinstance(fields, dict):
            for name, field in fields.items():
                if isinstance(field, str) and (name == "password" or SECRET_NAMES.search(name)):
                    yield field


def known_secrets(env: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> set[str]:
    """Every secret value the process knows of (from the environment, the key file and the store URL)."""
    env = os.environ if env is None else env
    found: set[str] = set(extra)
    for name, value in env.items():
        if not value:
            continue
        if name in EXPLICIT_SECRETS or name.startswith("AIRFLOW_CONN_"):
            found.add(value)
        elif SECRET_NAMES.search(name) and len(value) >= MIN_SECRET_CHARS and not name.endswith(NOT_SECRET_SUFFIXES):
            found.add(value)
        if name.startswith("AIRFLOW_CONN_") or "://" in value:
            found.update(_connection_secrets(value))
    key_file = env.get("SHOPFLOW_PSEUDONYM_KEY_FILE") or str(Path(env.get("SHOPFLOW_HOME", ".shopflow")) / "pseudonym.key")
    try:
        key = Path(key_file).read_text().strip()
    except (OSError, ValueError):
        key = ""
    if key:
        found.add(key)
    # Short values (a password "x") cannot be masked everywhere without wrecking the message; URLs still are.
    return {secret for secret in found if len(secret) >= 4}


def _mask_assignment(match: re.Match) -> str:
    if _BOOLEAN_VALUE.fullmatch(match.group("value")):
        return match.group(0)
    return match.group("name") + match.group("sep") + MASK


def redact(text: object, *, limit: int = DEFAULT_LIMIT, env: Mapping[str, str] | None = None,
           secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret masked, environment dumps removed, cut to a printable excerpt."""
    text = "" if text is None else str(text)
    for secret in sorted(known_secrets(env, secrets), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _NUL_DUMP.sub(ENV_DUMP, text)
    text = _LINE_DUMP.sub(ENV_DUMP, text)
    text = _SECRET_ASSIGNMENT.sub(_mask_assignment, text)
    text = _UNPRINTABLE.sub("?", text)
    if len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text

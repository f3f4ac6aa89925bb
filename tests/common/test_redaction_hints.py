"""The redaction keeps setting hints readable (issue 19: "set SHOPFLOW_ALLOW_REKEY=*** for this run") and still
masks every real secret named like one."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest

from shopflow.common.redaction import MASK, redact
from shopflow.config.settings import ConfigurationError
from shopflow.steps import partition

STRONG_KEY = "redaction-hint-test-pseudonym-key-0123456789abcdef"


def test_the_rekey_hint_of_a_changed_key_survives_redaction():
    spec = SimpleNamespace(name="orders", pseudonymise={"customer_id": "customer_token"})
    store = SimpleNamespace(key_fingerprints=lambda name, exclude_ds=None: {"0123456789abcdef"})
    settings = SimpleNamespace(resolve_pseudonym_key=lambda: STRONG_KEY.encode(), allow_rekey=False)
    with pytest.raises(ConfigurationError) as err:
        partition._checked_key_fingerprint(store, spec, date(2015, 12, 1), settings)
    text = redact(str(err.value), env={"SHOPFLOW_PSEUDONYM_KEY": STRONG_KEY})
    assert "set SHOPFLOW_ALLOW_REKEY=true for this run" in text
    assert MASK not in text and STRONG_KEY not in text


@pytest.mark.parametrize("hint", ["set SHOPFLOW_ALLOW_REKEY=true for this run", "(or SHOPFLOW_ALLOW_REKEY=false)",
                                  "SOME_KEY_ROTATION=yes", "api_key_required: False."])
def test_boolean_settings_named_like_secrets_stay_readable(hint):
    assert redact(hint, env={}) == hint


@pytest.mark.parametrize("text, secret", [
    ("PSEUDONYM_KEY=abcdef0123456789 failed", "abcdef0123456789"),
    ("SHOPFLOW_PSEUDONYM_KEY=truely-secret-key-material", "truely-secret-key-material"),
    ("SHOPFLOW_ALLOW_REKEY=not-a-boolean-s3cret", "not-a-boolean-s3cret"),
    ("DB_PASSWORD=true-horse-battery", "true-horse-battery"),
    ("password: hunter2hunter2", "hunter2hunter2"),
    ("MY_API_TOKEN=falsehood99", "falsehood99"),
    ("secret=yes-really-secret", "yes-really-secret"),
])
def test_real_secrets_are_still_masked(text, secret):
    redacted = redact(text, env={})
    assert secret not in redacted and MASK in redacted


def test_secrets_from_the_environment_are_masked_beside_a_readable_hint():
    env = {"SHOPFLOW_PSEUDONYM_KEY": STRONG_KEY, "AIRFLOW__CORE__FERNET_KEY": "fernet-0123456789"}
    text = redact(f"key {STRONG_KEY} and fernet-0123456789; set SHOPFLOW_ALLOW_REKEY=true for this run", env=env)
    assert text == "key *** and ***; set SHOPFLOW_ALLOW_REKEY=true for this run"

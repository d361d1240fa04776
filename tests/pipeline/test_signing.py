"""Signatures against the Standard Webhooks reference library, and secrets that are refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from imgsvc.config import Settings, SettingsError
from imgsvc.pipeline import signing

from ..conftest import SECRET


def test_signature_matches_the_reference_library() -> None:
    body = b'{"type":"job.completed","data":{"request_id":"ab\\u00e9"}}'
    ours = signing.signature([signing.secret_key(SECRET)], "msg_1", 1_700_000_000, body)
    theirs = Webhook(SECRET).sign(
        "msg_1", datetime.fromtimestamp(1_700_000_000, UTC), body.decode()
    )
    assert ours == theirs


def test_headers_verify_now_with_each_of_several_secrets() -> None:
    other = signing.generate_secret()
    keys = [signing.secret_key(SECRET), signing.secret_key(other)]
    body = b'{"type":"job.failed"}'
    stamp = int(datetime.now(UTC).timestamp())
    headers = signing.headers(keys, "msg_2", stamp, body)
    for secret in (SECRET, other):
        assert Webhook(secret).verify(body, headers) == {"type": "job.failed"}


def test_generated_secrets_are_fresh_and_usable() -> None:
    first, second = signing.generate_secret(), signing.generate_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(signing.secret_key(first)) == signing.KEY_BYTES


@pytest.mark.parametrize(
    ("secret", "problem"),
    [("whsec_not base64!", "base64"), ("whsec_c2hvcnQ=", "at least 16 bytes"), ("", "16 bytes")],
)
def test_unusable_secrets_are_refused(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        signing.secret_key(secret)


def test_webhook_settings_are_read_and_checked() -> None:
    settings = Settings.from_env(
        {"IMGSVC_WEBHOOK_SECRET": f" {SECRET}  {SECRET} ", "IMGSVC_WEBHOOK_RETRY_SCHEDULE": "1, 60"}
    )
    assert settings.webhook_secrets == (SECRET, SECRET)
    assert settings.webhook_retry_schedule == (1.0, 60.0)
    for name, value in (("SECRET", "whsec_short"), ("RETRY_SCHEDULE", "5,-1"), ("TIMEOUT", "0")):
        with pytest.raises(SettingsError, match=f"IMGSVC_WEBHOOK_{name}"):
            Settings.from_env({f"IMGSVC_WEBHOOK_{name}": value})

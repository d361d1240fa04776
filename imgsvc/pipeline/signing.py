"""Standard Webhooks signatures (standardwebhooks.com): pure functions, no I/O.

A secret is `whsec_` followed by base64 key bytes. A message is signed as
`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`; with several secrets (a rotation
under way) the header carries one signature per secret, separated by spaces.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
KEY_BYTES = 32


def generate_secret() -> str:
    """A new random secret in the `whsec_…` form."""
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The key bytes of a `whsec_…` secret; ValueError naming the problem if it has none."""
    encoded = secret.removeprefix(PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is `whsec_` followed by base64") from None
    if len(key) < 16:
        raise ValueError("a webhook secret needs at least 16 bytes of key")
    return key


def signature(keys: list[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: one `v1,…` signature per key."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )


def headers(keys: list[bytes], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of a signed webhook request."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(keys, message_id, timestamp, body),
    }
